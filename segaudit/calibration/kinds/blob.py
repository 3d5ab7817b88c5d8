"""blob: a spurious blob, an ellipse of one class painted where that class is not.

The ellipse's half-axes are 1.5-4 % of the image's mean side; its class is another class
of the image (any other class when the image has one), painted over the scored pixels
it covers: a stray brush stroke, or an object annotated where there is none.
"""

from __future__ import annotations

import numpy as np

from .base import Kind, changed_enough, class_counts

SMALLEST, LARGEST = 0.015, 0.04


def plant(mask, rng):
    per_row = np.count_nonzero(mask.scored, axis=1)
    ends = np.cumsum(per_row)
    if not ends.size or not ends[-1]:
        return None
    k = int(rng.integers(int(ends[-1])))  # the k-th scored pixel, row-major
    cy = int(np.searchsorted(ends, k, side="right"))
    cx = int(np.flatnonzero(mask.scored[cy])[k - (int(ends[cy - 1]) if cy else 0)])
    under = int(mask.labels[cy, cx])
    present = [int(c) for c in class_counts(mask)[0] if c != under]
    pool = present or [c for c in range(mask.n_classes) if c != under]
    if not pool:
        return None
    cls = pool[int(rng.integers(len(pool)))]
    ry, rx = rng.uniform(SMALLEST, LARGEST, 2) * mask.side
    angle = rng.uniform(0, np.pi)
    reach = int(np.ceil(max(ry, rx))) + 1
    height, width = mask.labels.shape
    y0, y1 = max(0, cy - reach), min(height, cy + reach + 1)
    x0, x1 = max(0, cx - reach), min(width, cx + reach + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    u = dy * np.cos(angle) + dx * np.sin(angle)
    v = -dy * np.sin(angle) + dx * np.cos(angle)
    inside = (u / ry) ** 2 + (v / rx) ** 2 <= 1.0
    copy = mask.labels.copy()
    window = copy[y0:y1, x0:x1]
    window[inside & mask.scored[y0:y1, x0:x1]] = cls
    return changed_enough(mask, copy)


KIND = Kind(name="blob", order=50, plant=plant,
            description="a spurious ellipse of another class (1.5-4 % of the image's side)",
            phrase="spurious blobs")
