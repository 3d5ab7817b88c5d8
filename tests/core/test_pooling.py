"""Downsampling (core.pooling): the F x F cell grid against the plain-numpy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import naive
from datasets import DTYPES, random_image
from segaudit.core.dataset import make_decoding
from segaudit.core.kernel import BadProbabilities, ImageStats, KernelConfig, accumulate
from segaudit.core.pooling import accumulate_and_pool, pool
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


# --- pooling in the kernel's walk (accumulate_and_pool) ------------------------------------------


def stats_bytes(stats):
    return [a.tobytes() for a in (stats.totals, stats.sums, stats.soft, stats.class_counts, stats.low_confusion,
                                  stats.tccp_hist)]


def with_values_the_kernel_accepts(rng, labels, stored, garbage):
    """Edge values that pass validation: -0.0 and subnormals for a scored pixel's zeros (its
    sum stays within tolerance), and ``garbage`` in ignored pixels (which may hold anything):
    in a third of their values, and in every value of a quarter of them."""
    stored = stored.copy()
    if stored.dtype.kind == "f":
        tiny = np.finfo(stored.dtype).smallest_subnormal
        zeros = stored == 0
        stored[zeros] = rng.choice(np.array([-0.0, tiny, 0.0], stored.dtype), size=zeros.sum())
    ignored = np.broadcast_to(labels == 255, stored.shape)
    whole = np.broadcast_to((labels == 255) & (rng.random(labels.shape) < 0.25), stored.shape)
    spoiled = ignored & ((rng.random(stored.shape) < 0.3) | whole)
    stored[spoiled] = rng.choice(np.array(garbage, stored.dtype), size=spoiled.sum())
    return stored


GARBAGE = {"nan": [np.nan], "inf": [np.inf, -np.inf], "negative": [-1.0, -0.0], "any": [np.inf, -np.inf, np.nan, -1.0],
           "no_maximum": [np.nan, -np.inf]}  # a pixel of these has no value above -inf: its argmax is 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_classes=st.sampled_from([1, 2, 3, 5, 7, 70]),
    depth=st.sampled_from([None, 1, 2, 3, 5]),
    height=st.integers(1, 13),
    width=st.integers(1, 21),
    factor=st.integers(1, 5),
    dtype=st.sampled_from(DTYPES),
    logits=st.booleans(),
    garbage=st.sampled_from([None, *GARBAGE]),
    bad_pixel=st.booleans(),
    channels_last=st.booleans(),
    ignore_fraction=st.sampled_from([0.0, 0.3, 1.0]),
    want_tccp=st.booleans(),
    pixel_dtype=st.sampled_from([None, np.uint8, np.int32]),
    blocks=st.integers(1, 3),
)
def test_pooling_in_the_kernels_walk_is_bit_identical(seed, n_classes, depth, height, width, factor, dtype, logits,
                                                      garbage, bad_pixel, channels_last, ignore_fraction, want_tccp,
                                                      pixel_dtype, blocks):
    # accumulate_and_pool must give what accumulate then pool give, bit for bit: every
    # accumulator, s per pixel, every cell, the per-pixel argmax (ignored pixels' too), or
    # the same error. Ignored pixels holding NaN, inf or negative values, -0.0 and
    # subnormals, a scored pixel that fails validation, blocks and images whose height and
    # width are not multiples of F, volumes, K above the kernel's paired tallies.
    check_pooling_in_the_kernels_walk(seed, n_classes, depth, height, width, factor, dtype, logits, garbage,
                                      bad_pixel, channels_last, ignore_fraction, want_tccp, pixel_dtype, blocks)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_classes=st.integers(1, 4),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    factor=st.integers(1, 3),
    dtype=st.sampled_from(["float16", "float32", "float64"]),
    garbage=st.sampled_from(list(GARBAGE)),
)
def test_pooling_in_the_kernels_walk_gives_ignored_pixels_the_poolings_argmax(seed, n_classes, height, width, factor,
                                                                             dtype, garbage):
    # The stored values' compare (float16's bit patterns, NaN first) and the pooling's
    # decoded one disagree on pixels holding NaN or nothing above -inf: the per-pixel
    # argmax must still be the pooling's.
    check_pooling_in_the_kernels_walk(seed, n_classes, None, height, width, factor, dtype, False, garbage, False,
                                      False, 0.5, False, np.uint8, 1)


def check_pooling_in_the_kernels_walk(seed, n_classes, depth, height, width, factor, dtype, logits, garbage,
                                      bad_pixel, channels_last, ignore_fraction, want_tccp, pixel_dtype, blocks):
    if logits and dtype.startswith("uint"):
        dtype = "float32"
    rng = np.random.default_rng(seed)
    rows = height * (depth or 1)  # a volume as its tall image of depth slices
    labels, stored = random_image(rng, n_classes, rows, width, dtype, logits=logits, ignore_fraction=ignore_fraction)
    if garbage is not None and stored.dtype.kind == "f":
        stored = with_values_the_kernel_accepts(rng, labels, stored, GARBAGE[garbage])
    scored = np.argwhere(labels != 255)
    if bad_pixel and len(scored):
        r, c = scored[rng.integers(len(scored))]
        stored[rng.integers(n_classes), r, c] = np.nan if stored.dtype.kind == "f" else 0
    view = stored.view(np.uint16) if stored.dtype == np.float16 else stored
    if channels_last:
        view = np.moveaxis(np.ascontiguousarray(np.moveaxis(view, 0, -1)), -1, 0)
    config = KernelConfig(config_for(stored, logits=logits), pixel_threshold=0.5, want_tccp=want_tccp)
    temperatures = (0.1, 0.02, 1.0)
    # Blocks as the reader cuts them: whole cell rows, or for a volume whole slabs of F slices.
    step = factor * blocks * (height if depth else 1)
    slice_rows = height if depth else None
    stats = [ImageStats(n_classes, rows * width, temperatures) for _ in range(2)]
    s_rows = [np.full((rows, width), -1.0) for _ in range(2)]
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        probs, lab = view[:, start:stop], labels[start:stop]
        try:
            accumulate(stats[0], probs, lab, config, row_offset=start, s_out=s_rows[0][start:stop])
            want = pool(probs, lab, config.decoding, factor, pixel_dtype=pixel_dtype, slice_rows=slice_rows)
        except BadProbabilities as exc:
            with pytest.raises(BadProbabilities) as fused_error:
                accumulate_and_pool(stats[1], probs, lab, config, factor, row_offset=start,
                                    s_out=s_rows[1][start:stop], pixel_dtype=pixel_dtype, slice_rows=slice_rows)
            assert str(fused_error.value) == str(exc)
            return
        got = accumulate_and_pool(stats[1], probs, lab, config, factor, row_offset=start, s_out=s_rows[1][start:stop],
                                  pixel_dtype=pixel_dtype, slice_rows=slice_rows)
        for name in ("label", "pred", "s", "p_pred", "mismatched"):
            g, w = getattr(got, name), getattr(want, name)
            assert g.dtype == w.dtype and g.shape == w.shape, name
            assert g.tobytes() == w.tobytes(), name  # NaN payloads and signs included
        if pixel_dtype is None:
            assert got.pixel_pred is None and want.pixel_pred is None
        else:
            assert got.pixel_pred.dtype == np.dtype(pixel_dtype)
            np.testing.assert_array_equal(got.pixel_pred, want.pixel_pred)
    assert stats_bytes(stats[1]) == stats_bytes(stats[0])
    assert s_rows[1].tobytes() == s_rows[0].tobytes()


def test_pooling_in_the_kernels_walk_refuses_logits():
    stored = np.zeros((2, 2, 2))
    config = KernelConfig(config_for(stored, logits=True))
    cells = pool(stored, np.zeros((2, 2), np.int32), config.decoding, 2)
    with pytest.raises(ValueError, match="stored probabilities"):
        accumulate(ImageStats(2), stored, np.zeros((2, 2), np.int32), config, cells=cells, factor=2)


def test_a_slab_with_too_many_open_cells_is_pooled_in_a_walk_of_its_own(monkeypatch):
    # A volume's slab at F > 1 keeps every cell row of the slab open; above the limit the
    # block takes the two walks (accumulate, then pool), with the same results.
    import segaudit.core.pooling as pooling

    rng = np.random.default_rng(5)
    depth, height, width, factor = 4, 7, 9, 2
    labels, stored = random_image(rng, 3, depth * height, width, "float16")
    view = stored.view(np.uint16)
    config = KernelConfig(config_for(stored), want_tccp=True)
    assert pooling.open_cell_bytes(depth * height, width, 3, factor, height) == 4 * 3 * 5 * 16
    assert pooling.open_cell_bytes(depth * height, width, 3, 1, height) == 3 * 9 * 16  # F = 1: a row at a time
    assert pooling.open_cell_bytes(height, width, 3, factor, height) == 3 * 5 * 16  # one slice
    walks = []
    monkeypatch.setattr(pooling, "pool", lambda *args, **kwargs: walks.append(1) or pool(*args, **kwargs))
    results = []
    for limit in (pooling.OPEN_CELLS_LIMIT, 0):
        monkeypatch.setattr(pooling, "OPEN_CELLS_LIMIT", limit)
        stats = ImageStats(3, labels.size, (0.1,))
        cells = accumulate_and_pool(stats, view, labels, config, factor, pixel_dtype=np.uint8, slice_rows=height)
        results.append([getattr(cells, name).tobytes() for name in ("label", "pred", "s", "p_pred", "mismatched",
                                                                    "pixel_pred")] + stats_bytes(stats))
        assert len(walks) == (limit == 0)
    assert results[0] == results[1]
