"""A label map that differs from an image's mask on a few pixels, scored from what the mask's
pass already computed.

auto's planted copies are such label maps. Everything of a block that depends only on the
prediction (validation, the argmax, the cells' pooled probabilities) is the mask's; these
kernels compute only what the changed labels change: at each changed pixel the new s and
the integer tallies' changes (:func:`tally_changes`), and the cells holding a changed
pixel, pooled again exactly as :func:`segaudit.core.pooling.pool` pools them
(:func:`pool_changed_cells`). Stored probabilities only (logits take the full path).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .kernel import BOTH, LABEL, PRED, Decoding, _decode, _tccp_bin, TCCP_THRESHOLDS


@njit(cache=True, nogil=True)
def _tally_changes(probs, lut, ignore, rows, cols, old, new, s_old, pixel_threshold, want_tccp, thresholds,
                   s_new, totals, class_counts, low_confusion, tccp_hist):
    """At each changed pixel (rows[i], cols[i]) of the block: take the old label's tallies
    off and add the new label's, and write the new label's s to s_new[i] (NaN when not
    scored). The argmax is the first maximum of the decoded values, as the kernel's."""
    n_classes = probs.shape[0]
    for i in range(rows.shape[0]):
        r, c = rows[i], cols[i]
        top = -np.inf
        pred = 0
        for k in range(n_classes):
            v = _decode(probs[k, r, c], lut)
            if v > top:
                top = v
                pred = k
        for side in range(2):
            label = old[i] if side == 0 else new[i]
            if not (label >= 0 and label < n_classes and not ignore[label]):
                if side == 1:
                    s_new[i] = np.nan
                continue
            step = -1 if side == 0 else 1
            s = s_old[i] if side == 0 else _decode(probs[label, r, c], lut)
            if side == 1:
                s_new[i] = s
            totals[0] += step
            class_counts[LABEL, label] += step
            class_counts[PRED, pred] += step
            if pred == label:
                totals[1] += step
                class_counts[BOTH, label] += step
            if s < pixel_threshold:
                totals[2] += step
                low_confusion[label, pred] += step
            if want_tccp:
                tccp_hist[1, label, _tccp_bin(s, thresholds)] += step
                valid_old = old[i] >= 0 and old[i] < n_classes and not ignore[old[i]]
                valid_new = new[i] >= 0 and new[i] < n_classes and not ignore[new[i]]
                if valid_old != valid_new:  # every class's histogram counts scored pixels only
                    for k in range(n_classes):
                        tccp_hist[0, k, _tccp_bin(_decode(probs[k, r, c], lut), thresholds)] += step


def tally_changes(probs: np.ndarray, decoding: Decoding, rows: np.ndarray, cols: np.ndarray, old: np.ndarray,
                  new: np.ndarray, s_old: np.ndarray, pixel_threshold: float, want_tccp: bool, deltas) -> np.ndarray:
    """Add to ``deltas`` (an ImageStats of counts) what changing the labels at the block's pixels
    (rows, cols) from ``old`` to ``new`` changes in the integer accumulators; return the new
    labels' s there (NaN where not scored).

    ``probs`` is the block's stored values [class, row, column]; ``s_old`` the kernel's s
    at those pixels under the old labels.
    """
    s_new = np.empty(rows.shape[0])
    _tally_changes(probs, decoding.lut, decoding.ignore, rows, cols, old, new, s_old, pixel_threshold, want_tccp,
                   TCCP_THRESHOLDS, s_new, deltas.totals, deltas.class_counts, deltas.low_confusion,
                   deltas.tccp_hist)
    return s_new


@njit(cache=True, nogil=True)
def _pool_cells(probs, lut, ignore, labels, factor, slice_rows, cell_rows, cell_cols,
                cell_label, cell_pred, cell_s, cell_ppred, cell_mismatched):
    """Pool the block's cells (cell_rows[i], cell_cols[i]) from ``labels``, each as
    ``pooling._pool_rows`` does: its pixels slice by slice, row by row, columns ascending;
    classes summed in order; first maxima."""
    n_classes, n_rows, width = probs.shape
    n_slices = n_rows // slice_rows
    per_slab = -(-slice_rows // factor)
    sums = np.empty(n_classes)
    votes = np.empty(n_classes, np.int64)
    for i in range(cell_rows.shape[0]):
        gi, gx = cell_rows[i], cell_cols[i]
        sums[:] = 0.0
        votes[:] = 0
        mismatched = 0
        gz, gy = gi // per_slab, gi % per_slab
        for z in range(gz * factor, min((gz + 1) * factor, n_slices)):
            top_row = z * slice_rows
            for r in range(top_row + gy * factor, top_row + min((gy + 1) * factor, slice_rows)):
                for c in range(gx * factor, min((gx + 1) * factor, width)):
                    label = labels[r, c]
                    ok = label >= 0 and label < n_classes and not ignore[label]
                    best = -np.inf
                    best_k = 0
                    for k in range(n_classes):
                        v = _decode(probs[k, r, c], lut)
                        if v > best:
                            best = v
                            best_k = k
                        if ok:
                            sums[k] += v
                    if ok:
                        votes[label] += 1
                        mismatched += best_k != label
        label_k = 0
        pred_k = 0
        top_votes = votes[0]
        count = votes[0]
        top_sum = sums[0]
        total = sums[0]
        for k in range(1, n_classes):
            v = votes[k]
            if v > top_votes:
                label_k = k
                top_votes = v
            count += v
            x = sums[k]
            if x > top_sum:
                pred_k = k
                top_sum = x
            total += x
        cell_mismatched[i] = mismatched
        if count == 0:
            cell_label[i] = -1
            cell_pred[i] = -1
            cell_s[i] = np.nan
            cell_ppred[i] = np.nan
            continue
        scale = 1.0 if factor == 1 else total
        cell_label[i] = label_k
        cell_pred[i] = pred_k
        cell_s[i] = sums[label_k] / scale
        cell_ppred[i] = top_sum / scale


def pool_changed_cells(probs: np.ndarray, labels: np.ndarray, decoding: Decoding, factor: int,
                       slice_rows: int | None, cell_rows: np.ndarray, cell_cols: np.ndarray) -> dict[str, np.ndarray]:
    """The cells (cell_rows[i], cell_cols[i]) of a block (cell rows counted from the block's
    first), pooled from ``labels`` (the block's rows): bit for bit what ``pool`` gives them.

    Returns the cells' label, pred, s, p_pred and mismatched, by name.
    """
    n = cell_rows.shape[0]
    out = {"label": np.empty(n, np.int32), "pred": np.empty(n, np.int32), "s": np.empty(n),
           "p_pred": np.empty(n), "mismatched": np.empty(n, np.int32)}
    _pool_cells(probs, decoding.lut, decoding.ignore, labels, factor,
                max(1, labels.shape[0]) if slice_rows is None else slice_rows,
                cell_rows.astype(np.int64), cell_cols.astype(np.int64), out["label"], out["pred"], out["s"],
                out["p_pred"], out["mismatched"])
    return out
