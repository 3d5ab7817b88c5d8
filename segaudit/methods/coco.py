"""Connected components (coco, paper section 3.7) on the downsampled grid.

Components are the maximal 8-connected regions of cells sharing the same (argmax, label)
pair (26-connected in a volume's 3-D grid); a component's score is the mean of its cells' pooled p[label]; the image's score is
the mean over its components. Labelled with the union-find of
:mod:`segaudit.core.components`, one image at a time.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..core.components import component_roots, component_roots_3d
from .base import Method


@njit(cache=True, nogil=True)
def _coco(label, pred, s, slice_rows):
    """Mean over components of the mean s of their cells; NaN with no scored cell.

    ``slice_rows`` > 0: the grid is a volume's, of slices of that many rows."""
    rows, cols = label.shape
    n = rows * cols
    roots = component_roots_3d(label, pred, slice_rows) if slice_rows > 0 else component_roots(label, pred)
    total = np.zeros(n)
    size = np.zeros(n, np.int64)
    for i in range(rows):
        for j in range(cols):
            if label[i, j] >= 0:
                root = roots[i * cols + j]
                total[root] += s[i, j]
                size[root] += 1
    score_sum = 0.0
    components = 0
    for root in range(n):
        if size[root]:
            score_sum += total[root] / size[root]
            components += 1
    return score_sum / components if components else np.nan


def coco_score(label: np.ndarray, pred: np.ndarray, s: np.ndarray, slice_rows: int | None = None) -> float:
    """The coco score of one image's cell grid (label -1 = ignored cell); ``slice_rows``:
    the grid is a volume's tall grid of slices of that many cell rows (26-connected)."""
    value = float(_coco(label, pred, s, slice_rows or 0))
    return math.nan if math.isnan(value) else value


METHOD = Method(
    name="coco",
    order=80,
    # A plain dict (no slice_rows) is a 2-D image's grid.
    cell_score=lambda cells: coco_score(cells["label"], cells["pred"], cells["s"],
                                        getattr(cells, "slice_rows", None)),
)
