"""object_drop: one object left unannotated.

The most common real error: an annotator misses an object, so its pixels are annotated as
the dataset's unlabeled (background) class when it has a scored one (``--unlabeled``), else
keep the class around them (unlabeled is then an ignored value, or there is none, and
filling with the surrounding class keeps the error visible).
"""

from __future__ import annotations

from .base import Kind, changed_enough, missed, pick_object


def plant(mask, rng):
    picked = pick_object(mask, rng)
    if picked is None:
        return None
    window, inside, _ = picked  # the object's bounding box: nothing else changes
    copy = mask.labels.copy()
    copy[window][inside] = missed(mask, inside, window)[inside]
    return changed_enough(mask, copy, window)


KIND = Kind(name="object_drop", order=10, plant=plant,
            description="one object annotated as unlabeled, or as the class around it (a missed object)",
            phrase="missed objects")
