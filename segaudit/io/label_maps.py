"""Label maps: mask values translated to class indices while masks are read (``--label-map``).

A label map says, for every value a mask may hold, which class of the predictions it is, or
that it is ignored. It is either a built-in name for a common dataset convention
(:data:`BUILTIN`) or a file: a JSON object ``{"7": 0, "0": null, "1": "ignore"}`` or a
two-column CSV ``value,class`` (a first line that is not a number is a header; ``ignore``,
``null`` or an empty class means ignored). Every value a mask holds must be covered.

:func:`load_label_map` reads the map; :meth:`LabelMap.lookup` turns it into a
:class:`LabelLookup` for a store of K classes and the ignore value in force, checked once;
:meth:`LabelLookup.apply` maps a decoded mask with one gather per pixel.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, one_line

#: The largest mask value a label map may name (its lookup table has one entry per value).
MAX_VALUE = 2**24 - 1

_IGNORE_WORDS = {"ignore", "null", "none", ""}

# --- the built-in maps --------------------------------------------------------------------

# Cityscapes labelIds (cityscapesScripts' helpers/labels.py) -> the 19 trainIds; the other
# ids 0..33 (unlabeled, ego vehicle, ..., parking, rail track, guard rail, ...) are ignored.
_CITYSCAPES_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                     25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
_CITYSCAPES = {value: _CITYSCAPES_TRAIN.get(value) for value in range(34)}

# COCO-Stuff (stuffthingmaps, 0-based): ids 0..181 with 255 unlabeled. These 11 thing ids
# (COCO's unused category ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91, 1-based) never
# occur; the 171 others become 0..170 in order.
COCO_STUFF_UNUSED = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
_COCO_STUFF_USED = [value for value in range(182) if value not in COCO_STUFF_UNUSED]
_COCO_STUFF = {**{value: index for index, value in enumerate(_COCO_STUFF_USED)}, 255: None}


def _ade20k(n_classes: int) -> dict[int, int | None]:
    """ADE20K (SceneParsing): 0 is "other" (ignored), value k is class k - 1, for K classes."""
    return {0: None, **{value: value - 1 for value in range(1, n_classes + 1)}}


#: Built-in maps by name: a fixed mapping, or a function of the predictions' K.
BUILTIN: dict[str, Mapping[int, int | None] | Callable[[int], Mapping[int, int | None]]] = {
    "cityscapes": _CITYSCAPES,
    "ade20k": _ade20k,
    "coco-stuff": _COCO_STUFF,
}


# --- reading a map ------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelMap:
    """A label map as given: a built-in name, a file, or a mapping passed to the API."""

    source: str  # the built-in name or the file's path, for messages
    mapping: Mapping[int, int | None] | Callable[[int], Mapping[int, int | None]]
    builtin: bool = False

    def record(self) -> str | dict[str, int | None]:
        """For the run record: the built-in name, the file's absolute path, or the mapping itself."""
        if self.builtin:
            return self.source
        if isinstance(self.mapping, Mapping) and self.source == _INLINE:
            return {str(value): self.mapping[value] for value in sorted(self.mapping)}
        return str(Path(self.source).resolve())

    def lookup(self, n_classes: int, ignore: tuple[int, ...], check_classes: bool = True) -> LabelLookup:
        """The lookup table for K = ``n_classes`` and these ignore indices; InputError if the map
        names a class the predictions do not have (unless not ``check_classes``), or maps to
        ignore with no ignore index."""
        mapping = self.mapping(n_classes) if callable(self.mapping) else self.mapping
        name = "the label map" if self.source == _INLINE else f"label map {self.source}"
        ignored = [value for value, cls in mapping.items() if cls is None]
        if ignored and not ignore:
            raise InputError(f"{name} maps {len(ignored)} value(s) to ignore (e.g. {ignored[0]}) but no ignore "
                             "index is in force (--no-ignore); pass --ignore-index N for them")
        ignore_value = ignore[0] if ignore else -1
        too_big = [(value, cls) for value, cls in mapping.items()
                   if check_classes and cls is not None and cls >= n_classes and cls not in ignore]
        if too_big:
            value, cls = min(too_big, key=lambda pair: pair[1])
            largest = max(cls for _, cls in too_big)
            raise InputError(f"{name} maps value {value} to class {cls} (and up to {largest}), but the predictions "
                             f"have K={n_classes} classes (0..{n_classes - 1})")
        size = max(mapping) + 2  # the last entry catches every value above the map's largest
        table = np.full(size, _UNCOVERED, np.int32)
        for value, cls in mapping.items():
            table[value] = ignore_value if cls is None else cls
        return LabelLookup(name, table)


_INLINE = "(mapping)"
_UNCOVERED = -1


def load_label_map(spec: str | Path | Mapping | LabelMap) -> LabelMap:
    """A built-in name (:data:`BUILTIN`), a JSON or CSV file, or a mapping value -> class or None.

    InputError for an unknown name that is not a file, an unreadable or malformed file, a
    negative or too-large value or class, or a value given twice.
    """
    if isinstance(spec, LabelMap):
        return spec
    if isinstance(spec, Mapping):
        return LabelMap(_INLINE, _check_pairs(list(spec.items()), "label map"))
    text = str(spec)
    if text in BUILTIN:
        return LabelMap(text, BUILTIN[text], builtin=True)
    from .files import require_regular_file

    path = Path(spec)
    require_regular_file(path, "label map")
    if not path.is_file():
        names = ", ".join(BUILTIN)
        raise InputError(f"label map not found: {text} is neither a file nor a built-in map ({names})")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read label map: {one_line(exc, type(exc).__name__)}") from None
    if path.suffix.lower() == ".json" or content.lstrip().startswith("{"):
        pairs = _json_pairs(content, path)
    else:
        pairs = _csv_pairs(content, path)
    return LabelMap(str(path), _check_pairs(pairs, str(path)))


def _json_pairs(content: str, path: Path) -> list[tuple[object, object]]:
    try:
        # Every pair kept, in order: a key given twice is checked like a CSV row given twice
        # (json.loads would keep the last one silently).
        data = json.loads(content, object_pairs_hook=_Pairs)
    except ValueError as exc:
        raise InputError(f"{path}: cannot read label map JSON: {one_line(exc)}") from None
    if not isinstance(data, _Pairs):
        raise InputError(f"{path}: a JSON label map must be an object of mask value -> class index or null")
    return list(data)


class _Pairs(list):
    """A JSON object as the list of its (key, value) pairs, duplicates included."""


def _csv_pairs(content: str, path: Path) -> list[tuple[object, object]]:
    rows = [row for row in csv.reader(io.StringIO(content)) if row and any(cell.strip() for cell in row)]
    if rows and not _digits(rows[0][0].strip()):
        rows = rows[1:]  # a header
    pairs = []
    for number, row in enumerate(rows, 1):
        if len(row) != 2:
            raise InputError(f"{path}: label map row {number} must have 2 columns (value,class), got {len(row)}")
        pairs.append((row[0].strip(), row[1].strip()))
    return pairs


def _whole(value: object) -> int | None:
    """An integer from an int or a string of digits; None otherwise (bool is no integer here)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _digits(value.strip().lstrip("-")):
        return int(value)
    return None


def _digits(text: str) -> bool:
    """Whether ``text`` is ASCII digits only (``"²".isdigit()`` is true, but int() refuses it)."""
    return text.isascii() and text.isdigit()


def _check_pairs(pairs: list[tuple[object, object]], where: str) -> dict[int, int | None]:
    if not pairs:
        raise InputError(f"{where}: the label map is empty")
    mapping: dict[int, int | None] = {}
    for raw_value, raw_class in pairs:
        value = _whole(raw_value)
        if value is None or not 0 <= value <= MAX_VALUE:
            raise InputError(f"{where}: mask value {raw_value!r} must be a whole number from 0 to {MAX_VALUE}")
        if raw_class is None or (isinstance(raw_class, str) and raw_class.strip().lower() in _IGNORE_WORDS):
            cls = None
        else:
            cls = _whole(raw_class)
            if cls is None or not 0 <= cls <= MAX_VALUE:
                raise InputError(f"{where}: class for mask value {value} must be a class index >= 0 or "
                                 f"ignore/null, got {raw_class!r}")
        if value in mapping and mapping[value] != cls:
            raise InputError(f"{where}: mask value {value} is mapped twice ({mapping[value]} and {cls})")
        mapping[value] = cls
    return mapping


# --- applying a map -----------------------------------------------------------------------


@dataclass(frozen=True)
class LabelLookup:
    """A label map as a lookup table for one dataset: ``table[value]`` is the class, the ignore
    value, or -1 for values the map does not cover (the last entry stands for every larger value)."""

    source: str
    table: np.ndarray  # int32

    def apply(self, labels: np.ndarray, where: str) -> np.ndarray:
        """The mapped labels (int32, same shape); InputError naming ``where``, the uncovered
        values and their pixel counts if the map does not cover a value."""
        mapped = np.take(self.table, labels, mode="clip")  # values are >= 0: clip only catches large ones
        if mapped.size and int(mapped.min()) < 0:
            uncovered = labels[mapped < 0]
            values, counts = np.unique(uncovered, return_counts=True)
            order = np.argsort(-counts, kind="stable")
            listed = ", ".join(f"{values[i]} ({counts[i]} px)" for i in order[:3])
            more = f" and {len(values) - 3} more" if len(values) > 3 else ""
            raise InputError(f"{where}: mask values not in {self.source}: {listed}{more}")
        return mapped
