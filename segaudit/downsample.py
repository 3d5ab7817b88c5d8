"""Downsampling to the F×F cell grid that clc and coco work on.

A cell pools the non-ignored pixels of its F×F block (edge cells pool what they have):
probabilities are mean-pooled and renormalised, the label is the majority vote (ties go to
the lowest class; label values are never averaged). A cell with no scored pixel is
ignored (label -1). At F = 1 a cell is its pixel, unchanged.

The pooling kernel emits per cell only what the dataset-wide methods need: the label, the
argmax of the pooled probabilities, s = pooled p[label] and pooled p[argmax]; and per
pixel the full-resolution argmax, for re-checking flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .kernel import KernelConfig, _decode


@njit(cache=True, nogil=True)
def _pool_rows(probs, lut, labels, ignore, logits, factor,
               cell_label, cell_pred, cell_s, cell_ppred, pixel_pred):
    """Pool a block of rows (whose count is a multiple of ``factor``, but for the last).

    probs is [class, row, column]; outputs are (cell rows, cell columns) and, for
    pixel_pred, (rows, columns).
    """
    n_classes, n_rows, width = probs.shape
    n_cell_rows, n_cell_cols = cell_label.shape
    sums = np.zeros((n_cell_cols, n_classes))
    votes = np.zeros((n_cell_cols, n_classes), np.int64)
    counts = np.zeros(n_cell_cols, np.int64)
    values = np.empty(n_classes)
    for gi in range(n_cell_rows):
        sums[:] = 0.0
        votes[:] = 0
        counts[:] = 0
        for r in range(gi * factor, min((gi + 1) * factor, n_rows)):
            for c in range(width):
                best = -np.inf
                best_k = 0
                for k in range(n_classes):
                    v = _decode(probs[k, r, c], lut)
                    values[k] = v
                    if v > best:
                        best = v
                        best_k = k
                pixel_pred[r, c] = best_k
                label = labels[r, c]
                if label < 0 or label >= n_classes or ignore[label]:
                    continue
                if logits:
                    total = 0.0
                    for k in range(n_classes):
                        values[k] = np.exp(values[k] - best)
                        total += values[k]
                    for k in range(n_classes):
                        values[k] /= total
                gj = c // factor
                for k in range(n_classes):
                    sums[gj, k] += values[k]
                votes[gj, label] += 1
                counts[gj] += 1
        for gj in range(n_cell_cols):
            if counts[gj] == 0:
                cell_label[gi, gj] = -1
                cell_pred[gi, gj] = -1
                cell_s[gi, gj] = np.nan
                cell_ppred[gi, gj] = np.nan
                continue
            label = 0
            pred = 0
            total = 0.0
            for k in range(n_classes):
                if votes[gj, k] > votes[gj, label]:
                    label = k
                if sums[gj, k] > sums[gj, pred]:
                    pred = k
                total += sums[gj, k]
            # At F = 1 the pixel's own values, untouched (cleanlab parity); else renormalised.
            scale = 1.0 if factor == 1 else total
            cell_label[gi, gj] = label
            cell_pred[gi, gj] = pred
            cell_s[gi, gj] = sums[gj, label] / scale
            cell_ppred[gi, gj] = sums[gj, pred] / scale


@dataclass
class Cells:
    """Per-cell data of some rows of the grid (label -1 = ignored cell)."""

    label: np.ndarray  # int32
    pred: np.ndarray  # int32, argmax of the pooled probabilities
    s: np.ndarray  # float64, pooled p[label]
    p_pred: np.ndarray  # float64, pooled p[pred]
    pixel_pred: np.ndarray  # int32 (rows, columns): full-resolution argmax


def grid_shape(height: int, width: int, factor: int) -> tuple[int, int]:
    return -(-height // factor), -(-width // factor)


def pool(probs: np.ndarray, labels: np.ndarray, config: KernelConfig, factor: int) -> Cells:
    """Pool a block of rows of stored values [class, row, column] to cells.

    The block must start at a row that is a multiple of ``factor``; its height must be a
    multiple of ``factor`` unless it ends the image.
    """
    rows, width = labels.shape
    cell_rows, cell_cols = grid_shape(rows, width, factor)
    cells = Cells(
        label=np.empty((cell_rows, cell_cols), np.int32),
        pred=np.empty((cell_rows, cell_cols), np.int32),
        s=np.empty((cell_rows, cell_cols)),
        p_pred=np.empty((cell_rows, cell_cols)),
        pixel_pred=np.empty((rows, width), np.int32),
    )
    _pool_rows(probs, config.lut, labels, config.ignore, config.logits, factor,
               cells.label, cells.pred, cells.s, cells.p_pred, cells.pixel_pred)
    return cells
