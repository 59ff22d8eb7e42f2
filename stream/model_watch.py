"""Hot model reload: poll the model root's ``LATEST`` and swap in a new bundle between micro-batches.

The bundle is loaded off the event loop (in a thread); the swap is one attribute assignment, and the pipeline
reads :attr:`ModelWatcher.current` once at the start of each batch, so a batch is scored by one model only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fraudstream.detectors.bundle import LoadedBundle, latest_version, load_bundle
from fraudstream.detectors.features.online import IncrementalFeatures
from fraudstream.detectors.schema import TransactionBatch

log = logging.getLogger(__name__)

#: Synthetic warm-up batch: rows, their event time (epoch s) and largest amount (currency units).
WARM_UP_ROWS = 8
WARM_UP_EPOCH_S = 1_600_000_000.0
WARM_UP_MAX_AMOUNT = 500.0


@dataclass(frozen=True)
class ActiveModel:
    """A loaded bundle with the incremental feature transform of its feature configuration."""

    bundle: LoadedBundle
    features: IncrementalFeatures

    @property
    def version(self) -> str:
        return str(self.bundle.version)

    def warm_up(self) -> None:
        """Score a tiny synthetic batch once, so that the first real batch does not pay for lazy set-up."""
        batch = TransactionBatch(
            transaction_id=np.arange(WARM_UP_ROWS, dtype=np.int64),
            timestamp=np.full(WARM_UP_ROWS, WARM_UP_EPOCH_S, dtype=np.float64),
            customer_id=np.zeros(WARM_UP_ROWS, dtype=np.int64),
            terminal_id=np.zeros(WARM_UP_ROWS, dtype=np.int64),
            amount=np.linspace(1.0, WARM_UP_MAX_AMOUNT, WARM_UP_ROWS),
        )
        features = self.features.transform(batch, {}, {})  # throw-away state: nothing is stored
        self.bundle.cascade.score(features, batch)

    @classmethod
    def load(cls, path: str | Path) -> ActiveModel:
        bundle = load_bundle(path)
        return cls(bundle=bundle, features=IncrementalFeatures(bundle.feature_config))


class ModelWatcher:
    """Holds the active model and replaces it when ``LATEST`` changes.

    Parameters
    ----------
    model_dir : model root (with ``LATEST``) or one version directory (never reloaded).
    poll_s : how often ``LATEST`` is read (s).
    on_swap : called with the new :class:`ActiveModel` after each load (metrics, logs).
    on_failure : called with the exception when a new version fails to load (the old model stays; the load is
        tried again at the next poll, in case ``LATEST`` was written before its directory was complete).  Logged
        and reported once per bad version, not once per poll.
    """

    def __init__(self, model_dir: str | Path, poll_s: float,
                 on_swap: Callable[[ActiveModel], None] | None = None,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.poll_s = float(poll_s)
        self.on_swap = on_swap
        self.on_failure = on_failure
        self.current: ActiveModel | None = None
        self._marker: str | None = None
        self._failed: str | None = None  # the version whose failure was reported last

    def load_now(self) -> ActiveModel:
        """Load the model synchronously (at start-up, before consuming)."""
        self._marker = latest_version(self.model_dir)
        self._swap(ActiveModel.load(self.model_dir))
        return self.current  # type: ignore[return-value]

    def _swap(self, model: ActiveModel) -> None:
        self.current = model
        log.info("model %s active (from %s)", model.version, self.model_dir)
        if self.on_swap is not None:
            self.on_swap(model)

    async def check_once(self) -> bool:
        """Reload when ``LATEST`` changed since the last load; returns whether a new model was swapped in."""
        marker = await asyncio.to_thread(latest_version, self.model_dir)
        if marker is None or marker == self._marker:
            return False
        try:
            model = await asyncio.to_thread(ActiveModel.load, self.model_dir)
            await asyncio.to_thread(model.warm_up)
        except Exception as exc:  # a broken new version must not stop scoring with the old one
            if marker != self._failed:
                self._failed = marker
                log.error("could not load model %s from %s (%s); keeping %s; retried every %g s, reported once",
                          marker, self.model_dir, str(exc) or type(exc).__name__,
                          self.current.version if self.current else None, self.poll_s)
                log.debug("model %s load failure", marker, exc_info=True)
                if self.on_failure is not None:
                    self.on_failure(exc)
            return False
        if self._failed == marker:
            log.info("model %s loaded after earlier failures", marker)
        self._failed = None
        self._marker = marker
        self._swap(model)
        return True

    async def run(self) -> None:
        """Poll forever (cancel the task to stop)."""
        while True:
            await asyncio.sleep(self.poll_s)
            await self.check_once()
