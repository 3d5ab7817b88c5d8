"""class_drop: every pixel of one class left out (the paper's drop, in one image).

The pixels become the unlabeled class when the dataset has a scored one (``--unlabeled``),
as ``segaudit corrupt --kind drop``; else the classes around them (``--fill nearest``).
"""

from __future__ import annotations

import numpy as np

from .base import MIN_OBJECT_PIXELS, Kind, changed_enough, class_counts, missed

#: The class dropped holds at most this share of the scored pixels (not the background).
MAX_SHARE = 0.5


def plant(mask, rng):
    classes, counts = class_counts(mask)
    choices = classes[(counts >= MIN_OBJECT_PIXELS) & (counts <= MAX_SHARE * counts.sum())
                      & (classes != (-1 if mask.unlabeled is None else mask.unlabeled))]
    if classes.size < 2 or not choices.size:
        return None
    cls = int(choices[int(rng.integers(choices.size))])
    inside = mask.labels == cls
    copy = mask.labels.copy()
    copy[inside] = missed(mask, inside)[inside]
    return changed_enough(mask, copy)


KIND = Kind(name="class_drop", order=60, plant=plant,
            description="every pixel of one class painted over by the classes around it (a class left out)",
            phrase="classes left out of a whole image")
