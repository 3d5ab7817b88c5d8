"""The in-memory API: score_arrays and the drop-in get_label_quality_scores."""

from __future__ import annotations

import numpy as np
import pytest

from naive import image_scores
from segaudit import InputError, get_label_quality_scores, score_arrays
from segaudit.methods import PER_IMAGE_METHODS as METHODS


def dataset(seed=0, n=4, k=6, h=9, w=11, dtype="float32"):
    rng = np.random.default_rng(seed)
    raw = rng.gamma(0.5, size=(n, k, h, w))
    probs = (raw / raw.sum(axis=1, keepdims=True)).astype(dtype)
    labels = rng.integers(0, k, size=(n, h, w))
    return labels, probs


@pytest.mark.parametrize("channels_last", [False, True])
def test_score_arrays_matches_reference(channels_last):
    labels, probs = dataset()
    labels[0, :2] = 255
    given = np.moveaxis(probs, 1, -1) if channels_last else probs
    results, pixels = score_arrays(labels, given, methods=METHODS, ignore_index=(255,),
                                   channels_last=channels_last, return_pixel_scores=True)
    for n, result in enumerate(results):
        expected = image_scores(labels[n], probs[n], ignore=(255,))
        assert result.image_id == str(n)
        for method in METHODS:
            assert result.scores[method] == pytest.approx(expected[method], rel=1e-12)
        np.testing.assert_array_equal(pixels[n], expected["s"])


def test_float16_input_is_scored_without_upcasting_by_the_caller():
    labels, probs = dataset(dtype="float16")
    ours, _ = get_label_quality_scores(labels, probs)
    reference = [image_scores(labels[n], probs[n])["softmin"] for n in range(len(labels))]
    np.testing.assert_allclose(ours, reference, rtol=1e-12)


@pytest.mark.parametrize(
    "labels_shape, probs_shape, message",
    [((2, 4, 4), (2, 3, 4, 5), "do not match"), ((4, 4), (1, 3, 4, 4), "must be")],
)
def test_shape_errors(labels_shape, probs_shape, message):
    with pytest.raises(InputError, match=message):
        score_arrays(np.zeros(labels_shape, int), np.full(probs_shape, 1 / 3))


def test_label_out_of_range_is_named():
    labels, probs = dataset(k=3)
    labels[1, 2, 3] = 7
    with pytest.raises(InputError, match=r"image 1: label values .*7 \(1 px\)"):
        score_arrays(labels, probs)
