"""The per-stage table: what each stage of the cascade was given, what it settled, and how well it blocked and
sent to review.

Per stage (rules, light model + anomaly detector, heavy model), from one set of decisions with known labels:

* ``routed``: rows that reached the stage (every row reaches the rules; the light stage gets the rows no final
  rule decided; the heavy stage the rows its model scored);
* ``decided``: rows it settled without an analyst (BLOCK or ALLOW);
* ``block`` / ``review``: its BLOCK and REVIEW rows, with their precision (share of frauds among them) and recall
  (their frauds over *all* frauds of the table, so the stages' recalls add up to the cascade's).

A burst-rule escalation (a model ALLOW turned REVIEW) counts as a REVIEW of the rules.  Counts are kept as
integers, so tables of several folds add up (:meth:`StageTable.plus`) before precision and recall are taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fraudstream.detectors.cascade.types import CascadeResult, Decision, Stage


@dataclass(frozen=True)
class StageCounts:
    """Integer counts of one stage (see the module docstring)."""

    stage: str
    routed: int
    decided: int
    block: int
    block_frauds: int
    review: int
    review_frauds: int

    def plus(self, other: StageCounts) -> StageCounts:
        return StageCounts(self.stage, *(getattr(self, f) + getattr(other, f) for f in _COUNTS))


_COUNTS = ("routed", "decided", "block", "block_frauds", "review", "review_frauds")


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


@dataclass(frozen=True)
class StageTable:
    """One :class:`StageCounts` per stage, in cascade order, and the table's row and fraud totals."""

    stages: list[StageCounts] = field(default_factory=list)
    rows: int = 0
    frauds: int = 0

    def plus(self, other: StageTable) -> StageTable:
        if not self.stages:
            return other
        if [s.stage for s in self.stages] != [s.stage for s in other.stages]:
            raise ValueError("stage tables of different stages cannot be added")
        return StageTable([a.plus(b) for a, b in zip(self.stages, other.stages)], self.rows + other.rows,
                          self.frauds + other.frauds)

    def to_json(self) -> list[dict[str, Any]]:
        """One dict per stage: the counts, and precision / recall of BLOCK and REVIEW (None where undefined)."""
        out = []
        for s in self.stages:
            row: dict[str, Any] = {"stage": s.stage, **{f: getattr(s, f) for f in _COUNTS}}
            for kind in ("block", "review"):
                rows, frauds = getattr(s, kind), getattr(s, f"{kind}_frauds")
                for name, value in ((f"{kind}_precision", _ratio(frauds, rows)),
                                    (f"{kind}_recall", _ratio(frauds, self.frauds))):
                    row[name] = None if np.isnan(value) else value
            out.append(row)
        return out


def stage_table(decision: np.ndarray, stage: np.ndarray, heavy_ran: np.ndarray, fraud: np.ndarray) -> StageTable:
    """The table of one set of decisions (row-aligned arrays; ``heavy_ran``: the heavy model scored the row)."""
    decision = np.asarray(decision)
    stage = np.asarray(stage)
    heavy_ran = np.asarray(heavy_ran, dtype=bool)
    y = np.asarray(fraud).astype(bool)
    block, review = decision == Decision.BLOCK, decision == Decision.REVIEW
    final_rule = (stage == Stage.RULES) & ~review
    routed = {Stage.RULES: np.ones(y.size, dtype=bool), Stage.LIGHT: ~final_rule, Stage.HEAVY: heavy_ran}
    rows = []
    for s in (Stage.RULES, Stage.LIGHT, Stage.HEAVY):
        mine = stage == s
        rows.append(StageCounts(
            stage=s.name, routed=int(routed[s].sum()), decided=int((mine & ~review).sum()),
            block=int((mine & block).sum()), block_frauds=int((mine & block & y).sum()),
            review=int((mine & review).sum()), review_frauds=int((mine & review & y).sum()),
        ))
    return StageTable(rows, int(y.size), int(y.sum()))


def result_stage_table(result: CascadeResult, fraud: np.ndarray) -> StageTable:
    """The table of a scored batch (:meth:`~fraudstream.detectors.cascade.cascade.Cascade.score`)."""
    return stage_table(result.decision, result.stage, ~np.isnan(result.scores["heavy"]), fraud)


def _pct(x: float) -> str:
    return "-" if np.isnan(x) else f"{100 * x:.1f}%"


def format_stage_table(table: StageTable, title: str = "per-stage table") -> str:
    """The table as aligned plain text (precision and recall in %; '-' where a stage had no such rows)."""
    header = ["stage", "routed", "decided", "BLOCK", "prec", "recall", "REVIEW", "prec", "recall"]
    lines = [[title + f" ({table.rows:,} rows, {table.frauds:,} frauds)"] + [""] * 8, header]
    for s in table.stages:
        lines.append([
            s.stage, f"{s.routed:,}", f"{s.decided:,}",
            f"{s.block:,}", _pct(_ratio(s.block_frauds, s.block)), _pct(_ratio(s.block_frauds, table.frauds)),
            f"{s.review:,}", _pct(_ratio(s.review_frauds, s.review)), _pct(_ratio(s.review_frauds, table.frauds)),
        ])
    widths = [max(len(r[i]) for r in lines[1:]) for i in range(len(header))]
    out = [lines[0][0]]
    for r in lines[1:]:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def stage_table_from_json(rows: list[dict[str, Any]], n_rows: int, frauds: int) -> StageTable:
    """The table back from :meth:`StageTable.to_json` (e.g. a bundle manifest's metrics)."""
    return StageTable([StageCounts(r["stage"], *(int(r[f]) for f in _COUNTS)) for r in rows], n_rows, frauds)


def stage_table_to_metrics(table: StageTable) -> dict[str, Any]:
    """The table as it is kept in training metrics (and the bundle manifest)."""
    return {"rows": table.rows, "frauds": table.frauds, "stages": table.to_json()}


def format_metrics_stage_table(metrics: dict[str, Any], key: str = "stage_table_valid") -> str:
    """The validation table of a training run's metrics as text ('' when the metrics have none)."""
    kept = metrics.get(key)
    if not kept:
        return ""
    table = stage_table_from_json(kept["stages"], kept["rows"], kept["frauds"])
    return format_stage_table(table, "per-stage table, validation (rules apart)")
