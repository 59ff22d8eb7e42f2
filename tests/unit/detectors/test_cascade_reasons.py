"""The cascade's reason helpers: the top contributions as the definition (a stable descending sort) names them."""

import numpy as np
import pytest

from fraudstream.detectors.cascade.cascade import top_columns


@pytest.mark.parametrize("seed", range(5))
def test_top_columns_equal_a_stable_descending_sort_with_ties(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        values = rng.normal(size=(int(rng.integers(0, 40)), int(rng.integers(1, 8))))
        values[rng.random(values.shape) < 0.3] = 0.0  # ties, as features absent from every path
        values[rng.random(values.shape) < 0.2] = 1.5  # ties among the largest
        expected = np.argsort(-values, axis=1, kind="stable")[:, :3]
        np.testing.assert_array_equal(top_columns(values, 3), expected)


def test_top_columns_leaves_its_input_alone_and_caps_k_at_the_columns():
    values = np.array([[0.1, 0.3], [0.2, 0.2]])
    before = values.copy()
    np.testing.assert_array_equal(top_columns(values, 3), [[1, 0], [0, 1]])
    np.testing.assert_array_equal(values, before)
