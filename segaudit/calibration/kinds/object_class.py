"""object_class: one object given another class.

The new class is, with probability 1/2, the class the object touches most (the class an
annotator is most likely to confuse it with in this scene), else another class of the
image at random (any other class when the image has one class only).
"""

from __future__ import annotations

import numpy as np

from .base import Kind, changed_enough, class_counts, pick_object, surrounding


def plant(mask, rng):
    picked = pick_object(mask, rng)
    if picked is None:
        return None
    window, inside, cls = picked  # the object's bounding box: nothing else changes
    present = class_counts(mask)[0]
    others = [int(c) for c in present if c != cls]
    if rng.random() < 0.5:
        around = surrounding(mask, inside, window)[inside]
        around = around[around != cls]
        new = int(np.bincount(around).argmax()) if around.size else None
    else:
        new = None
    if new is None:
        pool = others or [c for c in range(mask.n_classes) if c != cls]
        if not pool:
            return None
        new = pool[int(rng.integers(len(pool)))]
    copy = mask.labels.copy()
    copy[window][inside] = new
    return changed_enough(mask, copy, window)


KIND = Kind(name="object_class", order=20, plant=plant,
            description="one object given another class (preferably the one it touches most)",
            phrase="objects given the wrong class")
