"""The scoring methods: one module each, found by this registry.

Every score lies in [0, 1]; lower means the annotation is more likely wrong. An image
with no scored pixel gets NaN. Each module of this package that defines ``METHOD`` (a
:class:`~segaudit.methods.base.Method`) is a method; adding one means adding its module
(see docs/development.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

from ..errors import InputError
from .base import Method, Settings

__all__ = ["AUTO", "DATASET_METHODS", "DEFAULT_METHOD", "METHODS", "PER_IMAGE_METHODS", "REGISTRY", "SCORERS", "Method",
           "Settings", "check_methods", "parse_methods", "resolve"]


def _discover() -> dict[str, Method]:
    found = []
    for module in pkgutil.iter_modules(__path__):
        method = getattr(importlib.import_module(f"{__name__}.{module.name}"), "METHOD", None)
        if isinstance(method, Method):
            found.append(method)
    return {m.name: m for m in sorted(found, key=lambda m: (m.order, m.name))}


#: Every method by name, in the order ``--method all`` lists them.
REGISTRY: dict[str, Method] = _discover()
METHODS = tuple(REGISTRY)
#: Methods scored from each image alone, in one pass.
PER_IMAGE_METHODS = tuple(name for name, m in REGISTRY.items() if m.per_image)
#: Methods on the downsampled grid; clc needs the whole dataset (extra passes).
DATASET_METHODS = tuple(name for name, m in REGISTRY.items() if m.needs_cells)
#: Per-image methods' finishing functions, by name.
SCORERS = {name: m.finish for name, m in REGISTRY.items() if m.per_image}

#: The calibrated ranking: every method computed, plus planted copies of a sample of the
#: masks; the candidate that finds them best ranks (:mod:`segaudit.calibration`).
AUTO = "auto"

#: The default ranking method (docs/methods.md): auto ranks by rsoftmin unless the errors it
#: plants into the user's own masks show surely that another candidate finds them better.
DEFAULT_METHOD = AUTO


def _unknown(name: str) -> InputError:
    return InputError(f"unknown method {name!r}; choose from {AUTO}, " + ", ".join(METHODS) + " or all")


def parse_methods(text: str) -> tuple[str, ...]:
    """Parse ``softmin``, a comma list such as ``cil,softmin``, or ``all``.

    The first method is the ranking key. Duplicates are dropped.
    """
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise InputError(f"--method is empty; choose from {AUTO}, " + ", ".join(METHODS) + " or all")
    chosen: list[str] = []
    for name in names:
        for method in METHODS if name == "all" else (name,):
            if method not in REGISTRY and method != AUTO:
                raise _unknown(method)
            if method not in chosen:
                chosen.append(method)
    return tuple(chosen)


def check_methods(methods: Iterable[str]) -> tuple[str, ...]:
    """Methods as a tuple, each one known; the first is the ranking key."""
    methods = tuple(methods)
    unknown = [m for m in methods if m not in REGISTRY and m != AUTO]
    if not methods or unknown:
        raise InputError(f"unknown or no methods {unknown or list(methods)}; choose from {AUTO}, " + ", ".join(METHODS))
    return methods


def resolve(methods: Iterable[str]) -> tuple[Method, ...]:
    """The :class:`Method` of each name (checked), in the given order; ``auto`` needs them all."""
    names = check_methods(methods)
    if AUTO in names:
        names = tuple(dict.fromkeys([n for n in names if n != AUTO] + list(METHODS)))
    return tuple(REGISTRY[name] for name in names)
