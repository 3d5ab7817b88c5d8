"""The same numbers as cleanlab where the methods are the same."""

from __future__ import annotations

import numpy as np
import pytest

cleanlab_rank = pytest.importorskip("cleanlab.segmentation.rank")

from segaudit import get_label_quality_scores  # noqa: E402


def random_dataset(seed, n_images, n_classes, height, width, dtype):
    rng = np.random.default_rng(seed)
    raw = rng.gamma(0.3, size=(n_images, n_classes, height, width))
    pred_probs = (raw / raw.sum(axis=1, keepdims=True)).astype(dtype)
    labels = rng.integers(0, n_classes, size=(n_images, height, width))
    return labels, pred_probs


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(5, 3, 16, 20), (3, 19, 33, 17), (2, 2, 1, 1)])
@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5])
def test_softmin_matches_cleanlab(dtype, shape, temperature):
    labels, pred_probs = random_dataset(11, *shape, dtype)
    theirs, their_pixels = cleanlab_rank.get_label_quality_scores(
        labels, pred_probs, method="softmin", temperature=temperature, verbose=False
    )
    ours, our_pixels = get_label_quality_scores(labels, pred_probs, method="softmin", temperature=temperature)
    assert ours.dtype == theirs.dtype == np.float64
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(our_pixels, their_pixels)


def test_drop_in_keeps_cleanlab_defaults():
    labels, pred_probs = random_dataset(3, 4, 5, 8, 8, "float32")
    theirs, _ = cleanlab_rank.get_label_quality_scores(labels, pred_probs, verbose=False)
    ours, _ = get_label_quality_scores(labels, pred_probs)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


def test_num_pixel_issues_is_refused_clearly():
    labels, pred_probs = random_dataset(3, 1, 3, 4, 4, "float32")
    with pytest.raises(ValueError, match="num_pixel_issues"):
        get_label_quality_scores(labels, pred_probs, method="num_pixel_issues")
