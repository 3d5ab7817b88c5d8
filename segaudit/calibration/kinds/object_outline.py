"""object_outline: one object's outline drawn wrong.

The outline moves radially from the object's centre by a periodic cubic spline through
5 Gaussian samples (standard deviation 15 % of the object's size, the mean side of its
bounding box), as ``segaudit corrupt --kind shift`` does for a whole class. Gained
pixels take the object's class; lost pixels the class around them.
"""

from __future__ import annotations

import numpy as np

from .base import Kind, moved_outline, pick_object, redrawn

SIGMA = 0.15


def plant(mask, rng):
    picked = pick_object(mask, rng)
    if picked is None:
        return None
    inside, cls = picked
    return redrawn(mask, inside, moved_outline(inside.astype(np.int32), 1, rng, SIGMA, 1.0), cls)


KIND = Kind(name="object_outline", order=30, plant=plant,
            description="one object's outline drawn wrong (moved radially by up to ~15 % of its size)",
            phrase="wrong object outlines")
