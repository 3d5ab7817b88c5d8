"""class_shift: the outline of every region of one class drawn wrong (``corrupt --kind shift``).

Each region of the class moves its outline radially by a periodic cubic spline through 5
Gaussian samples (standard deviation 10 % of the region's size); gained pixels take the
class, lost pixels the class around them.
"""

from __future__ import annotations

import numpy as np

from ...core.outlines import region_boxes
from .base import MIN_OBJECT_PIXELS, Kind, class_counts, class_objects, class_regions, moved_window, redrawn

SIGMA = 0.10
#: A class with more regions than this is left alone (each region is redrawn).
MAX_REGIONS = 256


def plant(mask, rng):
    classes, counts = class_counts(mask)
    choices = classes[(counts >= MIN_OBJECT_PIXELS) & (counts < counts.sum())]
    if not choices.size:
        return None
    cls = int(choices[int(rng.integers(choices.size))])
    shared = class_objects(mask, cls)
    moved = []
    if shared is None:  # the class has ignored pixels too: its own regions, on the whole image
        regions, n = class_regions(mask, cls)
        if n > MAX_REGIONS:
            return None
        for region, bbox in enumerate(region_boxes(regions, n), 1):  # each region's window only
            moved.append(moved_window(regions, region, bbox, rng, SIGMA, 0.5))
    else:
        # Each region as its bounding box's window of the shared components (the same region).
        firsts, boxes = shared
        if firsts.size > MAX_REGIONS:
            return None
        roots = mask.memo["roots"].reshape(mask.labels.shape)
        for first, bbox in zip(firsts, boxes):
            top, bottom, left, right = (int(v) for v in bbox)
            inside = roots[top:bottom + 1, left:right + 1] == first
            moved.append(moved_window(inside.view(np.int8), 1, bbox, rng, SIGMA, 0.5,
                                      origin=(top, left), shape=mask.labels.shape))
    # The windows hold their regions' boxes: together every pixel of the class, old or new.
    top, bottom = min(w[0].start for w, _ in moved), max(w[0].stop for w, _ in moved)
    left, right = min(w[1].start for w, _ in moved), max(w[1].stop for w, _ in moved)
    window = (slice(top, bottom), slice(left, right))
    old = mask.labels[window] == cls
    new = np.zeros_like(old)
    for (rows, cols), inside in moved:
        new[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left] |= inside
    return redrawn(mask, old, new, cls, window)


KIND = Kind(name="class_shift", order=80, plant=plant,
            description="the outline of every region of one class drawn wrong (~10 % of each region's size)",
            phrase="whole classes outlined wrong")
