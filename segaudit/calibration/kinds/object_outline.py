"""object_outline: one object's outline drawn wrong.

The outline moves radially from the object's centre by a periodic cubic spline through
5 Gaussian samples (standard deviation 15 % of the object's size, the mean side of its
bounding box), as ``segaudit corrupt --kind shift`` does for a whole class. Gained
pixels take the object's class; lost pixels the class around them.
"""

from __future__ import annotations

import numpy as np

from ...core.outlines import shifted_region
from .base import Kind, changed_enough, pick_object, surrounding

KNOTS = 5
SIGMA = 0.15


def plant(mask, rng):
    picked = pick_object(mask, rng)
    if picked is None:
        return None
    inside, cls = picked
    rows, cols = np.nonzero(inside)
    bbox = (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max()))
    size = (bbox[1] - bbox[0] + 1 + bbox[3] - bbox[2] + 1) / 2
    samples = rng.normal(0.0, max(1.0, SIGMA * size), KNOTS)
    window, new_inside = shifted_region(inside.astype(np.int32), 1, samples, bbox)
    grown = np.zeros_like(inside)
    grown[window] = new_inside
    copy = mask.labels.copy()
    lost = inside & ~grown
    if lost.any():
        copy[lost] = surrounding(mask, inside)[lost]
    copy[grown & ~inside & mask.scored] = cls
    return changed_enough(mask, copy)


KIND = Kind(name="object_outline", order=30, plant=plant,
            description="one object's outline drawn wrong (moved radially by up to ~15 % of its size)",
            phrase="wrong object outlines")
