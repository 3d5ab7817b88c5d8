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

from .kernel import BOTH, LABEL, PRED, Decoding, _decode, _exp_weights, _tccp_bin, TCCP_THRESHOLDS


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


#: A patched sum is trusted when its rounding error bound is at most this share of the
#: result (a copy's softmin to ~1e-9 relative; its candidates are only ranked).
PATCH_TOLERANCE = 1e-9
#: Rounding error of the kernel's own sums and of the subtraction, in units of the
#: magnitudes involved (generous: the kernel's sums are reassociated in vector lanes).
_ROUNDING = 64 * np.finfo(np.float64).eps


@njit(cache=True, nogil=True)
def _add_compensated(total, compensation, value):
    """Neumaier's compensated addition: the error of a sum of n terms stays ~2 eps of
    their magnitude instead of growing with n."""
    t = total + value
    if abs(total) >= abs(value):
        compensation += (total - t) + value
    else:
        compensation += (value - t) + total
    return t, compensation


#: Terms summed plainly (in vector lanes) before their sum joins the compensated total.
_CHUNK = 32


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _chunk_sums(s, mantissas, scales, start, stop):
    """Σ w and Σ s·w over [start, stop) of w = mantissas * scales: a few terms, reassociated
    into vector lanes (an error of at most about _CHUNK eps of their sum)."""
    w_sum, v_sum = 0.0, 0.0
    for i in range(start, stop):
        w = mantissas[i] * scales[i]
        w_sum += w
        v_sum += s[i] * w
    return w_sum, v_sum


@njit(cache=True, nogil=True)
def _compensated_sums(s, mantissas, scales):
    """Σ w and Σ s·w of the weights w = mantissas * scales: chunks of _CHUNK terms summed
    in vector lanes, the chunks' sums added with Neumaier's compensation (so the error does
    not grow with the number of terms)."""
    w_sum, w_c, v_sum, v_c = 0.0, 0.0, 0.0, 0.0
    n = s.shape[0]
    for start in range(0, n, _CHUNK):
        w, v = _chunk_sums(s, mantissas, scales, start, min(n, start + _CHUNK))
        w_sum, w_c = _add_compensated(w_sum, w_c, w)
        v_sum, v_c = _add_compensated(v_sum, v_c, v)
    return w_sum + w_c, v_sum + v_c


@njit(cache=True, nogil=True)
def _scored(s):
    """The values of ``s`` that are not NaN, in order."""
    out = np.empty(s.shape[0])
    n = 0
    for i in range(s.shape[0]):
        out[n] = s[i]
        n += s[i] == s[i]
    return out[:n]


@njit(cache=True, nogil=True)
def _patched_softmin_sums(soft, sum_s, taus, s_old, s_new, out_soft, tolerance, rounding):
    """The image's softmin sums (soft: shift, weights, s * weights per temperature) and sum
    of s with the pixels whose s goes from s_old[i] to s_new[i] (NaN: not scored) taken off
    and put back; returns the new sum of s and whether every patched sum is within
    ``tolerance`` (an error bound, relative to the result)."""
    old = _scored(s_old)
    new = _scored(s_new)
    old_sum, old_c, new_sum, new_c, magnitude = 0.0, 0.0, 0.0, 0.0, abs(sum_s)
    for i in range(old.shape[0]):
        old_sum, old_c = _add_compensated(old_sum, old_c, old[i])
        magnitude += abs(old[i])
    for i in range(new.shape[0]):
        new_sum, new_c = _add_compensated(new_sum, new_c, new[i])
        magnitude += abs(new[i])
    old_sum += old_c
    new_sum += new_c
    patched_sum = (sum_s - old_sum) + new_sum
    trusted = rounding * magnitude <= tolerance * abs(patched_sum) or magnitude == 0.0
    size = max(old.shape[0], new.shape[0])
    mantissas = np.empty(size)
    exponents = np.empty(size, np.int64)
    scales = exponents.view(np.float64)
    lowest_new = np.inf
    for i in range(new.shape[0]):  # a loop, not new.min(): that would load numba.np.arraymath (and scipy) with the cached kernel
        lowest_new = min(lowest_new, new[i])
    for j in range(taus.shape[0]):
        tau = taus[j]
        shift = soft[j, 0]
        top = max(shift, (1.0 - lowest_new) / tau) if new.shape[0] else shift
        if top == -np.inf:  # nothing scored, before or after
            out_soft[j, 0], out_soft[j, 1], out_soft[j, 2] = -np.inf, 0.0, 0.0
            continue
        scale = 0.0 if shift == -np.inf else np.exp(shift - top)
        base_w, base_v = soft[j, 1] * scale, soft[j, 2] * scale
        n = old.shape[0]
        _exp_weights(old, tau, top, mantissas[:n], exponents[:n])  # the kernel's exp, vectorised
        rw, rv = _compensated_sums(old, mantissas[:n], scales[:n])
        n = new.shape[0]
        _exp_weights(new, tau, top, mantissas[:n], exponents[:n])
        aw, av = _compensated_sums(new, mantissas[:n], scales[:n])
        weights = (base_w - rw) + aw
        weighted = (base_v - rv) + av
        out_soft[j, 0], out_soft[j, 1], out_soft[j, 2] = top, weights, weighted
        # The subtraction cancels what the changed pixels held: trusted while the error of
        # the terms (bounded by their magnitudes) stays small against what is left.
        error = rounding * (base_w + rw + aw + abs(base_v) + abs(rv) + abs(av))
        if not (weights > 0.0 and error <= tolerance * weights):
            trusted = False
    return patched_sum, trusted


def patch_softmin_sums(image, s_old: np.ndarray, s_new: np.ndarray, out) -> bool:
    """Set ``out``'s softmin sums and sum of s to ``image``'s with the changed pixels' s
    replaced (``s_old`` → ``s_new``, NaN where not scored), without a pass over the image.

    The sums are the image's minus what the changed pixels held plus what they hold now,
    at ``image``'s shift raised where a new s needs it; equal to summing the patched
    pixels afresh up to rounding, which is bounded: returns False when the bound is not
    within PATCH_TOLERANCE of a result (the changed pixels held almost all of an image's
    weight at a cold temperature, and the copy's are much smaller), and the caller then
    sums the copy's pixels afresh.

    Parameters
    ----------
    image, out : ImageStats
        The image's accumulators, complete, and the copy's (same temperatures); only
        ``out.soft`` and ``out.sums[0]`` are written.
    s_old, s_new : np.ndarray
        float64, the changed pixels' s under the image's labels and under the copy's.
    """
    if not np.array_equal(image.temperatures, out.temperatures):
        raise ValueError("the image's and the copy's accumulators sum at different temperatures")
    out.sums[0], trusted = _patched_softmin_sums(image.soft, float(image.sums[0]), image.temperatures,
                                                 np.ascontiguousarray(s_old, dtype=np.float64),
                                                 np.ascontiguousarray(s_new, dtype=np.float64), out.soft,
                                                 PATCH_TOLERANCE, _ROUNDING)
    return bool(trusted)
