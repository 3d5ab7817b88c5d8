"""object_drop: one object left unannotated, painted over by its surroundings.

The most common real error: an annotator misses an object, so its pixels keep the class
around it. (Filling with the surrounding class, not an "unlabeled" class, keeps the error
visible where unlabeled is an ignored value.)
"""

from __future__ import annotations

from .base import Kind, changed_enough, pick_object, surrounding


def plant(mask, rng):
    picked = pick_object(mask, rng)
    if picked is None:
        return None
    inside, _ = picked
    copy = mask.labels.copy()
    copy[inside] = surrounding(mask, inside)[inside]
    return changed_enough(mask, copy)


KIND = Kind(name="object_drop", order=10, plant=plant,
            description="one object painted over by the class around it (a missed object)",
            phrase="missed objects")
