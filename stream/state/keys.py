"""The whole Redis keyspace of fraudstream, in one place.  ``<p>`` is the key prefix (``redis_prefix``, ``fs``).

Online feature state (TTL ``state_ttl_s``, refreshed on every write):

``<p>:cust:<customer_id>`` (string)
    ``CustomerHistory.to_bytes()``; written only by the worker that owns the customer's partition.
``<p>:term:<terminal_id>`` (string)
    ``TerminalHistory.to_bytes()``; shared by all workers, so only written by a compare-and-write that checks it
    still holds what the batch read.
``<p>:labels-applied:<labels topic>:<partition>`` (string, TTL ``state_ttl_s``)
    offset (decimal ASCII) up to which (exclusive) that partition's labels are in the terminal histories.  Only
    ever raised (compare-and-write); a starting worker resumes reading labels there; labels below it are skipped.

Decisions (TTL ``decision_ttl_s``):

``<p>:dec:<transaction_id>`` (string)
    the decision's JSON exactly as produced; a re-delivered transaction whose key exists is answered with these
    bytes and not scored again.

Event-time alignment (TTL ``alignment_progress_ttl_s`` of the worker, 60 s):

``<p>:progress:<transactions topic>:<partition>`` (string)
    ``PartitionProgress.encode()`` of the worker that owns the partition (JSON ``[next_offset, head,
    processed_to]``), read by the workers that own the other partitions.

Review queue (no expiry):

``<p>:review:pending`` (sorted set)
    member = transaction id (decimal string), score = risk; highest risk first.  A verdict removes the member.
``<p>:review:item:<transaction_id>`` (hash)
    the fields of ``stream.types.review_item_fields``; a verdict sets ``status``, ``verdict``, ``analyst``,
    ``resolved_at``.

A batch's decisions, histories, label offsets and review items are written in one atomic script call
(:mod:`fraudstream.stream.state.compare_and_write`), so a REVIEW decision is never stored without its item.
"""

from __future__ import annotations


class Keyspace:
    """Names of every Redis key, under one prefix.

    Parameters
    ----------
    prefix : prefix of every key.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.review_pending = f"{prefix}:review:pending"

    def customer(self, customer_id: int) -> str:
        return f"{self.prefix}:cust:{customer_id}"

    def terminal(self, terminal_id: int) -> str:
        return f"{self.prefix}:term:{terminal_id}"

    def labels_applied(self, labels_topic: str, partition: int) -> str:
        return f"{self.prefix}:labels-applied:{labels_topic}:{partition}"

    def decision(self, transaction_id: int) -> str:
        return f"{self.prefix}:dec:{transaction_id}"

    def progress(self, topic: str, partition: int) -> str:
        return f"{self.prefix}:progress:{topic}:{partition}"

    def review_item(self, transaction_id: int | str) -> str:
        return f"{self.prefix}:review:item:{transaction_id}"
