"""object_outline: one object's outline drawn wrong.

The outline moves radially from the object's centre by a periodic cubic spline through
5 Gaussian samples (standard deviation 15 % of the object's size, the mean side of its
bounding box), as ``segaudit corrupt --kind shift`` does for a whole class. Gained
pixels take the object's class; lost pixels the class around them.
"""

from __future__ import annotations

import numpy as np

from .base import Kind, moved_window, pick_object, redrawn

SIGMA = 0.15


def plant(mask, rng):
    picked = pick_object(mask, rng)
    if picked is None:
        return None
    box, inside, cls = picked
    bbox = (box[0].start, box[0].stop - 1, box[1].start, box[1].stop - 1)
    # The moved outline's window holds the object's box (it is that box grown by >= 2 pixels,
    # within the image): both outlines, and every pixel that changes.
    window, new = moved_window(inside.view(np.int8), 1, bbox, rng, SIGMA, 1.0,
                               origin=(bbox[0], bbox[2]), shape=mask.labels.shape)
    old = np.zeros_like(new)
    old[box[0].start - window[0].start:box[0].stop - window[0].start,
        box[1].start - window[1].start:box[1].stop - window[1].start] = inside
    return redrawn(mask, old, new, cls, window)


KIND = Kind(name="object_outline", order=30, plant=plant,
            description="one object's outline drawn wrong (moved radially by up to ~15 % of its size)",
            phrase="wrong object outlines")
