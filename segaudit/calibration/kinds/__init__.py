"""The kinds of error the calibration plants: one module each, found by this registry.

Each module of this package that defines ``KIND`` (a :class:`~.base.Kind`) is a kind;
adding one means adding its module. ``segaudit corrupt`` plants them too.
"""

from __future__ import annotations

import importlib
import pkgutil
import zlib

import numpy as np

from .base import Kind, Mask


def _discover() -> dict[str, Kind]:
    found = []
    for module in pkgutil.iter_modules(__path__):
        kind = getattr(importlib.import_module(f"{__name__}.{module.name}"), "KIND", None)
        if isinstance(kind, Kind):
            found.append(kind)
    return {k.name: k for k in sorted(found, key=lambda k: (k.order, k.name))}


#: Every planted kind by name, in the calibration table's order.
PLANTED_KINDS: dict[str, Kind] = _discover()


def phrase(kind: str) -> str:
    """How a planted kind is named to the user ("missed objects"); an unknown name as it is."""
    found = PLANTED_KINDS.get(kind)
    return found.phrase if found is not None else kind


def kind_rng(seed: int, kind: Kind, image_id: str) -> np.random.Generator:
    """The generator of one kind in one image: the same for a seed and an id wherever it runs."""
    return np.random.default_rng([seed, kind.order, zlib.crc32(image_id.encode("utf-8"))])


def plant(kind: Kind, labels: np.ndarray, ignored: np.ndarray, n_classes: int, seed: int,
          image_id: str, unlabeled: int | None = None) -> np.ndarray | None:
    """One planted copy of ``labels`` (int32), or None when ``kind`` cannot change it.

    ``ignored``: bool (H, W), the pixels holding an ignored value (never changed);
    ``unlabeled``: the dataset's scored unlabeled class, what a missed object becomes.
    """
    return plant_kinds((kind,), labels, ignored, n_classes, seed, image_id, unlabeled)[0]


def plant_kinds(kinds, labels: np.ndarray, ignored: np.ndarray, n_classes: int, seed: int, image_id: str,
                unlabeled: int | None = None) -> list[np.ndarray | None]:
    """:func:`plant` for each of ``kinds`` into one mask: what the kinds share (its classes,
    its objects) is computed once; each kind draws from its own generator, so every copy is
    the one :func:`plant` gives alone."""
    mask = Mask(np.ascontiguousarray(labels, dtype=np.int32), ~ignored, n_classes, unlabeled)
    copies = []
    for kind in kinds:
        copy = kind.plant(mask, kind_rng(seed, kind, image_id))
        copies.append(None if copy is None else np.ascontiguousarray(copy, dtype=np.int32))
    return copies


__all__ = ["Kind", "Mask", "PLANTED_KINDS", "kind_rng", "phrase", "plant", "plant_kinds"]
