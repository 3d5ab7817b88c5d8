"""class_swap: two classes of the image exchange their pixels (``corrupt --kind swap``)."""

from __future__ import annotations

import numpy as np

from .base import MIN_OBJECT_PIXELS, Kind, changed_enough


def plant(mask, rng):
    classes, counts = np.unique(mask.labels[mask.scored], return_counts=True)
    choices = classes[counts >= MIN_OBJECT_PIXELS]
    if choices.size < 2:
        return None
    a, b = (int(c) for c in rng.choice(choices, 2, replace=False))
    copy = mask.labels.copy()
    copy[mask.labels == a] = b
    copy[mask.labels == b] = a
    return changed_enough(mask, copy)


KIND = Kind(name="class_swap", order=70, plant=plant,
            description="two classes exchange their pixels across the image",
            phrase="two classes swapped")
