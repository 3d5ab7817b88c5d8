"""Scoring an image's planted copies from the image's own prediction blocks.

A copy differs from its mask in a band of rows only (an object, a blob; a whole class
spans more). Each block is cut at the copies' band edges: a copy accumulates its own
labels over the rows of its band, and the real labels' accumulators of every other
segment, computed once per segment, are merged into it. Its cells are the image's cells
with the band's cell rows pooled again from its labels. So a copy costs its band, not the
image, and the store is read once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..core.kernel import ImageStats, accumulate
from ..core.pooling import cell_row, pool
from .candidates import clc_delta, image_values


class CopyScorer:
    """One image's planted copies, fed the image's blocks in row order.

    Parameters
    ----------
    copies : list of (kind, labels)
        The copies' full label maps (int32, the image's shape).
    labels : np.ndarray
        The image's real labels.
    new_stats : callable
        Empty accumulators of the image (at every temperature the candidates need).
    config, decoding, factor, slice_rows
        The kernel's configuration, the store's decoding, the cell size and, for a volume,
        its slice height (a volume's copies span the whole image: cells are F slices deep).
    need_cells : bool
        Whether the copies' cells are pooled (coco and clc's change).
    """

    def __init__(self, copies: list[tuple[str, np.ndarray]], labels: np.ndarray,
                 new_stats: Callable[[], ImageStats], config, decoding, factor: int, slice_rows: int | None,
                 need_cells: bool):
        self.kinds = [kind for kind, _ in copies]
        self.labels = [copy for _, copy in copies]
        self.new_stats, self.config, self.decoding = new_stats, config, decoding
        self.factor, self.slice_rows, self.need_cells = factor, slice_rows, need_cells
        height = labels.shape[0]
        self.bands = []
        for copy in self.labels:
            if slice_rows is not None:
                self.bands.append((0, height))
                continue
            rows = np.flatnonzero((copy != labels).any(axis=1))
            top = rows[0] // factor * factor
            bottom = min(height, -(-(rows[-1] + 1) // factor) * factor)
            self.bands.append((int(top), int(bottom)))
        self.stats = [new_stats() for _ in copies]
        self.cells: list[list[tuple[int, object]]] = [[] for _ in copies]

    def add_block(self, block) -> None:
        """Fold one block of the image (rows [start, stop)) into every copy."""
        start, stop = block.start, block.stop
        cuts = {start, stop}
        for top, bottom in self.bands:
            cuts.update(r for r in (top, bottom) if start < r < stop)
        edges = sorted(cuts)
        for a, z in zip(edges[:-1], edges[1:]):
            probs = block.probs[:, a - start:z - start]
            inside = [n for n, (top, bottom) in enumerate(self.bands) if top <= a and z <= bottom]
            if len(inside) < len(self.bands):  # the real labels' share, once for every copy outside
                real = self.new_stats()
                accumulate(real, probs, block.labels[a - start:z - start], self.config, row_offset=a)
                for n in range(len(self.bands)):
                    if n not in inside:
                        self.stats[n].merge(real)
            for n in inside:
                accumulate(self.stats[n], probs, self.labels[n][a:z], self.config, row_offset=a)
        if self.need_cells:
            for n, (top, bottom) in enumerate(self.bands):
                a, z = max(start, top), min(stop, bottom)
                if a < z:
                    cells = pool(block.probs[:, a - start:z - start], self.labels[n][a:z], self.decoding, self.factor,
                                 pixel_dtype=None, slice_rows=self.slice_rows)
                    self.cells[n].append((cell_row(a, self.factor, self.slice_rows), cells))

    def finish(self, grid, settings) -> list:
        """Every copy's candidate values and clc change, against the image's ``grid``."""
        from . import PlantedCopy

        found = []
        for n, kind in enumerate(self.kinds):
            copy_grid = None
            if grid is not None:
                copy_grid = type(grid)({name: values.copy() for name, values in grid.items()},
                                       slice_rows=getattr(grid, "slice_rows", None))
                for first, cells in self.cells[n]:
                    rows = slice(first, first + cells.label.shape[0])
                    for name, values in copy_grid.items():
                        values[rows] = getattr(cells, name)
            values = image_values(self.stats[n], settings, copy_grid)
            s, weight = clc_delta(grid, copy_grid) if copy_grid is not None else (np.zeros(0), np.zeros(0, np.int64))
            found.append(PlantedCopy(kind, values, s, weight))
        return found
