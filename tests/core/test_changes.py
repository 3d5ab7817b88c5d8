"""A label map changed on a few pixels, scored from the mask's pass (auto's planted copies):
the replayed sums, the counts' changes and the changed cells against the full kernel (bit
for bit) and tests/naive.py; the patched softmin sums against the full kernel (to their
bound); the shared copy scorer against the full one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import naive
from datasets import quantise, random_probs
from segaudit.core import changes
from segaudit.core.changes import patch_softmin_sums, pool_changed_cells, tally_changes
from segaudit.core.dataset import make_decoding
from segaudit.core.kernel import ImageStats, KernelConfig, accumulate, accumulate_scores
from segaudit.core.pooling import pool

IGNORE = 255
TEMPERATURES = (0.02, 0.1, 0.7)


def decoding_for(dtype, n_classes):
    return make_decoding(np.dtype(dtype), n_classes, (IGNORE,), False, sum_tol=0.05)


def stored_probs(rng, dtype, n_classes, height, width):
    probs = random_probs(rng, n_classes, height, width)
    if dtype == np.uint8:
        return quantise(probs, np.uint8), quantise(probs, np.uint8)
    stored = probs.astype(dtype)
    return stored, (stored.view(np.uint16) if dtype == np.float16 else stored)  # (for naive, for the kernel)


def changed_copy(rng, labels, n_classes, share):
    """labels with a random share of the scored pixels given another scored class."""
    copy = labels.copy()
    scored = labels != IGNORE
    change = scored & (rng.random(labels.shape) < share)
    copy[change] = (labels[change] + rng.integers(1, n_classes, int(change.sum()))) % n_classes
    return copy


def mask_and_copy(seed, dtype, n_classes, height, width, share):
    """(stored values, the kernel's view of them, labels with ignored pixels, a copy with a
    share of the scored pixels changed, the decoding)."""
    rng = np.random.default_rng(seed)
    stored, kernel_probs = stored_probs(rng, dtype, n_classes, height, width)
    labels = rng.integers(0, n_classes, (height, width)).astype(np.int32)
    labels[rng.random((height, width)) < 0.15] = IGNORE
    copy = changed_copy(rng, labels, n_classes, share)
    return stored, kernel_probs, labels, copy, decoding_for(dtype, n_classes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float16, np.uint8, np.float32, np.float64]),
       n_classes=st.integers(2, 6), height=st.integers(1, 12), width=st.integers(1, 12),
       share=st.sampled_from([0.0, 0.05, 0.3, 1.0]), cut=st.integers(0, 12))
def test_a_changed_label_map_scores_as_the_kernel_and_the_reference(seed, dtype, n_classes, height, width, share, cut):
    """The mask's pass, then the changed pixels only: the copy's accumulators equal the full
    kernel's over the copy's labels bit for bit, and its scores the naive ones."""
    stored, kernel_probs, labels, copy, decoding = mask_and_copy(seed, dtype, n_classes, height, width, share)
    config = KernelConfig(decoding, pixel_threshold=0.5, want_tccp=True)
    cut = min(cut, height)

    image = ImageStats(n_classes, labels.size, TEMPERATURES)
    s_out = np.empty(labels.shape)
    for a, z in ((0, cut), (cut, height)):  # two blocks
        accumulate(image, kernel_probs[:, a:z], labels[a:z], config, s_out=s_out[a:z])
    flat = np.flatnonzero(copy != labels)
    rows, cols = flat // width, flat % width
    deltas = ImageStats(n_classes, labels.size, TEMPERATURES)
    s_new = tally_changes(kernel_probs, decoding, rows, cols, labels.ravel()[flat], copy.ravel()[flat],
                          s_out.ravel()[flat], 0.5, True, deltas)
    patched = s_out.copy()
    patched.ravel()[flat] = s_new
    mine = ImageStats(n_classes, labels.size, TEMPERATURES)
    accumulate_scores(mine, patched[:cut])
    accumulate_scores(mine, patched[cut:])
    for name in ("totals", "class_counts", "low_confusion", "tccp_hist"):
        setattr(mine, name, getattr(image, name) + getattr(deltas, name))

    full = ImageStats(n_classes, labels.size, TEMPERATURES)
    for a, z in ((0, cut), (cut, height)):
        accumulate(full, kernel_probs[:, a:z], copy[a:z], config)
    for name in ("totals", "class_counts", "low_confusion", "tccp_hist", "soft"):
        np.testing.assert_array_equal(getattr(mine, name), getattr(full, name), err_msg=name)
    assert mine.sums[0] == full.sums[0]

    for t in TEMPERATURES:
        reference = naive.image_scores(copy, stored, ignore=(IGNORE,), temperature=t)
        if reference["pixels"]:
            assert mine.softmin(t) == pytest.approx(reference["softmin"], rel=1e-9, abs=1e-12)
            assert mine.sum_s / mine.pixels == pytest.approx(reference["cil"], rel=1e-9, abs=1e-12)
    assert mine.pixels == naive.image_scores(copy, stored, ignore=(IGNORE,))["pixels"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float16, np.uint8, np.float32, np.float64]),
       n_classes=st.integers(2, 6), height=st.integers(1, 12), width=st.integers(1, 12),
       share=st.sampled_from([0.0, 0.05, 0.3, 1.0]))
def test_patched_softmin_sums_equal_the_kernels_over_the_copy(seed, dtype, n_classes, height, width, share):
    """The image's sums with the changed pixels' terms swapped: when the patch says it is
    trusted, every softmin and the sum of s are the full kernel's over the copy to 1e-9."""
    _, kernel_probs, labels, copy, decoding = mask_and_copy(seed, dtype, n_classes, height, width, share)
    config = KernelConfig(decoding)
    image = ImageStats(n_classes, labels.size, TEMPERATURES)
    s_out = np.empty(labels.shape)
    accumulate(image, kernel_probs, labels, config, s_out=s_out)
    flat = np.flatnonzero(copy != labels)
    deltas = ImageStats(n_classes, labels.size, TEMPERATURES)
    s_new = tally_changes(kernel_probs, decoding, flat // width, flat % width, labels.ravel()[flat],
                          copy.ravel()[flat], s_out.ravel()[flat], 0.5, False, deltas)
    mine = ImageStats(n_classes, labels.size, TEMPERATURES)
    mine.totals[:] = image.totals + deltas.totals
    trusted = patch_softmin_sums(image, s_out.ravel()[flat], s_new, mine)
    full = ImageStats(n_classes, labels.size, TEMPERATURES)
    accumulate(full, kernel_probs, copy, config)
    if not full.pixels:
        return
    if trusted:
        for t in TEMPERATURES:
            assert mine.softmin(t) == pytest.approx(full.softmin(t), rel=1e-9, abs=1e-15)
        assert mine.sums[0] == pytest.approx(full.sums[0], rel=1e-9, abs=1e-15)
    if not flat.size:  # nothing changed: the image's own sums, exactly
        assert trusted
        np.testing.assert_array_equal(mine.soft, image.soft)
        assert mine.sums[0] == image.sums[0]


def test_a_patch_that_cancels_nearly_everything_is_not_trusted():
    """One pixel held nearly all of the image's weight at the cold temperature and the copy
    makes it agree with the model: what is left is below the subtraction's rounding, so
    the patch says so (the copy scorer then sums afresh)."""
    s = np.full((4, 5), 0.99)
    s[2, 3] = 0.01
    image = ImageStats(2, s.size, TEMPERATURES)
    accumulate_scores(image, s)
    image.totals[0] = s.size
    out = ImageStats(2, s.size, TEMPERATURES)
    assert not patch_softmin_sums(image, np.array([0.01]), np.array([0.99]), out)
    # the warm temperature alone is fine: the other pixels held a fair share there
    warm = ImageStats(2, s.size, (0.7,))
    accumulate_scores(warm, s)
    out = ImageStats(2, s.size, (0.7,))
    out.totals[0] = s.size
    assert patch_softmin_sums(warm, np.array([0.01]), np.array([0.99]), out)
    assert out.softmin(0.7) == pytest.approx(0.99, rel=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float16, np.uint8, np.float32]),
       n_classes=st.integers(2, 5), height=st.integers(1, 11), width=st.integers(1, 11), factor=st.integers(1, 4),
       share=st.sampled_from([0.02, 0.2, 1.0]))
def test_changed_cells_pool_as_the_full_pooling_and_the_reference(seed, dtype, n_classes, height, width, factor, share):
    rng = np.random.default_rng(seed)
    stored, kernel_probs = stored_probs(rng, dtype, n_classes, height, width)
    labels = rng.integers(0, n_classes, (height, width)).astype(np.int32)
    labels[rng.random((height, width)) < 0.15] = IGNORE
    copy = changed_copy(rng, labels, n_classes, share)
    decoding = decoding_for(dtype, n_classes)
    rows, cols = np.nonzero(copy != labels)
    keys = np.unique(rows // factor * (-(-width // factor)) + cols // factor)
    cell_rows, cell_cols = keys // -(-width // factor), keys % -(-width // factor)
    mine = pool_changed_cells(kernel_probs, copy, decoding, factor, None, cell_rows, cell_cols)
    full = pool(kernel_probs, copy, decoding, factor, pixel_dtype=None)
    reference = naive.downsample_in_order(copy, stored, factor, ignore=(IGNORE,))
    for n, name in enumerate(("label", "pred", "s", "p_pred", "mismatched")):
        np.testing.assert_array_equal(mine[name], getattr(full, name)[cell_rows, cell_cols], err_msg=name)
        np.testing.assert_array_equal(mine[name], np.asarray(reference[n])[cell_rows, cell_cols], err_msg=name)
