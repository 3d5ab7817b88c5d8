"""K-fold splits that cannot leak, and the check that a store's predictions honour one.

- :func:`make_folds`: a deterministic, seeded split of a masks directory into k folds
  (``segaudit folds``). Images whose ids share a group (``group_by``: a regex whose first
  group names a city, a patient, a video sequence) stay in one fold, and the folds are
  balanced by size and by class presence (how many images of each fold hold each class).
- :func:`write_folds` / :func:`read_folds`: the ``image,fold`` table.
- :func:`recorded_folds` and :func:`check_folds`: which fold's model predicted each image of
  a store (the ``segaudit_fold`` attribute :class:`~segaudit.io.writer.PredictionWriter`
  stores on an image's array when given ``fold=``) against the folds table. An image
  predicted by the model of another fold was in that model's training set: its score
  would trust the very labels it should audit.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

#: The attribute of an image's array that names the fold whose model predicted it.
FOLD_ATTR = "segaudit_fold"
#: The folds table's columns.
COLUMNS = ("image", "fold")
#: How many offenders a one-line error names.
SHOWN = 3


# --- making a split -----------------------------------------------------------------


def group_of(image_id: str, pattern: re.Pattern | None) -> str:
    """The group an image belongs to: the regex's first group (the whole match if it has none).

    Without a pattern every image is its own group. InputError if the regex does not match.
    """
    if pattern is None:
        return image_id
    match = pattern.search(image_id)
    if match is None:
        raise InputError(f"--group-by {pattern.pattern!r} does not match image id {image_id!r}")
    value = match.group(1) if pattern.groups else match.group(0)
    if value is None:
        raise InputError(f"--group-by {pattern.pattern!r}: its first group took no part in matching {image_id!r}")
    return value


def compile_group_by(group_by: str | None) -> re.Pattern | None:
    """The ``--group-by`` regex, compiled (InputError naming the problem if it is not one)."""
    if group_by is None:
        return None
    try:
        return re.compile(group_by)
    except re.error as exc:
        raise InputError(f"--group-by {group_by!r} is not a regular expression: {exc}") from None


def assign_folds(groups: dict[str, list[str]], presence: dict[str, set[int]], k: int, seed: int = 0) -> dict[str, int]:
    """Assign whole groups to k folds, balancing size and class presence; deterministic for a seed.

    Parameters
    ----------
    groups : dict
        Group name -> the ids of its images.
    presence : dict
        Image id -> the class values present in its mask.
    k : int
        Number of folds (2 <= k <= number of groups).
    seed : int
        Shuffles the order in which equal groups are placed.

    Returns
    -------
    dict
        Image id -> fold (0 .. k-1).

    Notes
    -----
    Greedy: groups go largest first, then those holding the rarest class first (ties in a
    seeded random order), each to the fold where it least increases the squared deviation
    from the targets (N/k images, and n_c/k images holding class c for every class c),
    each deviation relative to its target so rare classes weigh as much as common ones.
    The first k groups seed the k folds, so no fold is empty.
    """
    names = sorted(groups)
    if k < 2:
        raise InputError(f"-k must be at least 2, got {k}")
    if len(names) < k:
        what = "groups" if any(len(v) > 1 for v in groups.values()) else "images"
        raise InputError(f"cannot split {len(names)} {what} into {k} folds")
    values = sorted({v for ids in groups.values() for i in ids for v in presence[i]})
    column = {v: n for n, v in enumerate(values)}
    counts = np.zeros((len(names), len(values)), np.float64)  # images of group g holding class c
    for g, name in enumerate(names):
        for image_id in groups[name]:
            for value in presence[image_id]:
                counts[g, column[value]] += 1
    sizes = np.array([len(groups[name]) for name in names], np.float64)
    class_target = counts.sum(0) / k
    size_target = sizes.sum() / k
    # the rarity of a group: the smallest dataset-wide count among the classes it holds
    totals = counts.sum(0)
    rarity = np.array([totals[row > 0].min() if (row > 0).any() else np.inf for row in counts])
    shuffled = np.random.default_rng(seed).permutation(len(names))
    order = sorted(range(len(names)), key=lambda g: (-sizes[g], rarity[g], shuffled[g]))

    fold_counts = np.zeros((k, len(values)), np.float64)
    fold_sizes = np.zeros(k, np.float64)
    weights = 1.0 / np.maximum(class_target, 1e-9) ** 2
    size_weight = max(1, len(values)) / size_target**2
    assignment: dict[str, int] = {}
    for position, g in enumerate(order):
        before = ((fold_counts - class_target) ** 2 * weights).sum(1) + (fold_sizes - size_target) ** 2 * size_weight
        after = (((fold_counts + counts[g] - class_target) ** 2 * weights).sum(1)
                 + (fold_sizes + sizes[g] - size_target) ** 2 * size_weight)
        cost = after - before
        if position < k:  # seed every fold first
            cost = np.where(fold_sizes == 0, cost, np.inf)
        fold = int(np.argmin(cost))  # ties: the lowest fold
        fold_counts[fold] += counts[g]
        fold_sizes[fold] += sizes[g]
        for image_id in groups[names[g]]:
            assignment[image_id] = fold
    return assignment


def _present_values(mask, ignore: tuple[int, ...], palette=None) -> set[int]:
    from .masks import read_mask

    values = np.unique(read_mask(mask, palette))
    return {int(v) for v in values if int(v) not in ignore}


def make_folds(
    masks: str | Path,
    k: int,
    *,
    seed: int = 0,
    group_by: str | None = None,
    mask_suffix: str = "",
    ignore_index: tuple[int, ...] = (255,),
    storage_options: dict | None = None,
    palette: str | Path | None = None,
    threads: int = 4,
    on_image=None,
) -> dict[str, int]:
    """A k-fold split of a masks directory: image id -> fold (0 .. k-1).

    Parameters
    ----------
    masks : str or Path
        The masks directory (ids as ``segaudit score`` reads them).
    k : int
        Number of folds, at least 2.
    seed : int
        The split is a function of the ids, the masks' class presence, k and the seed.
    group_by : str, optional
        A regex searched in each id; images with the same first group (whole match if the
        regex has no group) stay in one fold. An id it does not match is an error.
    mask_suffix, storage_options
        As for ``segaudit score``.
    ignore_index : tuple of int
        Mask values that are no class (left out of the class balance).
    palette : path, optional
        For RGB/RGBA masks: the colours' classes, as for ``segaudit score --palette``.
    threads : int
        Masks decoded at once (to read the class presence).
    on_image : callable, optional
        Called as ``on_image(done, total)`` after each mask.

    Returns
    -------
    dict
        Image id -> fold, in id order.
    """
    from .masks import find_masks, load_palette

    pattern = compile_group_by(group_by)
    colours = load_palette(palette) if palette is not None else None
    found = find_masks(masks, mask_suffix, storage_options)
    groups: dict[str, list[str]] = {}
    for mask in found:
        groups.setdefault(group_of(mask.image_id, pattern), []).append(mask.image_id)
    if k < 2:
        raise InputError(f"-k must be at least 2, got {k}")
    presence: dict[str, set[int]] = {}
    ignore = tuple(int(v) for v in ignore_index)
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="segaudit-folds") as pool:
        for done, (mask, values) in enumerate(
                zip(found, pool.map(lambda m: _present_values(m, ignore, colours), found)), 1):
            presence[mask.image_id] = values
            if on_image:
                on_image(done, len(found))
    assignment = assign_folds(groups, presence, k, seed)
    return {image_id: assignment[image_id] for image_id in sorted(assignment)}


@dataclass(frozen=True)
class FoldSummary:
    """Per fold: how many images and groups it holds (for the summary line)."""

    images: list[int]
    groups: list[int]


def summarise(assignment: dict[str, int], group_by: str | None = None) -> FoldSummary:
    """How many images and groups each fold holds."""
    k = max(assignment.values()) + 1 if assignment else 0
    pattern = compile_group_by(group_by)
    images = [0] * k
    groups: list[set[str]] = [set() for _ in range(k)]
    for image_id, fold in assignment.items():
        images[fold] += 1
        groups[fold].add(group_of(image_id, pattern))
    return FoldSummary(images=images, groups=[len(g) for g in groups])


# --- the table ----------------------------------------------------------------------


def folds_text(assignment: dict[str, int]) -> str:
    """The ``image,fold`` CSV, sorted by id."""
    from .tables import render

    return render(COLUMNS, [(image_id, assignment[image_id]) for image_id in sorted(assignment)], "csv")


def write_folds(assignment: dict[str, int], path: str | Path) -> None:
    """Write the ``image,fold`` CSV atomically (``-`` is not a path: print :func:`folds_text`)."""
    from .files import atomic_write_all

    atomic_write_all({Path(path): folds_text(assignment)})


def read_folds(path: str | Path) -> dict[str, int]:
    """Read an ``image,fold`` table (csv, jsonl or json): image id -> fold.

    InputError naming the file and line for a missing column, a repeated image or a fold
    that is not a non-negative integer.
    """
    from .tables import read_table

    table = read_table(path, "folds table", unique="image")
    missing = [c for c in COLUMNS if c not in table.header]
    if missing:
        raise InputError(f"{table.path}: folds table has no {' or '.join(repr(c) for c in missing)} column "
                         f"(expected the columns image,fold, as 'segaudit folds' writes)")
    folds: dict[str, int] = {}
    for index, row in enumerate(table.rows):
        image_id, text = row["image"], row["fold"].strip()
        if not image_id:
            raise table.error(index, "empty image id")
        if not re.fullmatch(r"\d+", text):
            raise table.error(index, f"fold {text!r} of {image_id!r} is not a non-negative integer")
        folds[image_id] = int(text)
    if not folds:
        raise InputError(f"{table.path}: folds table lists no image")
    return folds


# --- provenance ---------------------------------------------------------------------


def check_fold_value(fold: object, where: str) -> int:
    """A fold as PredictionWriter records it: a non-negative int (numpy ints too, not bools)."""
    if isinstance(fold, (bool, np.bool_)) or not isinstance(fold, (int, np.integer)) or int(fold) < 0:
        raise InputError(f"{where}: fold must be a non-negative integer, got {fold!r}")
    return int(fold)


def recorded_folds(path: str | Path, storage_options: dict | None = None) -> dict[str, int | None]:
    """Which fold's model predicted each image of a store: id -> fold (None: not recorded).

    Reads array metadata only. A stacked store records no provenance (every image None).
    """
    import zarr

    from .predictions import STACKED_ARRAY, _open_group, stacked_array, store_location

    group = _open_group(path, storage_options)
    stacked = stacked_array(group)
    if stacked is not None:
        ids = group.attrs.get("image_ids") or []
        return {str(i): None for i in ids} if ids else {STACKED_ARRAY: None}
    folds: dict[str, int | None] = {}
    for name, member in group.members(max_depth=None):
        if isinstance(member, zarr.Array):
            value = member.attrs.get(FOLD_ATTR)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InputError(f"{store_location(path)}/{name}: attribute {FOLD_ATTR} is {value!r}, "
                                 "not a non-negative integer")
            folds[name] = value
    return dict(sorted(folds.items()))


@dataclass
class FoldCheck:
    """The outcome of :func:`check_folds`."""

    images: int = 0          # images in the store
    recorded: int = 0        # of which with a recorded fold
    matching: int = 0        # of which predicted by their own fold's model
    wrong: list[tuple[str, int, int]] = field(default_factory=list)  # (id, recorded, folds table)
    unlisted: list[tuple[str, int]] = field(default_factory=list)    # (id, recorded): not in the table

    @property
    def ok(self) -> bool:
        return not self.wrong and not self.unlisted

    def describe(self) -> str:
        """One line for ``segaudit info``."""
        if not self.recorded:
            return "not recorded (written without fold=; nothing to check)"
        text = f"{self.matching} of {self.recorded} recorded image(s) predicted by their own fold's model"
        if self.recorded < self.images:
            text += f"; {self.images - self.recorded} image(s) without a recorded fold"
        if not self.ok:
            text += f"; {self.problem()}"
        return text

    def problem(self) -> str:
        """What is wrong, naming the first offenders."""
        parts = []
        if self.wrong:
            shown = ", ".join(f"{i} (predicted by fold {r}, in fold {t})" for i, r, t in self.wrong[:SHOWN])
            more = f" and {len(self.wrong) - SHOWN} more" if len(self.wrong) > SHOWN else ""
            parts.append(f"{len(self.wrong)} image(s) predicted by a model that trained on them: {shown}{more}")
        if self.unlisted:
            shown = ", ".join(f"{i} (fold {r})" for i, r in self.unlisted[:SHOWN])
            more = f" and {len(self.unlisted) - SHOWN} more" if len(self.unlisted) > SHOWN else ""
            parts.append(f"{len(self.unlisted)} image(s) not in the folds table: {shown}{more}")
        return "; ".join(parts)


def check_folds(recorded: dict[str, int | None], folds: dict[str, int]) -> FoldCheck:
    """Compare a store's recorded folds with a folds table (images without a record are not checked)."""
    result = FoldCheck(images=len(recorded))
    for image_id, fold in recorded.items():
        if fold is None:
            continue
        result.recorded += 1
        if image_id not in folds:
            result.unlisted.append((image_id, fold))
        elif folds[image_id] != fold:
            result.wrong.append((image_id, fold, folds[image_id]))
        else:
            result.matching += 1
    return result


def check_store_folds(store: str | Path, folds_path: str | Path, storage_options: dict | None = None) -> FoldCheck:
    """Check that every image of ``store`` with a recorded fold was predicted by its own fold's model.

    Raises
    ------
    InputError
        One line naming the store, the folds table and the first offenders. A store that
        records no fold passes (the returned check says so).
    """
    from .predictions import store_location

    folds = read_folds(folds_path)
    check = check_folds(recorded_folds(store, storage_options), folds)
    if not check.ok:
        raise InputError(f"{store_location(store)}: not out-of-fold according to {folds_path}: {check.problem()}")
    return check
