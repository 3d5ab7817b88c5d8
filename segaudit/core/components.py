"""8-connected components of a grid (26-connected of a volume's), by union-find in Numba.

Shared by the coco method (regions of cells with the same label and argmax), the shift
corruption (the regions of one class in a mask), the error regions' annotated objects and
the planted regions of their evaluation.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _find(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        parent[i], i = root, parent[i]
    return root


@njit(cache=True, nogil=True, inline="always")
def _same(first, second, i, j, ni, nj):
    return first[ni, nj] == first[i, j] and second[ni, nj] == second[i, j]


@njit(cache=True, nogil=True, inline="always")
def _union(parent, a, b):
    """Join the sets of a and b; the smaller root (the earlier cell) stays the root."""
    a, b = _find(parent, a), _find(parent, b)
    if a != b:
        parent[max(a, b)] = min(a, b)


@njit(cache=True, nogil=True)
def component_roots(first, second):
    """Each cell's component: the row-major index of its component's first cell (-1 for
    a cell in none).

    Two 8-neighbours are in one component when both ``first`` and ``second`` agree;
    cells with ``first`` < 0 are in no component.

    A root is always its set's smallest index, so the result depends only on the
    components. Of the four earlier neighbours only those not already joined through
    another are looked at: the one above joins the left and both diagonals above (they
    are its neighbours), the left one joins the one above-left.
    """
    rows, cols = first.shape
    parent = np.arange(rows * cols)
    for i in range(rows):
        for j in range(cols):
            if first[i, j] < 0:
                continue
            here = i * cols + j
            if i > 0 and _same(first, second, i, j, i - 1, j):
                parent[here] = _find(parent, here - cols)  # here is still alone: hang it under the root
                continue
            if j > 0 and _same(first, second, i, j, i, j - 1):
                parent[here] = _find(parent, here - 1)
            elif i > 0 and j > 0 and _same(first, second, i, j, i - 1, j - 1):
                parent[here] = _find(parent, here - cols - 1)
            if i > 0 and j + 1 < cols and _same(first, second, i, j, i - 1, j + 1):
                _union(parent, here, here - cols + 1)
    # In place: a cell in no component is in no cell's path, so it can be marked -1 as met.
    for i in range(rows):
        for j in range(cols):
            here = i * cols + j
            parent[here] = _find(parent, here) if first[i, j] >= 0 else -1
    return parent


@njit(cache=True, nogil=True)
def component_roots_3d(first, second, slice_rows):
    """As :func:`component_roots`, for a volume's tall grid of slices of ``slice_rows``
    rows each (row z * slice_rows + y is row y of slice z): 26-connected components.

    Two cells are neighbours when they differ by at most one in each of slice, row and
    column; rows of different slices are never neighbours within a slice.
    """
    rows, cols = first.shape
    depth = rows // slice_rows
    parent = np.arange(rows * cols)
    for z in range(depth):
        for y in range(slice_rows):
            i = z * slice_rows + y
            for j in range(cols):
                if first[i, j] < 0:
                    continue
                here = i * cols + j
                # Earlier neighbours of the 26-neighbourhood: the 4 of the same slice
                # (left, the three above) and the 9 of the slice before.
                for dz in (-1, 0):
                    for dy in (-1, 0, 1):
                        for dj in (-1, 0, 1):
                            if dz == 0 and (dy == 1 or (dy == 0 and dj >= 0)):
                                continue
                            nz, ny, nj = z + dz, y + dy, j + dj
                            if nz < 0 or ny < 0 or ny >= slice_rows or nj < 0 or nj >= cols:
                                continue
                            ni = nz * slice_rows + ny
                            if first[ni, nj] == first[i, j] and second[ni, nj] == second[i, j]:
                                a, b = _find(parent, here), _find(parent, ni * cols + nj)
                                if a != b:
                                    parent[max(a, b)] = min(a, b)
    roots = np.full(rows * cols, -1, np.int64)
    for i in range(rows):
        for j in range(cols):
            if first[i, j] >= 0:
                roots[i * cols + j] = _find(parent, i * cols + j)
    return roots


@njit(cache=True, nogil=True)
def component_sizes(roots):
    """Cells per component, indexed by root (0 elsewhere): ``np.bincount(roots[roots >= 0],
    minlength=roots.size)`` in one pass."""
    sizes = np.zeros(roots.size, np.int64)
    for root in roots:
        if root >= 0:
            sizes[root] += 1
    return sizes


@njit(cache=True, nogil=True)
def components_of(values, roots, value):
    """The components whose cells hold ``value`` (a grid of ``component_roots`` whose
    components each hold one value), numbered 1.. in row-major order of their first cells
    (0 elsewhere), and their count."""
    flat = values.ravel()
    ids = np.zeros(roots.size, np.int32)
    out = np.zeros(roots.size, np.int32)
    count = 0
    for i in range(roots.size):
        if flat[i] == value:
            root = roots[i]
            if root == i:  # a root is its component's first cell, met before the rest
                count += 1
                ids[i] = count
            out[i] = ids[root]
    return out.reshape(values.shape), count


def numbered(roots: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Number the components of ``component_roots``' (or ``component_roots_3d``') output.

    Returns ``(ids, sizes)``: int64 ids of ``shape``, 0.. in row-major order of each
    component's first cell (-1 for a cell in none), and each component's cell count.
    """
    valid = roots >= 0
    ids = np.full(roots.shape, -1, np.int64)
    # A root is its component's first cell, so sorting the roots orders them by first cell.
    unique, inverse = np.unique(roots[valid], return_inverse=True)
    ids[valid] = inverse
    return ids.reshape(shape), np.bincount(inverse, minlength=unique.size).astype(np.int64)


@njit(cache=True, nogil=True)
def value_counts(values, keep):
    """Cells per value of ``values`` where ``keep`` (``np.bincount(values[keep])``) and the
    smallest such value; counts are empty when that is < 0 or there is none."""
    flat, kept = values.ravel(), keep.ravel()
    # One pass when every value is a byte's (a mask's classes usually are), else two.
    small = np.zeros(256, np.int64)
    fits = True
    for i in range(flat.size):
        if kept[i]:
            v = flat[i]
            if v < 0 or v >= 256:
                fits = False
                break
            small[v] += 1
    if fits:
        high = 255
        while high >= 0 and small[high] == 0:
            high -= 1
        low = 0
        while low <= high and small[low] == 0:
            low += 1
        return small[:high + 1].copy(), (low if high >= 0 else 0)
    low, high = 0, -1
    first = True
    for i in range(flat.size):
        if kept[i]:
            v = flat[i]
            if first:
                low = high = v
                first = False
            elif v < low:
                low = v
            elif v > high:
                high = v
    if first or low < 0:
        return np.zeros(0, np.int64), low
    counts = np.zeros(high + 1, np.int64)
    for i in range(flat.size):
        if kept[i]:
            counts[flat[i]] += 1
    return counts, low


def labelled_runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`component_roots` of ``(values, values)`` by runs, and its components' table.

    A run is a row's maximal stretch of cells of one value >= 0; a run joins the runs of the
    row above that hold its value and touch it or its diagonal ends. Runs are numbered in
    row-major order and a union keeps the earlier one as the root, so a component's root
    run starts at its first cell: the roots are :func:`component_roots`' (they depend on the
    components only). Work is per run, not per cell, except writing the roots out.

    Returns ``(roots, firsts, sizes, boxes)``: ``roots`` as :func:`component_roots` (int32
    when every flat index fits: half the memory to touch), and its components in row-major
    order of their first cells: their roots (first cells' flat indices), sizes and (top,
    bottom, left, right) bounding boxes, inclusive.
    """
    roots = np.empty(values.size, np.int32 if values.size < 2**31 else np.int64)
    return (roots, *_labelled_runs(values, roots))


@njit(cache=True, nogil=True)
def _labelled_runs(values, roots):
    """:func:`labelled_runs`, writing the roots into ``roots`` (every cell, once)."""
    rows, cols = values.shape
    runs = 0  # counted first: a mask has few runs, and big scratch arrays cost page faults
    for i in range(rows):
        for j in range(cols):
            v = values[i, j]
            if v >= 0 and (j == 0 or v != values[i, j - 1]):
                runs += 1
    run_row = np.empty(runs, np.int32)
    run_start = np.empty(runs, np.int32)
    run_end = np.empty(runs, np.int32)  # inclusive
    parent = np.empty(runs, np.int64)
    n = 0
    above0 = above1 = 0  # the runs of the row above: [above0, above1)
    for i in range(rows):
        here0 = n
        j = 0
        k = above0
        while j < cols:
            v = values[i, j]
            if v < 0:
                j += 1
                continue
            s = j
            while j + 1 < cols and values[i, j + 1] == v:
                j += 1
            run_row[n], run_start[n], run_end[n], parent[n] = i, s, j, n
            # The runs above touching s-1..j+1 (they are in column order).
            while k < above1 and run_end[k] < s - 1:
                k += 1
            m = k
            while m < above1 and run_start[m] <= j + 1:
                if values[i - 1, run_start[m]] == v:
                    _union(parent, n, m)
                m += 1
            n += 1
            j += 1
        above0, above1 = here0, n
    slot = np.empty(n, np.int64)
    count = 0
    for r in range(n):
        root = _find(parent, r)
        parent[r] = root
        if root == r:
            slot[r] = count
            count += 1
    firsts = np.empty(count, np.int64)
    sizes = np.zeros(count, np.int64)
    boxes = np.empty((count, 4), np.int64)
    done = 0  # cells before it are written
    for r in range(n):
        root = parent[r]
        k = slot[root]
        i, s, e = run_row[r], run_start[r], run_end[r]
        first = np.int64(run_row[root]) * cols + run_start[root]
        base = np.int64(i) * cols
        for cell in range(done, base + s):  # cells in no run: in no component
            roots[cell] = -1
        for j in range(s, e + 1):
            roots[base + j] = first
        done = base + e + 1
        if root == r:
            firsts[k] = first
            boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3] = i, i, s, e
        else:
            boxes[k, 1] = i  # rows only grow
            boxes[k, 2] = min(boxes[k, 2], s)
            boxes[k, 3] = max(boxes[k, 3], e)
        sizes[k] += e - s + 1
    for cell in range(done, roots.size):
        roots[cell] = -1
    return firsts, sizes, boxes
