"""Downsampling to the F×F cell grid that clc and coco work on.

A cell pools the non-ignored pixels of its F×F block (edge cells pool what they have); in a
volume, of its F×F×F block of voxels (see :func:`grid_shape` for how its cells are laid out):
probabilities are mean-pooled and renormalised, the label is the majority vote (ties go to
the lowest class; label values are never averaged). A cell with no scored pixel is
ignored (label -1). At F = 1 a cell is its pixel, unchanged.

The pooling kernel emits per cell only what the dataset-wide methods need: the label, the
argmax of the pooled probabilities, s = pooled p[label], pooled p[argmax] and the number
of scored pixels whose own argmax is not their label (the pixels a flag keeps); and, when
asked, per pixel the full-resolution argmax, for flag maps.

It runs class-major over contiguous rows, so that its loops vectorise, but adds in the
order of a pixel-by-pixel loop: its results are bit-identical to one.

The scoring pass pools in the kernel's own walk over a block (:func:`accumulate_and_pool`:
one decode and argmax of each class row for both; logits keep the separate :func:`pool`),
with the same additions in the same order (``core/cellsums.py``), so the cells are the same
bits either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .cellsums import _add_to_cells, _finish_cells, _tally_row
from .kernel import _HALF_SCALE, HALF, Decoding, ImageStats, KernelConfig, _decode, accumulate

# error_model="numpy": no zero check on divisions, which would stop vectorisation (a softmax
# over an ignored pixel's garbage may divide by zero, harmlessly: it is not added).
_kernel = njit(cache=True, nogil=True, error_model="numpy")


@_kernel
def _half_bits(row, bits):
    """float16 bit patterns (as uint16) to float32 bits that, times 2^112, are their values.

    Branch-free, so it vectorises: exponent and mantissa move into float32's, inf and NaN
    get float32's top exponent (the scaling keeps them), and the sign stays (-0.0 too).
    """
    for c in range(row.shape[0]):
        h = np.uint32(row[c])
        magnitude = h & np.uint32(0x7FFF)
        top = np.uint32(0x70000000) if magnitude > np.uint32(0x7BFF) else np.uint32(0)
        bits[c] = ((h & np.uint32(0x8000)) << np.uint32(16)) | ((magnitude << np.uint32(13)) + top)


@_kernel
def _decode_row(row, lut, mode, bits, values):
    """One class's stored values of one row as float64, as ``kernel._decode`` (NaN payloads aside)."""
    if mode == HALF:
        _half_bits(row, bits)
        f32 = bits.view(np.float32)
        for c in range(row.shape[0]):
            values[c] = np.float64(f32[c] * _HALF_SCALE)
    else:
        for c in range(row.shape[0]):
            values[c] = _decode(row[c], lut)


@_kernel
def _scan_class(row, k, lut, mode, valid, bits, values, best, best_k):
    """Decode class k's row into ``values`` (0.0 where ignored) and fold it into the argmax
    (strictly greater: the first maximum wins).

    The loop bodies are written out: a helper called per pixel does not vectorise.
    """
    if mode == HALF:
        _half_bits(row, bits)
        f32 = bits.view(np.float32)
        for c in range(row.shape[0]):
            v = np.float64(f32[c] * _HALF_SCALE)
            greater = v > best[c]
            best[c] = v if greater else best[c]
            best_k[c] = k if greater else best_k[c]
            values[c] = v if valid[c] else 0.0
    else:
        for c in range(row.shape[0]):
            v = _decode(row[c], lut)
            greater = v > best[c]
            best[c] = v if greater else best[c]
            best_k[c] = k if greater else best_k[c]
            values[c] = v if valid[c] else 0.0


@_kernel
def _row_labels(labels, ignore, n_classes, lab, valid):
    """One row's labels and which of its pixels are scored."""
    for c in range(labels.shape[0]):
        label = labels[c]
        lab[c] = label
        valid[c] = label >= 0 and label < n_classes and not ignore[label]


@_kernel
def _pool_row(probs, r, lut, mode, logits, factor, valid, values, best, best_k, total, bits, sums):
    """Row r's argmax (best_k) and its scored pixels' probabilities added to sums[class, cell].

    Class-major over contiguous rows, so that the loops vectorise. Each float64 sum sees the
    same additions in the same order as a pixel-by-pixel loop (rows, then columns
    ascending), so the results are bit-identical to it.
    """
    n_classes, _, width = probs.shape
    for c in range(width):
        best[c] = -np.inf
        best_k[c] = 0
    if not logits:
        for k in range(n_classes):
            _scan_class(probs[k, r], k, lut, mode, valid, bits, values, best, best_k)
            _add_to_cells(values, factor, sums[k])
        return
    # Logits: a softmax per pixel, shifted by its largest logit (the argmax's value).
    for k in range(n_classes):
        _scan_class(probs[k, r], k, lut, mode, valid, bits, values, best, best_k)
    for c in range(width):
        total[c] = 0.0
    for k in range(n_classes):
        _decode_row(probs[k, r], lut, mode, bits, values)
        for c in range(width):
            total[c] += np.exp(values[c] - best[c])
    for k in range(n_classes):
        _decode_row(probs[k, r], lut, mode, bits, values)
        for c in range(width):
            p = np.exp(values[c] - best[c]) / total[c]
            values[c] = p if valid[c] else 0.0
        _add_to_cells(values, factor, sums[k])


@_kernel
def _pool_rows(probs, lut, mode, labels, ignore, logits, factor, slice_rows,
               cell_label, cell_pred, cell_s, cell_ppred, cell_mismatched, pixel_pred):
    """Pool a block of rows (whose count is a multiple of ``factor``, but for the last).

    probs is [class, row, column]; outputs are (cell rows, cell columns) and, for
    pixel_pred, (rows, columns), or (0, 0) to skip it. ``slice_rows``: the block is a
    slab of slices of that many rows each (a volume's tall image; its slice count a
    multiple of ``factor`` but for the last), and cell row gz * ceil(slice_rows / factor)
    + gy pools rows gy*F .. gy*F + F - 1 of slices gz*F .. gz*F + F - 1, slice by slice.
    A 2-D block is one slice of all its rows.
    """
    n_classes, n_rows, width = probs.shape
    n_slices = n_rows // slice_rows
    per_slab = -(-slice_rows // factor)
    n_cols = cell_label.shape[1]
    write_pred = pixel_pred.shape[0] > 0
    sums = np.empty((n_classes, n_cols))
    votes = np.empty((n_classes, n_cols), np.int64)
    mismatched = np.empty(n_cols, np.int64)
    values = np.empty(width)
    best = np.empty(width)
    best_k = np.empty(width, np.int32)
    total = np.empty(width)
    lab = np.empty(width, np.int32)
    valid = np.empty(width, np.bool_)
    bits = np.empty(width, np.uint32)
    for gi in range(cell_label.shape[0]):
        sums[:] = 0.0
        votes[:] = 0
        mismatched[:] = 0
        gz, gy = gi // per_slab, gi % per_slab
        for z in range(gz * factor, min((gz + 1) * factor, n_slices)):
            top = z * slice_rows
            for r in range(top + gy * factor, top + min((gy + 1) * factor, slice_rows)):
                _row_labels(labels[r], ignore, n_classes, lab, valid)
                _pool_row(probs, r, lut, mode, logits, factor, valid, values, best, best_k, total, bits, sums)
                if write_pred:
                    for c in range(width):
                        pixel_pred[r, c] = best_k[c]
                _tally_row(lab, valid, best_k, factor, votes, mismatched)
        _finish_cells(gi, factor, sums, votes, mismatched, cell_label, cell_pred, cell_s, cell_ppred,
                      cell_mismatched)


@dataclass
class Cells:
    """Per-cell data of some rows of the grid (label -1 = ignored cell)."""

    label: np.ndarray  # int32
    pred: np.ndarray  # int32, argmax of the pooled probabilities
    s: np.ndarray  # float64, pooled p[label]
    p_pred: np.ndarray  # float64, pooled p[pred]
    mismatched: np.ndarray  # int32, scored pixels whose own argmax is not their label
    pixel_pred: np.ndarray | None  # (rows, columns): full-resolution argmax, when asked for


def grid_shape(height: int, width: int, factor: int, slice_rows: int | None = None) -> tuple[int, int]:
    """(rows, columns) of the cell grid of an image of ``height`` x ``width`` pixels.

    A volume (``slice_rows`` = Y, ``height`` = Z * Y) has ceil(Z/F) x ceil(Y/F) x ceil(X/F)
    cells, laid out as a tall grid too: ceil(Z/F) slabs of ceil(Y/F) cell rows each.
    """
    if slice_rows is None:
        return -(-height // factor), -(-width // factor)
    return -(-(height // slice_rows) // factor) * -(-slice_rows // factor), -(-width // factor)


def cell_row(start: int, factor: int, slice_rows: int | None = None) -> int:
    """The first cell row of a block that starts at row ``start`` (aligned to ``factor``,
    or for a volume to ``factor`` slices)."""
    if slice_rows is None:
        return start // factor
    return start // (slice_rows * factor) * -(-slice_rows // factor)


class CellGrid(dict):
    """One image's cell grids by name (label, pred, s, ...), and for a volume the number of
    cell rows per slab of its tall grid (``slice_rows``, None for a 2-D image)."""

    def __init__(self, *args, slice_rows: int | None = None, **grids):
        super().__init__(*args, **grids)
        self.slice_rows = slice_rows


def pool(probs: np.ndarray, labels: np.ndarray, decoding: Decoding, factor: int, *,
         pixel_dtype=np.int32, slice_rows: int | None = None) -> Cells:
    """Pool a block of rows of stored values [class, row, column] to cells.

    The block must start at a row that is a multiple of ``factor``; its height must be a
    multiple of ``factor`` unless it ends the image. ``pixel_dtype``: integer dtype of the
    full-resolution argmax (it must hold K - 1), or None not to return it. For a volume,
    ``slice_rows`` (Y): the block holds whole slices, a multiple of ``factor`` of them
    unless it ends the volume, and is pooled in F×F×F cells (see :func:`grid_shape`).
    """
    rows, width = labels.shape
    cells = _empty_cells(rows, width, factor, pixel_dtype, slice_rows)
    pixel_pred = np.empty((0, 0), np.int32) if cells.pixel_pred is None else cells.pixel_pred
    _pool_rows(probs, decoding.lut, decoding.mode, labels, decoding.ignore, decoding.logits, factor,
               max(1, rows) if slice_rows is None else slice_rows, cells.label, cells.pred, cells.s, cells.p_pred, cells.mismatched, pixel_pred)
    return cells


def _empty_cells(rows: int, width: int, factor: int, pixel_dtype, slice_rows: int | None) -> Cells:
    """The cells of a block of ``rows`` x ``width`` pixels, to be filled (as ``pool`` returns them)."""
    shape = grid_shape(rows, width, factor, slice_rows)
    return Cells(
        label=np.empty(shape, np.int32),
        pred=np.empty(shape, np.int32),
        s=np.empty(shape),
        p_pred=np.empty(shape),
        mismatched=np.empty(shape, np.int32),
        pixel_pred=None if pixel_dtype is None else np.empty((rows, width), pixel_dtype),
    )


#: The most memory the kernel's walk may hold in open cell rows (sums and votes); a block
#: that would need more is pooled in a walk of its own, one cell row at a time.
OPEN_CELLS_LIMIT = 16 * 2**20


def open_cell_bytes(rows: int, width: int, n_classes: int, factor: int, slice_rows: int | None = None) -> int:
    """Bytes of the cell rows that pooling a block in the kernel's walk keeps open at once.

    One cell row (K sums and K votes per cell), but in a slab of several slices at F > 1
    every cell row of the slab: they fill slice by slice (a 512×512 slice, K = 118, F = 2
    would hold 124 MB, as much as the float16 block).
    """
    cells_per_row = -(-width // factor)
    open_rows = 1
    if slice_rows is not None and factor > 1 and rows > slice_rows:
        open_rows = -(-slice_rows // factor)
    return open_rows * n_classes * cells_per_row * 16


def accumulate_and_pool(stats: ImageStats, probs: np.ndarray, labels: np.ndarray, config: KernelConfig,
                        factor: int, *, row_offset: int = 0, s_out: np.ndarray | None = None,
                        pixel_dtype=np.int32, slice_rows: int | None = None) -> Cells:
    """Fold a block into ``stats`` and pool it to cells, in one walk over the block.

    The same as :func:`segaudit.core.kernel.accumulate` followed by :func:`pool`, bit for
    bit (every accumulator, every cell and the per-pixel argmax), but stored probabilities
    are decoded and their argmax found once per row for both: the cells' sums are added as
    the kernel decodes each class's row. Logits take the two separate walks, and so does a
    slab of a volume whose open cell rows would take more than :data:`OPEN_CELLS_LIMIT`
    (see :func:`open_cell_bytes`).

    Parameters
    ----------
    stats : ImageStats
        The image's accumulators, updated in place.
    probs, labels : np.ndarray
        As for ``accumulate``; the block as ``pool`` requires it (its first row a multiple
        of ``factor``, its height too unless it ends the image; for a volume, whole slices).
    config : KernelConfig
    factor : int
        The cell size F (>= 1).
    row_offset : int
        Row of the block's first row in the image, for error messages.
    s_out : np.ndarray, optional
        As for ``accumulate``.
    pixel_dtype : numpy dtype or None
        As for ``pool``: the dtype of the per-pixel argmax returned, or None for none.
    slice_rows : int, optional
        As for ``pool``: a volume's slice height.

    Returns
    -------
    Cells
        The block's cells, as :func:`pool` returns them.

    Raises
    ------
    BadProbabilities
        As ``accumulate`` (the cells are then incomplete).
    """
    rows, width = labels.shape
    if config.decoding.logits or open_cell_bytes(rows, width, probs.shape[0], factor, slice_rows) > OPEN_CELLS_LIMIT:
        accumulate(stats, probs, labels, config, row_offset=row_offset, s_out=s_out)
        return pool(probs, labels, config.decoding, factor, pixel_dtype=pixel_dtype, slice_rows=slice_rows)
    cells = _empty_cells(rows, width, factor, pixel_dtype, slice_rows)
    accumulate(stats, probs, labels, config, row_offset=row_offset, s_out=s_out, pred_out=cells.pixel_pred,
               cells=cells, factor=factor, slice_rows=slice_rows)
    return cells
