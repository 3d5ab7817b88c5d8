"""Scoring an image's planted copies from the image's own prediction blocks, so the store
is read once.

Stored probabilities take the shared path: everything that depends only on the prediction
(validation, argmax, the cells' pooled probabilities) comes from the image's own pass,
which hands over each pixel's s. A copy's integer tallies are the image's plus what its
changed pixels change (:func:`segaudit.core.changes.tally_changes`), exactly; its
floating-point sums (softmin at every temperature, the sum of s) are the image's with the
changed pixels' terms taken off and put back (:func:`segaudit.core.changes.patch_softmin_sums`),
equal to summing the copy's pixels afresh up to a rounding error the patch bounds. Where the
bound is not small against the result (the changed pixels held nearly all of the image's
weight at a cold temperature), the copy's pixels are summed afresh from the image's s, kept
for that (in the store's precision when it holds s exactly).

Logits take the full path. A copy differs from its mask in a band of rows only (an object,
a blob; a whole class spans more). Each block is cut at the copies' band edges: a copy
accumulates its own labels over the rows of its band with the kernel, and the real labels'
accumulators of every other segment, computed once per segment, are merged into it. Its
cells are the image's cells with those holding a changed pixel pooled again from its labels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..core.changes import patch_softmin_sums, pool_changed_cells, tally_changes
from ..core.kernel import FLOAT, HALF, ImageStats, accumulate, accumulate_scores
from ..core.pooling import cell_row, grid_shape, pool
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
    shared : bool, optional
        Score from the image's own pass (each block's s, see :attr:`needs_scores`) instead
        of running the kernel over each copy's band. The default: for stored
        probabilities. Both give the same values, bit for bit.
    """

    def __init__(self, copies: list[tuple[str, np.ndarray]], labels: np.ndarray,
                 new_stats: Callable[[], ImageStats], config, decoding, factor: int, slice_rows: int | None,
                 need_cells: bool, shared: bool | None = None):
        self.kinds = [kind for kind, _ in copies]
        labels_of = [copy for _, copy in copies]
        self.new_stats, self.config, self.decoding = new_stats, config, decoding
        self.factor, self.slice_rows, self.need_cells = factor, slice_rows, need_cells
        self.shared = (not decoding.logits) if shared is None else bool(shared)
        height, self.width = labels.shape
        self.bands = []
        changed = []
        for copy in labels_of:
            differ = copy != labels
            if self.shared:  # no bands: the sums are patched, not summed over the copy's rows
                flat = np.flatnonzero(differ)  # row-major, so each block's are a contiguous run
                changed.append((flat, labels.ravel()[flat], copy.ravel()[flat]))
                continue
            if slice_rows is not None:
                self.bands.append((0, height))
                continue
            rows = np.flatnonzero(differ.any(axis=1))
            top = rows[0] // factor * factor
            bottom = min(height, -(-(rows[-1] + 1) // factor) * factor)
            self.bands.append((int(top), int(bottom)))
        self.stats = [new_stats() for _ in copies]
        self.cells: list[list[tuple[int, object]]] = [[] for _ in copies]
        # The shared path keeps only the changed pixels (a full map per copy would hold
        # megabytes per image in flight); the full path keeps the copies' maps.
        self.labels = None if self.shared else labels_of
        if self.shared:
            self.changed = changed
            self.s_old = [np.empty(flat.size) for flat, _, _ in changed]  # the real labels' s at the changed pixels
            self.s_new = [np.empty(flat.size) for flat, _, _ in changed]  # the new labels' s there
            self.deltas = [new_stats() for _ in copies]  # what the changed pixels change in the counts
            self.grid_columns = grid_shape(height, self.width, factor, slice_rows)[1]
            self.s_blocks: list[np.ndarray] = []  # the image's s, for a copy whose patch is not trusted
            self.s_dtype = None

    @property
    def needs_scores(self) -> bool:
        """Whether :meth:`add_block` needs the block's s per pixel (``accumulate``'s ``s_out``)."""
        return self.shared

    def _segments(self, start: int, stop: int):
        """The block's rows cut at the copies' band edges: (a, z, copies whose band holds them)."""
        cuts = {start, stop}
        for top, bottom in self.bands:
            cuts.update(r for r in (top, bottom) if start < r < stop)
        edges = sorted(cuts)
        for a, z in zip(edges[:-1], edges[1:]):
            yield a, z, [n for n, (top, bottom) in enumerate(self.bands) if top <= a and z <= bottom]

    def add_block(self, block, s_rows: np.ndarray | None = None) -> None:
        """Fold one block of the image (rows [start, stop)) into every copy; ``s_rows``: the
        block's s per pixel from the image's own pass (NaN where not scored), when
        :attr:`needs_scores`."""
        if not self.shared:
            self._add_block_full(block)
            return
        start, stop, width = block.start, block.stop, self.width
        s_flat = s_rows.ravel()
        for n, (flat, old, new) in enumerate(self.changed):
            lo, hi = np.searchsorted(flat, [start * width, stop * width])
            if hi > lo:
                local = flat[lo:hi] - start * width
                rows, cols = local // width, local % width
                self.s_old[n][lo:hi] = s_flat[local]
                self.s_new[n][lo:hi] = tally_changes(block.probs, self.decoding, rows, cols, old[lo:hi], new[lo:hi],
                                                     s_flat[local], self.config.pixel_threshold,
                                                     self.config.want_tccp, self.deltas[n])
                if self.need_cells:
                    copy_rows = block.labels.copy()  # the copy's labels of the block
                    copy_rows.ravel()[local] = new[lo:hi]
                    self._pool_changed(n, block, copy_rows, rows, cols)
        self.s_blocks.append(self._kept(s_rows, block.probs.dtype))

    def _kept(self, s_rows: np.ndarray, probs_dtype) -> np.ndarray:
        """The block's s as kept until the copies are finished: in the store's float16 or
        float32, which hold it exactly (s is a stored value, decoded), else float64."""
        if self.s_dtype is None:
            if self.decoding.mode == HALF:
                self.s_dtype = np.dtype(np.float16)
            elif self.decoding.mode == FLOAT and probs_dtype == np.float32:
                self.s_dtype = np.dtype(np.float32)
            else:  # float64, or quantised values (v / 255 is no float32)
                self.s_dtype = np.dtype(np.float64)
        return s_rows.astype(self.s_dtype)

    def _sum_afresh(self, n: int, stats: ImageStats) -> None:
        """Copy n's softmin sums and sum of s summed over its pixels (the image's s with its
        changed pixels' patched in), for a copy whose patch is not trusted."""
        fresh = self.new_stats()
        s = np.concatenate([b.astype(np.float64) for b in self.s_blocks]).reshape(-1, self.width)
        s.ravel()[self.changed[n][0]] = self.s_new[n]
        accumulate_scores(fresh, s)
        stats.soft[:] = fresh.soft
        stats.sums[0] = fresh.sums[0]

    def _pool_changed(self, n: int, block, copy_rows: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        """Pool again, from copy n's labels of the block (``copy_rows``), the block's cells
        that hold its changed pixels (rows, cols)."""
        factor, slice_rows = self.factor, self.slice_rows
        if slice_rows is None:
            cell_rows = rows // factor
        else:  # a slab of F slices: cell row (z // F) * ceil(Y / F) + y // F
            cell_rows = rows // slice_rows // factor * -(-slice_rows // factor) + rows % slice_rows // factor
        keys = cell_rows * self.grid_columns + cols // factor
        touched = np.zeros(int(keys.max()) + 1, np.bool_)
        touched[keys] = True
        keys = np.flatnonzero(touched)  # the cells, once each, in order (np.unique without the sort)
        cell_rows, cell_cols = keys // self.grid_columns, keys % self.grid_columns
        cells = pool_changed_cells(block.probs, copy_rows, self.decoding, factor,
                                   slice_rows, cell_rows, cell_cols)
        first = cell_row(block.start, factor, slice_rows)
        self.cells[n].append(((cell_rows + first) * self.grid_columns + cell_cols, cells))

    def _add_block_full(self, block) -> None:
        """The full path: the kernel over each copy's band (logits)."""
        start, stop = block.start, block.stop
        for a, z, inside in self._segments(start, stop):
            # A C-contiguous block keeps the kernel's loops vectorised (a strided view is ~4x slower).
            probs = np.ascontiguousarray(block.probs[:, a - start:z - start])
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

    def finish(self, grid, settings, image: ImageStats | None = None) -> list:
        """Every copy's candidate values and clc change, against the image's ``grid``;
        ``image``: the image's own accumulators, complete (needed when :attr:`needs_scores`)."""
        from . import PlantedCopy

        found = []
        for n, kind in enumerate(self.kinds):
            stats = self.stats[n]
            if self.shared:  # counts: the image's and what the changed pixels change
                delta = self.deltas[n]
                stats.totals[:] = image.totals + delta.totals
                stats.class_counts[:] = image.class_counts + delta.class_counts
                stats.low_confusion[:] = image.low_confusion + delta.low_confusion
                stats.tccp_hist[:] = image.tccp_hist + delta.tccp_hist
                stats.sums[1] = np.nan  # the model's confidence is the image's; no candidate reads it
                if not patch_softmin_sums(image, self.s_old[n], self.s_new[n], stats):
                    self._sum_afresh(n, stats)
            copy_grid = None
            if grid is not None:
                copy_grid = type(grid)({name: values.copy() for name, values in grid.items()},
                                       slice_rows=getattr(grid, "slice_rows", None))
                for where, cells in self.cells[n]:
                    if self.shared:
                        for name, values in copy_grid.items():
                            values.ravel()[where] = cells[name]
                        continue
                    rows = slice(where, where + cells.label.shape[0])
                    for name, values in copy_grid.items():
                        values[rows] = getattr(cells, name)
            values = image_values(stats, settings, copy_grid)
            s, weight = clc_delta(grid, copy_grid) if copy_grid is not None else (np.zeros(0), np.zeros(0, np.int64))
            found.append(PlantedCopy(kind, values, s, weight))
        return found
