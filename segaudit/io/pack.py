"""Packing numpy files into segaudit's inputs: ``segaudit pack`` and ``segaudit pack-masks``.

- :func:`pack`: a directory of per-image ``.npy``/``.npz`` files (images, or (K, Z, Y, X)
  volumes such as nnU-Net's ``--save_probabilities`` output), or one (N, K, H, W)
  ``.npy`` (cleanlab's ``pred_probs``, memory-mapped so it is never loaded whole), into a
  per-image zarr store written by :class:`segaudit.io.writer.PredictionWriter`.
- :func:`pack_masks`: an (N, H, W) integer array into one PNG mask per image id.

Both write into a temporary directory beside the target and rename it into place at the
end, so a failed or interrupted run leaves nothing behind and keeps an earlier output.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, one_line
from .files import signals_deferred, temporary_directory
from .volumes import nnunet_properties
from .writer import DEFAULT_CODEC, DEFAULT_DTYPE, PredictionWriter, check_image_id, is_zarr_store

SOURCE_SUFFIXES = (".npy", ".npz")
#: Names looked up in an .npz that holds several arrays.
NPZ_PROBS = "probs"
#: nnU-Net's ``--save_probabilities`` key, looked up after ``probs``.
NPZ_NNUNET = "probabilities"
NPZ_LABELS = "labels"


@dataclass(frozen=True)
class PackResult:
    """What :func:`pack` or :func:`pack_masks` wrote."""

    path: Path
    images: int
    bytes_on_disk: int
    detail: str  # e.g. "K=19, float16" or "8-bit L PNGs"
    without_prediction: list[str] = field(default_factory=list)  # (pack --masks DIR) mask ids not packed
    without_mask: list[str] = field(default_factory=list)        # (pack --masks DIR) packed ids with no mask


# --- inputs -----------------------------------------------------------------------


def find_sources(directory: str | Path) -> list[tuple[str, Path]]:
    """Per-image ``.npy``/``.npz`` files under a directory, as (image id, path), sorted by id.

    The id is the '/'-separated relative path without the extension; hidden files and
    folders are skipped.
    """
    root = Path(directory)
    by_id: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            stem, suffix = os.path.splitext(name)
            if name.startswith(".") or suffix.lower() not in SOURCE_SUFFIXES:
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).parent.as_posix()
            image_id = stem if rel == "." else f"{rel}/{stem}"
            if image_id in by_id:
                raise InputError(f"two files map to image id '{image_id}': {by_id[image_id]} and {path}")
            by_id[image_id] = path
    if not by_id:
        raise InputError(f"no .npy or .npz files found in {root}")
    return [(image_id, by_id[image_id]) for image_id in sorted(by_id)]


#: A folder named like nnU-Net's ``fold_3`` names the fold whose model predicted its files.
_FOLD_FOLDER = re.compile(r"fold_(\d+)")


def folder_fold(directory: Path) -> int | None:
    """The fold a folder's path names (its last ``fold_N`` part, as nnU-Net's results have), or None."""
    for part in reversed(Path(directory).resolve().parts):
        match = _FOLD_FOLDER.fullmatch(part)
        if match:
            return int(match.group(1))
    return None


def merge_sources(directories: Sequence[Path]) -> list[tuple[str, Path, Path]]:
    """The per-image files of several directories, as (image id, path, directory), sorted by id.

    InputError naming the case and both folders when an id is found in two of them (nnU-Net's
    folds must not overlap: a case predicted twice was in some model's training set).
    """
    seen: dict[str, tuple[Path, Path]] = {}
    for directory in directories:
        for image_id, path in find_sources(directory):
            if image_id in seen:
                first_dir, first = seen[image_id]
                raise InputError(f"case {image_id!r} is in two folders: {first_dir} ({first.name}) and {directory} "
                                 f"({path.name}); each case must come from one fold")
            seen[image_id] = (directory, path)
    return [(image_id, seen[image_id][1], seen[image_id][0]) for image_id in sorted(seen)]


def load_array(path: str | Path, preferred: str | tuple[str, ...] = (NPZ_PROBS, NPZ_NNUNET)) -> np.ndarray:
    """An ``.npy`` (memory-mapped) or the one array of an ``.npz`` (or the first one named in ``preferred``)."""
    from .files import require_regular_file

    path = Path(path)
    require_regular_file(path, "array file")
    preferred = (preferred,) if isinstance(preferred, str) else tuple(preferred)
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if len(names) == 1:
                    return archive[names[0]]
                for name in preferred:
                    if name in names:
                        return archive[name]
                listed = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "") if names else "no arrays"
                wanted = " or ".join(f"'{name}'" for name in preferred)
                raise InputError(f"{path}: holds {listed}; save one array, or name it {wanted}")
        with open(path, "rb") as stream:
            if stream.read(6) != b"\x93NUMPY":
                raise InputError(f"cannot read {path}: not a .npy file")
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except InputError:
        raise
    except Exception as exc:  # OSError, ValueError (pickled objects, bad header), zipfile errors
        raise InputError(f"cannot read {path}: {one_line(exc, type(exc).__name__)}") from None


def read_ids(path: str | Path) -> list[str]:
    """Image ids from a text file, one per line (surrounding spaces and blank lines dropped)."""
    from .files import require_regular_file

    path = Path(path)
    require_regular_file(path, "ids file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"ids file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: ids file is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise InputError(f"cannot read ids file {path}: {exc.strerror or exc}") from None
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise InputError(f"{path}: ids file lists no ids")
    return ids


def check_ids(ids: list[str], where: str) -> None:
    """Every id storable and unique, and no id a folder of another (``a`` and ``a/b``)."""
    seen: set[str] = set()
    for image_id in ids:
        check_image_id(image_id, where)
        if image_id in seen:
            raise InputError(f"{where}: duplicate image id {image_id!r}")
        seen.add(image_id)
    folders = {"/".join(parts[:n]) for parts in (i.split("/") for i in ids) for n in range(1, len(parts))}
    clash = sorted(folders & seen)
    if clash:
        raise InputError(f"{where}: image id {clash[0]!r} is also a folder of other ids")


def directory_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(entry.stat().st_size for entry in Path(path).rglob("*") if entry.is_file())


# --- atomic output ------------------------------------------------------------------


@contextmanager
def replacing(target: str | Path, overwrite: bool, replaceable: Callable[[Path], bool], what: str) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; rename it to ``target`` on success.

    ``target`` must not exist (an empty directory is fine) unless ``overwrite`` is set and
    ``replaceable(target)`` says it is a ``what`` we may replace. On any exception the
    temporary directory is removed and ``target`` is left as it was.
    """
    target = Path(target)
    if not target.parent.is_dir():
        from .remote import refuse_url_output

        refuse_url_output(target, "output")
        raise InputError(f"output directory does not exist: {target.parent}")
    exists = target.exists() or target.is_symlink()
    if exists and not (target.is_dir() and not target.is_symlink() and not any(target.iterdir())):
        if not overwrite:
            raise InputError(f"{target} already exists (pass --overwrite to replace it)")
        if not replaceable(target):
            raise InputError(f"refusing to replace {target}: it is not a {what}")
    temporary = None
    try:
        try:
            temporary = temporary_directory(target.parent, f".{target.name}.")
        except OSError as exc:
            raise InputError(f"cannot write in {target.parent}: {exc.strerror or exc}") from None
        yield temporary
        with signals_deferred():  # the swap is not interrupted half-way
            if target.exists() or target.is_symlink():
                old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
                os.replace(target, old)  # onto the empty directory mkdtemp made
                try:
                    os.replace(temporary, target)
                except BaseException:
                    os.replace(old, target)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(temporary, target)
    except BaseException:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
        raise


def _is_masks_directory(path: Path) -> bool:
    """A directory holding PNG files only (in any sub-folders): safe to replace with new masks."""
    if not path.is_dir() or path.is_symlink():
        return False
    return all(entry.is_dir() or entry.suffix.lower() == ".png" for entry in path.rglob("*"))


# --- pack ---------------------------------------------------------------------------


class _SourceWriter(PredictionWriter):
    """A PredictionWriter whose messages name the source files, not the temporary store."""

    def __init__(self, *args, describe: Callable[[str], str], output: Path, **kwargs):
        self._describe = describe
        self._output = output
        super().__init__(*args, **kwargs)

    def _where(self, image_id: str | None = None) -> str:
        return str(self._output) if image_id is None else self._describe(image_id)


def pack(
    source: str | Path | Sequence[str | Path],
    output: str | Path,
    *,
    ids: str | Path | list[str] | None = None,
    masks: str | Path | None = None,
    mask_suffix: str = "",
    classes: list[str] | None = None,
    dtype: str = DEFAULT_DTYPE,
    logits: bool = False,
    channels_last: bool = False,
    codec: str = DEFAULT_CODEC,
    overwrite: bool = False,
    fold: int | None = None,
    on_image: Callable[[int, int], None] | None = None,
) -> PackResult:
    """Pack numpy predictions into a per-image zarr store, atomically.

    Parameters
    ----------
    source : str or Path, or a list of them
        A directory of per-image ``.npy``/``.npz`` files, each (K, H, W) (or (H, W, K) with
        ``channels_last``), the id being the relative path without extension; or one
        ``.npy`` of shape (N, K, H, W) (or (N, H, W, K)), read memory-mapped; or several
        directories (nnU-Net's ``fold_*/validation``), merged: an id found in two of them is
        refused, and a directory whose path has a ``fold_N`` part records fold N for its
        images (see :mod:`segaudit.io.folds`).
    output : str or Path
        The store to write. It must not exist unless ``overwrite`` (then it must be a zarr store).
    ids : path or list of str, optional
        For a single ``.npy``: the N image ids in array order (a file with one id per line,
        or a list).
    masks : path, optional
        For a single ``.npy``: take the ids from this masks directory, sorted (as
        ``segaudit score`` pairs them); ``mask_suffix`` as for scoring. For directories:
        the masks the predictions are for; the result names the masks without prediction
        and the predictions without mask.
    fold : int, optional
        The fold whose model made all these predictions, recorded for every image (default:
        the fold a directory's ``fold_N`` name gives; not with several directories, which
        record the folds of their names).
    classes, dtype, logits, channels_last, codec
        As for :class:`~segaudit.io.writer.PredictionWriter` (``channels_last`` describes the
        source arrays; the store is always (K, H, W)).
    on_image : callable, optional
        Called as ``on_image(done, total)`` after each image.

    Raises
    ------
    InputError
        One line naming the source file (or array index) and the problem; nothing is written.
    """
    sources = [Path(s) for s in source] if isinstance(source, (list, tuple)) else [Path(source)]
    output = Path(output)
    shape_text = "(H, W, K)" if channels_last else "(K, H, W)"
    if not sources:
        raise InputError("no source given")
    for one in sources:
        if not one.exists():
            raise InputError(f"source not found: {one}")
    if len(sources) > 1 and not all(one.is_dir() for one in sources):
        raise InputError(f"several sources must all be directories of .npy/.npz files; "
                         f"{next(one for one in sources if not one.is_dir())} is not")
    if len(sources) > 1 and len(set(s.resolve() for s in sources)) < len(sources):
        raise InputError("a source directory is given twice")
    if fold is not None:
        from .folds import check_fold_value

        fold = check_fold_value(fold, "--fold")
        if len(sources) > 1:
            raise InputError("--fold names the fold of one source; several directories record the fold of their "
                             "fold_N names")
    source = sources[0]
    folds_of: dict[str, int | None] = {}
    missing_masks: tuple[list[str], list[str]] = ([], [])
    if source.is_dir():
        if ids is not None:
            raise InputError("--ids applies to a single (N, K, H, W) .npy source; the ids of a "
                             f"directory are its files' relative paths ({source})")
        if len(sources) == 1:
            items = find_sources(source)
            one_fold = fold if fold is not None else folder_fold(source)
            folds_of = {image_id: one_fold for image_id, _ in items}
        else:
            merged = merge_sources(sources)
            items = [(image_id, path) for image_id, path, _ in merged]
            folder_folds = {directory: folder_fold(directory) for directory in sources}
            folds_of = {image_id: folder_folds[directory] for image_id, _, directory in merged}
        files = dict(items)
        image_ids = [image_id for image_id, _ in items]
        check_ids(image_ids, str(source) if len(sources) == 1 else "the source directories")
        if masks is not None:
            missing_masks = _coverage(image_ids, masks, mask_suffix)

        def describe(image_id: str) -> str:
            return str(files[image_id])

        def arrays() -> Iterator[tuple[str, np.ndarray, dict | None]]:
            for image_id, path in items:
                array = load_array(path)
                if array.ndim == 4 and array.shape[0] > 1 and not channels_last:  # a volume, (K, Z, Y, X)
                    yield image_id, array, volume_attributes(path)
                    continue
                if array.ndim != 3:
                    hint = " (one image per file: save probs[0])" if array.ndim == 4 and array.shape[0] == 1 else \
                        " (volumes are (K, Z, Y, X), channels first)" if array.ndim == 4 else ""
                    raise InputError(f"{path}: expected a {shape_text} array, got shape {array.shape}{hint}"
                                     + ("" if hint else " (a volume is (K, Z, Y, X))"))
                yield image_id, array, None
    elif source.suffix.lower() == ".npy":
        stack = load_array(source)
        stack_text = "(N, H, W, K)" if channels_last else "(N, K, H, W)"
        if stack.ndim != 4:
            raise InputError(f"{source}: expected an {stack_text} array, got shape {stack.shape}"
                             + (" (one image? put it in a directory)" if stack.ndim == 3 else ""))
        image_ids = _stack_ids(source, stack.shape[0], ids, masks, mask_suffix)
        folds_of = {image_id: fold for image_id in image_ids}
        positions = {image_id: n for n, image_id in enumerate(image_ids)}

        def describe(image_id: str) -> str:
            return f"{source}[{positions[image_id]}] ({image_id})"

        def arrays() -> Iterator[tuple[str, np.ndarray, dict | None]]:
            for n, image_id in enumerate(image_ids):
                yield image_id, stack[n], None
    else:
        raise InputError(f"{source}: SOURCE must be a directory of .npy/.npz files or one (N, K, H, W) .npy file")

    total = len(image_ids)
    with replacing(output, overwrite, is_zarr_store, "zarr store") as temporary:
        with _SourceWriter(temporary, classes, dtype=dtype, logits=logits, channels_last=channels_last,
                           codec=codec, describe=describe, output=output) as writer:
            for done, (image_id, array, attributes) in enumerate(arrays(), 1):
                if attributes is None:
                    writer.write(image_id, array, fold=folds_of.get(image_id))
                else:
                    writer.write_volume(image_id, array, attributes, fold=folds_of.get(image_id))
                if on_image:
                    on_image(done, total)
        size = directory_bytes(temporary)
        detail = f"K={writer.n_classes}, {writer.dtype}, codec {codec}"
    return PackResult(path=output, images=total, bytes_on_disk=size, detail=detail,
                      without_prediction=missing_masks[0], without_mask=missing_masks[1])


def _coverage(image_ids: list[str], masks: str | Path, mask_suffix: str) -> tuple[list[str], list[str]]:
    """The mask ids with no prediction, and the prediction ids with no mask (both sorted)."""
    from .masks import find_masks

    mask_ids = {mask.image_id for mask in find_masks(masks, mask_suffix)}
    packed = set(image_ids)
    return sorted(mask_ids - packed), sorted(packed - mask_ids)


def volume_attributes(path: Path) -> dict:
    """The attributes stored with a volume packed from ``path``: the geometry of nnU-Net's
    ``.pkl`` properties beside it (``case.npz`` -> ``case.pkl``), when there is one."""
    properties = path.with_suffix(".pkl")
    return nnunet_properties(properties) if properties.is_file() else {}


def _stack_ids(source: Path, n_images: int, ids, masks, mask_suffix: str) -> list[str]:
    if ids is not None and masks is not None:
        raise InputError("pass either --ids or --masks, not both")
    if ids is None and masks is None:
        raise InputError(f"{source} holds {n_images} images: name them with --ids FILE (one id per line, in "
                         "array order) or --masks DIR (that directory's sorted mask ids)")
    if masks is not None:
        from .masks import find_masks

        image_ids = [mask.image_id for mask in find_masks(masks, mask_suffix)]
        where = f"--masks {masks}"
    elif isinstance(ids, (list, tuple)):
        image_ids, where = [str(i) for i in ids], "ids"
    else:
        image_ids, where = read_ids(ids), f"--ids {ids}"
    if len(image_ids) != n_images:
        raise InputError(f"{where} gives {len(image_ids)} ids but {source} holds {n_images} images")
    check_ids(image_ids, where)
    return image_ids


# --- pack-masks ---------------------------------------------------------------------


def default_ids(n_images: int) -> list[str]:
    """"0", "1", ... zero-padded to one width, so sorted order is array order."""
    width = len(str(max(0, n_images - 1)))
    return [f"{n:0{width}d}" for n in range(n_images)]


PACKED_IGNORE = 255  # what pack-masks writes for values a label map ignores


def pack_masks(
    labels: str | Path,
    output: str | Path,
    *,
    ids: str | Path | list[str] | None = None,
    overwrite: bool = False,
    on_image: Callable[[int, int], None] | None = None,
    label_map: str | Path | dict | None = None,
) -> PackResult:
    """Write an (N, H, W) integer label array as PNG masks, one per image id, atomically.

    ``label_map`` (see :mod:`segaudit.io.label_maps`) translates the values first; values
    it maps to ignore are written as 255, segaudit's default ignore index.

    Masks are 8-bit ``L`` PNGs, or 16-bit ``I;16`` when a value exceeds 255; the mask of
    id ``city/a`` is ``output/city/a.png``. Without ``ids`` the ids are ``0``, ``1``, ...
    zero-padded to one width (sorted order = array order, as ``pack --masks`` expects).
    """
    labels_path, output = Path(labels), Path(output)
    if not labels_path.is_file():
        raise InputError(f"labels file not found: {labels_path}")
    array = load_array(labels_path, preferred=NPZ_LABELS)
    if array.ndim != 3:
        raise InputError(f"{labels_path}: expected an (N, H, W) array of class indices, got shape {array.shape}")
    if array.dtype.kind not in "iub":
        raise InputError(f"{labels_path}: labels must be integer class indices, not {array.dtype}")
    n_images = array.shape[0]
    if n_images == 0 or array.shape[1] == 0 or array.shape[2] == 0:
        raise InputError(f"{labels_path}: empty array, shape {array.shape}")
    if ids is None:
        image_ids, where = default_ids(n_images), str(labels_path)
    else:
        image_ids, where = (list(ids), "ids") if isinstance(ids, (list, tuple)) else (read_ids(ids), f"--ids {ids}")
        if len(image_ids) != n_images:
            raise InputError(f"{where} gives {len(image_ids)} ids but {labels_path} holds {n_images} label images")
    check_ids(image_ids, where)
    low, high = int(array.min()), int(array.max())
    if low < 0:
        raise InputError(f"{labels_path}: negative label value {low}")
    if label_map is not None:
        from .label_maps import load_label_map

        # ade20k's range follows the largest value; classes are not checked (there is no K here).
        lookup = load_label_map(label_map).lookup(max(high, 1), (PACKED_IGNORE,), check_classes=False)
        array = np.stack([lookup.apply(image, f"{labels_path}[{n}]") for n, image in enumerate(array)])
        high = int(array.max())
    if high > 65535:
        raise InputError(f"{labels_path}: label value {high} does not fit in a 16-bit PNG (at most 65535)")
    stored = np.uint8 if high <= 255 else np.uint16

    from PIL import Image

    with replacing(output, overwrite, _is_masks_directory, "directory of PNG masks") as temporary:
        from .files import safe_relative_path

        for done, image_id in enumerate(image_ids, 1):
            path = temporary / safe_relative_path(image_id, ".png")
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(array[done - 1], dtype=stored)).save(path, format="PNG")
            if on_image:
                on_image(done, n_images)
        size = directory_bytes(temporary)
    detail = "8-bit L PNGs" if stored is np.uint8 else "16-bit I;16 PNGs"
    return PackResult(path=output, images=n_images, bytes_on_disk=size, detail=detail)
