"""The candidate scores the calibration chooses among, per image and per planted copy.

Every paper method, rsoftmin, and softmin on a temperature ladder come from one image's
:class:`~segaudit.core.kernel.ImageStats` (the kernel sums every temperature in its one
pass); coco from its cell grid; clc from the dataset-wide cut of the run. A planted copy
differs from its mask in a few cells only, so its clc is the real image's flagged pixels
plus what its changed cells add or remove below the same cut (:func:`clc_delta`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..core.components import component_roots, component_roots_3d
from ..core.kernel import ImageStats
from ..core.regions import RegionRule
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
#: The worst error region's score, from the cell grid (:func:`worst_region`).
REGION_CANDIDATE = "worst region"
#: Every single candidate, in the calibration table's order.
CANDIDATES = (*STATS_CANDIDATES, "coco", "clc", REGION_CANDIDATE)
COCO, CLC, REGION = CANDIDATES.index("coco"), CANDIDATES.index("clc"), CANDIDATES.index(REGION_CANDIDATE)


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
        if "p_pred" in grid:
            values[REGION] = worst_region(grid["label"], grid["pred"], grid["s"], grid["p_pred"],
                                          getattr(grid, "slice_rows", None))
    return values


_RULE = RegionRule()


@njit(cache=True, nogil=True)
def _worst_region_strength(label, pred, s, p_pred, slice_rows, margin, coverage_power, scale):
    """The largest strength of an error region of a cell grid, and its scored cells.

    A cell is suspect when scored, its argmax is not its label and p[pred] - p[label] >=
    ``margin``; a region is a maximal 8-connected (26 in a volume's tall grid) set of
    suspect cells with one (label, pred) pair, its object the component of its label that
    holds it. Strength = mass * coverage**coverage_power / (scale * scored cells), mass
    the region's summed margin, coverage its share of its object: the region score of
    :mod:`segaudit.core.regions` with cells in place of pixels (no edge band). Not its
    RegionFinder, which also measures each region's band, thickness and kind: 20 times
    the cost (33 ms against 1.7 ms on a 256 x 512 grid), paid per image and per copy."""
    rows, cols = label.shape
    n = rows * cols
    first = np.full((rows, cols), -1, np.int32)
    second = np.full((rows, cols), -1, np.int32)
    scored = 0
    for i in range(rows):
        for j in range(cols):
            if label[i, j] < 0:
                continue
            scored += 1
            if pred[i, j] != label[i, j] and p_pred[i, j] - s[i, j] >= margin:
                first[i, j] = label[i, j]
                second[i, j] = pred[i, j]
    if slice_rows > 0:
        regions = component_roots_3d(first, second, slice_rows)
        objects = component_roots_3d(label, label, slice_rows)
    else:
        regions = component_roots(first, second)
        objects = component_roots(label, label)
    mass = np.zeros(n)
    area = np.zeros(n, np.int64)
    object_cells = np.zeros(n, np.int64)
    owner = np.full(n, -1, np.int64)
    for i in range(rows):
        for j in range(cols):
            if label[i, j] < 0:
                continue
            here = i * cols + j
            object_cells[objects[here]] += 1
            if first[i, j] >= 0:
                root = regions[here]
                mass[root] += p_pred[i, j] - s[i, j]
                area[root] += 1
                owner[root] = objects[here]
    strongest = 0.0
    for root in range(n):
        if area[root]:
            coverage = area[root] / object_cells[owner[root]]
            strength = mass[root] * coverage ** coverage_power / (scale * scored)
            if strength > strongest:
                strongest = strength
    return strongest, scored


def worst_region(label: np.ndarray, pred: np.ndarray, s: np.ndarray, p_pred: np.ndarray,
                 slice_rows: int | None = None) -> float:
    """An image score from its error regions: exp(-strength) of its strongest region,
    found on the image's cell grid (label -1 = ignored cell) by the default
    :class:`~segaudit.core.regions.RegionRule`'s margin, coverage power and scale; 1 with
    no region, NaN with no scored cell. Lower = more likely an error, as every score.

    The regions of ``segaudit regions`` need their own pass over the store; the cells are
    already pooled in the scoring pass (for coco and clc), so this candidate costs one
    labelling of the grid per image and per planted copy."""
    strongest, scored = _worst_region_strength(label, pred, s, p_pred, slice_rows or 0, _RULE.margin,
                                               _RULE.coverage_power, _RULE.scale)
    return math.exp(-strongest) if scored else math.nan


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
