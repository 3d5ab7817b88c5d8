"""The candidate scores the calibration chooses among, per image and per planted copy.

Every paper method, rsoftmin, and softmin on a temperature ladder come from one image's
:class:`~segaudit.core.kernel.ImageStats` (the kernel sums every temperature in its one
pass); coco from its cell grid; clc from the dataset-wide cut of the run. A planted copy
differs from its mask in a few cells only, so its clc is the real image's flagged pixels
plus what its changed cells add or remove below the same cut (:func:`clc_delta`).
"""

from __future__ import annotations

import numpy as np

from ..core.kernel import ImageStats
from ..methods import REGISTRY, Settings
from ..methods.coco import coco_score
from ..methods.rsoftmin import scaled_temperature

#: Softmin's temperature ladder (cold to warm): cold finds small confident errors, warm
#: does not saturate on the confidently wrong boundary pixels of every clean image.
LADDER = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
#: Per-image methods of the registry that are candidates as they are.
STATS_METHODS = ("cil", "ccp", "tccp", "iou")


def softmin_name(temperature: float) -> str:
    return f"softmin t={temperature:g}"


#: Candidates computed from an image's accumulators, in this order.
STATS_CANDIDATES = ("rsoftmin", *(softmin_name(t) for t in LADDER), *STATS_METHODS)
#: Every single candidate, in the calibration table's order.
CANDIDATES = (*STATS_CANDIDATES, "coco", "clc")
COCO, CLC = CANDIDATES.index("coco"), CANDIDATES.index("clc")


def temperatures(settings: Settings, pixels: int) -> list[float]:
    """The softmin temperatures an image's accumulators must sum at for the candidates."""
    return [scaled_temperature(settings.temperature, pixels), *LADDER]


def image_values(stats: ImageStats, settings: Settings, grid=None) -> np.ndarray:
    """One image's (or copy's) candidate values; clc is NaN (it is dataset-wide), and coco
    too without a ``grid``."""
    values = np.full(len(CANDIDATES), np.nan)
    if not stats.pixels:
        return values
    values[0] = stats.softmin(scaled_temperature(settings.temperature, stats.image_pixels))
    for n, t in enumerate(LADDER, 1):
        values[n] = stats.softmin(t)
    for n, name in enumerate(STATS_METHODS, 1 + len(LADDER)):
        values[n] = REGISTRY[name].finish(stats, settings)
    if grid is not None:
        values[COCO] = coco_score(grid["label"], grid["pred"], grid["s"], getattr(grid, "slice_rows", None))
    return values


def clc_delta(real, copy) -> tuple[np.ndarray, np.ndarray]:
    """What a copy's cells change in clc's count: (s, signed mismatched pixels) of the
    cells that differ, the copy's counted +, the real image's -."""
    differ = ((real["label"] != copy["label"]) | (real["s"] != copy["s"])
              | (real["mismatched"] != copy["mismatched"])).ravel()
    scored_real = differ & (real["label"].ravel() >= 0)
    scored_copy = differ & (copy["label"].ravel() >= 0)
    s = np.concatenate([copy["s"].ravel()[scored_copy], real["s"].ravel()[scored_real]])
    weight = np.concatenate([copy["mismatched"].ravel()[scored_copy].astype(np.int64),
                             -real["mismatched"].ravel()[scored_real].astype(np.int64)])
    return s, weight
