"""Hard business rules applied before any model: block/allow lists, a maximum amount and a burst limit.

Rules come from a JSON file (see ``default_rules.json`` next to this module)::

    {
      "blocked_customers": [12], "blocked_terminals": [7],
      "allowed_customers": [], "allowed_terminals": [],
      "max_amount": 10000.0,             # amount (currency units) at or above which a transaction is blocked
      "burst_review_count": 20           # CUSTOMER_NB_TX_BURST_WINDOW at or above which it goes to REVIEW
    }

Precedence, row by row: a block rule (blocked customer, blocked terminal, amount >= ``max_amount``) wins over an
allow rule (allowed customer or terminal), which wins over the burst limit.  Block and allow are final
decisions; the burst limit only *escalates*: the models still run, and a row they would ALLOW becomes REVIEW.
``null`` (or a missing key) disables ``max_amount`` / ``burst_review_count``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.detectors.cascade.types import Decision
from fraudstream.detectors.schema import TransactionBatch

#: Feature read by the burst limit.
BURST_FEATURE = "CUSTOMER_NB_TX_BURST_WINDOW"
#: The rules file shipped with fraudstream.
DEFAULT_RULES_PATH = Path(__file__).with_name("default_rules.json")
#: Marker in :attr:`RuleOutcome.decision` for rows no final rule settled.
NO_RULE = -1

REASON_BLOCKED_CUSTOMER = "rule:blocked_customer"
REASON_BLOCKED_TERMINAL = "rule:blocked_terminal"
REASON_MAX_AMOUNT = "rule:max_amount"
REASON_ALLOWED_CUSTOMER = "rule:allowed_customer"
REASON_ALLOWED_TERMINAL = "rule:allowed_terminal"
REASON_BURST = "rule:burst"

_ID_KEYS = ("blocked_customers", "blocked_terminals", "allowed_customers", "allowed_terminals")
_KNOWN_KEYS = set(_ID_KEYS) | {"max_amount", "burst_review_count"}


class RulesConfigError(ValueError):
    """A rules file or mapping that cannot be used; the message names the file and key at fault."""


@dataclass(frozen=True)
class RuleConfig:
    """Rule parameters (see the module docstring for their meaning)."""

    blocked_customers: frozenset[int] = field(default_factory=frozenset)
    blocked_terminals: frozenset[int] = field(default_factory=frozenset)
    allowed_customers: frozenset[int] = field(default_factory=frozenset)
    allowed_terminals: frozenset[int] = field(default_factory=frozenset)
    max_amount: float | None = None
    burst_review_count: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "rules") -> RuleConfig:
        """Validate a mapping; raises :class:`RulesConfigError` naming ``source`` and the key."""
        if not isinstance(data, Mapping):
            raise RulesConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - _KNOWN_KEYS)
        if unknown:
            raise RulesConfigError(f"{source}: unknown key(s) {unknown}; known: {sorted(_KNOWN_KEYS)}")
        ids: dict[str, frozenset[int]] = {}
        for key in _ID_KEYS:
            values = data.get(key, [])
            if not isinstance(values, list):
                raise RulesConfigError(f"{source}: {key}: expected a list of integer ids, got {values!r}")
            for value in values:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise RulesConfigError(f"{source}: {key}: expected a non-negative integer id, got {value!r}")
            ids[key] = frozenset(values)
        max_amount = data.get("max_amount")
        if max_amount is not None:
            if isinstance(max_amount, bool) or not isinstance(max_amount, (int, float)) or not max_amount > 0:
                raise RulesConfigError(f"{source}: max_amount: expected a positive number or null, got {max_amount!r}")
            max_amount = float(max_amount)
        burst = data.get("burst_review_count")
        if burst is not None:
            if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
                raise RulesConfigError(
                    f"{source}: burst_review_count: expected a positive integer or null, got {burst!r}"
                )
        return cls(max_amount=max_amount, burst_review_count=burst, **ids)

    @classmethod
    def from_json_file(cls, path: str | Path) -> RuleConfig:
        """Read and validate a rules file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise RulesConfigError(f"{path}: cannot read rules file: {exc}") from None
        except json.JSONDecodeError as exc:
            raise RulesConfigError(f"{path}: not valid JSON: {exc}") from None
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {key: sorted(getattr(self, key)) for key in _ID_KEYS}
        out["max_amount"] = self.max_amount
        out["burst_review_count"] = self.burst_review_count
        return out

    def to_json_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


@dataclass(frozen=True)
class RuleOutcome:
    """Rule results for one batch, row-aligned.

    ``decision`` holds a :class:`Decision` value where a block or allow rule settled the row, else
    :data:`NO_RULE`; ``escalate`` marks rows the burst limit sends to at least REVIEW; ``reasons`` names the
    rules that fired per row.
    """

    decision: np.ndarray  # int8
    escalate: np.ndarray  # bool
    reasons: list[tuple[str, ...]]


class RuleSet:
    """Vectorized evaluation of a :class:`RuleConfig` over a micro-batch.

    Parameters
    ----------
    config : the rules.
    feature_names : names of the feature matrix columns (model-input order); needed for the burst limit.
    """

    def __init__(self, config: RuleConfig, feature_names: list[str]) -> None:
        self.config = config
        self.feature_names = list(feature_names)
        self._burst_column = self.feature_names.index(BURST_FEATURE) if BURST_FEATURE in self.feature_names else None
        if config.burst_review_count is not None and self._burst_column is None:
            raise RulesConfigError(f"burst_review_count needs feature {BURST_FEATURE}, absent from the feature set")
        self._id_arrays = {key: np.fromiter(getattr(config, key), dtype=np.int64) for key in _ID_KEYS}

    def evaluate(self, X: np.ndarray, batch: TransactionBatch) -> RuleOutcome:
        """Apply the rules to a batch (``X`` rows aligned with ``batch``)."""
        n = len(batch)
        checks: list[tuple[str, np.ndarray]] = [
            (REASON_BLOCKED_CUSTOMER, np.isin(batch.customer_id, self._id_arrays["blocked_customers"])),
            (REASON_BLOCKED_TERMINAL, np.isin(batch.terminal_id, self._id_arrays["blocked_terminals"])),
        ]
        if self.config.max_amount is not None:
            checks.append((REASON_MAX_AMOUNT, np.asarray(batch.amount) >= self.config.max_amount))
        block = np.zeros(n, dtype=bool)
        for _, hit in checks:
            block |= hit
        allow_checks = [
            (REASON_ALLOWED_CUSTOMER, np.isin(batch.customer_id, self._id_arrays["allowed_customers"])),
            (REASON_ALLOWED_TERMINAL, np.isin(batch.terminal_id, self._id_arrays["allowed_terminals"])),
        ]
        allow = np.zeros(n, dtype=bool)
        for _, hit in allow_checks:
            allow |= hit
        allow &= ~block
        if self.config.burst_review_count is not None:
            escalate = X[:, self._burst_column] >= self.config.burst_review_count
        else:
            escalate = np.zeros(n, dtype=bool)
        escalate &= ~block & ~allow

        decision = np.full(n, NO_RULE, dtype=np.int8)
        decision[block] = Decision.BLOCK
        decision[allow] = Decision.ALLOW
        reasons: list[tuple[str, ...]] = [()] * n
        fired_rows = np.flatnonzero(block | allow | escalate)
        if fired_rows.size:
            active = [(name, hit) for name, hit in checks if hit.any()]
            active += [(name, hit & allow) for name, hit in allow_checks if (hit & allow).any()]
            if escalate.any():
                active.append((REASON_BURST, escalate))
            for i in fired_rows:
                reasons[i] = tuple(name for name, hit in active if hit[i])
        return RuleOutcome(decision=decision, escalate=escalate, reasons=reasons)
