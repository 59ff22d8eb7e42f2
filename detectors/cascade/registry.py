"""The registered scoring stages, in cascade order: adding a detector is one module plus one line here.

The order is the order of scoring (each stage sees the scores of the ones before it), of
:attr:`~fraudstream.detectors.cascade.types.CascadeResult.scores`, and of the ``<name>_score`` fields of the
decision JSON.  A bundle's manifest lists the stages it holds (``"stages"``); loading builds each one from this
table, so a bundle naming an unregistered stage is refused.
"""

from __future__ import annotations

from fraudstream.detectors.cascade.stage import ScoringStage
from fraudstream.detectors.models.anomaly import AnomalyStage
from fraudstream.detectors.models.heavy import HeavyStage
from fraudstream.detectors.models.light import LightStage

#: Stage types by name, in cascade order.
STAGE_TYPES: dict[str, type[ScoringStage]] = {
    LightStage.name: LightStage,
    AnomalyStage.name: AnomalyStage,
    HeavyStage.name: HeavyStage,
}
#: Stages of a bundle whose manifest predates the ``"stages"`` entry.
DEFAULT_STAGES: tuple[str, ...] = tuple(STAGE_TYPES)


def register_stage(stage_type: type[ScoringStage], after: str | None = None) -> None:
    """Add ``stage_type`` to :data:`STAGE_TYPES`, at the end or right after the stage named ``after``."""
    name = stage_type.name
    if name in STAGE_TYPES:
        raise ValueError(f"stage {name!r} is already registered")
    if after is None:
        STAGE_TYPES[name] = stage_type
        return
    if after not in STAGE_TYPES:
        raise ValueError(f"register_stage: no stage named {after!r} (registered: {list(STAGE_TYPES)})")
    items = list(STAGE_TYPES.items())
    position = [n for n, _ in items].index(after) + 1
    items.insert(position, (name, stage_type))
    STAGE_TYPES.clear()
    STAGE_TYPES.update(items)


def unregister_stage(name: str) -> None:
    """Remove a registered stage (tests and plugins that registered one)."""
    STAGE_TYPES.pop(name, None)


def stage_type(name: str) -> type[ScoringStage]:
    """The registered type of stage ``name``; KeyError naming the registered ones otherwise."""
    try:
        return STAGE_TYPES[name]
    except KeyError:
        raise KeyError(f"no scoring stage named {name!r} (registered: {list(STAGE_TYPES)})") from None


def order_stages(stages: list[ScoringStage]) -> list[ScoringStage]:
    """``stages`` in registry order; refuses unregistered or repeated names."""
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stages: repeated name in {names}")
    for name in names:
        stage_type(name)
    position = {name: i for i, name in enumerate(STAGE_TYPES)}
    return sorted(stages, key=lambda s: position[s.name])
