"""Downsampling (core.pooling): the F x F cell grid against the plain-numpy references."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import naive
from datasets import DTYPES, random_image
from segaudit.core.dataset import make_decoding
from segaudit.core.pooling import pool
from segaudit.io.predictions import sum_tolerance


def config_for(stored, ignore=(255,), logits=False):
    return make_decoding(stored.dtype, stored.shape[0], tuple(ignore), logits,
                         sum_tolerance(stored.dtype, stored.shape[0]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_classes=st.integers(2, 12),
    height=st.integers(1, 19),
    width=st.integers(1, 19),
    factor=st.integers(1, 5),
    dtype=st.sampled_from(DTYPES),
    logits=st.booleans(),
    ignore_fraction=st.sampled_from([0.0, 0.3, 1.0]),
    blocks=st.integers(1, 3),
)
def test_pooling_matches_reference(seed, n_classes, height, width, factor, dtype, logits, ignore_fraction, blocks):
    if logits and dtype.startswith("uint"):
        dtype = "float64"
    rng = np.random.default_rng(seed)
    labels, stored = random_image(rng, n_classes, height, width, dtype, logits=logits,
                                  ignore_fraction=ignore_fraction)
    view = stored.view(np.uint16) if stored.dtype == np.float16 else stored
    config = config_for(stored, logits=logits)
    # Blocks of whole cell rows, as the reader aligns them.
    step = factor * blocks
    parts = [pool(view[:, r:r + step], labels[r:r + step], config, factor) for r in range(0, height, step)]
    got = [np.concatenate([getattr(p, name) for p in parts]) for name in ("label", "pred", "s", "p_pred")]
    want = naive.downsample(labels, stored, factor, logits=logits)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1][got[0] >= 0], want[1][want[0] >= 0])
    rtol = 1e-13 if logits else 1e-15
    np.testing.assert_allclose(got[2], want[2], rtol=rtol, equal_nan=True)
    np.testing.assert_allclose(got[3], want[3], rtol=rtol, equal_nan=True)
    pixel_pred = np.concatenate([p.pixel_pred for p in parts])
    np.testing.assert_array_equal(pixel_pred, naive.decode(stored).argmax(axis=0))


def with_edge_values(rng, labels, stored, logits):
    """Sprinkle -0.0 and subnormals over every pixel, and inf, NaN and negative values
    over the ignored ones (which may hold anything)."""
    stored = stored.copy()
    tiny = np.finfo(stored.dtype).smallest_subnormal if stored.dtype.kind == "f" else 0
    anywhere = rng.random(stored.shape) < 0.1
    stored[anywhere] = rng.choice(np.array([-0.0, tiny, 3 * tiny], stored.dtype), size=anywhere.sum())
    ignored = (labels == 255)[None] & (rng.random(stored.shape) < 0.3)
    garbage = [np.inf, -np.inf, np.nan, -1.0] if stored.dtype.kind == "f" else [0, 1]
    stored[ignored] = rng.choice(np.array(garbage, stored.dtype), size=ignored.sum())
    return stored


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_classes=st.integers(1, 7),
    height=st.integers(1, 13),
    width=st.integers(1, 21),
    factor=st.integers(1, 5),
    dtype=st.sampled_from(DTYPES),
    logits=st.booleans(),
    edge_values=st.booleans(),
    channels_last=st.booleans(),
)
def test_pooling_is_bit_identical_to_a_pixel_loop(seed, n_classes, height, width, factor, dtype, logits,
                                                  edge_values, channels_last):
    # The class-major kernel must add the same values in the same order as a pixel-major
    # loop: constant strides (F = 1, 2, 4) and the generic one, edge cells, every dtype.
    if logits and dtype.startswith("uint"):
        dtype = "float16"
    rng = np.random.default_rng(seed)
    labels, stored = random_image(rng, n_classes, height, width, dtype, logits=logits, ignore_fraction=0.3)
    if edge_values:
        stored = with_edge_values(rng, labels, stored, logits)
    view = stored.view(np.uint16) if stored.dtype == np.float16 else stored
    if channels_last:  # [class, row, column] with the class axis last in memory, as the store reads it
        view = np.moveaxis(np.ascontiguousarray(np.moveaxis(view, 0, -1)), -1, 0)
    config = config_for(stored, logits=logits)
    parts = [pool(view[:, r:r + factor * 2], labels[r:r + factor * 2], config, factor, pixel_dtype=np.uint8)
             for r in range(0, height, factor * 2)]
    got = [np.concatenate([getattr(p, name) for p in parts])
           for name in ("label", "pred", "s", "p_pred", "mismatched", "pixel_pred")]
    want = naive.downsample_in_order(labels, stored, factor, logits=logits)
    for name, g, w in zip(("label", "pred", "s", "p_pred", "mismatched", "pixel_pred"), got, want):
        if name in ("s", "p_pred") and logits:  # libm's exp in both, unless Numba vectorises it
            np.testing.assert_allclose(g, w, rtol=1e-14, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)  # NaN == NaN; floats bit for bit
    assert got[5].dtype == np.uint8


def test_pooling_without_pixels():
    labels = np.array([[1, 1, 255], [1, 1, 0]], np.int32)
    stored = np.array([[[0.9, 0.2, 0.5], [0.3, 0.4, 0.6]], [[0.1, 0.8, 0.5], [0.7, 0.6, 0.4]]])
    cells = pool(stored, labels, config_for(stored), 2, pixel_dtype=None)
    assert cells.pixel_pred is None
    np.testing.assert_array_equal(cells.label, [[1, 0]])
    np.testing.assert_array_equal(cells.mismatched, [[1, 0]])  # pixel (0, 0): argmax 0, label 1


def test_majority_vote_does_not_average_labels():
    # Classes 0 and 4 in one 2x2 cell: cleanlab's mean would invent class 2.
    labels = np.array([[0, 4], [4, 0]], np.int32)
    stored = np.full((5, 2, 2), 0.2)
    cells = pool(stored, labels, config_for(stored), 2)
    assert cells.label[0, 0] == 0  # tie between 0 and 4 goes to the lower class
