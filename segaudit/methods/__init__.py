"""Per-image label quality scores, finished from the kernel's accumulators.

Every score lies in [0, 1]; lower means the annotation is more likely wrong. An image
with no scored pixel gets NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..errors import InputError
from ..core.kernel import BOTH, LABEL, PRED, ImageStats

#: Methods scored from each image alone, in one pass. rsoftmin is segaudit's (the
#: default); the others are the paper's.
PER_IMAGE_METHODS = ("rsoftmin", "softmin", "cil", "ccp", "tccp", "iou")
#: Methods on the downsampled grid; clc needs the whole dataset (extra passes).
DATASET_METHODS = ("clc", "coco")
#: Every method segaudit computes, in the order ``--method all`` lists them.
METHODS = PER_IMAGE_METHODS + DATASET_METHODS

#: The default ranking method (chosen by the detection benchmark, docs/methods.md).
DEFAULT_METHOD = "rsoftmin"

DESCRIPTIONS = {
    "rsoftmin": "softmin at a temperature scaled to the image's size (= softmin's at 760x1280, warmer on smaller images)",
    "softmin": "soft minimum of the pixels' label likelihoods s (temperature --temperature)",
    "cil": "confidence in label: mean of s",
    "ccp": "correctly classified pixels: fraction with argmax == label",
    "tccp": "thresholded CCP: per-class accuracy at its best threshold, mean over classes",
    "iou": "mean IoU of argmax and annotation over the classes present in either",
    "clc": "confident learning: 1 - fraction of pixels flagged over the whole dataset",
    "coco": "connected components of (argmax, label) on the downsampled grid: mean component score",
}


def parse_methods(text: str) -> tuple[str, ...]:
    """Parse ``softmin``, a comma list such as ``cil,softmin``, or ``all``.

    The first method is the ranking key. Duplicates are dropped.
    """
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise InputError("--method is empty; choose from " + ", ".join(METHODS) + " or all")
    chosen: list[str] = []
    for name in names:
        expanded = METHODS if name == "all" else (name,)
        for method in expanded:
            if method not in METHODS:
                raise InputError(
                    f"unknown method {method!r}; choose from " + ", ".join(METHODS) + " or all"
                )
            if method not in chosen:
                chosen.append(method)
    return tuple(chosen)


def check_methods(methods: Iterable[str]) -> tuple[str, ...]:
    """Methods as a tuple, each one known; the first is the ranking key."""
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise InputError(f"unknown or no methods {unknown or list(methods)}; choose from " + ", ".join(METHODS))
    return methods


def softmin(stats: ImageStats) -> float:
    """Σ s·exp((1−s)/τ) / Σ exp((1−s)/τ) over the scored pixels (paper eq. 6)."""
    weights, weighted = stats.sums[2], stats.sums[3]
    return float(weighted / weights) if stats.pixels else math.nan


def rsoftmin(stats: ImageStats) -> float:
    """Softmin at the image's size-scaled temperature (:mod:`segaudit.core.temperature`)."""
    weights, weighted = stats.sums[5], stats.sums[6]
    return float(weighted / weights) if stats.pixels else math.nan


def cil(stats: ImageStats) -> float:
    """Mean of s (paper eq. 5)."""
    return float(stats.sums[0] / stats.pixels) if stats.pixels else math.nan


def ccp(stats: ImageStats) -> float:
    """Fraction of scored pixels whose argmax is the annotated class (paper eq. 1)."""
    return stats.correct / stats.pixels if stats.pixels else math.nan


def tccp(stats: ImageStats) -> float:
    """Thresholded CCP (paper eqs. 2–4, in the reading the text describes).

    For class k and threshold τ, acc_k(τ) is the fraction of scored pixels where
    (p_k > τ) equals (label == k); each class takes its best τ of 0.05, 0.10, ..., 0.95
    and the score is the mean over all K classes.
    """
    n = stats.pixels
    if not n:
        return math.nan
    positive = stats.tccp_hist[1]  # label == k, by bin of p_k
    negative = stats.tccp_hist[0] - positive  # label != k
    # Bin b holds the pixels with p_k above exactly b thresholds, so at threshold t
    # the pixels with p_k > τ_t are the bins t+1 and up.
    positive_above = np.cumsum(positive[:, ::-1], axis=1)[:, ::-1][:, 1:]
    negative_at_or_below = np.cumsum(negative, axis=1)[:, :-1]
    accuracy = (positive_above + negative_at_or_below) / n
    return float(accuracy.max(axis=1).mean())


def iou(stats: ImageStats) -> float:
    """Mean over classes present in the annotation or the argmax of |P∧l| / |P∨l|."""
    if not stats.pixels:
        return math.nan
    counts = stats.class_counts
    union = counts[LABEL] + counts[PRED] - counts[BOTH]
    present = union > 0
    return float(np.mean(counts[BOTH][present] / union[present]))


SCORERS = {"rsoftmin": rsoftmin, "softmin": softmin, "cil": cil, "ccp": ccp, "tccp": tccp, "iou": iou}
