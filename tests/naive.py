"""Plain-numpy reference implementations of every per-image score.

Slow and obviously correct: whole-image arrays, one formula per score, written from the
paper (../shared/reference/paper.md, sections 3.1-3.6) and the issue's definitions. The
Numba kernel is tested against these.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = np.round(np.arange(1, 20) * 0.05, 2)  # 0.05, 0.10, ..., 0.95


def decode(stored: np.ndarray) -> np.ndarray:
    """Stored values as float64: uint8 / 255, uint16 / 65535, floats as they are."""
    if stored.dtype == np.uint8:
        return stored / 255.0
    if stored.dtype == np.uint16:
        return stored / 65535.0
    return stored.astype(np.float64)


def image_scores(labels, stored, *, ignore=(), temperature=0.1, pixel_threshold=0.5, logits=False):
    """All per-image scores of one image.

    labels: (H, W) ints; stored: (K, H, W) stored values. Returns a dict with softmin,
    cil, ccp, tccp, iou, pixels, low_pixels, suspect_class, likely_class and s (the
    per-pixel label likelihood, NaN where ignored).
    """
    values = np.ascontiguousarray(decode(stored))
    n_classes = values.shape[0]
    labels = np.asarray(labels).astype(np.int64)
    valid = (labels >= 0) & (labels < n_classes) & ~np.isin(labels, list(ignore))
    predicted = values.argmax(axis=0)  # first maximum: ties go to the lowest class
    if logits:
        exp = np.exp(values - values.max(axis=0))
        probs = exp / exp.sum(axis=0)
    else:
        probs = values
    safe_labels = np.where(valid, labels, 0)
    s_all = np.take_along_axis(probs, safe_labels[None], axis=0)[0]
    s_map = np.where(valid, s_all, np.nan)
    s = s_all[valid]
    lab = labels[valid]
    pred = predicted[valid]
    n = s.size
    out = {"pixels": n, "s": s_map}
    if n == 0:
        out.update(softmin=np.nan, cil=np.nan, ccp=np.nan, tccp=np.nan, iou=np.nan,
                   low_pixels=0, suspect_class=None, likely_class=None)
        return out

    exponent = (1 - s) / temperature
    weights = np.exp(exponent - exponent.max())
    out["softmin"] = float(np.sum(s * weights) / np.sum(weights))
    out["cil"] = float(np.mean(s))
    out["ccp"] = float(np.mean(pred == lab))

    per_class = []
    for k in range(n_classes):
        p_k = probs[k][valid]
        per_class.append(max(np.mean((p_k > t) == (lab == k)) for t in THRESHOLDS))
    out["tccp"] = float(np.mean(per_class))

    ious = []
    for k in range(n_classes):
        union = np.sum((pred == k) | (lab == k))
        if union:
            ious.append(np.sum((pred == k) & (lab == k)) / union)
    out["iou"] = float(np.mean(ious))

    low = s < pixel_threshold
    out["low_pixels"] = int(low.sum())
    if low.any():
        suspect = int(np.argmax(np.bincount(lab[low], minlength=n_classes)))
        out["suspect_class"] = suspect
        out["likely_class"] = int(np.argmax(np.bincount(pred[low & (lab == suspect)], minlength=n_classes)))
    else:
        out["suspect_class"] = out["likely_class"] = None
    return out
