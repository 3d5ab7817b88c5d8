"""What a planted kind is, and the pieces the object-level kinds share.

A kind turns one real mask into a copy holding one realistic annotation error, or gives
None when the mask has nothing it can change. It never touches an ignored pixel and never
writes an ignored value, so a copy has exactly the scored pixels of its mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ...core.components import components_of, labelled_runs, value_counts
from ...core.outlines import components, nearest_outside, nearest_outside_window, shifted_region

#: A component is an object when it holds at least this share of the image's scored
#: pixels (and MIN_OBJECT_PIXELS) and at most MAX_OBJECT_SHARE of them.
MIN_OBJECT_SHARE = 0.0005
MIN_OBJECT_PIXELS = 16
MAX_OBJECT_SHARE = 0.25
#: A copy changes at least this many pixels, else the kind passes.
MIN_CHANGED = 8


@dataclass(frozen=True)
class Mask:
    """One mask as the kinds see it."""

    labels: np.ndarray  # int32 (H, W), ignored values included
    scored: np.ndarray  # bool (H, W): not an ignored value
    n_classes: int
    #: The dataset's unlabeled (background) class, when it is a scored class: what a missed
    #: object is annotated as. None: a missed object keeps the class around it.
    unlabeled: int | None = None
    #: What the kinds planting into this mask share (its classes, its objects), computed once.
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def side(self) -> float:
        """The image's mean side, in pixels (the scale of outlines and blobs)."""
        return (self.labels.shape[0] + self.labels.shape[1]) / 2


@dataclass(frozen=True)
class Kind:
    """A kind of planted error: ``plant(mask, rng)`` gives the copy's labels or None."""

    name: str
    order: int  # position in the calibration table; seeds the kind's generator
    plant: Callable[[Mask, np.random.Generator], np.ndarray | None]
    description: str
    phrase: str  # what a user calls it: "missed objects"


def class_counts(mask: Mask) -> tuple[np.ndarray, np.ndarray]:
    """The scored classes present (ascending, the labels' dtype) and their pixel counts:
    ``np.unique(labels[scored], return_counts=True)``, counted once per mask."""
    if "classes" not in mask.memo:
        counts, low = value_counts(mask.labels, mask.scored)  # one pass, no copy of the scored values
        if low < 0:  # bincount counts from 0
            classes, counts = np.unique(mask.labels[mask.scored], return_counts=True)
        else:
            classes = np.flatnonzero(counts)
            classes, counts = classes.astype(mask.labels.dtype), counts[classes].astype(np.int64)
        mask.memo["classes"] = (classes, counts)
    return mask.memo["classes"]


def unscored_values(mask: Mask) -> np.ndarray:
    """The values of the mask's ignored pixels, ascending (``np.unique``), found once per mask."""
    if "unscored_values" not in mask.memo:
        unscored = ~mask.scored
        counts, low = value_counts(mask.labels, unscored)  # np.unique's values, by counting
        if low < 0:  # bincount counts from 0
            mask.memo["unscored_values"] = np.unique(mask.labels[unscored])
        else:
            mask.memo["unscored_values"] = np.flatnonzero(counts).astype(mask.labels.dtype)
    return mask.memo["unscored_values"]


def class_objects(mask: Mask, cls: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The 8-connected regions of scored class ``cls`` from the mask's shared components, in
    row-major order of their first pixels (as :func:`class_regions` numbers them): their
    first pixels' flat indices and (top, bottom, left, right) boxes, inclusive. None when
    the class also has ignored pixels (its regions are then not the shared components')."""
    if np.isin(cls, unscored_values(mask)):
        return None
    _component_roots(mask)
    firsts, _, boxes = mask.memo["components"]
    ours = mask.labels.ravel()[firsts] == cls
    return firsts[ours], boxes[ours]


def _component_roots(mask: Mask) -> np.ndarray:
    """Each pixel's 8-connected component of one scored class, as the flat index of its
    first pixel (-1 where ignored): computed once per mask."""
    if "roots" not in mask.memo:
        # By runs (a mask's rows are long runs of a class): component_roots(first, first)'s
        # roots, and the components' table with them.
        first = np.where(mask.scored, mask.labels, -1).astype(np.int32, copy=False)
        roots, *table = labelled_runs(first)
        mask.memo["roots"], mask.memo["components"] = roots, table
    return mask.memo["roots"]


def objects(mask: Mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mask's objects: 8-connected components of one scored class.

    Returns ``(roots, eligible, boxes)``: each pixel's component as the flat index of its
    first pixel (-1 where ignored), the roots of the components sized like objects, in
    row-major order of their first pixels, and their (top, bottom, left, right) bounding
    boxes, inclusive.
    """
    if "objects" not in mask.memo:
        roots = _component_roots(mask)
        scored = int(class_counts(mask)[1].sum())  # every scored pixel holds a class counted
        firsts, sizes, boxes = mask.memo["components"]
        low = max(MIN_OBJECT_PIXELS, MIN_OBJECT_SHARE * scored)
        sized = (sizes >= low) & (sizes <= MAX_OBJECT_SHARE * scored)
        mask.memo["objects"] = (roots.reshape(mask.labels.shape), firsts[sized], boxes[sized])
    return mask.memo["objects"]


def class_regions(mask: Mask, cls: int) -> tuple[np.ndarray, int]:
    """The 8-connected regions of scored class ``cls``: an int32 map (0 = elsewhere, 1.. in
    row-major order of each region's first pixel) and their count, as
    ``outlines.components(labels == cls)`` numbers them, from the mask's shared components."""
    inside = (mask.labels == cls).ravel()
    if (inside & ~mask.scored.ravel()).any():  # the class has unscored pixels: its own components
        regions, count = components(mask.labels == cls)
        return regions, count
    regions, count = components_of(mask.labels, _component_roots(mask), cls)
    return regions, int(count)


def pick_object(mask: Mask, rng: np.random.Generator) -> tuple[tuple[slice, slice], np.ndarray, int] | None:
    """One object chosen at random (each equally likely): its bounding box's window of the
    image, its pixels in that window and its class."""
    roots, eligible, boxes = objects(mask)
    if not eligible.size:
        return None
    pick = int(rng.integers(eligible.size))
    chosen = int(eligible[pick])
    top, bottom, left, right = (int(v) for v in boxes[pick])
    window = (slice(top, bottom + 1), slice(left, right + 1))
    return window, roots[window] == chosen, int(mask.labels.flat[chosen])


def missed(mask: Mask, inside: np.ndarray, window: tuple[slice, slice] | None = None) -> np.ndarray:
    """``labels`` with ``inside`` annotated as a missed object is: the unlabeled class when
    the dataset has a scored one, else the class around it (:func:`surrounding`). With a
    ``window``, ``inside`` is that window of the image and so is the result (its values
    count only at ``inside``'s pixels)."""
    if mask.unlabeled is None:
        return surrounding(mask, inside, window)
    return np.where(inside, np.int32(mask.unlabeled), mask.labels if window is None else mask.labels[window])


def surrounding(mask: Mask, inside: np.ndarray, window: tuple[slice, slice] | None = None,
                need: np.ndarray | None = None) -> np.ndarray:
    """``labels`` with ``inside`` filled from the nearest scored pixel outside it.

    With a ``window`` (slices with starts), ``inside`` is that window of the image, and so is
    the result, whose values count only at ``inside``'s pixels (at ``need``'s, a part of
    ``inside``, when given): the same values there, computed on the image's part the fill
    can reach from them only.
    """
    if window is None:
        return nearest_outside(inside | ~mask.scored, mask.labels)
    filled, fill = nearest_outside_window(inside, window, mask.labels, mask.scored, need)
    top, left = window[0].start - filled[0].start, window[1].start - filled[1].start
    return fill[top:top + inside.shape[0], left:left + inside.shape[1]]


#: Knots of the periodic spline an outline moves by (as ``segaudit corrupt --kind shift``).
OUTLINE_KNOTS = 5


def moved_window(regions: np.ndarray, region: int, bbox, rng: np.random.Generator, share: float,
                 floor: float, origin: tuple[int, int] = (0, 0),
                 shape: tuple[int, int] | None = None) -> tuple[tuple[slice, slice], np.ndarray]:
    """One region of ``regions`` after its outline moves radially by a spline through 5
    Gaussian samples of standard deviation ``share`` of its size (the mean side of its
    bounding box ``bbox``: top, bottom, left, right), at least ``floor`` pixels: the window
    and the moved region inside it (nothing outside it).
    ``regions`` may be a window at ``origin`` of an image of ``shape`` holding the region's
    bounding box (as :func:`~segaudit.core.outlines.shifted_region`)."""
    bbox = tuple(int(v) for v in bbox)
    size = (bbox[1] - bbox[0] + 1 + bbox[3] - bbox[2] + 1) / 2
    samples = rng.normal(0.0, max(floor, share * size), OUTLINE_KNOTS)
    return shifted_region(regions, region, samples, bbox, origin=origin, shape=shape)


def redrawn(mask: Mask, old: np.ndarray, new: np.ndarray, cls: int,
            window: tuple[slice, slice] | None = None) -> np.ndarray | None:
    """The copy where ``cls`` covers ``new`` instead of ``old``: gained scored pixels take it,
    lost ones the class around them (None when too little changed). With a ``window``
    (slices with starts), ``old`` and ``new`` are that window of the image and hold all of
    the class's old and new pixels."""
    copy = mask.labels.copy()
    part = copy if window is None else copy[window]
    lost = old & ~new
    if lost.any():
        part[lost] = surrounding(mask, old, window, need=lost if window is not None else None)[lost]
    part[new & ~old & (mask.scored if window is None else mask.scored[window])] = cls
    return changed_enough(mask, copy, window)


def changed_enough(mask: Mask, copy: np.ndarray, window: tuple[slice, slice] | None = None) -> np.ndarray | None:
    """The copy, or None when it changes fewer than MIN_CHANGED pixels (all of them inside
    ``window`` when one is given)."""
    changed = copy != mask.labels if window is None else copy[window] != mask.labels[window]
    return copy if int(changed.sum()) >= MIN_CHANGED else None
