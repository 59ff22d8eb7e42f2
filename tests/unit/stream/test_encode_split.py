"""One orjson call for a batch of decisions, split at the row boundaries: the bytes of one call per row."""

import orjson
import pytest

from fraudstream.stream.core.encode import split_objects

TRICKY = ['},{"transaction_id":', '"}', "{", "\\", "caf\u00e9", ""]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 50])
def test_split_equals_one_dumps_per_row(n):
    rows = [{"transaction_id": i, "reasons": [TRICKY[i % len(TRICKY)], "x,y"], "risk": i / 7, "heavy": None}
            for i in range(n)]
    expected = [orjson.dumps(row) for row in rows]
    assert split_objects(orjson.dumps(rows), "transaction_id", n) == expected


def test_wrong_count_is_an_error():
    with pytest.raises(ValueError, match="2 objects where 3"):
        split_objects(orjson.dumps([{"a": 1}, {"a": 2}]), "a", 3)
