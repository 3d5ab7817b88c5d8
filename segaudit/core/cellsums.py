"""The cells' arithmetic, shared by the pooling and the kernel that pools in its own pass.

A cell's sums of probabilities (per class, added row by row, columns ascending), its label
votes and mismatched pixels, and the cell values finished from them. One definition, so that
:func:`segaudit.core.pooling.pool` and the kernel's fused pooling
(:func:`segaudit.core.pooling.accumulate_and_pool`) give the same bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# error_model="numpy": no zero check on divisions, which would stop vectorisation.
_kernel = njit(cache=True, nogil=True, error_model="numpy")


@_kernel
def _add_to_cells(values, factor, sums):
    """sums[cell] += the row's values, columns ascending within each cell.

    Ignored pixels hold +0.0, which leaves a sum unchanged (a sum that starts at +0.0 is
    never -0.0), so adding it is bit-identical to skipping the pixel. Common factors get
    a constant stride, which vectorises.
    """
    width = values.shape[0]
    full = width // factor
    if factor == 1:
        for g in range(width):
            sums[g] += values[g]
    elif factor == 2:
        for g in range(full):
            sums[g] += values[2 * g]
            sums[g] += values[2 * g + 1]
    elif factor == 4:
        for g in range(full):
            sums[g] += values[4 * g]
            sums[g] += values[4 * g + 1]
            sums[g] += values[4 * g + 2]
            sums[g] += values[4 * g + 3]
    else:
        for g in range(full):
            for j in range(factor):
                sums[g] += values[g * factor + j]
    for c in range(full * factor, width):  # the edge cell
        sums[full] += values[c]


@_kernel
def _tally_row(lab, valid, best_k, factor, votes, mismatched):
    """Per cell: label votes, and scored pixels whose own argmax is not their label."""
    for c in range(lab.shape[0]):
        if valid[c]:
            g = c // factor
            votes[lab[c], g] += 1
            mismatched[g] += best_k[c] != lab[c]


@_kernel
def _finish_cells(gi, factor, sums, votes, mismatched, cell_label, cell_pred, cell_s, cell_ppred,
                  cell_mismatched):
    """Row gi of the cells from their sums[class, cell] and votes[class, cell].

    Class-major, as a per-cell loop over the classes would: the first maximum wins both
    argmaxes (so vote ties go to the lowest class), and the total adds classes in order.
    """
    n_classes, n_cols = sums.shape
    label = np.zeros(n_cols, np.int64)
    pred = np.zeros(n_cols, np.int64)
    top_votes = votes[0].copy()
    count = votes[0].copy()
    top_sum = sums[0].copy()
    total = sums[0].copy()  # 0.0 + sums[0], exactly
    for k in range(1, n_classes):
        for g in range(n_cols):
            v = votes[k, g]
            more = v > top_votes[g]
            label[g] = k if more else label[g]
            top_votes[g] = v if more else top_votes[g]
            count[g] += v
            x = sums[k, g]
            greater = x > top_sum[g]
            pred[g] = k if greater else pred[g]
            top_sum[g] = x if greater else top_sum[g]
            total[g] += x
    for g in range(n_cols):
        cell_mismatched[gi, g] = mismatched[g]
        if count[g] == 0:
            cell_label[gi, g] = -1
            cell_pred[gi, g] = -1
            cell_s[gi, g] = np.nan
            cell_ppred[gi, g] = np.nan
            continue
        # At F = 1 the pixel's own values, untouched (cleanlab parity); else renormalised.
        scale = 1.0 if factor == 1 else total[g]
        cell_label[gi, g] = label[g]
        cell_pred[gi, g] = pred[g]
        cell_s[gi, g] = sums[label[g], g] / scale
        cell_ppred[gi, g] = top_sum[g] / scale
