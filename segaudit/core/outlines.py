"""Geometry of label maps: components, outlines, nearest labels, boundary walks.

The primitives that plant errors in a mask, shared by ``segaudit corrupt``
(:mod:`segaudit.evaluation.corrupt`) and the calibration's planted copies
(:mod:`segaudit.calibration`): 8-connected components of a class, a region's outline moved
radially by a periodic cubic spline, the label of the nearest pixel outside a mask, and a
spatially correlated random walk along a boundary.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .components import component_roots, numbered

#: Correlation length of a boundary's random walk, in boundary pixels.
DEFAULT_CORRELATION = 20.0

def periodic_cubic(samples: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """The periodic cubic spline through ``samples`` at equally spaced angles, evaluated at ``angles``.

    The knots are at 2*pi*i/n, i = 0..n-1; the spline is C2 and 2*pi-periodic. Its second
    derivatives M solve the cyclic system M[i-1] + 4 M[i] + M[i+1] = 6 (y[i-1] - 2 y[i] + y[i+1]) / h^2.
    """
    y = np.asarray(samples, dtype=np.float64)
    return _spline_at(y, _spline_moments(y), angles)


_SYSTEMS: dict[int, np.ndarray] = {}
#: The angles at which shifted_region finds an outline's largest move.
_REACH_ANGLES = np.linspace(0, 2 * math.pi, 721)
_REACH_ANGLES.flags.writeable = False


def _spline_moments(y: np.ndarray) -> np.ndarray:
    """The second derivatives M of :func:`periodic_cubic`'s spline through ``y`` (float64)."""
    n = y.size
    h = 2 * math.pi / n
    system = _SYSTEMS.get(n)
    if system is None:  # the same matrix for every spline of n knots
        system = 4 * np.eye(n) + np.roll(np.eye(n), 1, axis=1) + np.roll(np.eye(n), -1, axis=1)
        system.flags.writeable = False
        _SYSTEMS[n] = system
    return np.linalg.solve(system, 6 * (np.roll(y, 1) - 2 * y + np.roll(y, -1)) / h**2)


def _spline_at(y: np.ndarray, m: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """:func:`periodic_cubic` through ``y`` with moments ``m``, at ``angles``."""
    n = y.size
    h = 2 * math.pi / n
    position = np.mod(np.asarray(angles, dtype=np.float64), 2 * math.pi) / h
    i = np.minimum(np.floor(position).astype(np.int64), n - 1)
    t = position - i
    j = (i + 1) % n
    return ((1 - t) * y[i] + t * y[j]
            + h * h / 6 * (((1 - t) ** 3 - (1 - t)) * m[i] + (t**3 - t) * m[j]))


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean (H, W) mask: an int32 map (0 = background) and their count."""
    inside = np.where(np.asarray(mask, dtype=np.bool_), 0, -1).astype(np.int8)
    ids, sizes = numbered(component_roots(inside, inside), inside.shape)
    return (ids + 1).astype(np.int32), int(sizes.size)


def shifted_region(regions: np.ndarray, region: int, samples: np.ndarray,
                   bbox: tuple[int, int, int, int] | None = None, *, origin: tuple[int, int] = (0, 0),
                   shape: tuple[int, int] | None = None) -> tuple[tuple[slice, slice], np.ndarray]:
    """The pixels of one region after its outline moves radially by f(angle).

    ``regions`` is the component map, ``samples`` the spline's knot values in pixels.
    A pixel at radius r and angle a from the bounding-box centre is in the new region when
    the point at radius r - f(a) on the same ray is in the old one (nearest pixel; a
    negative radius samples the centre). Points beyond the image edge sample the edge, so
    a region touching the border keeps touching it. Returns the window (bounding box grown
    by the largest displacement) and the new region inside it. ``bbox`` is the region's
    (top, bottom, left, right), inclusive, when already known.

    ``regions`` may be a window of the component map at ``origin`` in an image of ``shape``
    (then ``bbox`` is required, in the image's coordinates, and inside the window): the
    region has no pixel outside it, so the result is the same.
    """
    height, width = regions.shape if shape is None else shape
    oy, ox = origin
    if bbox is None:
        rows, cols = np.nonzero(regions == region)
        bbox = (int(rows.min()) + oy, int(rows.max()) + oy, int(cols.min()) + ox, int(cols.max()) + ox)
    y0, y1, x0, x1 = bbox
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    y = np.asarray(samples, dtype=np.float64)
    moments = _spline_moments(y)  # once for both evaluations
    reach = math.ceil(np.abs(_spline_at(y, moments, _REACH_ANGLES)).max()) + 2
    window = (slice(max(0, y0 - reach), min(height, y1 + reach + 1)),
              slice(max(0, x0 - reach), min(width, x1 + reach + 1)))
    yy, xx = np.mgrid[window]
    dy, dx = yy - cy, xx - cx
    radius = np.hypot(dy, dx)
    source = radius - _spline_at(y, moments, np.arctan2(dy, dx))
    scale = np.divide(np.maximum(source, 0.0), radius, out=np.zeros_like(radius), where=radius > 0)
    sy = np.clip(np.rint(cy + dy * scale), 0, height - 1).astype(np.intp)
    sx = np.clip(np.rint(cx + dx * scale), 0, width - 1).astype(np.intp)
    if shape is None:
        return window, regions[sy, sx] == region
    sy -= oy
    sx -= ox
    within = (sy >= 0) & (sy < regions.shape[0]) & (sx >= 0) & (sx < regions.shape[1])
    moved = np.zeros(within.shape, np.bool_)
    moved[within] = regions[sy[within], sx[within]] == region
    return window, moved


@njit(cache=True, nogil=True)
def region_boxes(regions, count):
    """(top, bottom, left, right), inclusive, of regions 1..count of an int region map (0 =
    none; row r for region r + 1), in one pass over the map."""
    boxes = np.empty((count, 4), np.int64)
    rows, cols = regions.shape
    for n in range(count):
        boxes[n, 0], boxes[n, 1], boxes[n, 2], boxes[n, 3] = rows, -1, cols, -1
    for i in range(rows):
        for j in range(cols):
            n = regions[i, j] - 1
            if n < 0:
                continue
            boxes[n, 0] = min(boxes[n, 0], i)
            boxes[n, 1] = max(boxes[n, 1], i)
            boxes[n, 2] = min(boxes[n, 2], j)
            boxes[n, 3] = max(boxes[n, 3], j)
    return boxes


@njit(cache=True, nogil=True)
def _nearest_outside(mask, labels):
    """For every pixel of ``mask``: the label of a nearest pixel outside it (4-connected BFS).

    Pixels outside the mask keep their own label. The BFS starts from the mask pixels that
    touch the outside, in raster order, so the result is deterministic.
    """
    return _nearest_outside_of(mask, labels, mask)


@njit(cache=True, nogil=True)
def _nearest_outside_of(mask, labels, need):
    """:func:`_nearest_outside` at the pixels of ``need`` (a part of ``mask``); other pixels
    of the mask may be left unfilled. A pixel's label is set once, when the breadth-first
    fill first reaches it, so the fill stops when every needed pixel has been reached."""
    rows, cols = mask.shape
    fill = labels.copy()
    seen = ~mask
    queue = np.empty(rows * cols, np.int64)
    head = tail = 0
    missing = 0
    for i in range(rows):
        for j in range(cols):
            if not mask[i, j]:
                continue
            if need[i, j]:
                missing += 1
            for di, dj in ((-1, 0), (0, -1), (0, 1), (1, 0)):
                ni, nj = i + di, j + dj
                if 0 <= ni < rows and 0 <= nj < cols and not mask[ni, nj]:
                    fill[i, j] = labels[ni, nj]
                    seen[i, j] = True
                    queue[tail] = i * cols + j
                    tail += 1
                    if need[i, j]:
                        missing -= 1
                    break
    while head < tail and missing > 0:
        here = queue[head]
        head += 1
        i, j = here // cols, here % cols
        for di, dj in ((-1, 0), (0, -1), (0, 1), (1, 0)):
            ni, nj = i + di, j + dj
            if 0 <= ni < rows and 0 <= nj < cols and not seen[ni, nj]:
                seen[ni, nj] = True
                fill[ni, nj] = fill[i, j]
                queue[tail] = ni * cols + nj
                tail += 1
                if need[ni, nj]:
                    missing -= 1
    return fill


def nearest_outside(mask: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``labels`` with every pixel of ``mask`` replaced by the label of a nearest pixel outside it."""
    return _nearest_outside(np.ascontiguousarray(mask, dtype=np.bool_), np.ascontiguousarray(labels))


@njit(cache=True, nogil=True)
def _reach(inside, top, left, scored, limit):
    """Bounding box (top, bottom, left, right), inclusive, of the pixels 4-connected to a
    pixel of ``inside`` (a window of the image at ``top``, ``left``) through pixels that are
    in ``inside`` or not ``scored``: the components of ``inside | ~scored`` that
    :func:`_nearest_outside` fills ``inside`` from. (rows, -1, cols, -1) for none.

    The search stays within ``limit`` (top, bottom, left, right; exclusive ends), which holds
    ``inside``'s window: the fifth value is 1 when a component leaves it (the box is then
    incomplete), else 0. A small limit keeps the scratch arrays small.
    """
    rows, cols = scored.shape
    height, width = inside.shape
    ly0, ly1, lx0, lx1 = limit[0], limit[1], limit[2], limit[3]
    lcols = lx1 - lx0
    seen = np.zeros((ly1 - ly0, lcols), np.bool_)
    stack = np.empty((ly1 - ly0) * lcols, np.int64)
    box = np.array([rows, -1, cols, -1, 0], np.int64)
    depth = 0
    for a in range(height):
        for b in range(width):
            if not inside[a, b] or seen[top + a - ly0, left + b - lx0]:
                continue
            seen[top + a - ly0, left + b - lx0] = True
            stack[depth] = (top + a - ly0) * lcols + left + b - lx0
            depth += 1
            while depth:
                depth -= 1
                here = stack[depth]
                i, j = here // lcols + ly0, here % lcols + lx0
                box[0], box[1] = min(box[0], i), max(box[1], i)
                box[2], box[3] = min(box[2], j), max(box[3], j)
                for di, dj in ((-1, 0), (0, -1), (0, 1), (1, 0)):
                    ni, nj = i + di, j + dj
                    if not (0 <= ni < rows and 0 <= nj < cols):
                        continue
                    a2, b2 = ni - top, nj - left
                    if scored[ni, nj] and not (0 <= a2 < height and 0 <= b2 < width and inside[a2, b2]):
                        continue
                    if not (ly0 <= ni < ly1 and lx0 <= nj < lx1):
                        box[4] = 1
                        return box
                    if seen[ni - ly0, nj - lx0]:
                        continue
                    seen[ni - ly0, nj - lx0] = True
                    stack[depth] = (ni - ly0) * lcols + nj - lx0
                    depth += 1
    return box


def nearest_outside_window(inside: np.ndarray, window: tuple[slice, slice], labels: np.ndarray,
                           scored: np.ndarray, need: np.ndarray | None = None) -> tuple[tuple[slice, slice], np.ndarray]:
    """:func:`nearest_outside` of ``inside | ~scored`` where only ``inside``'s pixels matter,
    computed on a window of the image: ``inside`` is a bool window of the image at ``window``
    (slices with explicit starts).

    Returns ``(filled_window, fill)``: ``fill`` equals ``nearest_outside(full_inside | ~scored,
    labels)[filled_window]`` at every pixel of ``inside`` (other pixels: no promise), or of
    ``need`` (a part of ``inside``, the same window) when given: the fill stops once they are.

    Why it is the same: the breadth-first fill moves only through the 4-connected component
    of the mask a pixel is in, from that component's boundary pixels in raster order; the
    window holds those components and a pixel more around them (what their seeds look at),
    and keeps their raster order, so each of their pixels is filled as on the whole image.
    """
    rows, cols = labels.shape
    top, left = window[0].start, window[1].start
    bottom, right = top + inside.shape[0], left + inside.shape[1]
    inside = np.ascontiguousarray(inside)
    if need is None:
        need = inside
    if 4 * inside.size > rows * cols:  # a big part of the image: the search would not pay
        filled = (slice(0, rows), slice(0, cols))
        mask = ~scored
        mask[window] |= inside
        wanted = np.zeros((rows, cols), np.bool_)
        wanted[window] = need
        return filled, _nearest_outside_of(mask, np.ascontiguousarray(labels), wanted)
    # First within the window and a margin (ignored pixels next to it are usually few),
    # else on the whole image.
    margin = 16 + max(inside.shape) // 4
    limit = np.array([max(0, top - margin), min(rows, bottom + margin),
                      max(0, left - margin), min(cols, right + margin)], np.int64)
    box = _reach(inside, top, left, scored, limit)
    if box[4]:
        box = _reach(inside, top, left, scored, np.array([0, rows, 0, cols], np.int64))
    y0, y1, x0, x1 = (int(v) for v in box[:4])
    if y1 < 0:  # nothing inside
        y0, y1, x0, x1 = top, bottom - 1, left, right - 1
    y0, y1 = max(0, min(y0, top) - 1), min(rows, max(y1 + 1, bottom - 1) + 1)
    x0, x1 = max(0, min(x0, left) - 1), min(cols, max(x1 + 1, right - 1) + 1)
    filled = (slice(y0, y1), slice(x0, x1))
    mask = ~scored[filled]
    mask[top - y0:bottom - y0, left - x0:right - x0] |= inside
    wanted = np.zeros(mask.shape, np.bool_)
    wanted[top - y0:bottom - y0, left - x0:right - x0] = need
    return filled, _nearest_outside_of(mask, np.ascontiguousarray(labels[filled]), wanted)


def boundary_pixels(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (the image edge is not a boundary)."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


@njit(cache=True, nogil=True)
def _walk(edge, eps, mean, spread, rho):
    """The displacement of every pixel of ``edge``: an AR(1) random walk over a depth-first traversal.

    Pixels are discovered from an 8-neighbour already on the walk; a pixel's value is
    mean + rho * (its discoverer's value - mean) + spread * sqrt(1 - rho^2) * eps[k], k the
    discovery count; each 8-connected piece of the boundary starts at mean + spread * eps[k].
    Non-edge pixels are NaN.
    """
    rows, cols = edge.shape
    value = np.full((rows, cols), np.nan)
    stack = np.empty(rows * cols, np.int64)
    step = spread * math.sqrt(1.0 - rho * rho)
    k = 0
    for i0 in range(rows):
        for j0 in range(cols):
            if not edge[i0, j0] or not math.isnan(value[i0, j0]):
                continue
            value[i0, j0] = mean + spread * eps[k]
            k += 1
            top = 0
            stack[top] = i0 * cols + j0
            top += 1
            while top:
                top -= 1
                here = stack[top]
                i, j = here // cols, here % cols
                for di, dj in ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)):
                    ni, nj = i + di, j + dj
                    if 0 <= ni < rows and 0 <= nj < cols and edge[ni, nj] and math.isnan(value[ni, nj]):
                        value[ni, nj] = mean + rho * (value[i, j] - mean) + step * eps[k]
                        k += 1
                        stack[top] = ni * cols + nj
                        top += 1
    return value


@njit(cache=True, nogil=True, inline="always")
def _half_width(dy2, r2, reach, strict):
    """The largest dx <= reach with dy2 + dx * dx <= r2 (< r2 when ``strict``), -1 for none:
    a disc's half span in a row, by the per-pixel distance test :func:`_paint` defines."""
    dx = reach
    while dx >= 0 and (dy2 + dx * dx >= r2 if strict else dy2 + dx * dx > r2):
        dx -= 1
    return dx


@njit(cache=True, nogil=True)
def _paint(mask, value):
    """Grow ``mask`` by a disc of radius d around each edge pixel with d > 0; shrink it by d < 0.

    Returns (gained, lost): pixels outside the mask within distance d of an edge pixel with
    d > 0, and pixels of the mask closer than |d| to an edge pixel with d < 0. Each disc is
    walked row by row over its span only (the pixels the distance test keeps).
    """
    return _paint_at(mask, value, 0, 0)


@njit(cache=True, nogil=True)
def _paint_at(mask, value, top, left):
    """:func:`_paint` with ``value`` a window of ``mask``'s grid at ``top``, ``left`` (NaN
    beyond it).

    Row by row: each disc's span in the row is added to a difference array (+1 at its
    start, -1 past its end), whose running sum is then the number of discs covering each
    pixel of the row; one pass over the row instead of one per disc.
    """
    rows, cols = mask.shape
    gained = np.zeros((rows, cols), np.bool_)
    lost = np.zeros((rows, cols), np.bool_)
    n = 0
    for vi in range(value.shape[0]):
        for vj in range(value.shape[1]):
            d = value[vi, vj]
            if not math.isnan(d) and d != 0:
                n += 1
    # The painting pixels in raster order: row, column, radius squared, reach, shrinking.
    at_row = np.empty(n, np.int64)
    at_col = np.empty(n, np.int64)
    radius2 = np.empty(n, np.float64)
    reaches = np.empty(n, np.int64)
    shrinks = np.empty(n, np.bool_)
    widest = 0
    k = 0
    for vi in range(value.shape[0]):
        for vj in range(value.shape[1]):
            d = value[vi, vj]
            if math.isnan(d) or d == 0:
                continue
            r = abs(d)
            at_row[k], at_col[k] = vi + top, vj + left
            radius2[k] = r * r
            reaches[k] = int(math.ceil(r))
            shrinks[k] = d < 0
            widest = max(widest, reaches[k])
            k += 1
    grow = np.zeros(cols + 1, np.int32)
    shrink = np.zeros(cols + 1, np.int32)
    first = 0  # the first painting pixel at most `widest` rows above the row
    for ni in range(rows):
        while first < n and at_row[first] < ni - widest:
            first += 1
        grows = shrinks_here = False
        e = first
        while e < n and at_row[e] <= ni + widest:
            dy = ni - at_row[e]
            if -reaches[e] <= dy <= reaches[e]:
                half = _half_width(dy * dy, radius2[e], reaches[e], shrinks[e])
                if half >= 0:
                    a, b = max(0, at_col[e] - half), min(cols, at_col[e] + half + 1)
                    if a < b:
                        if shrinks[e]:
                            shrink[a] += 1
                            shrink[b] -= 1
                            shrinks_here = True
                        else:
                            grow[a] += 1
                            grow[b] -= 1
                            grows = True
            e += 1
        if grows:
            covered = 0
            for nj in range(cols + 1):
                covered += grow[nj]
                grow[nj] = 0
                if covered > 0 and nj < cols and not mask[ni, nj]:
                    gained[ni, nj] = True
        if shrinks_here:
            covered = 0
            for nj in range(cols + 1):
                covered += shrink[nj]
                shrink[nj] = 0
                if covered > 0 and nj < cols and mask[ni, nj]:
                    lost[ni, nj] = True
    return gained, lost


def boundary_displacement(mask: np.ndarray, rng: np.random.Generator, mean: float,
                          correlation: float = DEFAULT_CORRELATION) -> np.ndarray:
    """Signed displacement (pixels, > 0 outward) of every boundary pixel of ``mask``; NaN elsewhere.

    One side for the whole image, outward or inward with probability 1/2; along the boundary
    an AR(1) walk with mean ``mean``, standard deviation ``mean / 2`` and correlation
    exp(-1 / ``correlation``) between a pixel and the one it was reached from.
    """
    edge = boundary_pixels(mask)
    side = 1.0 if rng.random() < 0.5 else -1.0
    eps = rng.standard_normal(int(edge.sum()))
    rho = math.exp(-1.0 / correlation)
    value = _walk(edge, eps, float(mean), float(mean) / 2, rho)
    value *= side  # in place: a sign, exact, and no second grid
    return value


def move_boundary_by(labels: np.ndarray, cls: int, rng: np.random.Generator, mean: float,
                     correlation: float = DEFAULT_CORRELATION, ignored: np.ndarray | None = None) -> np.ndarray:
    """Move every boundary of ``cls`` by a one-sided, spatially correlated random walk.

    The mean displacement is ``mean`` pixels. Gained pixels take ``cls`` except pixels in
    ``ignored``; lost pixels take the label of the nearest pixel outside ``cls``.
    """
    out = labels.copy()
    move_boundary_into(out, labels, cls, rng, mean, correlation, ignored)
    return out


def move_boundary_into(out: np.ndarray, labels: np.ndarray, cls: int, rng: np.random.Generator, mean: float,
                       correlation: float = DEFAULT_CORRELATION,
                       ignored: np.ndarray | None = None) -> tuple[slice, slice] | None:
    """:func:`move_boundary_by` written into ``out`` (a copy of ``labels``), working on the
    window of the image it can change only: returns that window (None when ``cls`` is absent
    and nothing changes).

    The same draws and pixels as on the whole image: the boundary walk visits the boundary
    in raster order, which a window keeps; a pixel is painted within ``ceil(|d|)`` of a
    boundary pixel, so the class's bounding box grown by the largest ``|d|`` (at least 1)
    holds every painted pixel and the 4-neighbours of every pixel of the class (what the
    boundary and the nearest-outside fill of its components look at).
    """
    rows, cols = labels.shape
    old = labels == cls
    in_rows, in_cols = np.flatnonzero(old.any(axis=1)), np.flatnonzero(old.any(axis=0))
    if not in_rows.size:
        return None
    y0, y1, x0, x1 = int(in_rows[0]), int(in_rows[-1]), int(in_cols[0]), int(in_cols[-1])
    near = (slice(max(0, y0 - 1), min(rows, y1 + 2)), slice(max(0, x0 - 1), min(cols, x1 + 2)))
    value = boundary_displacement(old[near], rng, mean, correlation)
    drawn = value[~np.isnan(value)]
    reach = max(1, math.ceil(np.abs(drawn).max())) if drawn.size else 1
    window = (slice(max(0, y0 - reach), min(rows, y1 + reach + 1)),
              slice(max(0, x0 - reach), min(cols, x1 + reach + 1)))
    old = np.ascontiguousarray(old[window])
    gained, lost = _paint_at(old, value, near[0].start - window[0].start, near[1].start - window[1].start)
    part = out[window]
    if lost.any():
        part[lost] = _nearest_outside_of(old, np.ascontiguousarray(labels[window]), lost)[lost]
    if ignored is not None:
        gained &= ~ignored[window]
    part[gained] = cls
    return window
