"""class_swap: two classes of the image exchange their pixels (``corrupt --kind swap``).

The two classes are drawn with probability proportional to their pixels: a swap is a
whole-image error, and drawing classes uniformly would make most swaps exchange two small
classes, a copy of object_class; by area, planted swaps span the sizes of real ones.
"""

from __future__ import annotations

import numpy as np

from .base import MIN_OBJECT_PIXELS, Kind, changed_enough, class_counts


def plant(mask, rng):
    classes, counts = class_counts(mask)
    big = counts >= MIN_OBJECT_PIXELS
    choices, weights = classes[big], counts[big].astype(np.float64)
    if choices.size < 2:
        return None
    a, b = (int(c) for c in rng.choice(choices, 2, replace=False, p=weights / weights.sum()))
    copy = mask.labels.copy()
    copy[mask.labels == a] = b
    copy[mask.labels == b] = a
    return changed_enough(mask, copy)


KIND = Kind(name="class_swap", order=70, plant=plant,
            description="two classes exchange their pixels across the image",
            phrase="two classes swapped")
