"""The live block list in the rules stage: cards an analyst confirmed as fraud are blocked by rule.

The store reads the batch's cards' block-list entries with the rest of the batch's state (no extra round trip);
:func:`apply_block_list` then turns every row of a blocked card into ``BLOCK`` at stage ``RULES`` with reason
:data:`REASON_LIVE_BLOCK_LIST`, keeping the models' scores for the record.  A block rule wins over everything else,
as the static block lists of :mod:`fraudstream.detectors.rules` do.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import replace

import numpy as np

from fraudstream.detectors.cascade.types import CascadeResult, Decision, Stage
from fraudstream.detectors.schema import TransactionBatch

REASON_LIVE_BLOCK_LIST = "rule:live_block_list"


def apply_block_list(result: CascadeResult, batch: TransactionBatch, blocked: Set[int]) -> CascadeResult:
    """``result`` with the rows of blocked cards (customer ids in ``blocked``) decided BLOCK by rule."""
    if not blocked or len(batch) == 0:
        return result
    rows = np.flatnonzero(np.isin(batch.customer_id, np.fromiter(blocked, dtype=np.int64, count=len(blocked))))
    if rows.size == 0:
        return result
    decision, stage = np.array(result.decision, copy=True), np.array(result.stage, copy=True)
    decision[rows] = Decision.BLOCK
    stage[rows] = Stage.RULES
    reasons = list(result.reasons)
    for i in rows.tolist():
        reasons[i] = (REASON_LIVE_BLOCK_LIST, *reasons[i])
    return replace(result, decision=decision, stage=stage, reasons=reasons)
