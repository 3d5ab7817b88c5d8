"""IoU (paper eq. 8): the mean over classes present in the annotation or the argmax of |P∧l| / |P∨l|."""

from __future__ import annotations

import math

import numpy as np

from ..core.kernel import BOTH, LABEL, PRED
from .base import Method


def iou(stats, settings) -> float:
    if not stats.pixels:
        return math.nan
    counts = stats.class_counts
    union = counts[LABEL] + counts[PRED] - counts[BOTH]
    present = union > 0
    return float(np.mean(counts[BOTH][present] / union[present]))


METHOD = Method(name="iou", order=60, finish=iou)
