"""The fused Numba kernel against the plain-numpy references in naive.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from naive import image_scores, rsoftmin_temperature
from segaudit.core.kernel import BadProbabilities, ImageStats, KernelConfig, accumulate
from segaudit.methods import PER_IMAGE_METHODS as METHODS
from segaudit.methods import SCORERS
from segaudit.io.predictions import sum_tolerance
from segaudit.core.dataset import make_decoding
from segaudit.engine import finish_image, image_stats, kernel_config
from segaudit.methods import Settings, resolve
from segaudit.methods.rsoftmin import scaled_temperature
from datasets import DTYPES, random_image


def run_kernel(labels, stored, *, methods=METHODS, ignore=(255,), temperature=0.1, pixel_threshold=0.5,
               logits=False, block_rows=None, channels_last=False, pixel_scores=False):
    """Score one image through the kernel in row blocks, as the store reader feeds it."""
    n_classes, height, width = stored.shape
    decoding = make_decoding(stored.dtype, n_classes, tuple(ignore), logits, sum_tolerance(stored.dtype, n_classes))
    config = kernel_config(decoding, resolve(methods), pixel_threshold)
    settings = Settings(temperature=temperature, pixel_threshold=pixel_threshold)
    if channels_last:  # stored (H, W, K) and viewed back as [class, row, column]
        stored = np.moveaxis(np.ascontiguousarray(np.moveaxis(stored, 0, -1)), -1, 0)
    if stored.dtype == np.float16:
        stored = stored.view(np.uint16)
    stats = image_stats(n_classes, height * width, resolve(methods), settings)
    s_out = np.empty((height, width)) if pixel_scores else None
    block_rows = block_rows or height
    for start in range(0, height, block_rows):
        stop = min(start + block_rows, height)
        accumulate(stats, stored[:, start:stop], labels[start:stop], config, row_offset=start,
                   s_out=None if s_out is None else s_out[start:stop])
    return finish_image("x", stats, tuple(methods), settings), s_out


def assert_matches(result, expected, s_out=None, logits=False):
    assert result.pixels == expected["pixels"]
    assert result.low_pixels == expected["low_pixels"]
    assert result.suspect_class == expected["suspect_class"]
    assert result.likely_class == expected["likely_class"]
    for method in METHODS:
        got, want = result.scores[method], expected[method]
        if math.isnan(want):
            assert math.isnan(got), method
        else:
            assert got == pytest.approx(want, rel=1e-11, abs=1e-13), method
    if s_out is not None:
        if logits:  # numpy's vectorised exp and LLVM's may differ in the last bit
            np.testing.assert_allclose(s_out, expected["s"], rtol=1e-14, atol=1e-300)
        else:
            np.testing.assert_array_equal(s_out, expected["s"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_classes=st.one_of(st.integers(2, 8), st.integers(9, 200)),
    height=st.integers(1, 24),
    width=st.integers(1, 24),
    dtype=st.sampled_from(DTYPES),
    logits=st.booleans(),
    log_tau=st.floats(math.log10(0.001), 1.0),
    block_rows=st.integers(1, 9),
    channels_last=st.booleans(),
    ignore_fraction=st.sampled_from([0.0, 0.2, 1.0]),
)
def test_kernel_matches_reference(seed, n_classes, height, width, dtype, logits, log_tau, block_rows,
                                  channels_last, ignore_fraction):
    if logits and dtype.startswith("uint"):
        dtype = "float32"  # quantised storage holds probabilities only
    rng = np.random.default_rng(seed)
    labels, stored = random_image(rng, n_classes, height, width, dtype, logits=logits,
                                  ignore_fraction=ignore_fraction)
    tau = 10.0**log_tau
    result, s_out = run_kernel(labels, stored, temperature=tau, logits=logits, block_rows=block_rows,
                               channels_last=channels_last, pixel_scores=True)
    expected = image_scores(labels, stored, ignore=(255,), temperature=tau, logits=logits)
    assert_matches(result, expected, s_out, logits=logits)


@pytest.mark.parametrize("tau", [0.001, 0.01, 0.1, 1.0, 10.0])
def test_softmin_is_exact_for_any_temperature(tau):
    # A few confidently wrong pixels among many good ones: at tau=0.001 the plain formula
    # would overflow exp(1000); the streaming max-shift must not.
    rng = np.random.default_rng(7)
    labels, stored = random_image(rng, 4, 64, 48, "float64", ignore_fraction=0.0)
    result, _ = run_kernel(labels, stored, temperature=tau, block_rows=5)
    expected = image_scores(labels, stored, temperature=tau)
    assert math.isfinite(result.scores["softmin"])
    assert result.scores["softmin"] == pytest.approx(expected["softmin"], rel=1e-11)


@pytest.mark.parametrize("tau", [0.001, 0.1, 1.0, 10.0])
@pytest.mark.parametrize("shape", [(1, 1), (48, 64), (760, 12)])
def test_rsoftmin_is_softmin_at_the_scaled_temperature(tau, shape):
    rng = np.random.default_rng(11)
    labels, stored = random_image(rng, 5, *shape, "float32", ignore_fraction=0.1)
    result, _ = run_kernel(labels, stored, temperature=tau, block_rows=7)
    expected = image_scores(labels, stored, temperature=tau)
    assert math.isfinite(result.scores["rsoftmin"])
    assert result.scores["rsoftmin"] == pytest.approx(expected["rsoftmin"], rel=1e-11)
    scaled = rsoftmin_temperature(labels.size, tau)
    again, _ = run_kernel(labels, stored, temperature=scaled, methods=("softmin",))
    assert result.scores["rsoftmin"] == pytest.approx(again.scores["softmin"], rel=1e-12)
    # Each sum is skipped when its method is not asked for; the other is unchanged.
    alone, _ = run_kernel(labels, stored, temperature=tau, methods=("rsoftmin",), block_rows=7)
    assert alone.scores == {"rsoftmin": result.scores["rsoftmin"]}


def test_rsoftmin_temperature_law():
    # softmin's own temperature at the paper's 760 x 1280; warmer on smaller images, colder on
    # larger; 1/t floored at 1.
    assert scaled_temperature(0.1, 760 * 1280) == pytest.approx(0.1)
    assert scaled_temperature(0.1, 96 * 128) == pytest.approx(1 / (10 + 0.5 * math.log(96 * 128 / 972800)))
    assert scaled_temperature(0.1, 48 * 64) > scaled_temperature(0.1, 96 * 128) > 0.1
    assert scaled_temperature(0.1, 1024 * 2048) == pytest.approx(0.0963, abs=1e-4)
    assert scaled_temperature(5.0, 1) == 1.0
    for pixels in (1, 10, 10**4, 10**8):
        assert scaled_temperature(0.1, pixels) == pytest.approx(rsoftmin_temperature(pixels, 0.1), rel=1e-14)


def test_rsoftmin_without_the_image_size_is_an_error():
    labels, stored = random_image(np.random.default_rng(0), 3, 4, 4, "float32")
    config = kernel_config(make_decoding(stored.dtype, 3, (255,), False, sum_tolerance(stored.dtype, 3)),
                           resolve(("rsoftmin",)))
    with pytest.raises(ValueError, match="pixel count"):
        accumulate(image_stats(3, 0, resolve(("rsoftmin",)), Settings()), stored, labels, config)


def test_blocks_do_not_change_results():
    rng = np.random.default_rng(3)
    labels, stored = random_image(rng, 7, 37, 29, "float32")
    whole, _ = run_kernel(labels, stored)
    for rows in (1, 2, 5, 36):
        blocked, _ = run_kernel(labels, stored, block_rows=rows)
        assert blocked.scores == pytest.approx(whole.scores, rel=1e-12)
        assert (blocked.pixels, blocked.low_pixels) == (whole.pixels, whole.low_pixels)


def test_known_values_by_hand():
    # 1x3 image, K=2: pixel scores s = 0.9, 0.2 and an ignored pixel.
    labels = np.array([[0, 1, 255]], np.int32)
    stored = np.array([[[0.9, 0.8, 0.5]], [[0.1, 0.2, 0.5]]])
    result, _ = run_kernel(labels, stored)
    w = np.exp((1 - np.array([0.9, 0.2])) / 0.1)
    assert result.scores["softmin"] == pytest.approx((0.9 * w[0] + 0.2 * w[1]) / w.sum())
    assert result.scores["cil"] == pytest.approx(0.55)
    assert result.scores["ccp"] == 0.5
    # IoU: class 0 predicted at both pixels, annotated at one: 1/2; class 1: 0/1.
    assert result.scores["iou"] == pytest.approx(0.25)
    # tccp: class 0 best threshold (0.8..0.9) gets both pixels right; class 1 (p=0.1, 0.2
    # with labels 0, 1): a threshold in [0.1, 0.2) gets both right too.
    assert result.scores["tccp"] == 1.0
    assert (result.pixels, result.low_pixels, result.suspect_class, result.likely_class) == (2, 1, 1, 0)


def test_the_likely_class_is_never_the_suspect_class():
    # K=3, every pixel annotated 0. Low pixels (s < 0.5): two where the model agrees but
    # is unsure (argmax 0), one where it sees class 2: the likely class is 2, not 0.
    labels = np.zeros((1, 4), np.int32)
    stored = np.array([[[0.45, 0.45, 0.2, 0.9]], [[0.3, 0.3, 0.1, 0.05]], [[0.25, 0.25, 0.7, 0.05]]])
    result, _ = run_kernel(labels, stored)
    assert (result.low_pixels, result.suspect_class, result.likely_class) == (3, 0, 2)
    # The model agrees with the label on every low pixel: no likely class.
    result, _ = run_kernel(labels[:, :2], stored[:, :, :2])
    assert (result.low_pixels, result.suspect_class, result.likely_class) == (2, 0, None)


def test_image_with_no_scored_pixel_is_nan():
    labels = np.full((3, 4), 255, np.int32)
    stored = np.full((2, 3, 4), 0.5)
    result, s_out = run_kernel(labels, stored, pixel_scores=True)
    assert result.pixels == 0
    assert all(math.isnan(v) for v in result.scores.values())
    assert np.isnan(s_out).all()


def test_ignore_index_below_k_is_skipped():
    rng = np.random.default_rng(5)
    labels, stored = random_image(rng, 5, 10, 10, "float64", ignore_fraction=0.0)
    result, _ = run_kernel(labels, stored, ignore=(0,))
    expected = image_scores(labels, stored, ignore=(0,))
    assert result.pixels == int(np.sum(labels != 0))
    assert_matches(result, expected)


@pytest.mark.parametrize(
    "value, message",
    [(np.nan, "non-finite"), (np.inf, "non-finite"), (-0.25, "negative probability"), (0.7, "summing to")],
)
def test_bad_probabilities_name_the_pixel(value, message):
    labels = np.zeros((4, 5), np.int32)
    stored = np.full((2, 4, 5), 0.5)
    stored[0, 2, 3] = value
    stored[1, 2, 3] = 1.0 - value if value == -0.25 else stored[1, 2, 3]
    with pytest.raises(BadProbabilities, match=message) as info:
        run_kernel(labels, stored, block_rows=2)
    assert (info.value.row, info.value.col) == (2, 3)
    assert info.value.logits_may_help  # the dataset words the advice for its caller
    assert "logits" not in str(info.value)


def test_all_zero_pixel_points_at_an_unwritten_chunk():
    labels = np.zeros((3, 3), np.int32)
    stored = np.full((2, 3, 3), 0.5)
    stored[:, 1, 2] = 0.0  # zarr's fill value where a chunk was never written
    with pytest.raises(BadProbabilities, match=r"all probabilities 0 \(an unwritten chunk") as info:
        run_kernel(labels, stored)
    assert not info.value.logits_may_help


def test_bad_values_at_ignored_pixels_are_not_errors():
    labels = np.zeros((2, 2), np.int32)
    labels[1, 1] = 255
    stored = np.full((2, 2, 2), 0.5)
    stored[:, 1, 1] = np.nan
    result, _ = run_kernel(labels, stored)
    assert result.pixels == 3


def test_non_finite_logits_are_errors():
    labels = np.zeros((2, 2), np.int32)
    stored = np.zeros((3, 2, 2), np.float32)
    stored[1, 0, 1] = np.inf
    with pytest.raises(BadProbabilities, match="non-finite"):
        run_kernel(labels, stored, logits=True)


def test_scorers_cover_every_method():
    assert set(SCORERS) == set(METHODS)


def test_float16_negative_zero_does_not_win_the_argmax():
    # float16 -0.0 has the largest bit pattern of all: the fast argmax on bit patterns
    # must hand such rows to the exact path.
    labels = np.zeros((1, 3), np.int32)
    stored = np.array([[[-0.0, 0.25, 1.0]], [[1.0, 0.75, -0.0]]], np.float16)
    pred = np.empty((1, 3), np.int32)
    n_classes = 2
    config = kernel_config(make_decoding(stored.dtype, n_classes, (255,), False,
                                         sum_tolerance(stored.dtype, n_classes)), resolve(("ccp",)))
    stats = ImageStats(n_classes)
    accumulate(stats, stored.view(np.uint16), labels, config, pred_out=pred)
    np.testing.assert_array_equal(pred, [[1, 1, 0]])
    assert finish_image("x", stats, ("ccp",)).scores["ccp"] == pytest.approx(1 / 3)


# --- the fast paths of the common case (K <= 64): vector exp, pair tallies, TCCP keys -----


def test_vector_exp_matches_numpy():
    from segaudit.core.kernel import _exp_weights

    s = np.concatenate([np.linspace(0.0, 1.0, 20001), [0.0, 1.0, 1e-300, 0.5]])
    for tau, shift in ((0.1, 10.0), (0.0963, 1 / 0.0963), (0.001, 1000.0), (1.0, 0.0), (0.01, 0.0)):
        mantissas, exponents = np.empty_like(s), np.empty(s.shape, np.int64)
        _exp_weights(s, tau, shift, mantissas, exponents)
        got = mantissas * exponents.view(np.float64)
        want = np.exp((1.0 - s) / tau - shift)
        normal = want > 1e-300
        np.testing.assert_allclose(got[normal], want[normal], rtol=4e-16, atol=0)
        assert np.all(got[want < 2.3e-308] == 0)  # below exp(-708): 0, not a subnormal


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [3, 70])  # pair tallies, and the scatter path above 64 classes
def test_tccp_histograms_at_the_thresholds(dtype, n_classes):
    """Values exactly at each threshold (as stored) and one step either side bin as the
    reference does: strictly above a threshold counts."""
    from segaudit.core.kernel import TCCP_THRESHOLDS
    rng = np.random.default_rng(7)
    if dtype in ("uint8", "uint16"):
        top = np.iinfo(dtype).max
        base = np.round(TCCP_THRESHOLDS * top).astype(np.int64)
        values = np.unique(np.clip(np.concatenate([base - 1, base, base + 1]), 0, top)).astype(dtype)
    else:
        t = TCCP_THRESHOLDS.astype(dtype)
        zero, one = np.zeros(1, dtype), np.ones(1, dtype)
        values = np.unique(np.concatenate([np.nextafter(t, zero), t, np.nextafter(t, one)]))
    height, width = 4, len(values)
    stored = np.zeros((n_classes, height, width), dtype)
    for r in range(height):
        k = r % n_classes
        stored[k, r] = values
        if dtype in ("uint8", "uint16"):
            stored[(k + 1) % n_classes, r] = np.iinfo(dtype).max - values
        else:
            stored[(k + 1) % n_classes, r] = (1.0 - values.astype(np.float64)).astype(dtype)
    labels = rng.integers(0, n_classes, size=(height, width)).astype(np.int32)
    labels[0, ::5] = 255
    result, _ = run_kernel(labels, stored, methods=("tccp",))
    decoding = make_decoding(stored.dtype, n_classes, (255,), False, sum_tolerance(stored.dtype, n_classes))
    config = kernel_config(decoding, resolve(("tccp",)))
    stats = ImageStats(n_classes, height * width)
    accumulate(stats, stored.view(np.uint16) if dtype == "float16" else stored, labels, config)
    p = (stored.astype(np.float64) / np.iinfo(dtype).max) if dtype in ("uint8", "uint16") else stored.astype(np.float64)
    valid = labels != 255
    bins = (p[..., None] > TCCP_THRESHOLDS).sum(axis=-1)  # (K, H, W)
    want = np.zeros_like(stats.tccp_hist)
    for k in range(n_classes):
        np.add.at(want[0, k], bins[k][valid], 1)
        np.add.at(want[1, k], bins[k][valid & (labels == k)], 1)
    np.testing.assert_array_equal(stats.tccp_hist, want)
    expected = image_scores(labels, stored, ignore=(255,))
    assert result.scores["tccp"] == pytest.approx(expected["tccp"], rel=1e-11, abs=1e-13)


def test_float16_negative_zero_bins_like_zero():
    """-0.0 (bits 0x8000) compares above every key as bits: such rows take the exact path."""
    rng = np.random.default_rng(3)
    labels, stored = random_image(rng, 4, 6, 9, "float16", ignore_fraction=0.0, exact_fraction=0.5)
    negative = stored.copy()
    negative[stored == 0] = -0.0
    assert np.signbit(negative).any()
    plain, _ = run_kernel(labels, stored)
    signed, _ = run_kernel(labels, negative)
    assert repr(signed) == repr(plain)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_classes=st.integers(2, 9),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    dtype=st.sampled_from(DTYPES),
    logits=st.booleans(),
    block_rows=st.integers(1, 5),
    negative_zero=st.booleans(),
)
def test_sum_of_confidence_matches_reference(seed, n_classes, height, width, dtype, logits, block_rows,
                                             negative_zero):
    # The sanity check's expected accuracy: the sum over scored pixels of p[argmax], on the
    # fast path and on the exact path of suspicious rows (float16's -0.0).
    if logits and dtype.startswith("uint"):
        dtype = "float32"
    rng = np.random.default_rng(seed)
    labels, stored = random_image(rng, n_classes, height, width, dtype, logits=logits)
    if negative_zero and stored.dtype.kind == "f" and not logits:
        stored[stored == 0] = -0.0
    decoding = make_decoding(stored.dtype, n_classes, (255,), logits, sum_tolerance(stored.dtype, n_classes))
    view = stored.view(np.uint16) if stored.dtype == np.float16 else stored
    stats = ImageStats(n_classes, image_pixels=labels.size)
    for start in range(0, height, block_rows):
        accumulate(stats, view[:, start:start + block_rows], labels[start:start + block_rows], KernelConfig(decoding))
    expected = image_scores(labels, stored, ignore=(255,), logits=logits)["confidence"]
    assert stats.sum_confidence == pytest.approx(expected, rel=1e-12, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), garbage=st.sampled_from([math.inf, -math.inf, math.nan, 5.0, -1.0]),
       ignore=st.sampled_from([(255,), (0, 255)]), dtype=st.sampled_from([np.float32, np.float64]))
def test_what_an_ignored_pixel_holds_changes_no_score(seed, garbage, ignore, dtype):
    """A store may hold anything at ignored pixels (inf, NaN): no score may see it. softmin's
    weighted sum once multiplied an ignored pixel's s by a zero weight, and 0 * inf is NaN."""
    from segaudit.api import score_arrays

    rng = np.random.default_rng(seed)
    probs = rng.random((2, 3, 5, 7)).astype(dtype)
    probs /= probs.sum(axis=1, keepdims=True)
    labels = rng.integers(0, 3, (2, 5, 7))
    ignored = rng.random((2, 5, 7)) < 0.4
    labels[ignored] = rng.choice(ignore, ignored.sum())
    spoilt = probs.copy()
    spoilt[:, int(rng.integers(0, 3))][ignored] = garbage
    methods = ("softmin", "rsoftmin", "cil", "ccp", "tccp", "iou")
    clean, _ = score_arrays(labels, probs, methods=methods, ignore_index=ignore)
    got, _ = score_arrays(labels, spoilt, methods=methods, ignore_index=ignore)
    for a, b in zip(got, clean):
        assert a.scores.keys() == b.scores.keys()
        for m in methods:
            assert a.scores[m] == b.scores[m] or (math.isnan(a.scores[m]) and math.isnan(b.scores[m])), m
