"""8-connected components of a grid, by union-find in Numba.

Shared by the coco method (regions of cells with the same label and argmax) and the
shift corruption (the regions of one class in a mask).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _find(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        parent[i], i = root, parent[i]
    return root


@njit(cache=True, nogil=True)
def component_roots(first, second):
    """Each cell's component: the row-major index of its component's first cell (-1 for
    a cell in none).

    Two 8-neighbours are in one component when both ``first`` and ``second`` agree;
    cells with ``first`` < 0 are in no component.
    """
    rows, cols = first.shape
    parent = np.arange(rows * cols)
    for i in range(rows):
        for j in range(cols):
            if first[i, j] < 0:
                continue
            here = i * cols + j
            # Earlier neighbours of the 8-neighbourhood: left, and the three above.
            for di, dj in ((0, -1), (-1, -1), (-1, 0), (-1, 1)):
                ni, nj = i + di, j + dj
                if ni < 0 or nj < 0 or nj >= cols:
                    continue
                if first[ni, nj] == first[i, j] and second[ni, nj] == second[i, j]:
                    a, b = _find(parent, here), _find(parent, ni * cols + nj)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    roots = np.full(rows * cols, -1, np.int64)
    for i in range(rows):
        for j in range(cols):
            if first[i, j] >= 0:
                roots[i * cols + j] = _find(parent, i * cols + j)
    return roots
