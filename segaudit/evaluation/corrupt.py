"""Planting annotation errors in a copy of a mask set: ``segaudit corrupt``.

The three kinds of error of the paper's benchmark (section 4.1):

- **drop**: every pixel of a chosen class becomes the unlabeled class;
- **swap**: two chosen classes exchange their pixels across the whole image;
- **shift**: the outline of every region (8-connected component) of a chosen class is
  perturbed radially from the region's bounding-box centre by f(angle), a periodic cubic
  spline through 5 Gaussian samples, and the region is refilled; lost pixels become the
  unlabeled class, gained pixels are taken from whatever class held them.

And a fourth, the spatially correlated and biased boundary noise of real annotators (Yao et
al., ICLR 2023, "Learning to segment from noisy annotations: a spatial correction approach"):

- **boundary**: every class boundary of a chosen class moves by a displacement that follows a
  random walk along the boundary (an AR(1) walk over a depth-first traversal of the boundary
  pixels, mean ``sigma``, standard deviation ``sigma / 2``, correlation length
  ``correlation`` boundary pixels), outward in half of the images and inward in the other
  half: mostly one-sided, as an annotator who draws a class consistently too large or too
  small. Gained pixels take the class (ignored pixels never do); lost pixels take the class
  of the nearest pixel outside it (the class across the boundary).

And a fifth, the outline of an annotator who clicks few polygon vertices or paints with a big
brush:

- **coarse**: a chosen class is redrawn on a grid of square blocks of side ``sigma`` (2 % of
  the image's mean side by default): a block takes the class where the class covered at least
  half of it. Gained pixels take the class (ignored pixels never do); lost pixels take the
  class of the nearest pixel outside it. Objects smaller than half a block vanish.

And the object-level kinds that ``--method auto`` plants to calibrate itself
(:mod:`segaudit.calibration.kinds`): **object_drop** (one object painted over by the class
around it), **object_class** (one object given another class), **object_outline** (one
object's outline drawn wrong) and **blob** (a spurious ellipse of another class).

``fill="nearest"`` gives drop and shift the same rule for lost pixels, for mask sets whose
unlabeled class is an ignore value (a drop into an ignored class is invisible to any score).

A random ``rate`` of *all* images is changed, chosen among the images where the chosen
class(es) occur; the run is deterministic for a seed. Unchanged masks are copied byte for
byte; changed masks keep their source's PNG mode, palette and transparency. The output
directory is built beside its final place and renamed into it only when complete.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..calibration.kinds import PLANTED_KINDS, Mask
from ..core.outlines import DEFAULT_CORRELATION, components, move_boundary_by, nearest_outside, shifted_region
from ..io.remote import is_url, redact
from ..io.masks import Palette, encode_like, find_masks, load_palette, mask_format, read_mask
from ..io.files import atomic_write_all, read_class_names, safe_relative_path, temporary_directory

#: The calibration's object-level kinds, planted here as they are (segaudit.calibration.kinds).
OBJECT_KINDS = ("object_drop", "object_class", "object_outline", "blob")
KINDS = ("drop", "swap", "shift", "boundary", "coarse", *OBJECT_KINDS)  # append only: the index seeds each kind's generator
FILLS = ("unlabeled", "nearest")
#: Knots of the periodic cubic spline f(angle) of a shift.
SHIFT_KNOTS = 5
DEFAULT_SIGMA = "10%"
#: A boundary's mean displacement: 1 % of the image's mean side (4 pixels at 480x360).
DEFAULT_BOUNDARY_SIGMA = "1%"
#: A coarse outline's block: 2 % of the image's mean side (8 pixels at 480x360).
DEFAULT_COARSE_SIGMA = "2%"

Progress = Callable[[str, int, int], None]


# --- options -----------------------------------------------------------------


@dataclass(frozen=True)
class Sigma:
    """A displacement scale: pixels, or a fraction of a size (a shift's region, a boundary's image)."""

    value: float
    relative: bool  # value is a fraction of the region's size (mean of its bounding box's sides)

    def pixels(self, height: int, width: int) -> float:
        return self.value * (height + width) / 2 if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


def parse_sigma(text: str | float | Sigma) -> Sigma:
    """``"3"`` (pixels) or ``"10%"`` (of the region's size) -> :class:`Sigma`."""
    if isinstance(text, Sigma):
        return text
    raw = str(text).strip()
    relative = raw.endswith("%")
    try:
        value = float(raw[:-1] if relative else raw)
    except ValueError:
        raise InputError(f"--sigma must be pixels (e.g. 3) or a percentage of the region size (e.g. 10%), "
                         f"got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"--sigma must be > 0, got {text!r}")
    return Sigma(value / 100 if relative else value, relative)


def resolve_classes(tokens: Iterable[str | int] | None, names: list[str] | None,
                    names_file: str | Path | None = None) -> list[int] | None:
    """Class indices for ``--classes``: each entry is an index or a name from ``names``.

    Unknown names, names without a classes file, and indices outside ``names`` are
    InputErrors. Duplicates are dropped; the order is kept.
    """
    if tokens is None:
        return None
    where = f" in {names_file}" if names_file else ""
    result: list[int] = []
    for token in tokens:
        text = str(token).strip()
        if not text:
            continue
        if re.fullmatch(r"\d+", text):
            index = int(text)
            if names is not None and index >= len(names):
                raise InputError(f"class {index} is out of range: {len(names)} classes{where}")
        elif names is None:
            raise InputError(f"class name {text!r} needs --classes-file (a JSON list or one name per line); "
                             "or give class indices")
        elif text in names:
            index = names.index(text)
        else:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise InputError(f"unknown class {text!r}: not among the {len(names)} classes{where} ({shown})")
        if index not in result:
            result.append(index)
    if not result:
        raise InputError("--classes is empty")
    return result


# --- the three kinds of error on a label array --------------------------------


def drop(labels: np.ndarray, cls: int, unlabeled: int, fill: str = "unlabeled") -> np.ndarray:
    """Every pixel of ``cls`` becomes ``unlabeled`` (``fill="nearest"``: the label of the nearest other pixel)."""
    if fill == "nearest":
        return nearest_outside(labels == cls, labels).astype(labels.dtype, copy=False)
    return np.where(labels == cls, unlabeled, labels).astype(labels.dtype, copy=False)


def swap(labels: np.ndarray, a: int, b: int) -> np.ndarray:
    """Classes ``a`` and ``b`` exchange their pixels."""
    out = labels.copy()
    out[labels == a] = b
    out[labels == b] = a
    return out


def shift(labels: np.ndarray, cls: int, unlabeled: int, rng: np.random.Generator, sigma: Sigma,
          ignored: np.ndarray | None = None, fill: str = "unlabeled") -> np.ndarray:
    """Perturb the outline of every region of ``cls``; lost pixels become ``unlabeled``.

    Each region draws its own 5 Gaussian samples (standard deviation ``sigma``, in pixels
    or relative to the region's size). Gained pixels take ``cls`` from whatever class
    held them, except pixels in ``ignored``, which never change. ``fill="nearest"``: lost
    pixels take the label of the nearest pixel outside ``cls`` instead.
    """
    old = labels == cls
    regions, n = components(old)
    new = np.zeros_like(old)
    if n:
        index = np.arange(1, n + 1)
        flat = regions.ravel()
        order = np.argsort(flat, kind="stable")
        starts = np.searchsorted(flat[order], index)
        stops = np.searchsorted(flat[order], index, side="right")
    for region in range(1, n + 1):
        where = order[starts[region - 1]:stops[region - 1]]
        rows, cols = np.divmod(where, labels.shape[1])
        bbox = (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max()))
        size = sigma.pixels(bbox[1] - bbox[0] + 1, bbox[3] - bbox[2] + 1)
        samples = rng.normal(0.0, size, SHIFT_KNOTS)
        window, inside = shifted_region(regions, region, samples, bbox)
        new[window] |= inside
    out = labels.copy()
    if fill == "nearest":
        lost = old & ~new
        if lost.any():
            out[lost] = nearest_outside(old, labels)[lost]
    else:
        out[old & ~new] = unlabeled
    gained = new & ~old
    if ignored is not None:
        gained &= ~ignored
    out[gained] = cls
    return out


def move_boundary(labels: np.ndarray, cls: int, rng: np.random.Generator, sigma: Sigma,
                  correlation: float = DEFAULT_CORRELATION, ignored: np.ndarray | None = None) -> np.ndarray:
    """Move every boundary of ``cls`` by a one-sided, spatially correlated random walk.

    The mean displacement is ``sigma`` (pixels, or a fraction of the image's mean side);
    see :func:`segaudit.core.outlines.move_boundary_by`.
    """
    return move_boundary_by(labels, cls, rng, sigma.pixels(*labels.shape), correlation, ignored)


# --- the dataset-level run -------------------------------------------------------


@dataclass
class CorruptionRun:
    """What ``corrupt_masks`` did."""

    kind: str
    rate: float
    seed: int
    images: int  # masks found
    eligible: int  # images where the chosen class(es) occur
    target: int  # round(rate * images)
    changed: dict[str, tuple[int, ...]] = field(default_factory=dict)  # image id -> classes changed
    class_names: list[str] | None = None
    unlabeled_masks: int = 0  # masks holding the unlabeled class (a real class of theirs, if many do)
    image_ids: list[str] = field(default_factory=list)  # every mask's id, as the truth table lists them

    def class_text(self, classes: Sequence[int]) -> str:
        names = self.class_names
        return ";".join(names[c] if names is not None and c < len(names) else str(c) for c in classes)


def truth_csv(run: CorruptionRun, image_ids: Sequence[str]) -> str:
    """``image,is_error,kind,classes``: one row per image, sorted by id."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "is_error", "kind", "classes"])
    for image_id in sorted(image_ids):
        if image_id in run.changed:
            writer.writerow([image_id, 1, run.kind, run.class_text(run.changed[image_id])])
        else:
            writer.writerow([image_id, 0, "", ""])
    return buffer.getvalue()


def _present(labels: np.ndarray, excluded: set[int], min_pixels: int) -> set[int]:
    values, counts = np.unique(labels, return_counts=True)
    return {int(v) for v, c in zip(values, counts) if c >= min_pixels and int(v) not in excluded}


def _options_for(kind: str, present: set[int], chosen: list[int] | None) -> list[tuple[int, ...]]:
    """The class choices possible in one image: single classes, or (a, b) pairs for swap."""
    if kind in OBJECT_KINDS:  # the kind picks its object itself
        return [()] if present else []
    candidates = [c for c in chosen if c in present] if chosen is not None else sorted(present)
    if kind != "swap":
        return [(c,) for c in candidates]
    return [(a, b) for n, a in enumerate(candidates) for b in candidates[n + 1:]]


def _apply(kind: str, labels: np.ndarray, classes: tuple[int, ...], unlabeled: int, rng, sigma: Sigma,
           ignore: tuple[int, ...], fill: str = "unlabeled", correlation: float = DEFAULT_CORRELATION,
           n_classes: int = 0) -> np.ndarray:
    if kind in OBJECT_KINDS:
        scored = ~np.isin(labels, ignore) if ignore else np.ones(labels.shape, bool)
        classes_known = max(n_classes, int(labels[scored].max()) + 1 if scored.any() else 1)
        copy = PLANTED_KINDS[kind].plant(Mask(labels.astype(np.int32), scored, classes_known), rng)
        return labels if copy is None else copy.astype(labels.dtype)
    if kind == "drop":
        return drop(labels, classes[0], unlabeled, fill)
    if kind == "swap":
        return swap(labels, classes[0], classes[1])
    ignored = np.isin(labels, ignore) if ignore else None
    if kind == "boundary":
        return move_boundary(labels, classes[0], rng, sigma, correlation, ignored)
    if kind == "coarse":
        return coarsen(labels, classes[0], sigma, ignored)
    return shift(labels, classes[0], unlabeled, rng, sigma, ignored, fill)


def coarsen(labels: np.ndarray, cls: int, sigma: Sigma, ignored: np.ndarray | None = None) -> np.ndarray:
    """Redraw ``cls`` on a grid of square blocks of side ``sigma`` (majority of each block).

    Gained pixels take ``cls`` except pixels in ``ignored``; lost pixels take the label of the
    nearest pixel outside ``cls``.
    """
    old = labels == cls
    block = max(2, int(round(sigma.pixels(*labels.shape))))
    rows, cols = old.shape
    padded = np.zeros((-(-rows // block) * block, -(-cols // block) * block), np.float64)
    padded[:rows, :cols] = old
    inside = np.zeros_like(padded)
    inside[:rows, :cols] = 1.0
    shape = (padded.shape[0] // block, block, padded.shape[1] // block, block)
    covered = padded.reshape(shape).sum(axis=(1, 3)) * 2 >= inside.reshape(shape).sum(axis=(1, 3))
    new = np.repeat(np.repeat(covered, block, axis=0), block, axis=1)[:rows, :cols]
    out = labels.copy()
    lost = old & ~new
    if lost.any():
        out[lost] = nearest_outside(old, labels)[lost]
    gained = new & ~old
    if ignored is not None:
        gained &= ~ignored
    out[gained] = cls
    return out


def _check_out(masks_dir: Path, out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"output directory {out} already exists and is not empty; choose a new one")
    if not out.parent.is_dir():
        raise InputError(f"output directory's parent does not exist: {out.parent}")
    root, target = masks_dir.resolve(), out.resolve()
    if target == root or root in target.parents:
        raise InputError(f"output directory {out} is inside the masks directory {masks_dir}")


def corrupt_masks(
    masks: str | Path,
    out: str | Path,
    *,
    kind: str,
    rate: float,
    seed: int = 0,
    classes: Sequence[str | int] | None = None,
    class_names: list[str] | None = None,
    classes_file: str | Path | None = None,
    unlabeled: int = 0,
    ignore_index: Sequence[int] = (255,),
    sigma: str | float | Sigma | None = None,
    correlation: float = DEFAULT_CORRELATION,
    fill: str = "unlabeled",
    min_pixels: int = 1,
    mask_suffix: str = "",
    palette: str | Path | Palette | None = None,
    truth: str | Path | None = None,
    on_progress: Progress | None = None,
) -> CorruptionRun:
    """Copy a mask set to ``out`` and plant ``kind`` errors in ``rate`` of its images.

    Parameters
    ----------
    masks, out : path
        Source masks directory and the new one (must not exist, or be empty).
    kind : {"drop", "swap", "shift", "boundary", "coarse", "object_drop", "object_class", "object_outline", "blob"}
        The kind of error (see the module docstring; the object kinds are the calibration's,
        :mod:`segaudit.calibration.kinds`).
    rate : float
        Fraction of *all* images to change, in [0, 1]; round(rate * N) images are changed
        if that many are eligible, else every eligible image.
    seed : int
        Same seed, same inputs: byte-identical output.
    classes : list of names or indices, optional
        The classes errors may involve; default every class but ``unlabeled`` and the
        ignored values. Names need ``class_names`` (or ``classes_file``). Per image, one
        class present (a pair both present, for swap) is chosen at random.
    unlabeled : int
        The class dropped and lost pixels become; never chosen. It may be an ignored value
        when no pixel becomes it (swap, boundary, or ``fill="nearest"``).
    ignore_index : sequence of int
        Label values never chosen and never changed.
    sigma : "3" (pixels) or "10%" (of the region's size; of the image's mean side for boundary)
        Standard deviation of the 5 radial displacement samples of a shift (default 10 %);
        the mean displacement of a boundary (default 1 %); the block side of coarse (default 2 %).
    correlation : float
        boundary: correlation length of the walk along the boundary, in boundary pixels.
    fill : {"unlabeled", "nearest"}
        drop and shift: what lost pixels become, ``unlabeled`` or the label of the nearest
        pixel outside the class (boundary always uses the nearest).
    min_pixels : int
        A class counts as present in an image only with at least this many pixels.
    mask_suffix, palette
        As for ``segaudit score``; copies keep their file names.
    truth : path, optional
        Where to write ``image,is_error,kind,classes`` for every image.
    """
    if kind not in KINDS:
        raise InputError(f"unknown --kind {kind!r} (use one of {', '.join(KINDS)})")
    if not (isinstance(rate, (int, float)) and 0 <= rate <= 1):
        raise InputError(f"--rate must be between 0 and 1, got {rate}")
    if fill not in FILLS:
        raise InputError(f"unknown --fill {fill!r} (use one of {', '.join(FILLS)})")
    if not (isinstance(correlation, (int, float)) and math.isfinite(correlation) and correlation > 0):
        raise InputError(f"--correlation must be > 0, got {correlation}")
    if min_pixels < 1:
        raise InputError(f"--min-pixels must be at least 1, got {min_pixels}")
    if unlabeled < 0:
        raise InputError(f"--unlabeled must be a class index >= 0, got {unlabeled}")
    ignore = tuple(sorted({int(v) for v in ignore_index}))
    uses_unlabeled = kind in ("drop", "shift") and fill == "unlabeled"
    if unlabeled in ignore and uses_unlabeled:  # otherwise --unlabeled only keeps the class from being chosen
        raise InputError(f"the unlabeled class {unlabeled} is also an ignored value")
    sigma = parse_sigma(sigma if sigma is not None else DEFAULT_BOUNDARY_SIGMA if kind == "boundary"
                        else DEFAULT_COARSE_SIGMA if kind == "coarse" else DEFAULT_SIGMA)
    if class_names is None and classes_file is not None:
        class_names = read_class_names(classes_file)
    if class_names is not None and unlabeled >= len(class_names):
        raise InputError(f"--unlabeled {unlabeled} is out of range: {len(class_names)} classes")
    chosen = resolve_classes(classes, class_names, classes_file)
    if kind in OBJECT_KINDS and chosen is not None:
        raise InputError(f"--classes does not apply to {kind}: it picks its object (or blob) itself")
    n_classes = len(class_names) if class_names is not None else 0
    excluded = {unlabeled, *ignore}
    if chosen is not None:
        bad = [c for c in chosen if c in excluded]
        if bad:
            what = "the unlabeled class" if bad[0] == unlabeled else "an ignored value"
            raise InputError(f"class {bad[0]} cannot be corrupted: it is {what}")
        if kind == "swap" and len(chosen) < 2:
            raise InputError("swap needs at least two classes in --classes")
    if palette is not None and not isinstance(palette, dict):
        palette = load_palette(palette)
    if is_url(masks):  # the copy keeps file names and bytes: it is made from local files
        raise InputError(f"masks directory {redact(masks)}: corrupt copies a local masks directory, not a URL; "
                         "copy the masks to a local directory first")
    masks_dir, out = Path(masks), Path(out)
    files = find_masks(masks_dir, mask_suffix)
    other = next((m for m in files if mask_format(m).name != "png"), None)
    if other is not None:  # planted errors are written in the mask's own PNG encoding
        raise InputError(f"{other.path}: corrupt plants errors in PNG masks only (not TIFF, NIfTI or .npy/.npz)")
    _check_out(masks_dir, out)
    if truth is not None and not Path(truth).parent.is_dir():
        raise InputError(f"directory of the truth file does not exist: {Path(truth).parent}")
    if truth is not None and Path(truth).is_dir():
        raise InputError(f"truth file {truth} is a directory")
    for mask in files:
        safe_relative_path(mask.path.relative_to(masks_dir).as_posix())

    # Pass 1: which images can take the error (and validate every mask before writing).
    options: list[list[tuple[int, ...]]] = []
    unlabeled_masks = 0
    for n, mask in enumerate(files):
        labels = read_mask(mask, palette)
        options.append(_options_for(kind, _present(labels, excluded, min_pixels), chosen))
        unlabeled_masks += bool((labels == unlabeled).any())
        del labels
        if on_progress:
            on_progress("checking", n + 1, len(files))
    eligible = [n for n, found in enumerate(options) if found]
    target = min(math.floor(rate * len(files) + 0.5), len(files))

    run = CorruptionRun(kind=kind, rate=float(rate), seed=seed, images=len(files), eligible=len(eligible),
                        target=target, class_names=class_names, unlabeled_masks=unlabeled_masks,
                        image_ids=[m.image_id for m in files])

    def plan(n: int) -> tuple[tuple[int, ...], np.random.Generator]:
        rng = np.random.default_rng([seed, KINDS.index(kind), n])
        choice = options[n][int(rng.integers(len(options[n])))]
        return choice, rng

    # Candidates in a seeded random order; a shift or boundary that moves no pixel passes its turn on.
    order = np.random.default_rng([seed, KINDS.index(kind)]).permutation(eligible).tolist() if eligible else []
    selected: dict[int, tuple[int, ...]] = {}
    for n in order:
        if len(selected) == target:
            break
        choice, rng = plan(n)
        if kind in ("shift", "boundary", "coarse", *OBJECT_KINDS):
            labels = read_mask(files[n], palette)
            if np.array_equal(_apply(kind, labels, choice, unlabeled, rng, sigma, ignore, fill, correlation,
                                     n_classes), labels):
                continue
        selected[n] = choice

    # Pass 2: write into a temporary directory beside the output, then rename it into place.
    temporary = None
    try:
        temporary = temporary_directory(out.parent, f".{out.name}.")
        for n, mask in enumerate(files):
            target_path = temporary / mask.path.relative_to(masks_dir)
            target_path.parent.mkdir(parents=True, exist_ok=True)
            if n in selected:
                choice, rng = plan(n)
                labels = read_mask(mask, palette)
                new = _apply(kind, labels, choice, unlabeled, rng, sigma, ignore, fill, correlation, n_classes)
                data = encode_like(mask, labels, new, palette)
                # An object kind names the classes it changed (the object's, the blob's underlay).
                run.changed[mask.image_id] = choice or tuple(int(c) for c in np.unique(labels[new != labels]))
            else:
                data = mask.path.read_bytes()
            atomic_write_all({target_path: data})
            if on_progress:
                on_progress("writing", n + 1, len(files))
        if out.exists():
            out.rmdir()
        os.replace(temporary, out)
    except BaseException:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
        raise
    if truth is not None:
        try:
            atomic_write_all({Path(truth): truth_csv(run, [m.image_id for m in files])})
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    return run
