"""Plain-numpy reference implementations of every per-image score.

Slow and obviously correct: whole-image arrays, one formula per score, written from the
paper (Lad & Mueller, *Estimating label quality and errors in semantic segmentation data
via any model*, 2023, sections 3.1-3.6; the README's methods table lists them) and the
issue's definitions. The Numba kernel is tested against these.
"""

from __future__ import annotations

import math

import numpy as np

THRESHOLDS = np.round(np.arange(1, 20) * 0.05, 2)  # 0.05, 0.10, ..., 0.95


def decode(stored: np.ndarray) -> np.ndarray:
    """Stored values as float64: uint8 / 255, uint16 / 65535, floats as they are."""
    if stored.dtype == np.uint8:
        return stored / 255.0
    if stored.dtype == np.uint16:
        return stored / 65535.0
    return stored.astype(np.float64)


def rsoftmin_temperature(pixels, temperature=0.1):
    """rsoftmin's temperature on an image of ``pixels`` pixels: 1/t = 1/temperature + ln(sqrt(n / n0)),
    n0 = 760 * 1280 (where it equals ``temperature``), with 1/t floored at 1."""
    return 1.0 / max(1.0, 1.0 / temperature + np.log(np.sqrt(pixels / (760 * 1280))))


def rsoftmin(s, pixels, temperature=0.1):
    """Softmin of the scored pixels' s at the temperature of an image of ``pixels`` (H * W) pixels."""
    exponent = (1 - s) / rsoftmin_temperature(pixels, temperature)
    weights = np.exp(exponent - exponent.max())
    return float(np.sum(s * weights) / np.sum(weights))


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
    # The model's confidence: the sum over scored pixels of p[argmax].
    out = {"pixels": n, "s": s_map, "confidence": float(probs.max(axis=0)[valid].sum())}
    if n == 0:
        out.update(softmin=np.nan, rsoftmin=np.nan, cil=np.nan, ccp=np.nan, tccp=np.nan, iou=np.nan,
                   low_pixels=0, suspect_class=None, likely_class=None)
        return out

    exponent = (1 - s) / temperature
    weights = np.exp(exponent - exponent.max())
    out["softmin"] = float(np.sum(s * weights) / np.sum(weights))
    out["rsoftmin"] = rsoftmin(s, labels.size, temperature)
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
        # The likely class is another class: the most common prediction among the suspect
        # class's low pixels predicted otherwise (None when the model agrees on all of them).
        others = pred[low & (lab == suspect) & (pred != suspect)]
        out["likely_class"] = int(np.argmax(np.bincount(others, minlength=n_classes))) if others.size else None
    else:
        out["suspect_class"] = out["likely_class"] = None
    return out


def probabilities(stored, logits=False):
    """Decoded (K, H, W) probabilities, with the per-pixel softmax for logits."""
    values = np.ascontiguousarray(decode(stored))
    if not logits:
        return values
    exp = np.exp(values - values.max(axis=0))
    return exp / exp.sum(axis=0)


def downsample(labels, stored, factor, *, ignore=(255,), logits=False):
    """The cell grid of an image, F×F cells (or of a volume, F×F×F cubes): (label, pred, s,
    p_pred) arrays of shape ceil(side / F) per axis; label -1 for empty cells.

    labels: (H, W) or (Z, Y, X); stored: (K, ...) of the same spatial shape. Mean-pooled
    probabilities over the cell's scored pixels, renormalised (not at F=1); label by
    majority vote, ties to the lowest class.
    """
    probs = probabilities(stored, logits)
    n_classes = probs.shape[0]
    labels = np.asarray(labels).astype(np.int64)
    valid = (labels >= 0) & (labels < n_classes) & ~np.isin(labels, list(ignore))
    shape = tuple(-(-side // factor) for side in probs.shape[1:])
    out_label = np.full(shape, -1)
    out_pred = np.full(shape, -1)
    out_s = np.full(shape, np.nan)
    out_ppred = np.full(shape, np.nan)
    for cell in np.ndindex(*shape):
        window = tuple(slice(i * factor, (i + 1) * factor) for i in cell)
        ok = valid[window]
        if not ok.any():
            continue
        pooled = probs[(slice(None),) + window][:, ok].sum(axis=1)
        if factor > 1:
            pooled = pooled / pooled.sum()
        label = int(np.argmax(np.bincount(labels[window][ok], minlength=n_classes)))
        pred = int(np.argmax(pooled))
        out_label[cell], out_pred[cell] = label, pred
        out_s[cell], out_ppred[cell] = pooled[label], pooled[pred]
    return out_label, out_pred, out_s, out_ppred


def coco(label, pred, s):
    """Mean over 8-connected (pred, label) components of their mean s, by flood fill."""
    rows, cols = label.shape
    seen = np.zeros((rows, cols), bool)
    scores = []
    for i in range(rows):
        for j in range(cols):
            if label[i, j] < 0 or seen[i, j]:
                continue
            stack, members = [(i, j)], []
            seen[i, j] = True
            while stack:
                a, b = stack.pop()
                members.append(s[a, b])
                for da in (-1, 0, 1):
                    for db in (-1, 0, 1):
                        x, y = a + da, b + db
                        if (0 <= x < rows and 0 <= y < cols and not seen[x, y]
                                and label[x, y] == label[i, j] and pred[x, y] == pred[i, j]):
                            seen[x, y] = True
                            stack.append((x, y))
            scores.append(np.mean(members))
    return float(np.mean(scores)) if scores else np.nan


def clc_flags(images, factor, *, ignore=(255,), logits=False):
    """Confident-learning flags at full resolution for a dataset held in memory.

    images: list of (labels (H, W), stored (K, H, W)). Thresholds, count and selection
    over every cell of every image, as cleanlab's find_label_issues; ties in s are broken
    by dataset order (image, then row-major cell). Returns one bool (H, W) mask per image.
    """
    grids = [downsample(l, p, factor, ignore=ignore, logits=logits) for l, p in images]
    n_classes = images[0][1].shape[0]
    label = np.concatenate([g[0].ravel() for g in grids])
    pred = np.concatenate([g[1].ravel() for g in grids])
    s = np.concatenate([g[2].ravel() for g in grids])
    ppred = np.concatenate([g[3].ravel() for g in grids])
    ok = label >= 0
    t = np.array([s[ok & (label == k)].mean() if np.any(ok & (label == k)) else 0.0 for k in range(n_classes)])
    t = np.maximum(t, 2e-6)
    issue = ok & (pred != label) & (ppred >= t[np.where(ok, pred, 0)] - 1e-6)
    n = int(issue.sum())
    order = np.arange(s.size)
    ranked = np.lexsort((order, np.where(ok, s, np.inf)))[:n]
    chosen = np.zeros(s.size, bool)
    chosen[ranked] = True
    masks, offset = [], 0
    for (labels, stored), grid in zip(images, grids):
        cells = grid[0].size
        cell_flags = chosen[offset:offset + cells].reshape(grid[0].shape)
        offset += cells
        height, width = labels.shape
        full = np.repeat(np.repeat(cell_flags, factor, axis=0), factor, axis=1)[:height, :width]
        lab = np.asarray(labels).astype(np.int64)
        valid = (lab >= 0) & (lab < n_classes) & ~np.isin(lab, list(ignore))
        argmax = decode(stored).argmax(axis=0)
        masks.append(full & valid & (argmax != lab))
    return masks


def downsample_in_order(labels, stored, factor, *, ignore=(255,), logits=False):
    """:func:`downsample` pixel by pixel, adding in the kernel's order, to compare bit for bit.

    Per cell and class the pixels are added rows, then columns ascending; the argmax keeps
    the first maximum and never picks NaN. Returns (label, pred, s, p_pred, mismatched,
    argmax): mismatched counts a cell's scored pixels whose argmax is not their label,
    argmax is the full-resolution argmax of every pixel.
    """
    values = decode(stored)
    n_classes, height, width = values.shape
    labels = np.asarray(labels).astype(np.int64)
    rows, cols = -(-height // factor), -(-width // factor)
    sums = [[[0.0] * n_classes for _ in range(cols)] for _ in range(rows)]
    votes = np.zeros((rows, cols, n_classes), np.int64)
    mismatched = np.zeros((rows, cols), np.int64)
    argmax = np.zeros((height, width), np.int64)
    for r in range(height):
        for c in range(width):
            column = [float(v) for v in values[:, r, c]]
            best, best_k = -math.inf, 0
            for k, v in enumerate(column):
                if v > best:
                    best, best_k = v, k
            argmax[r, c] = best_k
            label = int(labels[r, c])
            if not 0 <= label < n_classes or label in ignore:
                continue
            if logits:
                exps = [math.exp(v - best) for v in column]
                total = 0.0
                for e in exps:
                    total += e
                column = [e / total for e in exps]
            cell = sums[r // factor][c // factor]
            for k in range(n_classes):
                cell[k] += column[k]
            votes[r // factor, c // factor, label] += 1
            mismatched[r // factor, c // factor] += best_k != label
    out_label = np.full((rows, cols), -1)
    out_pred = np.full((rows, cols), -1)
    out_s = np.full((rows, cols), np.nan)
    out_ppred = np.full((rows, cols), np.nan)
    for i in range(rows):
        for j in range(cols):
            if not votes[i, j].any():
                continue
            cell = sums[i][j]
            pred, total = 0, 0.0
            for k in range(n_classes):
                if cell[k] > cell[pred]:
                    pred = k
                total += cell[k]
            scale = np.float64(1.0 if factor == 1 else total)
            label = int(np.argmax(votes[i, j]))
            out_label[i, j], out_pred[i, j] = label, pred
            with np.errstate(divide="ignore", invalid="ignore"):  # all-zero cells: NaN, as the kernel
                out_s[i, j], out_ppred[i, j] = cell[label] / scale, cell[pred] / scale
    return out_label, out_pred, out_s, out_ppred, mismatched, argmax


# --- volumes ----------------------------------------------------------------------------


def downsample_3d(labels, stored, factor, *, ignore=(255,), logits=False):
    """The F×F×F cell grid of a volume, labels (Z, Y, X) and stored (K, Z, Y, X): :func:`downsample`."""
    return downsample(labels, stored, factor, ignore=ignore, logits=logits)


def components_3d(label, pred):
    """26-connected components of cells with equal (label, pred), label >= 0, by flood
    fill: a list of lists of cell indices (z, y, x)."""
    seen = np.zeros(label.shape, bool)
    found = []
    for start in np.ndindex(*label.shape):
        if label[start] < 0 or seen[start]:
            continue
        stack, members = [start], []
        seen[start] = True
        while stack:
            here = stack.pop()
            members.append(here)
            for step in np.ndindex(3, 3, 3):
                there = tuple(h + d - 1 for h, d in zip(here, step))
                if all(0 <= t < n for t, n in zip(there, label.shape)) and not seen[there] \
                        and label[there] == label[start] and pred[there] == pred[start]:
                    seen[there] = True
                    stack.append(there)
        found.append(members)
    return found


def coco_3d(label, pred, s):
    """coco of a volume's 3-D cell grid: mean over 26-connected components of their mean s."""
    scores = [np.mean([s[m] for m in members]) for members in components_3d(label, pred)]
    return float(np.mean(scores)) if scores else np.nan


def clc_flags_3d(volumes, factor, *, ignore=(255,), logits=False):
    """:func:`clc_flags` for volumes: images are (labels (Z, Y, X), stored (K, Z, Y, X)),
    cells are F×F×F cubes in (z, y, x) order. Returns one bool (Z, Y, X) mask per volume."""
    grids = [downsample_3d(l, p, factor, ignore=ignore, logits=logits) for l, p in volumes]
    n_classes = volumes[0][1].shape[0]
    label, pred, s, ppred = (np.concatenate([g[i].ravel() for g in grids]) for i in range(4))
    ok = label >= 0
    t = np.array([s[ok & (label == k)].mean() if np.any(ok & (label == k)) else 0.0 for k in range(n_classes)])
    t = np.maximum(t, 2e-6)
    issue = ok & (pred != label) & (ppred >= t[np.where(ok, pred, 0)] - 1e-6)
    ranked = np.lexsort((np.arange(s.size), np.where(ok, s, np.inf)))[:int(issue.sum())]
    chosen = np.zeros(s.size, bool)
    chosen[ranked] = True
    masks, offset = [], 0
    for (labels, stored), grid in zip(volumes, grids):
        cells = grid[0].size
        cell_flags = chosen[offset:offset + cells].reshape(grid[0].shape)
        offset += cells
        full = cell_flags
        for axis in range(3):
            full = np.repeat(full, factor, axis=axis)
        full = full[tuple(slice(0, n) for n in labels.shape)]
        lab = np.asarray(labels).astype(np.int64)
        valid = (lab >= 0) & (lab < n_classes) & ~np.isin(lab, list(ignore))
        masks.append(full & valid & (decode(stored).argmax(axis=0) != lab))
    return masks


def worst_slice(labels, stored, *, ignore=(255,), pixel_threshold=0.5, logits=False):
    """The slice with the most voxels of s below the threshold, ties to the lowest mean s,
    then the lowest index; None when no voxel is scored."""
    best = None
    for z in range(labels.shape[0]):
        s = image_scores(labels[z], stored[:, z], ignore=ignore, logits=logits)["s"]
        scored = ~np.isnan(s)
        if not scored.any():
            continue
        key = (-int((s[scored] < pixel_threshold).sum()), float(s[scored].mean()), z)
        best = key if best is None or key < best else best
    return None if best is None else best[2]


# --- error regions (segaudit.core.regions) -------------------------------------------

_NEIGHBOURS = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]


def _flood(grid_ok, same, start, shape):
    """Pixels 8-connected to ``start`` through pixels where grid_ok and same(a, b)."""
    rows, cols = shape
    seen = {start}
    stack = [start]
    while stack:
        i, j = stack.pop()
        for di, dj in _NEIGHBOURS:
            ni, nj = i + di, j + dj
            if 0 <= ni < rows and 0 <= nj < cols and (ni, nj) not in seen and grid_ok[ni, nj] \
                    and same((i, j), (ni, nj)):
                seen.add((ni, nj))
                stack.append((ni, nj))
    return seen


def regions(labels, s, likely, p, n_classes, **rule):
    """Error regions of an image by flood fill, pixel by pixel: a list of dicts (any order).

    ``labels``: class indices (values < 0 or >= n_classes unscored); ``s``, ``likely``,
    ``p``: per pixel p[label], argmax and p[argmax]; ``rule``: :func:`regions_3d`'s keywords.
    An image is a volume of one slice (its 26-neighbours are then its 8-neighbours).
    """
    found = regions_3d(*(np.asarray(a)[None] for a in (labels, s, likely, p)), n_classes, **rule)
    for region in found:
        region["pixels"] = frozenset((y, x) for _, y, x in region["pixels"])
        del region["z0"], region["z1"]
    return found


def propose(labels, region_pixels, regions, likely, min_score):
    """The proposal of :func:`segaudit.core.regions.propose`, by flood fill.

    ``region_pixels``: per region (same order as ``regions``) its set of pixels.
    """
    new = np.array(labels, copy=True)
    for pixels, region in zip(region_pixels, regions):
        if region.score < min_score:
            continue
        chosen = set(pixels)
        if region.kind == "missing":
            inside = (likely == region.likely_class) & (labels == region.annotated_class)
            grown = set()
            for q in pixels:
                if q not in grown:
                    grown |= _flood(inside, lambda a, b: True, q, labels.shape)
            chosen = grown
        for q in chosen:
            new[q] = region.likely_class
    return new


def regions_3d(labels, s, likely, p, n_classes, *, margin=0.25, band=2, band_weight=1.0, scale=0.002,
               coverage_power=0.25, thin=0.02, reach=3, background=frozenset()):
    """Error regions of a (Z, Y, X) volume by 26-connected flood fill (dicts, any order).

    As :func:`regions`, with regions and objects 26-connected across slices; the edge
    band, the likely class's annotation nearby and the thickness limit are per slice.
    """
    depth, rows, cols = labels.shape
    near26 = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)]
    scored = (labels >= 0) & (labels < n_classes)
    suspect = scored & (likely != labels) & (p - s >= margin)
    in_band = np.zeros(labels.shape, bool)
    for z in range(depth):
        plane = labels[z]
        edge = np.zeros(plane.shape, bool)
        for i in range(rows):
            for j in range(cols):
                for di, dj in ((1, 0), (0, 1), (-1, 0), (0, -1)):
                    ni, nj = i + di, j + dj
                    if 0 <= ni < rows and 0 <= nj < cols and plane[ni, nj] != plane[i, j]:
                        edge[i, j] = True
        if band > 0:
            for i in range(rows):
                for j in range(cols):
                    in_band[z, i, j] = edge[max(0, i - band + 1): i + band, max(0, j - band + 1): j + band].any()

    def flood(ok, same, start):
        seen, stack = {start}, [start]
        while stack:
            q = stack.pop()
            for d in near26:
                n = (q[0] + d[0], q[1] + d[1], q[2] + d[2])
                if all(0 <= n[k] < labels.shape[k] for k in range(3)) and n not in seen and ok[n] and same(q, n):
                    seen.add(n)
                    stack.append(n)
        return seen

    total = int(scored.sum())
    done = np.zeros(labels.shape, bool)
    found = []
    for start in zip(*np.nonzero(suspect)):
        start = tuple(int(v) for v in start)
        if done[start]:
            continue
        pixels = flood(suspect, lambda a, b: labels[a] == labels[b] and likely[a] == likely[b], start)
        obj = flood(scored, lambda a, b: labels[a] == labels[b], start)
        for q in pixels:
            done[q] = True
        lab, lik = int(labels[start]), int(likely[start])
        core = [q for q in pixels if not in_band[q]]
        mass = sum((1.0 if not in_band[q] else band_weight) * (p[q] - s[q]) for q in pixels)
        touching = sum(any(0 <= y + di < rows and 0 <= x + dj < cols and labels[z, y + di, x + dj] == lik
                           for di in range(-reach, reach + 1) for dj in range(-reach, reach + 1))
                       for (z, y, x) in pixels)
        area = len(pixels)
        coverage = area / len(obj)
        thickness = area / touching if touching else math.inf
        if coverage >= 0.5:
            kind = "missing" if lab in background and lik not in background else (
                "spurious" if lik in background else "wrong_class")
        elif thickness <= max(2.0, thin * math.sqrt(rows * cols)):
            kind = "boundary"
        else:
            kind = "spurious" if lik in background and lab not in background else "missing"
        zs, ys, xs = zip(*pixels)
        found.append({"pixels": frozenset(pixels), "area": area, "x0": min(xs), "y0": min(ys), "z0": min(zs),
                      "x1": max(xs) + 1, "y1": max(ys) + 1, "z1": max(zs) + 1, "annotated_class": lab,
                      "likely_class": lik, "object_pixels": len(obj), "touching": touching, "kind": kind,
                      "mean_s": float(np.mean([s[q] for q in pixels])),
                      "mean_p_likely": float(np.mean([p[q] for q in pixels])), "core_area": len(core), "mass": mass,
                      "score": (1.0 - math.exp(-mass * coverage ** coverage_power / (scale * total))
                                if total else 0.0)})
    return found


# --- planted copies and the calibration (segaudit.calibration) ---------------------------


def worst_region(label, pred, s, p_pred, *, slice_rows=None, margin=0.25, coverage_power=0.25, scale=0.002):
    """auto's region candidate: exp(-strength) of the strongest error region of a cell grid
    (label -1 = ignored), the regions of :func:`regions_3d` with cells for pixels and no edge
    band; 1 with no region, NaN with no scored cell. A tall grid of slices of
    ``slice_rows`` rows is a volume's (26-connected)."""
    label, pred, s, p_pred = (np.asarray(a) for a in (label, pred, s, p_pred))
    depth = 1 if slice_rows is None else label.shape[0] // slice_rows
    shape = (depth, label.shape[0] // depth, label.shape[1])
    total = int((label >= 0).sum())
    if not total:
        return math.nan
    found = regions_3d(label.reshape(shape), s.reshape(shape), pred.reshape(shape), p_pred.reshape(shape),
                       int(label.max()) + 1, margin=margin, band=0, scale=scale, coverage_power=coverage_power)
    strengths = [r["mass"] * (r["area"] / r["object_pixels"]) ** coverage_power / (scale * total) for r in found]
    return math.exp(-max(strengths, default=0.0))


def objects(labels, scored):
    """8-connected components of one scored class, by flood fill, in row-major order of
    their first pixel: a list of (set of pixels, class)."""
    rows, cols = labels.shape
    seen = np.zeros((rows, cols), bool)
    found = []
    for i in range(rows):
        for j in range(cols):
            if not scored[i, j] or seen[i, j]:
                continue
            members = _flood(scored, lambda a, b: labels[a] == labels[b], (i, j), (rows, cols))
            for member in members:
                seen[member] = True
            found.append((members, int(labels[i, j])))
    return found


def component_table(roots, cols):
    """The components of a component-root map (``component_roots``' output, a grid ``cols``
    wide), in row-major order of their first cells: their roots (first cells' flat indices),
    sizes and (top, bottom, left, right) bounding boxes, inclusive."""
    roots = np.asarray(roots).ravel()
    firsts = np.flatnonzero(roots == np.arange(roots.size))
    sizes = np.array([(roots == f).sum() for f in firsts], np.int64)
    boxes = np.empty((firsts.size, 4), np.int64)
    for k, f in enumerate(firsts):
        rows, columns = np.divmod(np.flatnonzero(roots == f), cols)
        boxes[k] = rows.min(), rows.max(), columns.min(), columns.max()
    return firsts.astype(np.int64), sizes, boxes


def nearest_labels(mask, labels):
    """For each pixel of ``mask``: the set of labels of the pixels outside it at the least
    4-connected path distance (paths through the mask)."""
    rows, cols = mask.shape
    distance = np.where(mask, np.inf, 0.0)
    frontier = [(i, j) for i in range(rows) for j in range(cols) if not mask[i, j]]
    choices = {p: {int(labels[p])} for p in frontier}
    step = 0
    while frontier:
        step += 1
        reached = {}
        for i, j in frontier:
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                ni, nj = i + di, j + dj
                if 0 <= ni < rows and 0 <= nj < cols and distance[ni, nj] >= step:
                    distance[ni, nj] = step
                    reached.setdefault((ni, nj), set()).update(choices[(i, j)])
        choices.update(reached)
        frontier = list(reached)
    return {p: v for p, v in choices.items() if mask[p]}


def average_precision(negatives, positives, prevalence=0.2):
    """Average precision of ranking positives first (lowest score first), the positives
    weighted to make up ``prevalence``; precision taken at every distinct score; NaN last."""
    positives = [p for p in positives if not math.isnan(p)]
    if not positives or not len(negatives):
        return math.nan
    negatives = [math.inf if math.isnan(n) else n for n in negatives]
    weight = prevalence / (1 - prevalence) * len(negatives) / len(positives)
    total = weight * len(positives)
    ap, previous_recall = 0.0, 0.0
    for threshold in sorted(set(positives) | set(negatives)):
        tp = weight * sum(p <= threshold for p in positives)
        fp = sum(n <= threshold for n in negatives)
        if tp + fp == 0:
            continue
        recall = tp / total
        ap += (recall - previous_recall) * tp / (tp + fp)
        previous_recall = recall
    return ap


def calibration_choice(table, usable):
    """The row of ``table`` (candidate x kind AUPRC) with the best mean log-odds of AUPRC
    (clipped to [0.001, 0.999]) over the ``usable`` kinds (NaN left out); ties to the first."""
    best, best_mean = 0, -math.inf
    for row, values in enumerate(table):
        chosen = [values[k] for k in usable if not math.isnan(values[k])]
        clipped = [min(max(v, 0.001), 0.999) for v in chosen]
        mean = float(np.mean([math.log(v / (1 - v)) for v in clipped])) if chosen else -math.inf
        if mean > best_mean:
            best, best_mean = row, mean
    return best


def bootstrap_wins(negatives, positives, best, prior, seed, resamples=200):
    """The share of bootstrap resamples in which column ``best``'s mean log-odds of AUPRC
    over the kinds beats column ``prior``'s: each resample draws the clean images (rows of
    ``negatives``) and then each kind's copies (rows of each array of ``positives``) with
    replacement, in that order, from ``np.random.default_rng([seed, 26])``, and scores the
    drawn rows with :func:`average_precision` as they are."""
    rng = np.random.default_rng([seed, 26])

    def odds(value):
        value = min(max(value, 0.001), 0.999)
        return math.log(value / (1 - value))

    wins = 0
    for _ in range(resamples):
        drawn = negatives[rng.integers(0, len(negatives), len(negatives))]
        gaps = []
        for kind in positives:
            copies = kind[rng.integers(0, len(kind), len(kind))]
            a = average_precision(list(drawn[:, best]), list(copies[:, best]))
            b = average_precision(list(drawn[:, prior]), list(copies[:, prior]))
            if not (math.isnan(a) or math.isnan(b)):
                gaps.append(odds(a) - odds(b))
        wins += bool(gaps) and sum(gaps) / len(gaps) > 1e-9  # a gap of rounding is a tie
    return wins / resamples


def isotonic_fit(x, y, w):
    """The weighted least-squares non-decreasing fit of y on x, at each point (points of
    equal x share one value): pool adjacent violators, merging the first violating pair
    of blocks (mean not increasing) until none is left."""
    order = sorted(range(len(x)), key=lambda i: (x[i], y[i]))
    blocks = []  # [xs, total weight, weighted sum, members]
    for i in order:
        if blocks and blocks[-1][0] == x[i]:
            blocks[-1][1] += w[i]
            blocks[-1][2] += w[i] * y[i]
            blocks[-1][3].append(i)
        else:
            blocks.append([x[i], w[i], w[i] * y[i], [i]])
    merged = True
    while merged:
        merged = False
        for k in range(len(blocks) - 1):
            a, b = blocks[k], blocks[k + 1]
            if b[2] / b[1] <= a[2] / a[1]:
                blocks[k] = [a[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]
                del blocks[k + 1]
                merged = True
                break
    fitted = [0.0] * len(x)
    for block in blocks:
        for i in block[3]:
            fitted[i] = block[2] / block[1]
    return fitted


def region_marked_areas(region_map, marked, n_regions):
    """Per region (index in the finder's list), its pixels in ``marked``."""
    return [int(np.sum((region_map == k) & marked)) for k in range(n_regions)]
