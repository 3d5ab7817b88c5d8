"""The windowed geometry of the planted kinds gives what the whole image gives."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from segaudit.core.outlines import (_paint, _paint_at, boundary_displacement, move_boundary_into, nearest_outside,
                                    nearest_outside_window, shifted_region)


def blocky(seed: int, height: int, width: int, n_classes: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.full((height, width), rng.integers(n_classes), np.int32)
    for _ in range(rng.integers(1, 9)):
        y, x = rng.integers(0, height), rng.integers(0, width)
        labels[y:y + rng.integers(1, height), x:x + rng.integers(1, width)] = rng.integers(n_classes)
    return labels


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(2, 40), width=st.integers(2, 40),
       ignored_share=st.sampled_from([0.0, 0.05, 0.3, 0.6]))
def test_nearest_outside_window_fills_inside_as_the_whole_image_does(seed, height, width, ignored_share):
    """At every pixel of a window's inside: the same label as the fill of the whole image,
    ties included, whether the ignored pixels it crosses stay near it or not."""
    rng = np.random.default_rng(seed)
    labels = blocky(seed, height, width, 4)
    scored = rng.random((height, width)) >= ignored_share
    y0, x0 = int(rng.integers(height)), int(rng.integers(width))
    window = (slice(y0, int(rng.integers(y0 + 1, height + 1))), slice(x0, int(rng.integers(x0 + 1, width + 1))))
    inside = labels[window] == labels[y0, x0]
    if rng.random() < 0.5:
        inside &= rng.random(inside.shape) < 0.7
    full = np.zeros((height, width), bool)
    full[window] = inside
    want = nearest_outside(full | ~scored, labels)[window]
    filled, fill = nearest_outside_window(inside, window, labels, scored)
    assert filled[0].start <= y0 and filled[1].start <= x0
    got = fill[y0 - filled[0].start:, x0 - filled[1].start:][:inside.shape[0], :inside.shape[1]]
    np.testing.assert_array_equal(got[inside], want[inside])
    # Only some pixels needed: the fill may stop early, those pixels are the same.
    need = inside & (rng.random(inside.shape) < 0.3)
    filled, fill = nearest_outside_window(inside, window, labels, scored, need)
    got = fill[y0 - filled[0].start:, x0 - filled[1].start:][:inside.shape[0], :inside.shape[1]]
    np.testing.assert_array_equal(got[need], want[need])


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(3, 40), width=st.integers(3, 40))
def test_shifted_region_of_a_window_is_the_whole_map_s(seed, height, width):
    rng = np.random.default_rng(seed)
    region = blocky(seed, height, width, 2) == 1
    if not region.any():
        return
    rows, cols = np.nonzero(region)
    bbox = (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max()))
    samples = rng.normal(0, rng.uniform(0.5, 6), 5)
    want = shifted_region(region.astype(np.int32), 1, samples)
    box = region[bbox[0]:bbox[1] + 1, bbox[2]:bbox[3] + 1]
    got = shifted_region(box.view(np.int8), 1, samples, bbox, origin=(bbox[0], bbox[2]), shape=region.shape)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(2, 30), width=st.integers(2, 30))
def test_paint_by_spans_and_at_an_offset_is_the_disc_test_per_pixel(seed, height, width):
    """_paint (each disc's rows over their spans) against the per-pixel distance test, and
    _paint_at with the values as a window at an offset."""
    rng = np.random.default_rng(seed)
    mask = blocky(seed, height, width, 2) == 1
    value = np.where(rng.random((height, width)) < 0.2, rng.normal(0, 4, (height, width)), np.nan)
    value[rng.random((height, width)) < 0.05] = rng.choice([-3.0, -2.0, 2.0, 3.0, np.sqrt(2), -np.sqrt(8)])
    gained = np.zeros_like(mask)
    lost = np.zeros_like(mask)
    for i, j in zip(*np.nonzero(~np.isnan(value))):
        d = value[i, j]
        yy, xx = np.mgrid[:height, :width]
        dist2 = (yy - i) ** 2 + (xx - j) ** 2
        if d > 0:
            gained |= (dist2 <= d * d) & ~mask
        elif d < 0:
            lost |= (dist2 < d * d) & mask
    got_gained, got_lost = _paint(mask, value)
    np.testing.assert_array_equal(got_gained, gained)
    np.testing.assert_array_equal(got_lost, lost)
    top, left = int(rng.integers(height)), int(rng.integers(width))
    part = value.copy()
    part[:top] = np.nan
    part[:, :left] = np.nan
    want = _paint(mask, part)
    got = _paint_at(mask, np.ascontiguousarray(value[top:, left:]), top, left)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), height=st.integers(2, 60), width=st.integers(2, 60),
       mean=st.sampled_from([1.5, 3.0, 7.0]))
def test_move_boundary_into_is_the_whole_image_move_on_its_window(seed, height, width, mean):
    """The same copy as the whole-image move (walk, paint and fill over the whole image),
    and nothing changes outside the window it returns."""
    labels = blocky(seed, height, width, 3)
    cls = int(labels[height // 2, width // 2])
    ignored = np.random.default_rng(seed + 1).random(labels.shape) < 0.1
    old = labels == cls
    value = boundary_displacement(old, np.random.default_rng(seed), mean)
    gained, lost = _paint(old, value)
    want = labels.copy()
    if lost.any():
        want[lost] = nearest_outside(old, labels)[lost]
    want[gained & ~ignored] = cls
    out = labels.copy()
    window = move_boundary_into(out, labels, cls, np.random.default_rng(seed), mean, ignored=ignored)
    np.testing.assert_array_equal(out, want)
    outside = np.ones(labels.shape, bool)
    outside[window] = False
    np.testing.assert_array_equal(out[outside], labels[outside])
