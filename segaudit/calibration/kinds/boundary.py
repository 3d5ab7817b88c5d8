"""boundary: every boundary of one class moved by a one-sided, correlated random walk.

The biased, spatially correlated noise of real annotators (Yao et al., ICLR 2023), as
``segaudit corrupt --kind boundary``: mean displacement 1 % of the image's mean side
(at least 1.5 pixels), correlation length 20 boundary pixels, outward or inward.
"""

from __future__ import annotations

import numpy as np

from ...core.outlines import DEFAULT_CORRELATION, move_boundary_into
from .base import Kind, changed_enough, class_counts, surrounding, unscored_values

MEAN_SHARE = 0.01
MIN_MEAN = 1.5


def plant(mask, rng):
    classes, counts = class_counts(mask)
    # A class big enough to have boundaries worth moving, not the whole image.
    total = counts.sum() if counts.size else 0
    choices = classes[(counts >= 64) & (counts < total)]
    if not choices.size:
        return None
    cls = int(choices[int(rng.integers(choices.size))])
    mean = max(MIN_MEAN, MEAN_SHARE * mask.side)
    copy = mask.labels.copy()
    window = move_boundary_into(copy, mask.labels, cls, rng, mean, DEFAULT_CORRELATION, ~mask.scored)
    # A lost pixel whose nearest outside pixel is ignored takes the nearest scored class
    # instead: a copy keeps exactly its mask's scored pixels.
    ignored_values = unscored_values(mask)
    if np.isin(classes, ignored_values).any():
        # A scored class is also an ignored pixel's value: any of its scored pixels, changed
        # or not, counts (on the whole image).
        lost_to_ignored = mask.scored & np.isin(copy, ignored_values)
        if lost_to_ignored.any():
            copy[lost_to_ignored] = surrounding(mask, mask.labels == cls)[lost_to_ignored]
        return changed_enough(mask, copy)
    # Else only a changed pixel can hold an ignored value: all in the window, as is the class.
    part = copy[window]
    lost_to_ignored = mask.scored[window] & np.isin(part, ignored_values)
    if lost_to_ignored.any():
        part[lost_to_ignored] = surrounding(mask, mask.labels[window] == cls, window,
                                            need=lost_to_ignored)[lost_to_ignored]
    return changed_enough(mask, copy, window)


KIND = Kind(name="boundary", order=40, plant=plant,
            description="every boundary of one class moved by a one-sided random walk (~1 % of the image's side)",
            phrase="biased boundaries")
