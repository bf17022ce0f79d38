"""The hand-written stable sort behind duplicate summing is numpy's mergesort, permutation for
permutation (so summed duplicates add up in the same order as before)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from optim.batch import _stable_order


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 12), max_size=80))
def test_stable_order_is_mergesorts_permutation(keys: list[int]) -> None:
    array = np.array(keys, dtype=np.int64)
    assert _stable_order(array).tolist() == np.argsort(array, kind="mergesort").tolist()


def test_stable_order_on_a_long_row_of_large_indices() -> None:
    keys = np.random.default_rng(0).integers(0, 2**40, size=100_001)
    assert np.array_equal(_stable_order(keys), np.argsort(keys, kind="mergesort"))
