"""class_shift: the outline of every region of one class drawn wrong (``corrupt --kind shift``).

Each region of the class moves its outline radially by a periodic cubic spline through 5
Gaussian samples (standard deviation 10 % of the region's size); gained pixels take the
class, lost pixels the class around them.
"""

from __future__ import annotations

import numpy as np

from ...core.outlines import region_boxes
from .base import MIN_OBJECT_PIXELS, Kind, class_counts, class_regions, moved_window, redrawn

SIGMA = 0.10
#: A class with more regions than this is left alone (each region is redrawn).
MAX_REGIONS = 256


def plant(mask, rng):
    classes, counts = class_counts(mask)
    choices = classes[(counts >= MIN_OBJECT_PIXELS) & (counts < counts.sum())]
    if not choices.size:
        return None
    cls = int(choices[int(rng.integers(choices.size))])
    old = mask.labels == cls
    regions, n = class_regions(mask, cls)
    if n > MAX_REGIONS:
        return None
    new = np.zeros_like(old)
    for region, bbox in enumerate(region_boxes(regions, n), 1):  # each region's window only
        window, inside = moved_window(regions, region, bbox, rng, SIGMA, 0.5)
        new[window] |= inside
    return redrawn(mask, old, new, cls)


KIND = Kind(name="class_shift", order=80, plant=plant,
            description="the outline of every region of one class drawn wrong (~10 % of each region's size)",
            phrase="whole classes outlined wrong")
