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


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(1, 9), width=st.integers(1, 9), values=st.integers(1, 3))
def test_one_value_s_components_sizes_and_boxes_match_their_definitions(seed, height, width, values):
    """components_of numbers a value's components as outlines.components numbers the value's
    mask; component_sizes is the roots' bincount; region_boxes the regions' bounding boxes."""
    from segaudit.core.components import component_sizes, components_of
    from segaudit.core.outlines import components, region_boxes

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, values, size=(height, width)).astype(np.int32)
    roots = component_roots(labels, labels)
    np.testing.assert_array_equal(component_sizes(roots), np.bincount(roots[roots >= 0], minlength=roots.size))
    value = int(labels[0, 0])
    regions, count = components_of(labels, roots, value)
    want, want_count = components(labels == value)
    assert count == want_count
    np.testing.assert_array_equal(regions, want)
    boxes = region_boxes(regions, count)
    for region in range(1, count + 1):
        rows, cols = np.nonzero(regions == region)
        assert tuple(boxes[region - 1]) == (rows.min(), rows.max(), cols.min(), cols.max())


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(1, 12), width=st.integers(1, 12), values=st.integers(1, 3),
       stretch=st.integers(1, 4))
def test_labelled_runs_give_component_roots_and_its_table(seed, height, width, values, stretch):
    """labelled_runs (by runs) gives component_roots' roots exactly, and the reference
    table's first cells, sizes and boxes, which match their definitions."""
    from segaudit.core.components import component_sizes, labelled_runs

    rng = np.random.default_rng(seed)
    # Columns repeated: runs longer than one cell, as in real masks.
    values_ = np.repeat(rng.integers(-1, values, size=(height, width)), stretch, axis=1).astype(np.int32)
    roots = component_roots(values_, values_)
    got_roots, firsts, sizes, boxes = labelled_runs(values_)
    np.testing.assert_array_equal(got_roots, roots)
    for got, want in zip((firsts, sizes, boxes), naive.component_table(roots, values_.shape[1])):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(firsts, np.flatnonzero(roots == np.arange(roots.size)))
    np.testing.assert_array_equal(sizes, component_sizes(roots)[firsts])
    for first, box in zip(firsts, boxes):
        rows, cols = np.nonzero((roots == first).reshape(values_.shape))
        assert tuple(box) == (rows.min(), rows.max(), cols.min(), cols.max())


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(1, 300), width=st.integers(1, 300))
def test_value_counts_is_the_bincount_of_the_kept_values(seed, height, width):
    from segaudit.core.components import value_counts

    rng = np.random.default_rng(seed)
    values = rng.integers(-1 if seed % 3 == 0 else 0, 1 + seed % 300, size=(height, width)).astype(np.int32)
    keep = rng.random((height, width)) < 0.8
    counts, low = value_counts(values, keep)
    kept = values[keep]
    if kept.size and kept.min() < 0:
        assert low < 0 and counts.size == 0
    else:
        np.testing.assert_array_equal(counts, np.bincount(kept))
        assert not kept.size or low == kept.min()
