"""8-connected components (core.components.component_roots) against a flood fill."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from segaudit.core.components import component_roots


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(1, 9), width=st.integers(1, 9), values=st.integers(1, 3),
       second_values=st.integers(1, 2))
def test_components_match_flood_fill(seed, height, width, values, second_values):
    """Every component is the flood fill's, and its root is its first cell in row-major order."""
    rng = np.random.default_rng(seed)
    first = rng.integers(-1, values, size=(height, width)).astype(np.int32)
    second = rng.integers(0, second_values, size=(height, width)).astype(np.int32)
    roots = component_roots(first, second)
    want = np.full(height * width, -1, np.int64)
    for members in naive.components_3d(first[None], second[None]):
        flat = [y * width + x for _, y, x in members]
        want[flat] = min(flat)
    np.testing.assert_array_equal(roots, want)
