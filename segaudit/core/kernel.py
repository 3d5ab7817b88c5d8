"""The fused per-block scoring kernel and the per-image accumulators it fills.

One pass over a block of rows of one image computes everything every per-image method
needs: the label likelihood s = p[label] of each scored pixel, the argmax prediction,
per-class counts, softmin sums at each temperature the image asks for (with an online
max-shift, exact for any temperature), the low-quality pixel tallies and, when asked for,
the per-class threshold histograms of thresholded CCP. The kernel knows no method names:
the engine turns the methods' needs into a :class:`KernelConfig` and the temperatures of
each image's :class:`ImageStats`. Only these small accumulators outlive a block, so memory does not grow
with the image count. When a method needs the F×F cells, the same walk pools them
(:func:`segaudit.core.pooling.accumulate_and_pool`), so the block is decoded once.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np
from numba import njit, types
from numba.extending import overload

from ..errors import option_error
from .cellsums import _add_to_cells, _finish_cells, _tally_row


# Thresholds of thresholded CCP: 0.05, 0.10, ..., 0.95 (the nearest float64 to each).
TCCP_THRESHOLDS = np.round(np.arange(1, 20) * 0.05, 2)
N_TCCP_BINS = len(TCCP_THRESHOLDS) + 1

# Rows of ImageStats.class_counts.
LABEL, PRED, BOTH = range(3)

#: ImageStats keeps a K x K count of the low pixels' (annotated, predicted) classes
#: (32 MB at the limit).
MAX_CLASSES = 2048

#: Up to this many classes, the kernel tallies (label, argmax) pairs per block (the common case).
PAIR_CLASSES = 64

# Error codes the kernel returns for the first bad scored pixel of a block.
OK, NOT_FINITE, NEGATIVE, BAD_SUM = range(4)


def _decode(raw, lut):
    """Turn one stored value into a float64 probability (or logit)."""


@overload(_decode, inline="always")
def _decode_impl(raw, lut):
    # Integer storage (uint8/uint16 quantised probabilities, float16 viewed as uint16) goes
    # through a small lookup table: exact, and far faster than converting a whole block.
    if isinstance(raw, types.Integer):
        return lambda raw, lut: lut[raw]
    return lambda raw, lut: np.float64(raw)


@njit(cache=True, nogil=True, inline="always")
def _tccp_bin(p, thresholds):
    """Number of thresholds strictly below p, i.e. the t with p > thresholds[:t] only."""
    n = thresholds.shape[0]
    b = int(p * (n + 1))
    if b < 0:
        b = 0
    elif b > n:
        b = n
    while b > 0 and not p > thresholds[b - 1]:
        b -= 1
    while b < n and p > thresholds[b]:
        b += 1
    return b


# How the kernel reads stored probabilities fast (the lookup table stays exact for s).
FLOAT, HALF, QUANTISED = range(3)
_HALF_SCALE = np.float32(2.0**112)  # float16 bits << 13, read as float32, times 2^112


@njit(cache=True, nogil=True, inline="always")
def _scan_probabilities(probs, r, lut, mode, scale, lab, key, s_key, best_k, s, total, bits,
                        pooling, valid, factor, values, cell_sums):
    """Argmax, s and the row sums of stored probabilities, for one row; True if suspicious.

    The argmax compares stored values directly (uint8/uint16, and float16 bit patterns,
    order like their values when non-negative); sums use float16 decoded by bit
    manipulation. All loops are branch-free selects, so they vectorise. A suspicious row
    (a negative or non-finite value, or float16's -0.0) is settled on the exact path.

    With ``pooling``, each class's decoded values of the scored pixels (0.0 elsewhere) are
    also added to ``cell_sums[class, cell]`` while the class's row is at hand, exactly as
    the pooling adds them. They are the pooling's values for every row that does not fail
    validation: a scored pixel holds a finite value >= 0 (float16's -0.0 decodes to +0.0
    here, -0.0 there: the same sum, as a sum starting at +0.0 is never -0.0).
    """
    n_classes, _, width = probs.shape
    f32 = bits.view(np.float32)
    suspicious = False
    largest = 0
    for k in range(n_classes):
        row = probs[k, r]
        if k == 0:
            for c in range(width):
                key[c] = row[c]
                best_k[c] = 0
                s_key[c] = row[c]
        else:
            k32 = np.int32(k)  # compared and stored at the width of best_k and lab
            for c in range(width):
                v = row[c]
                greater = v > key[c]
                key[c] = v if greater else key[c]
                best_k[c] = k32 if greater else best_k[c]
                s_key[c] = v if lab[c] == k32 else s_key[c]
        if mode == HALF:
            for c in range(width):
                h = np.uint32(row[c])
                largest = max(largest, h)
                bits[c] = (h & np.uint32(0x7FFF)) << np.uint32(13)
            if pooling:
                for c in range(width):
                    value = np.float64(f32[c] * _HALF_SCALE)
                    total[c] = value if k == 0 else total[c] + value
                    values[c] = value if valid[c] else 0.0
                _add_to_cells(values, factor, cell_sums[k])
            else:
                for c in range(width):
                    value = np.float64(f32[c] * _HALF_SCALE)
                    total[c] = value if k == 0 else total[c] + value
        elif pooling:
            for c in range(width):
                value = np.float64(row[c])
                total[c] = value if k == 0 else total[c] + value
                if mode == FLOAT:
                    suspicious |= value < 0.0
                values[c] = _decode(row[c], lut) if valid[c] else 0.0
            _add_to_cells(values, factor, cell_sums[k])
        else:
            for c in range(width):
                value = np.float64(row[c])
                total[c] = value if k == 0 else total[c] + value
                if mode == FLOAT:
                    suspicious |= value < 0.0
    if mode == HALF and largest > 0x7BFF:  # inf, nan, or a sign bit
        suspicious = True
    for c in range(width):
        s[c] = _decode(s_key[c], lut)
        if mode == QUANTISED:
            total[c] *= scale
    return suspicious


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 in two parts (fdlibm's): n * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_EXP_MIN = -708.0  # below it a weight is 0 (it would be subnormal; no float64 sum with a 1 in it moves)


@njit(cache=True, nogil=True)
def _exp_weights(s, tau, shift, mantissas, exponents):
    """exp((1 - s) / tau - shift) per pixel, as mantissas[c] * 2^(exponents[c] >> 52 - 1023).

    A branch-free exp (Cody-Waite reduction to |r| <= ln 2 / 2, then Taylor to r^13,
    relative error about 2e-16), so that the loop vectorises: Numba has no vector exp
    without SVML, and a scalar one per pixel cost more than the whole argmax scan. The
    exponent is returned as float64 bits, so that the product needs no ldexp.
    """
    for c in range(s.shape[0]):
        x = (1.0 - s[c]) / tau - shift
        under = x < _EXP_MIN
        x = _EXP_MIN if under else x
        n = np.floor(x * _LOG2E + 0.5)
        r = (x - n * _LN2_HI) - n * _LN2_LO
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        mantissas[c] = 0.0 if under else p
        exponents[c] = (np.int64(n) + 1023) << 52


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _weighted_sums(s, valid, mantissas, scales, weights, weighted):
    """Add the row's scored weights and s * weights to (weights, weighted) and return them.

    Reassociation lets the sums run in vector lanes; the order is fixed by the code and
    the row's width, so the result is the same on every run and thread.
    """
    for c in range(s.shape[0]):
        w = mantissas[c] * scales[c] if valid[c] else 0.0
        weights += w
        # An ignored pixel's s may be anything the store holds there (inf, NaN): 0 * inf is NaN.
        weighted += (s[c] if valid[c] else 0.0) * w
    return weights, weighted


@njit(cache=True, nogil=True, inline="always")
def _raise_shift(soft, j, top):
    """Raise the shift soft[j, 0] of softmin j to ``top`` if larger, rescaling its sums
    soft[j, 1] (weights) and soft[j, 2] (s * weights); return the shift."""
    if top > soft[j, 0]:
        rescale = np.exp(soft[j, 0] - top)
        soft[j, 1] *= rescale
        soft[j, 2] *= rescale
        soft[j, 0] = top
    return soft[j, 0]


@njit(cache=True, nogil=True, inline="always")
def _row_softmin_sums(s, valid, width, taus, soft, mantissas, exponents):
    """Add one row's softmin sums at each temperature, each shifted by its largest exponent
    so far: the row's weights in one vectorised loop, then summed into the accumulators.
    The one definition that the kernel and the replay from s (auto's copies) share, so
    their sums stay bit-identical."""
    row_min = np.inf
    for c in range(width):
        if valid[c] and s[c] < row_min:
            row_min = s[c]
    for j in range(taus.shape[0]):
        tau = taus[j]
        shift = _raise_shift(soft, j, (1.0 - row_min) / tau)
        _exp_weights(s, tau, shift, mantissas, exponents)
        soft[j, 1], soft[j, 2] = _weighted_sums(s, valid, mantissas, exponents.view(np.float64),
                                                soft[j, 1], soft[j, 2])


@njit(cache=True, nogil=True, inline="always")
def _close_cell_row(r, factor, slice_rows, n_slices, per_slab, cell_sums, votes, mismatched,
                    cell_label, cell_pred, cell_s, cell_ppred, cell_mismatched):
    """If row r is the last row of its cell row, finish that cell row and clear its buffer.

    The block is a slab of ``n_slices`` slices of ``slice_rows`` rows (a 2-D block: one
    slice of all its rows). Cell row gz * per_slab + gy pools rows gy*F .. gy*F + F - 1 of
    slices gz*F .. gz*F + F - 1 (``pooling._pool_rows``' layout), so it is complete at its
    last row of its last slice; in a slab of several slices (F > 1), the slab's cell rows
    fill side by side, one buffer each (buffer gy), else one buffer serves them in turn.
    """
    z = r // slice_rows
    y = r - z * slice_rows
    gz = z // factor
    gy = y // factor
    if z == min((gz + 1) * factor, n_slices) - 1 and y == min((gy + 1) * factor, slice_rows) - 1:
        b = gy if cell_sums.shape[0] > 1 else 0
        _finish_cells(gz * per_slab + gy, factor, cell_sums[b], votes[b], mismatched[b],
                      cell_label, cell_pred, cell_s, cell_ppred, cell_mismatched)
        cell_sums[b] = 0.0
        votes[b] = 0
        mismatched[b] = 0


@njit(cache=True, nogil=True)
def _accumulate_rows(
    probs, lut, mode, scale, labels, ignore, logits, taus, pixel_threshold, want_tccp, sum_tol,
    thresholds, tccp_keys, totals, sums, soft, class_counts, low_confusion, tccp_hist, s_out, pred_out, err,
    factor, slice_rows, cell_label, cell_pred, cell_s, cell_ppred, cell_mismatched,
):
    """Fold one block of rows into an image's accumulators.

    probs is indexed [class, row, column]; labels is int32 [row, column]; soft[j] holds
    the softmin sums at temperature taus[j]. Returns OK or the code of the first bad
    scored pixel, with err = (row, column, value).

    With ``factor`` > 0 (stored probabilities only), the block is also pooled to F×F cells
    in the same walk, as ``pooling._pool_rows`` pools it (``slice_rows``: the block's slice
    height, its row count for a 2-D block): cell_* receive the cells, pred_out (if given)
    the pooling's per-pixel argmax. The cell sums are added as each class's row is decoded
    for the argmax, and the votes and mismatched pixels are tallied from the row's argmax.
    """
    n_classes, n_rows, width = probs.shape
    write_s = s_out.shape[0] > 0
    write_pred = pred_out.shape[0] > 0
    pooling = factor > 0
    n_slices = 1
    per_slab = 1
    n_buffers = 1
    n_cols = 0
    if pooling:
        n_slices = n_rows // slice_rows
        per_slab = -(-slice_rows // factor)
        n_buffers = per_slab if n_slices > 1 and factor > 1 else 1  # cell rows open at once
        n_cols = cell_label.shape[1]
    cell_sums = np.zeros((n_buffers, n_classes, n_cols))  # per buffered cell row: [class, cell]
    votes = np.zeros((n_buffers, n_classes, n_cols), np.int64)
    mismatched = np.zeros((n_buffers, n_cols), np.int64)
    values = np.empty(width if pooling else 0)
    buf = 0
    best = np.empty(width)
    # 32-bit class indices: the scan's selects then run as wide as the stored values.
    best_k = np.empty(width, np.int32)
    s = np.empty(width)
    total = np.empty(width)
    lab = np.empty(width, np.int32)
    valid = np.empty(width, np.bool_)
    key = np.empty(width, probs.dtype)
    s_key = np.empty(width, probs.dtype)
    key_masked = np.empty(width if want_tccp else 0, probs.dtype)  # tccp's copy of a class's row
    s_bins = np.empty(width if want_tccp else 0, np.int32)  # tccp's bin of each pixel's s
    bits = np.empty(width, np.uint32)
    mantissas = np.empty(width)  # per pixel, a softmin weight as mantissa * 2^exponent
    exponents = np.empty(width, np.int64)
    # Up to PAIR_CLASSES classes, the per-pixel tallies go to one (label, argmax) count and
    # one of the low pixels, folded into the accumulators once per block (no scatter into
    # three class-count rows per pixel).
    paired = n_classes <= PAIR_CLASSES
    n_pairs = n_classes * n_classes if paired else 0
    pairs = np.zeros(n_pairs, np.int64)
    low_pairs = np.zeros(n_pairs, np.int64)
    for r in range(n_rows):
        if pooling:
            if r > 0:
                _close_cell_row(r - 1, factor, slice_rows, n_slices, per_slab, cell_sums, votes, mismatched,
                                cell_label, cell_pred, cell_s, cell_ppred, cell_mismatched)
            buf = (r % slice_rows) // factor if n_buffers > 1 else 0
        n_valid = 0
        for c in range(width):
            label = labels[r, c]
            ok = label >= 0 and label < n_classes and not ignore[label]
            valid[c] = ok
            lab[c] = label
            n_valid += ok
        if logits:
            for c in range(width):
                best[c] = -np.inf
                best_k[c] = 0
                s[c] = 0.0
                total[c] = 0.0
        if write_s:
            for c in range(width):
                s_out[r, c] = np.nan
        if n_valid == 0 and not write_pred:
            continue

        # Pass over classes: argmax (ties keep the lowest class), s, and the row sums.
        suspicious = False
        if logits:
            for k in range(n_classes):
                for c in range(width):
                    v = _decode(probs[k, r, c], lut)
                    if v > best[c]:
                        best[c] = v
                        best_k[c] = k
                    if k == lab[c]:
                        s[c] = v
                    suspicious |= not abs(v) < np.inf
            for k in range(n_classes):
                for c in range(width):
                    total[c] += np.exp(_decode(probs[k, r, c], lut) - best[c])
            for c in range(width):
                s[c] = np.exp(s[c] - best[c]) / total[c]
        else:
            suspicious = _scan_probabilities(probs, r, lut, mode, scale, lab, key, s_key, best_k, s, total, bits,
                                             pooling, valid, factor, values, cell_sums[buf])
            for c in range(width):
                suspicious |= valid[c] and not abs(total[c] - 1.0) <= sum_tol
            if pooling and write_pred:
                # The pooling's argmax of a pixel holding NaN (an ignored one) skips the NaN;
                # the stored values' compare may not: the exact path settles such rows.
                for c in range(width):
                    suspicious |= not total[c] == total[c]

        if write_pred:
            for c in range(width):
                pred_out[r, c] = best_k[c]

        if suspicious:
            # Cold path: find the first scored pixel that is really bad (ignored pixels may
            # hold anything).
            for c in range(width):
                if not valid[c]:
                    continue
                for k in range(n_classes):
                    v = _decode(probs[k, r, c], lut)
                    code = OK
                    if v != v or abs(v) == np.inf:
                        code = NOT_FINITE
                    elif not logits and v < 0.0:
                        code = NEGATIVE
                    if code != OK:
                        err[0], err[1], err[2] = r, c, v
                        return code
                if not logits and not abs(total[c] - 1.0) <= sum_tol:
                    err[0], err[1], err[2] = r, c, total[c]
                    return BAD_SUM
            if not logits:
                # Only valid rows get here: redo the argmax on decoded values (float16's
                # -0.0 compares as a large bit pattern).
                for c in range(width):
                    top = -np.inf
                    if pooling:  # the pooling's argmax of a pixel with no value > -inf (ignored): 0
                        best_k[c] = 0
                    for k in range(n_classes):
                        v = _decode(probs[k, r, c], lut)
                        if v > top:
                            top = v
                            best_k[c] = k
                    best[c] = top
                if write_pred:
                    for c in range(width):
                        pred_out[r, c] = best_k[c]

        if pooling:
            if n_valid == 0:  # here only for its argmax (pred_out): it adds nothing
                continue
            _tally_row(lab, valid, best_k, factor, votes[buf], mismatched[buf])

        # Per-pixel tallies and the softmin sums, shifted by the largest exponent so far.
        _row_softmin_sums(s, valid, width, taus, soft, mantissas, exponents)
        sum_s = sums[0]  # summed in pixel order, in a register
        sum_confidence = sums[1]
        if paired:
            totals[0] += n_valid
            for c in range(width):
                if valid[c]:
                    sc = s[c]
                    sum_s += sc
                    pair = lab[c] * n_classes + best_k[c]
                    pairs[pair] += 1
                    low_pairs[pair] += sc < pixel_threshold
        else:
            for c in range(width):
                if not valid[c]:
                    continue
                sc = s[c]
                label = lab[c]
                pred = best_k[c]
                sum_s += sc
                totals[0] += 1
                class_counts[LABEL, label] += 1
                class_counts[PRED, pred] += 1
                if pred == label:
                    totals[1] += 1
                    class_counts[BOTH, label] += 1
                if sc < pixel_threshold:
                    totals[2] += 1
                    low_confusion[label, pred] += 1
        sums[0] = sum_s
        # p[argmax], the model's confidence, summed in pixel order; the row's case chosen once.
        if logits:
            for c in range(width):
                if valid[c]:
                    sum_confidence += 1.0 / total[c]
        elif suspicious:  # the argmax was redone on decoded values
            for c in range(width):
                if valid[c]:
                    sum_confidence += best[c]
        else:
            for c in range(width):
                if valid[c]:
                    sum_confidence += _decode(key[c], lut)
        sums[1] = sum_confidence
        if write_s:
            for c in range(width):
                if valid[c]:
                    s_out[r, c] = s[c]

        if want_tccp:
            if logits or suspicious:
                for k in range(n_classes):
                    for c in range(width):
                        if not valid[c]:
                            continue
                        p = _decode(probs[k, r, c], lut)
                        if logits:
                            p = np.exp(p - best[c]) / total[c]
                        b = _tccp_bin(p, thresholds)
                        tccp_hist[0, k, b] += 1
                        if lab[c] == k:
                            tccp_hist[1, k, b] += 1
            else:
                # Stored values compare like their probabilities: count, per class and
                # threshold, the scored pixels above it (vectorised), and bin s alone.
                _tccp_row(probs, r, tccp_keys, valid, n_valid, tccp_hist, key_masked)
                # s's bin: the keys its stored value is above, one vectorised pass per key
                for c in range(width):
                    s_bins[c] = 0
                for j in range(tccp_keys.shape[0]):
                    threshold_key = tccp_keys[j]
                    for c in range(width):
                        s_bins[c] += np.int32(s_key[c] > threshold_key)
                for c in range(width):
                    if valid[c]:
                        tccp_hist[1, lab[c], s_bins[c]] += 1
    if pooling and n_rows > 0:
        _close_cell_row(n_rows - 1, factor, slice_rows, n_slices, per_slab, cell_sums, votes, mismatched,
                        cell_label, cell_pred, cell_s, cell_ppred, cell_mismatched)
    if paired:
        _fold_pairs(pairs, low_pairs, n_classes, totals, class_counts, low_confusion)
    return OK


@njit(cache=True, nogil=True)
def _accumulate_scores(s_rows, taus, sums, soft):
    """The kernel's floating-point sums of the label, replayed from each pixel's s.

    For every row with a scored pixel (s not NaN): the softmin sums at each temperature and
    the sum of s, with the very operations of :func:`_accumulate_rows` in the same order, so
    the result is bit-identical to accumulating the labels that gave these s.
    """
    n_rows, width = s_rows.shape
    s = np.empty(width)
    valid = np.empty(width, np.bool_)
    mantissas = np.empty(width)
    exponents = np.empty(width, np.int64)
    for r in range(n_rows):
        n_valid = 0
        for c in range(width):
            v = s_rows[r, c]
            ok = v == v
            valid[c] = ok
            n_valid += ok
            s[c] = v if ok else 0.0  # weighted by 0.0, as the kernel's ignored pixels
        if n_valid == 0:
            continue
        _row_softmin_sums(s, valid, width, taus, soft, mantissas, exponents)
        sum_s = sums[0]
        for c in range(width):
            if valid[c]:
                sum_s += s[c]
        sums[0] = sum_s


def accumulate_scores(stats: "ImageStats", s_rows: np.ndarray) -> None:
    """Fold rows of per-pixel s (NaN where not scored) into ``stats``' softmin sums and sum
    of s, bit for bit as :func:`accumulate` would fold the labels that gave them.

    The other accumulators are left alone: they are integer counts, which a caller that
    knows what changed can add exactly in any order (the planted copies of auto do).

    Parameters
    ----------
    stats : ImageStats
        Updated in place (``soft`` and ``sums[0]`` only).
    s_rows : np.ndarray
        float64 (rows, columns), as ``accumulate``'s ``s_out`` gives it.
    """
    _accumulate_scores(np.ascontiguousarray(s_rows, dtype=np.float64), stats.temperatures, stats.sums, stats.soft)


@njit(cache=True, nogil=True)
def _tccp_row(probs, r, keys, valid, n_valid, tccp_hist, masked):
    """Thresholded CCP's histograms of every class for row r: the scored pixels whose value
    is above each threshold's key (the largest stored value whose probability is at or
    below it), differenced into bins.

    A row with unscored pixels is copied to ``masked`` once per class with those pixels
    set to 0, below every key, so that each threshold's count is one plain compare per
    value (the count with the validity mask in it ran 20 % slower)."""
    n_classes, _, width = probs.shape
    n_thresholds = keys.shape[0]
    zero = np.zeros(1, masked.dtype)[0]
    for k in range(n_classes):
        row = probs[k, r]
        if n_valid < width:
            for c in range(width):
                masked[c] = row[c] if valid[c] else zero
            row = masked
        below = n_valid
        for j in range(n_thresholds):
            key = keys[j]
            above = np.int32(0)  # 32-bit counts: the compare runs as wide as the stored values
            for c in range(width):
                above += np.int32(row[c] > key)
            tccp_hist[0, k, j] += below - above
            below = above
            if below == 0:  # none above this threshold, so none above the higher ones
                break
        tccp_hist[0, k, n_thresholds] += below


def tccp_keys(probs_dtype: np.dtype, decoding: "Decoding") -> np.ndarray:
    """Per TCCP threshold, the largest stored value (in ``probs_dtype``) whose probability
    is at or below it: a stored value v is above threshold t exactly when v > key."""
    return _tccp_keys(np.dtype(probs_dtype).str, decoding.mode)


@functools.lru_cache(maxsize=16)
def _tccp_keys(dtype: str, mode: int) -> np.ndarray:
    dtype = np.dtype(dtype)
    if mode == FLOAT:
        if dtype == np.float32:
            keys = TCCP_THRESHOLDS.astype(np.float32)
            return np.where(keys.astype(np.float64) > TCCP_THRESHOLDS, np.nextafter(keys, np.float32(-np.inf)), keys)
        return TCCP_THRESHOLDS.astype(dtype)
    if mode == HALF:  # float16 bits: non-negative finite values increase with their bits
        values = np.arange(0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    else:  # quantised: value / max
        values = np.arange(np.iinfo(dtype).max + 1) / np.iinfo(dtype).max
    return (np.searchsorted(values, TCCP_THRESHOLDS, side="right") - 1).astype(dtype)


@njit(cache=True, nogil=True)
def _fold_pairs(pairs, low_pairs, n_classes, totals, class_counts, low_confusion):
    """Add a block's (label, argmax) counts of all and of low pixels to the accumulators."""
    for a in range(n_classes):
        for b in range(n_classes):
            n = pairs[a * n_classes + b]
            low = low_pairs[a * n_classes + b]
            class_counts[LABEL, a] += n
            class_counts[PRED, b] += n
            low_confusion[a, b] += low
            totals[2] += low
        totals[1] += pairs[a * n_classes + a]
        class_counts[BOTH, a] += pairs[a * n_classes + a]


@dataclass(frozen=True)
class Decoding:
    """How a dataset's stored values become probabilities, and which labels are scored.

    Parameters
    ----------
    n_classes : int
        K, the number of classes in the predictions.
    lut : np.ndarray
        float64 lookup table for integer-stored values (index = stored value), or a
        1-element dummy for float storage.
    mode : int
        FLOAT (float32/float64), HALF (float16 passed as its uint16 bits) or QUANTISED
        (uint8/uint16 probabilities).
    scale : float
        For QUANTISED, the probability of one step (1/255 or 1/65535).
    ignore : np.ndarray
        bool array of length K; True marks a class index that is ignored. Label values
        >= K are always skipped (callers validate that they are ignore indices).
    logits : bool
        The stored values are logits: a per-pixel softmax is applied on the fly.
    sum_tol : float
        How far a pixel's probabilities may sum from 1 (depends on the storage dtype).
    """

    n_classes: int
    lut: np.ndarray
    mode: int
    scale: float
    ignore: np.ndarray
    logits: bool
    sum_tol: float


@dataclass(frozen=True)
class KernelConfig:
    """What stays fixed across every block of a run: the decoding and what to accumulate.

    Built by the engine from the methods' needs (:func:`segaudit.engine.kernel_config`).

    Parameters
    ----------
    decoding : Decoding
    pixel_threshold : float
        Pixels with s below it count as low-quality pixels.
    want_tccp : bool
        Fill the thresholded-CCP histograms (costs one more pass over the classes).
    """

    decoding: Decoding
    pixel_threshold: float = 0.5
    want_tccp: bool = False


class ImageStats:
    """Everything the per-image methods need about one image, filled block by block.

    ``temperatures``: the softmin temperatures to sum at (one exp per pixel each);
    :meth:`softmin` reads the result at one of them.
    """

    __slots__ = ("totals", "sums", "temperatures", "soft", "class_counts", "low_confusion", "tccp_hist",
                 "image_pixels")

    def __init__(self, n_classes: int, image_pixels: int = 0, temperatures=()):
        self.image_pixels = image_pixels  # H * W
        self.totals = np.zeros(3, np.int64)  # scored pixels, argmax == label, low pixels
        self.sums = np.zeros(2)  # sum of s, sum of p[argmax]
        self.temperatures = np.array(sorted(set(float(t) for t in temperatures)), np.float64)
        # Per temperature: softmin shift, weights, s * weights.
        self.soft = np.zeros((len(self.temperatures), 3))
        self.soft[:, 0] = -np.inf
        self.class_counts = np.zeros((3, n_classes), np.int64)  # LABEL, PRED, BOTH
        self.low_confusion = np.zeros((n_classes, n_classes), np.int64)  # [annotated, predicted]
        self.tccp_hist = np.zeros((2, n_classes, N_TCCP_BINS), np.int64)

    @property
    def pixels(self) -> int:
        return int(self.totals[0])

    @property
    def correct(self) -> int:
        return int(self.totals[1])

    @property
    def low_pixels(self) -> int:
        return int(self.totals[2])

    @property
    def sum_s(self) -> float:
        return float(self.sums[0])

    @property
    def sum_confidence(self) -> float:
        """Sum over the scored pixels of the argmax's probability (its expected accuracy)."""
        return float(self.sums[1])

    def merge(self, other: ImageStats) -> None:
        """Add ``other``'s accumulators (other rows of the same image, at the same
        temperatures) to these: what accumulating its rows here would give, up to the
        order of floating-point sums."""
        self.totals += other.totals
        self.sums += other.sums
        self.class_counts += other.class_counts
        self.low_confusion += other.low_confusion
        self.tccp_hist += other.tccp_hist
        for j in range(len(self.temperatures)):
            (mine, w, sw), (theirs, w2, sw2) = self.soft[j], other.soft[j]
            top = max(mine, theirs)
            if top == -np.inf:
                continue
            a = 0.0 if mine == -np.inf else math.exp(mine - top)
            b = 0.0 if theirs == -np.inf else math.exp(theirs - top)
            self.soft[j] = (top, w * a + w2 * b, sw * a + sw2 * b)

    def softmin(self, temperature: float) -> float:
        """Σ s·exp((1−s)/τ) / Σ exp((1−s)/τ) at one of :attr:`temperatures`; NaN with no pixel."""
        if not self.pixels:
            return math.nan
        (index,) = np.flatnonzero(self.temperatures == temperature)
        return float(self.soft[index, 2] / self.soft[index, 1])


class BadProbabilities(ValueError):
    """A scored pixel's stored values are not usable probabilities (or logits)."""

    def __init__(self, code: int, row: int, col: int, value: float, logits: bool):
        if code == NOT_FINITE:
            what = f"non-finite value {value}"
        elif code == NEGATIVE:
            what = f"negative probability {value}"
        elif value == 0:
            what = "all probabilities 0 (an unwritten chunk or image?)"
        else:
            what = f"probabilities summing to {value:.6g}, not 1"
        super().__init__(f"{what} at row {row}, column {col}")
        self.row, self.col = row, col
        # Logits read as probabilities fail this way; an all-zero pixel (an unwritten
        # chunk) does not. The dataset words the advice for its caller.
        self.logits_may_help = not logits and value != 0


def accumulate(
    stats: ImageStats,
    probs: np.ndarray,
    labels: np.ndarray,
    config: KernelConfig,
    row_offset: int = 0,
    s_out: np.ndarray | None = None,
    pred_out: np.ndarray | None = None,
    *,
    cells=None,
    factor: int = 0,
    slice_rows: int | None = None,
) -> None:
    """Fold a block of rows into ``stats`` (and, with ``cells``, pool it in the same walk).

    Parameters
    ----------
    stats : ImageStats
        The image's accumulators, updated in place.
    probs : np.ndarray
        Stored values indexed [class, row, column] (any strides), dtype uint8, uint16
        (float16 must be passed as its uint16 view with the matching lut), float32 or float64.
    labels : np.ndarray
        int32 class indices of the same rows, shape (rows, columns).
    config : KernelConfig
    row_offset : int
        Row of the block's first row in the image, for error messages.
    s_out : np.ndarray, optional
        float64 (rows, columns) array that receives s per pixel (NaN where ignored).
    pred_out : np.ndarray, optional
        int32 (rows, columns) array that receives the argmax class of every pixel
        (ignored pixels included). With ``cells``, any integer dtype holding K - 1, and
        the pooling's argmax (where they differ, on ignored pixels holding NaN, its
        decoded values' one).
    cells : segaudit.core.pooling.Cells, optional
        Stored probabilities only (not logits): its ``label``, ``pred``, ``s``, ``p_pred``
        and ``mismatched`` grids receive the block's cells at ``factor``, the values
        :func:`segaudit.core.pooling.pool` gives, bit for bit (use
        :func:`segaudit.core.pooling.accumulate_and_pool`, which chooses).
    factor : int
        The cell size F, with ``cells``.
    slice_rows : int, optional
        With ``cells``, a volume's slice height: the block is a slab of whole slices (as
        for ``pool``).

    Raises
    ------
    BadProbabilities
        For the first scored pixel with NaN/inf, negative values or a bad sum.
    """
    err = np.zeros(3)
    decoding = config.decoding
    if cells is None:
        factor, slice_rows = 0, 1
        grids = (np.empty((0, 0), np.int32),) * 2 + (np.empty((0, 0)),) * 2 + (np.empty((0, 0), np.int32),)
    else:
        if decoding.logits or factor < 1:
            raise ValueError("cells are pooled in the kernel's walk for stored probabilities at a factor >= 1 only")
        slice_rows = max(1, labels.shape[0]) if slice_rows is None else slice_rows
        grids = (cells.label, cells.pred, cells.s, cells.p_pred, cells.mismatched)
    code = _accumulate_rows(
        probs, decoding.lut, decoding.mode, decoding.scale, labels, decoding.ignore, decoding.logits,
        stats.temperatures, config.pixel_threshold, config.want_tccp, decoding.sum_tol, TCCP_THRESHOLDS,
        tccp_keys(probs.dtype, decoding) if config.want_tccp else np.empty(0, probs.dtype),
        stats.totals, stats.sums, stats.soft, stats.class_counts, stats.low_confusion, stats.tccp_hist,
        np.empty((0, 0)) if s_out is None else s_out,
        np.empty((0, 0), np.int32) if pred_out is None else pred_out, err,
        factor, slice_rows, *grids,
    )
    if code != OK:
        raise BadProbabilities(code, int(err[0]) + row_offset, int(err[1]), err[2], decoding.logits)


def check_temperature(temperature: float) -> float:
    """Softmin's temperature, which must be a positive finite number."""
    try:
        usable = temperature > 0 and math.isfinite(temperature)
    except TypeError:  # None, a string: not a number at all
        usable = False
    if not usable:
        raise option_error("temperature", f"must be a positive number, got {temperature}")
    return float(temperature)


def check_pixel_threshold(pixel_threshold: float) -> float:
    """The low-pixel threshold, which must be a number in [0, 1]."""
    if not isinstance(pixel_threshold, numbers.Real) or not 0.0 <= pixel_threshold <= 1.0:
        raise option_error("pixel_threshold", f"must be between 0 and 1, got {pixel_threshold}")
    return float(pixel_threshold)
