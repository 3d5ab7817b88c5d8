"""Scoring in-memory numpy arrays, for users who already hold (N, K, H, W) predictions."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .errors import InputError
from .kernel import BadProbabilities, ImageStats, accumulate
from .methods import PER_IMAGE_METHODS, check_methods
from .predictions import check_dtype, sum_tolerance
from .dataset import check_labels, make_config
from .scoring import ImageResult, finish_image


def score_arrays(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    methods: Iterable[str] = ("softmin",),
    temperature: float = 0.1,
    pixel_threshold: float = 0.5,
    ignore_index: Iterable[int] = (),
    logits: bool = False,
    channels_last: bool = False,
    image_ids: list[str] | None = None,
    return_pixel_scores: bool = False,
) -> tuple[list[ImageResult], np.ndarray | None]:
    """Score images held in memory, with the same kernel as :func:`segaudit.score`.

    Parameters
    ----------
    labels : np.ndarray
        Integer class indices, shape (N, H, W).
    pred_probs : np.ndarray
        Probabilities (or logits with ``logits=True``), shape (N, K, H, W), or
        (N, H, W, K) with ``channels_last=True``; float16/32/64 or uint8/uint16
        quantised probabilities.
    methods : iterable of str
        Methods to compute (see :data:`segaudit.methods.METHODS`).
    temperature, pixel_threshold : float
        As for :func:`segaudit.score`.
    ignore_index : iterable of int
        Label values that take no part in any score (none by default, like cleanlab).
    logits, channels_last : bool
        How ``pred_probs`` is stored.
    image_ids : list of str, optional
        Names for the results; default "0", "1", ...
    return_pixel_scores : bool
        Also return s = p[label] per pixel as float64 (N, H, W), NaN where ignored.

    Returns
    -------
    results : list of ImageResult
        In input order (not ranked).
    pixel_scores : np.ndarray or None
    """
    methods = check_methods(methods)
    if not set(methods) <= set(PER_IMAGE_METHODS):
        raise InputError(f"score_arrays computes the per-image methods {', '.join(PER_IMAGE_METHODS)}; "
                         "for clc and coco write the arrays to a store and use segaudit.score")
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs)
    if labels.ndim != 3 or pred_probs.ndim != 4:
        raise InputError(f"labels must be (N, H, W) and pred_probs (N, K, H, W); got {labels.shape} and {pred_probs.shape}")
    if labels.dtype.kind not in "iub":
        raise InputError(f"labels must hold integer class indices, not {labels.dtype}")
    dtype = check_dtype(pred_probs.dtype, "pred_probs")
    if channels_last:
        pred_probs = np.moveaxis(pred_probs, -1, 1)
    n_images, n_classes, height, width = pred_probs.shape
    if labels.shape != (n_images, height, width):
        raise InputError(f"labels {labels.shape} do not match pred_probs {(n_images, n_classes, height, width)} (N, K, H, W)")
    if image_ids is None:
        image_ids = [str(n) for n in range(n_images)]
    ignore = tuple(sorted({int(v) for v in ignore_index}))
    config = make_config(dtype, n_classes, ignore, logits, temperature, pixel_threshold, methods,
                         sum_tolerance(dtype, n_classes))
    stored = pred_probs.view(np.uint16) if dtype == np.float16 else pred_probs
    pixel_scores = np.empty((n_images, height, width)) if return_pixel_scores else None
    results = []
    for n in range(n_images):
        image_labels = np.ascontiguousarray(labels[n], dtype=np.int32)
        if image_labels.min(initial=0) < 0:
            raise InputError(f"labels of image {image_ids[n]}: negative label values")
        check_labels(image_labels, n_classes, ignore, f"labels of image {image_ids[n]}")
        stats = ImageStats(n_classes)
        try:
            accumulate(stats, stored[n], image_labels, config,
                       s_out=None if pixel_scores is None else pixel_scores[n])
        except BadProbabilities as exc:
            raise InputError(f"pred_probs of image {image_ids[n]}: {exc}") from None
        results.append(finish_image(image_ids[n], stats, methods))
    return results, pixel_scores
