"""The worst slice of a volume: where a reviewer should look first.

A volume is scored as one image (its tall image of Z * Y rows). Per slice, the pass also
counts the scored voxels, the low voxels (s below the pixel threshold) and the sum of s,
from each block's s per voxel; the worst slice is the one with the most low voxels, ties
(and volumes without a low voxel) going to the lowest mean s, then to the lowest index.
"""

from __future__ import annotations

import numpy as np


class SliceTally:
    """Per-slice counts of one volume, filled block by block."""

    def __init__(self, depth: int, slice_rows: int, threshold: float):
        self.slice_rows = slice_rows
        self.threshold = threshold
        self.scored = np.zeros(depth, np.int64)
        self.low = np.zeros(depth, np.int64)
        self.sum_s = np.zeros(depth)

    def add(self, start: int, s: np.ndarray) -> None:
        """Rows [start, start + len(s)) of the tall image, ``s`` per voxel (NaN where ignored)."""
        if not s.size:
            return
        slices = (start + np.arange(s.shape[0])) // self.slice_rows
        scored = ~np.isnan(s)
        np.add.at(self.scored, slices, scored.sum(axis=1))
        np.add.at(self.low, slices, (s < self.threshold).sum(axis=1))
        np.add.at(self.sum_s, slices, np.where(scored, s, 0.0).sum(axis=1))

    def worst(self) -> int | None:
        """The worst slice's index (see the module's docstring); None with no scored voxel."""
        candidates = np.flatnonzero(self.scored)
        if not candidates.size:
            return None
        mean = self.sum_s[candidates] / self.scored[candidates]
        order = np.lexsort((candidates, mean, -self.low[candidates]))
        return int(candidates[order[0]])
