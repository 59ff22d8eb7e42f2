"""What the backtest feeds the worker core: records as the broker would deliver them, and the card numbers.

* :func:`transaction_events` turns rows into the raw records of the transactions topic (the JSON a replay sends,
  already decoded as the consumer decodes it), :class:`LabelFeed` the labels into records of the labels topic
  once known (one partition, offsets in the order sent), so the worker core parses, deduplicates and applies
  them exactly as it does live.
* :class:`CardNumbers` holds the card number (the worker's customer id) each row is made with.  Simulated data
  keeps one id per customer and never reissues a card; in reissue mode a blocked card is replaced: the
  customer's later legitimate rows use a new number (:func:`reissued_card`), while the fraudulent ones, the
  fraudster's, keep using the blocked one.  Every record names the customer as its ``account_id``, so a
  reissued card's features go on from the customer's history, as the batch path's do (with the card alone as
  the history key, a new card's empty history made its transactions look new: on the seed-0 validation week
  20,717 of 67,890 rows had other anomaly scores than the batch path, and the backtest reviewed 100 cards a
  day where calibration had measured 75).

Pure: no broker, no store.
"""

from __future__ import annotations

import heapq

import numpy as np
import orjson

from fraudstream.detectors.schema import LabelEvent
from fraudstream.stream.types import RawEvent

#: Topic names the backtest's records carry (the worker core tells transactions from labels by topic).
TRANSACTIONS_TOPIC, LABELS_TOPIC = "backtest-transactions", "backtest-labels"
#: A reissued card's number: the customer id plus this times its generation (0 = the original card).
REISSUE_STRIDE = 10**12
MS_PER_S = 1000.0


def reissued_card(customer_id: np.ndarray | int, generation: np.ndarray | int) -> np.ndarray | int:
    """Card number of a customer's ``generation``-th card (0: the customer id itself)."""
    return customer_id + REISSUE_STRIDE * generation


def transaction_events(transaction_id: np.ndarray, timestamp_s: np.ndarray, card: np.ndarray, account: np.ndarray,
                       terminal_id: np.ndarray, amount: np.ndarray, first_offset: int) -> list[RawEvent]:
    """Records of the transactions topic: wire JSON with the card (``customer_id``) and its account
    (``account_id``: the customer, whose history a reissued card keeps), keyed by account, record time = event
    time (ms)."""
    out = []
    for offset, (tid, t, c, a, term, x) in enumerate(zip(transaction_id.tolist(), timestamp_s.tolist(), card.tolist(),
                                                         account.tolist(), terminal_id.tolist(), amount.tolist()),
                                                     start=first_offset):
        wire = {"transaction_id": tid, "timestamp": t, "customer_id": c, "terminal_id": term, "amount": x,
                "account_id": a}
        out.append(RawEvent(TRANSACTIONS_TOPIC, 0, offset, int(t * MS_PER_S), orjson.dumps(wire),
                            str(a).encode(), wire))
    return out


class LabelFeed:
    """Labels waiting to be known; :meth:`due` hands out, as label records, those known before a time."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, LabelEvent]] = []
        self._added = 0
        self.sent = 0  # next offset of the labels partition

    def add(self, labels: list[LabelEvent]) -> None:
        for label in labels:
            heapq.heappush(self._heap, (label.known_at, self._added, label))
            self._added += 1

    def due(self, before_s: float) -> tuple[list[RawEvent], list[LabelEvent]]:
        """Records (and labels) of every label known before ``before_s`` not sent yet, in ``known_at`` order."""
        events, labels = [], []
        while self._heap and self._heap[0][0] < before_s:
            label = heapq.heappop(self._heap)[2]
            events.append(RawEvent(LABELS_TOPIC, 0, self.sent, int(label.known_at * MS_PER_S), label.to_json(),
                                   str(label.terminal_id).encode()))
            labels.append(label)
            self.sent += 1
        return events, labels


#: Longest quiet time (s) inside one fraud episode of a customer: the simulator's longest compromise (a customer's
#: card used by a fraudster for 14 days); frauds further apart are separate compromises.
EPISODE_GAP_S = 14 * 86_400.0
#: Episode of a legitimate row.
NO_EPISODE = -1


def fraud_episodes(customer_ids: np.ndarray, timestamp_s: np.ndarray, fraud: np.ndarray,
                   scenario: np.ndarray | None = None, gap_s: float = EPISODE_GAP_S) -> np.ndarray:
    """Per row, the fraud episode it belongs to (:data:`NO_EPISODE` for legitimate rows): a customer's frauds in
    time order, a new episode where the attack kind (``scenario``, when known) changes or more than ``gap_s``
    passed since the customer's previous fraud.  Episode ids are numbered from 0 in no particular order."""
    fraud = np.asarray(fraud, dtype=bool)
    out = np.full(fraud.shape[0], NO_EPISODE, dtype=np.int64)
    rows = np.flatnonzero(fraud)
    if not rows.size:
        return out
    customer = np.asarray(customer_ids, dtype=np.int64)[rows]
    t = np.asarray(timestamp_s, dtype=np.float64)[rows]
    kind = (np.zeros(rows.size, dtype=np.int64) if scenario is None
            else np.nan_to_num(np.asarray(scenario, dtype=np.float64)[rows], nan=-1.0).astype(np.int64))
    order = np.lexsort((t, customer))
    c, tt, k = customer[order], t[order], kind[order]
    starts = np.r_[True, (c[1:] != c[:-1]) | (k[1:] != k[:-1]) | (tt[1:] - tt[:-1] > gap_s)]
    out[rows[order]] = np.cumsum(starts) - 1
    return out


class CardNumbers:
    """The card number each customer's rows are made with, given the reissues so far.

    ``reissue``: when a customer's current card is blocked it is replaced by the next generation.  Legitimate
    rows use the customer's current card; a fraud uses the card that was current when its episode began
    (``episodes``, row-aligned with ``customer_ids``, see :func:`fraud_episodes`): the compromise that got a card
    blocked keeps trying the blocked card, a later, separate attack on the customer has the new one.  Without
    reissue every row uses the customer id.
    """

    def __init__(self, customer_ids: np.ndarray, reissue: bool, episodes: np.ndarray) -> None:
        self.reissue = reissue
        self._customers, self._index = np.unique(np.asarray(customer_ids, dtype=np.int64), return_inverse=True)
        self._generation = np.zeros(len(self._customers), dtype=np.int64)
        self._episodes = np.asarray(episodes, dtype=np.int64)
        self._episode_generation: dict[int, int] = {}

    def cards(self, rows: slice) -> np.ndarray:
        """Card numbers of ``rows`` (a slice of the customer ids given at construction, fed in time order)."""
        index = self._index[rows]
        customers = self._customers[index]
        if not self.reissue:
            return customers
        generation = self._generation[index].copy()
        episodes = self._episodes[rows]
        for k in np.flatnonzero(episodes != NO_EPISODE).tolist():
            generation[k] = self._episode_generation.setdefault(int(episodes[k]), int(generation[k]))
        return np.asarray(reissued_card(customers, generation))

    def blocked(self, card: int) -> None:
        """A card went on the block list: in reissue mode, a customer's current card is replaced."""
        if not self.reissue:
            return
        customer, generation = card % REISSUE_STRIDE, card // REISSUE_STRIDE
        k = int(np.searchsorted(self._customers, customer))
        if k < len(self._customers) and self._customers[k] == customer and self._generation[k] == generation:
            self._generation[k] += 1
