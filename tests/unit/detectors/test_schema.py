import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from fraudstream.detectors.schema import (
    DEFAULT_EVENT_TIME_RANGE,
    ID_END,
    MAX_AMOUNT,
    InvalidEvent,
    LabelEvent,
    Transaction,
    TransactionBatch,
    datetime_to_epoch_seconds,
)

GOOD = {"transaction_id": 7, "timestamp": "2018-04-01T00:00:31", "customer_id": 2, "terminal_id": 3, "amount": 5.5}


def test_transaction_round_trip_and_iso_time():
    tx = Transaction.from_json(json.dumps(GOOD).encode())
    assert tx.timestamp == pd.Timestamp("2018-04-01 00:00:31").timestamp()
    assert Transaction.from_json(tx.to_json()) == tx


def test_account_id_is_optional_and_keys_the_history():
    tx = Transaction.from_dict(GOOD)
    assert tx.account_id is None and tx.account == 2 and "account_id" not in tx.to_dict()
    moved = Transaction.from_dict({**GOOD, "customer_id": 9, "account_id": 2})
    assert (moved.customer_id, moved.account) == (9, 2)
    assert Transaction.from_json(moved.to_json()) == moved
    batch = TransactionBatch.from_transactions([tx, moved])
    assert batch.customer_id.tolist() == [2, 9] and batch.account.tolist() == [2, 2]
    assert batch.take(np.array([1])).account.tolist() == [2]
    assert TransactionBatch.from_transactions([tx]).account_id is None
    with pytest.raises(InvalidEvent) as err:
        Transaction.from_dict({**GOOD, "account_id": "x"})
    assert err.value.field == "account_id"


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"amount": -1}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": float("inf")}, "amount"),
        ({"customer_id": "x1"}, "customer_id"),
        ({"customer_id": True}, "customer_id"),
        ({"terminal_id": 1.5}, "terminal_id"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": -5}, "timestamp"),
    ],
)
def test_bad_fields_name_the_field(patch, field):
    with pytest.raises(InvalidEvent) as err:
        Transaction.from_dict({**GOOD, **patch})
    assert err.value.field == field
    assert field in str(err.value)


def test_missing_field_and_bad_json():
    data = dict(GOOD)
    del data["terminal_id"]
    with pytest.raises(InvalidEvent) as err:
        Transaction.from_dict(data)
    assert err.value.field == "terminal_id" and err.value.reason == "missing"
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        Transaction.from_json(b"{not json")
    with pytest.raises(InvalidEvent, match="JSON object"):
        Transaction.from_json(b"[1, 2]")
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        Transaction.from_json(b"\xff\xfe")


def test_label_event_validation():
    label = LabelEvent.from_dict(
        {"transaction_id": 1, "terminal_id": 2, "customer_id": 3, "tx_timestamp": 1_600_000_000, "fraud": 1,
         "known_at": 1_600_000_020}
    )
    assert label.fraud is True and label.source == "chargeback"
    assert LabelEvent.from_json(label.to_json()) == label
    with pytest.raises(InvalidEvent) as err:
        LabelEvent.from_dict({**label.to_dict(), "fraud": "maybe"})
    assert err.value.field == "fraud"


def test_batch_from_frame_matches_from_transactions():
    frame = pd.DataFrame(
        {
            "TRANSACTION_ID": [1, 2],
            "TX_DATETIME": pd.to_datetime(["2018-04-01 00:00:31", "2018-04-02 10:00:00"]),
            "CUSTOMER_ID": [5, 6],
            "TERMINAL_ID": [7, 8],
            "TX_AMOUNT": [1.25, 99.0],
        }
    )
    a = TransactionBatch.from_frame(frame)
    b = TransactionBatch.from_transactions(
        Transaction(int(r.TRANSACTION_ID), pd.Timestamp(r.TX_DATETIME).timestamp(), int(r.CUSTOMER_ID),
                    int(r.TERMINAL_ID), float(r.TX_AMOUNT))
        for r in frame.itertuples()
    )
    for name in ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert len(a.take(np.array([1]))) == 1


def test_epoch_seconds_handles_timezones():
    naive = pd.Series(pd.to_datetime(["2018-04-01 02:00:00"]))
    aware = naive.dt.tz_localize("Europe/Brussels")
    assert datetime_to_epoch_seconds(naive)[0] - datetime_to_epoch_seconds(aware)[0] == 2 * 3600


EDGE_VALUES = {
    "transaction_id": [0, 7, ID_END - 1, ID_END, -1],
    "customer_id": [0, ID_END - 1, ID_END, -1],
    "terminal_id": [0, ID_END, -1],
    "timestamp": [DEFAULT_EVENT_TIME_RANGE.earliest_s, DEFAULT_EVENT_TIME_RANGE.earliest_s - 0.5,
                  DEFAULT_EVENT_TIME_RANGE.latest_s - 0.5, DEFAULT_EVENT_TIME_RANGE.latest_s, 1.7e9, -1.0,
                  math.nan, math.inf],
    "amount": [0.0, 12.5, MAX_AMOUNT, MAX_AMOUNT * 1.5, -0.01, math.nan, math.inf],
}


def _outcome(data):
    try:
        return Transaction.from_dict(data)
    except InvalidEvent as exc:
        return ("invalid", exc.field)


@pytest.mark.parametrize("field", sorted(EDGE_VALUES))
def test_the_usual_event_fast_check_agrees_with_the_field_checks(field):
    """Typed as the consumer hands it over, an event takes the one-test path; the same value as a string takes the
    field-by-field checks: same transaction, or the same field named."""
    base = {"transaction_id": 1, "timestamp": 1.7e9, "customer_id": 2, "terminal_id": 3, "amount": 4.5}
    for value in EDGE_VALUES[field]:
        fast = _outcome({**base, field: value})
        checked = _outcome({**base, field: str(value) if field != "timestamp" else value,
                            "account_id": None, **({"amount": "4.5"} if field != "amount" else {})})
        assert fast == checked, (field, value)


def test_the_usual_event_is_an_ordinary_frozen_transaction():
    """The one-test path builds the transaction without the dataclass's __init__: equal, same hash, still frozen."""
    tx = Transaction.from_dict({"transaction_id": 1, "timestamp": 1.7e9, "customer_id": 2, "terminal_id": 3,
                                "amount": 4.5})
    built = Transaction(1, 1.7e9, 2, 3, 4.5)
    assert type(tx) is Transaction and tx == built and hash(tx) == hash(built) and repr(tx) == repr(built)
    assert tx.account_id is None and tx.account == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        tx.amount = 1.0  # type: ignore[misc]
