"""Reading predicted class probabilities from a zarr store, in row blocks.

Two layouts (see docs/formats.md):

- per-image: one array per image id at the path equal to the id, shaped (K, H, W)
  (or (H, W, K) with the ``channels_last`` attribute);
- stacked: one array ``probs`` shaped (N, K, H, W) (or (N, H, W, K)) and a group
  attribute ``image_ids`` listing the N ids in array order.

A per-image array may also be a volume, (K, Z, Y, X): it is read as the tall image of
Z * Y rows (slice z is rows z*Y .. z*Y + Y - 1), see :mod:`segaudit.io.volumes`.

Blocks are read aligned to the store's row chunks and handed to the kernel as
[class, row, column] views of the stored values: no float64 copies, float16 is viewed as
uint16 and decoded through a lookup table inside the kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import InputError, one_line
from . import remote
from .chunks import ChunkFiles

#: Row blocks are grown to about this many bytes; kept under glibc's 32 MB mmap
#: threshold so the buffers are reused instead of page-faulting on every read.
BLOCK_BYTES = 16 * 2**20

STACKED_ARRAY = "probs"

# Half a quantisation step per class, plus slack, is how far a pixel's stored
# probabilities may sum from 1.
_SUM_SLACK = 1e-3
_STEP = {
    np.dtype(np.uint8): 1 / 255,
    np.dtype(np.uint16): 1 / 65535,
    np.dtype(np.float16): 2.0**-10,
    np.dtype(np.float32): 2.0**-23,
    np.dtype(np.float64): 2.0**-52,
}


def decoding(dtype: np.dtype) -> tuple[np.ndarray, float]:
    """Lookup table and row-sum tolerance for a stored dtype (see :func:`kernel.accumulate`).

    Returns the float64 table indexed by the stored integer (uint8, uint16, or float16's
    bit pattern), or a 1-element dummy for float32/float64, and the tolerance per class
    count (multiply by K).
    """
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        lut = np.arange(256) / 255.0
    elif dtype == np.uint16:
        lut = np.arange(65536) / 65535.0
    elif dtype == np.float16:
        lut = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float64)
    else:
        lut = np.zeros(1)
    return lut, _STEP[dtype] / 2


def sum_tolerance(dtype: np.dtype, n_classes: int) -> float:
    """How far a pixel's K stored probabilities may sum from 1: slack plus half a step each."""
    return _SUM_SLACK + n_classes * decoding(dtype)[1]


#: The most classes a last axis may hold for :func:`sum_hint` to suspect channels-last data.
CHANNELS_LAST_HINT_MAX = 64


def sum_hint(total: float, n_classes: int, pixel: np.ndarray | None = None,
             channels_last: str = "pass --channels-last / channels_last=True") -> str | None:
    """What a pixel whose K values sum to ``total``, not 1, most likely means; None if
    nothing more likely than logits. ``channels_last``: how the caller turns channels-last
    arrays around (an option, in the caller's words).

    - About 255 (or 65535): uint8 (uint16) probabilities cast to float. Integer stores
      are read as value/255 (value/65535), so store the integers as they are, or divide.
    - ``pixel``, the values around the pixel as read (K, rows, W), sum to 1 along a
      small last axis: the array is channels-last, (H, W, K), read as (K, H, W).
    """
    for top, name in ((255, "uint8"), (65535, "uint16")):
        if abs(total - top) <= n_classes * 0.5 + 1:
            return (f"the values sum to about {top}: {name} probabilities cast to float? A {name} store is read "
                    f"as value/{top}: store the {name} array as {name}, or divide the floats by {top}")
    if pixel is not None and pixel.ndim == 3 and 2 <= pixel.shape[-1] <= CHANNELS_LAST_HINT_MAX \
            and pixel.shape[-1] < pixel.shape[0] and pixel.dtype.kind == "f":
        sums = pixel.sum(axis=-1, dtype=np.float64)
        if np.isfinite(sums).all() and np.abs(sums - 1).max() <= 1e-2 and pixel.min() >= 0:
            return (f"the last axis ({pixel.shape[-1]} values) sums to 1: the array looks channels-last, "
                    f"(H, W, K): {channels_last}")
    return None


class PredictionStore(Protocol):
    """What the dataset, the passes and the kernel read predictions through: a zarr store
    (:class:`ZarrStore`, from :func:`open_predictions`) or arrays in memory
    (:class:`segaudit.core.arrays.ArrayStore`). Each declares it by subclassing; a new backend
    is one class with these members.
    """

    path: Path | str  # where the predictions are, as messages and the run record name it
    layout: str  # "per-image", "stacked", or "arrays" (in memory)
    image_ids: list[str]
    n_classes: int
    classes: list[str] | None
    logits: bool
    channels_last: bool
    dtype: np.dtype  # as stored (float16, float32, float64, uint8, uint16)

    @property
    def sum_tolerance(self) -> float:
        """How far a pixel's stored probabilities may sum from 1."""
        return sum_tolerance(self.dtype, self.n_classes)

    def image_shape(self, image_id: str) -> tuple[int, int]:
        """(H, W) of one image's predictions; a volume's (Z * Y, X), its tall image."""
        ...

    def volume_shape(self, image_id: str) -> tuple[int, int, int] | None:
        """(Z, Y, X) of a volume's predictions, or None for a 2-D image."""
        ...

    def slice_rows(self, image_id: str) -> int | None:
        """Rows per slice (Y) of a volume's tall image, or None for a 2-D image."""
        ...

    def volume_attributes(self, image_id: str) -> dict:
        """A volume's attributes (``affine``, ``spacing``); none by default."""
        return {}

    def row_blocks(self, image_id: str, block_bytes: int | None = None, align: int = 1) -> list[tuple[int, int]]:
        """Row ranges [start, stop) that cover the image, every start a multiple of ``align``."""
        ...

    def read_rows(self, image_id: str, start: int, stop: int) -> np.ndarray:
        """Stored values of rows [start, stop) as a [class, row, column] array (float16 viewed
        as uint16)."""
        ...


@dataclass
class ZarrStore(PredictionStore):
    """An opened zarr prediction store. Use :func:`open_predictions` to make one."""

    path: Path | str  # a local path, or a URL as redact() shows it
    layout: str  # "per-image" or "stacked"
    image_ids: list[str]
    n_classes: int
    classes: list[str] | None
    logits: bool
    channels_last: bool
    dtype: np.dtype
    _arrays: dict = field(repr=False, default_factory=dict)  # id -> array (per-image)
    _stacked: object = field(repr=False, default=None)
    _index: dict = field(repr=False, default_factory=dict)  # id -> position (stacked)
    _direct: dict = field(repr=False, default_factory=dict)  # id(array) -> ChunkFiles or None

    def image_shape(self, image_id: str) -> tuple[int, int]:
        """(H, W) of one image's predictions; a volume's (Z * Y, X), its tall image."""
        shape = self._array_of(image_id).shape
        if self.layout == "stacked":
            shape = shape[1:]
        if len(shape) == 4:
            return shape[1] * shape[2], shape[3]
        return tuple(shape[:2]) if self.channels_last else tuple(shape[1:])

    def volume_shape(self, image_id: str) -> tuple[int, int, int] | None:
        """(Z, Y, X) of a volume's predictions, or None for a 2-D image."""
        shape = self._array_of(image_id).shape
        return tuple(shape[1:]) if self.layout == "per-image" and len(shape) == 4 else None

    def slice_rows(self, image_id: str) -> int | None:
        """Rows per slice (Y) of a volume's tall image, or None for a 2-D image."""
        shape = self.volume_shape(image_id)
        return None if shape is None else shape[1]

    def volume_attributes(self, image_id: str) -> dict:
        """A volume array's attributes (``affine``, ``spacing``, as ``pack`` stores them)."""
        try:
            return dict(self._array_of(image_id).attrs)
        except Exception:  # noqa: BLE001 (attributes are optional metadata)
            return {}

    def row_blocks(self, image_id: str, block_bytes: int | None = None, align: int = 1) -> list[tuple[int, int]]:
        """Row ranges [start, stop) that cover the image, aligned to the store's row chunks.

        With ``align``, every block starts at a multiple of it (a downsampling factor). For a
        volume, blocks hold whole slices and ``align`` counts slices (the factor along Z).
        """
        block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes
        array = self._array_of(image_id)
        height, width = self.image_shape(image_id)
        volume = self.volume_shape(image_id)
        if volume is not None:
            chunk_rows = math.lcm(array.chunks[1], align) * volume[1]
        else:
            chunk_rows = math.lcm(array.chunks[self._row_axis], align)
        row_bytes = self.n_classes * width * self.dtype.itemsize
        rows = chunk_rows * max(1, block_bytes // max(1, chunk_rows * row_bytes))
        return [(start, min(start + rows, height)) for start in range(0, height, rows)]

    def read_rows(self, image_id: str, start: int, stop: int) -> np.ndarray:
        """Stored values of rows [start, stop) as a [class, row, column] view."""
        array = self._array_of(image_id)
        if self.layout == "stacked":
            index = self._index[image_id]
            block = self._read(array, (slice(index, index + 1),) + self._rows(start, stop))[0]
        elif array.ndim == 4:  # a volume: the slices that hold the rows, as the tall image
            slice_rows = array.shape[2]
            first, last = start // slice_rows, -(-stop // slice_rows)
            block = self._read(array, (slice(None), slice(first, last), slice(None), slice(None)))
            block = block.reshape(block.shape[0], -1, block.shape[3])
            block = block[:, start - first * slice_rows:stop - first * slice_rows]
        else:
            block = self._read(array, self._rows(start, stop))
        if self.channels_last:
            block = np.moveaxis(block, -1, 0)
        if not block.dtype.isnative:
            block = block.astype(block.dtype.newbyteorder("="))
        if block.dtype == np.float16:
            block = block.view(np.uint16)
        return block

    def _read(self, array, selection: tuple[slice, ...]) -> np.ndarray:
        """``array[selection]``: uncompressed local chunks straight from their files, else through zarr."""
        key = id(array)
        if key not in self._direct:
            self._direct[key] = ChunkFiles.of(array)
        direct = self._direct[key]
        block = direct.read(selection) if direct is not None else None
        return np.asarray(array[selection]) if block is None else block

    @property
    def _row_axis(self) -> int:
        return (0 if self.channels_last else 1) + (self.layout == "stacked")

    def _rows(self, start: int, stop: int) -> tuple:
        rows = slice(start, stop)
        return (rows, slice(None), slice(None)) if self.channels_last else (slice(None), rows, slice(None))

    def _array_of(self, image_id: str):
        if self.layout == "stacked":
            return self._stacked
        return self._arrays[image_id]


def _native(dtype) -> np.dtype:
    """zarr v2 stores may be big-endian ('>f4'): the same values, byte-swapped when read."""
    return np.dtype(dtype).newbyteorder("=")


def check_dtype(dtype, where: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in _STEP:
        raise InputError(
            f"{where}: dtype {dtype} is not supported (use float16, float32, float64, "
            "or uint8/uint16 quantised probabilities)"
        )
    return dtype


def store_location(path: str | Path) -> str | Path:
    """A prediction store as :class:`ZarrStore` names it: a URL redacted (no user,
    password or query), a local path as a :class:`~pathlib.Path`."""
    return remote.redact(path) if remote.is_url(path) else Path(path)


def _open_group(path: str | Path, storage_options: dict | None = None):
    """The store's root group, read-only: a local path, or a URL through zarr's FsspecStore."""
    import zarr

    if remote.is_url(path):
        return _open_remote_group(path, storage_options)
    path = Path(path)
    if not path.exists():
        raise InputError(f"prediction store not found: {path}")
    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for "not a group"
        raise InputError(f"{path}: not a zarr group ({type(exc).__name__}: {exc})") from None


def _open_remote_group(url: str, storage_options: dict | None):
    import zarr
    from zarr.storage import FsspecStore

    what = "prediction store"
    remote.filesystem(url, storage_options, what)  # a missing package or a bad option, said plainly
    try:
        store = FsspecStore.from_url(url.rstrip("/"), storage_options=remote.filesystem_options(url, storage_options),
                                     read_only=True)
        remote.bound_retries(store.fs)
    except Exception as exc:  # noqa: BLE001 (each filesystem raises its own types)
        raise remote.remote_error(url, exc, what, remote.timeout_of(storage_options)) from None
    try:
        return zarr.open_group(store, mode="r")
    except Exception as exc:  # noqa: BLE001 (a missing root reads as "no group": say which)
        if remote.timed_out(exc):  # asking whether it exists would wait as long again
            raise remote.remote_error(url, exc, what, remote.timeout_of(storage_options)) from None
        found = _remote_exists(url, storage_options)
        if found is False:
            raise InputError(f"{what} not found: {remote.redact(url)}") from None
        if type(exc).__name__ in ("GroupNotFoundError", "FileNotFoundError", "KeyError") and found:
            raise InputError(f"{remote.redact(url)}: not a zarr group (no zarr.json or .zgroup)") from None
        raise remote.remote_error(url, exc, what, remote.timeout_of(storage_options)) from None


def _remote_exists(url: str, storage_options: dict | None) -> bool | None:
    """Whether ``url`` exists (None: the filesystem cannot say, or fails the same way)."""
    try:
        fs, root = remote.filesystem(url, storage_options)
        return bool(fs.exists(root))
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, InputError):
            raise
        raise remote.remote_error(url, exc, "prediction store", remote.timeout_of(storage_options)) from None


def stacked_array(group):
    """The stacked layout's 4-D ``probs`` array, or None when the store is per-image."""
    import zarr

    member = group[STACKED_ARRAY] if STACKED_ARRAY in group else None
    return member if isinstance(member, zarr.Array) and member.ndim == 4 else None


def _stacked_ids(path: Path, group, n_images: int) -> list[str]:
    ids = group.attrs.get("image_ids")
    if ids is None:
        raise InputError(
            f"{path}: stacked layout ('{STACKED_ARRAY}' array) needs a group attribute "
            "'image_ids' listing the image ids in array order"
        )
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InputError(f"{path}: attribute 'image_ids' must be a list of strings")
    if len(ids) != n_images:
        raise InputError(
            f"{path}: 'image_ids' lists {len(ids)} ids but '{STACKED_ARRAY}' holds {n_images} images"
        )
    seen: set[str] = set()
    duplicates = sorted({i for i in ids if i in seen or seen.add(i)})
    if duplicates:
        raise InputError(f"{path}: duplicate image ids in 'image_ids': {', '.join(duplicates[:5])}")
    return ids


def _member(group, image_id: str):
    try:
        return group[image_id]
    except KeyError:
        return None
    except Exception as exc:  # corrupt metadata
        problem = one_line(exc)
        raise InputError(f"{group.store_path}/{image_id}: cannot open: {type(exc).__name__}: {problem}") from None


def _check_chunks(array, where: str) -> None:
    """InputError unless every chunk length of ``array`` is a positive whole number."""
    try:
        chunks = tuple(array.chunks)
    except Exception as exc:  # zarr raises many types for a malformed chunk grid
        raise InputError(f"{where}: unreadable chunk grid: {type(exc).__name__}: {one_line(exc)}") from None
    if len(chunks) != array.ndim or not all(isinstance(c, int) and c >= 1 for c in chunks):
        raise InputError(f"{where}: chunk shape {list(chunks)} has a length that is not a positive whole number")


def open_predictions(
    path: str | Path,
    *,
    classes: list[str] | None = None,
    logits: bool | None = None,
    channels_last: bool | None = None,
    only_ids: list[str] | None = None,
    storage_options: dict | None = None,
) -> ZarrStore:
    """Open a prediction store and check its layout, shapes and attributes.

    Parameters
    ----------
    path : str or Path
        The zarr store (zarr format 3, or 2): a local path, or a URL (``s3://bucket/preds.zarr``,
        ``gs://...``, ``https://...``, anything fsspec opens) read through zarr's FsspecStore,
        read-only and chunk by chunk like a local store.
    classes : list of str, optional
        Class names; overrides the store's ``classes`` attribute. Its length must be K.
    logits : bool, optional
        Whether the store holds logits; overrides the ``kind`` attribute
        (``"logits"`` or ``"probabilities"``, the default).
    channels_last : bool, optional
        Whether arrays are (H, W, K) / (N, H, W, K); overrides the ``channels_last`` attribute.
    only_ids : list of str, optional
        Open only these images' arrays (per-image layout), for scoring a subset quickly.
    storage_options : dict, optional
        Options of the URL's fsspec filesystem (``endpoint_url``, ``anon``, ``profile`` ...);
        ignored for a local path. Credentials are best left to the environment.

    Returns
    -------
    ZarrStore

    Raises
    ------
    InputError
        For a missing or malformed store, one line naming the store and the problem.
    """
    group = _open_group(path, storage_options)
    path = store_location(path)
    attrs = dict(group.attrs)
    if attrs.get("segaudit_complete") is False:  # set by PredictionWriter until a clean close()
        reason = attrs.get("segaudit_incomplete") or "its writer never finished (the process stopped before close())"
        raise InputError(f"{path}: incomplete store: {reason}; write it again")
    if channels_last is None:
        channels_last = attrs.get("channels_last", False)
        if not isinstance(channels_last, bool):
            raise InputError(f"{path}: attribute 'channels_last' must be true or false, not {channels_last!r}")
    if logits is None:
        kind = attrs.get("kind", "probabilities")
        if kind not in ("probabilities", "logits"):
            raise InputError(f"{path}: attribute 'kind' must be 'probabilities' or 'logits', not {kind!r}")
        logits = kind == "logits"
    class_axis = -1 if channels_last else 0

    import zarr

    arrays: dict[str, object] = {}
    index: dict[str, int] = {}
    stacked = stacked_array(group)
    if stacked is not None:
        layout = "stacked"
        ids = _stacked_ids(path, group, stacked.shape[0])
        index = {image_id: n for n, image_id in enumerate(ids)}
        dtype = check_dtype(_native(stacked.dtype), f"{path}/{STACKED_ARRAY}")
        _check_chunks(stacked, f"{path}/{STACKED_ARRAY}")
        n_classes = stacked.shape[1:][class_axis]
    else:
        layout = "per-image"
        if not only_ids:  # everything (an empty subset still needs K and the dtype)
            try:
                members = list(group.members(max_depth=None))
            except Exception as exc:  # corrupt metadata: zarr raises many types
                problem = one_line(exc)
                raise InputError(f"{path}: cannot list the store's arrays: {type(exc).__name__}: {problem}") from None
        else:  # a subset: open just its arrays, not every array's metadata
            members = [(i, _member(group, i)) for i in only_ids]
        for name, member in members:
            if isinstance(member, zarr.Array):
                if member.ndim == 4 and channels_last:
                    raise InputError(f"{path}/{name}: a volume must be stored (K, Z, Y, X), not channels-last "
                                     f"(shape {member.shape})")
                if member.ndim not in (3, 4):
                    raise InputError(
                        f"{path}/{name}: expected a (K, H, W) array, got shape {member.shape} "
                        "(a volume is (K, Z, Y, X))"
                    )
                arrays[name] = member
        if not arrays:
            if only_ids is not None:
                raise InputError(f"{path}: none of the {len(only_ids)} listed images has a prediction array")
            raise InputError(f"{path}: no prediction arrays found (expected one array per image id, or a 'probs' array)")
        ids = sorted(arrays)
        first = arrays[ids[0]]
        dtype = check_dtype(_native(first.dtype), f"{path}/{ids[0]}")
        n_classes = first.shape[class_axis]
        for image_id in ids:
            array = arrays[image_id]
            _check_chunks(array, f"{path}/{image_id}")
            if array.shape[class_axis] != n_classes:
                problem = f"{path}/{image_id}: {array.shape[class_axis]} classes, but {ids[0]} has {n_classes}"
                if channels_last:
                    raise InputError(problem)
                raise InputError(f"{problem} (for (H, W, K) arrays pass channels_last=True)",
                                 cli=f"{problem} (for (H, W, K) arrays pass --channels-last)")
            if _native(array.dtype) != dtype:
                raise InputError(f"{path}/{image_id}: dtype {array.dtype}, but {ids[0]} has {dtype}")

    if n_classes < 2:
        problem = f"{path}: predictions have {n_classes} class(es) along the class axis; "
        if channels_last:
            raise InputError(problem + "is the store channels-first? pass channels_last=False",
                             cli=problem + "is the store channels-first? drop --channels-last")
        raise InputError(problem + "for (H, W, K) arrays pass channels_last=True",
                         cli=problem + "for (H, W, K) arrays pass --channels-last")
    if classes is None:
        classes = attrs.get("classes")
        where = cli_where = "attribute 'classes'"
    else:
        where, cli_where = "the classes argument", "--classes"
    if classes is not None:
        if not isinstance(classes, (list, tuple)) or not all(isinstance(n, (str, int, float)) for n in classes):
            problem = f"must be a list of class names, got {one_line(repr(classes))[:80]}"
            raise InputError(f"{path}: {where} {problem}", cli=f"{path}: {cli_where} {problem}")
        classes = [str(name) for name in classes]
        if len(classes) != n_classes:
            problem = f"names {len(classes)} classes but the predictions have K={n_classes}"
            raise InputError(f"{path}: {where} {problem}", cli=f"{path}: {cli_where} {problem}")
    if logits and dtype.kind == "u":
        raise InputError(f"{path}: logits cannot be stored as {dtype} (quantised probabilities)")
    return ZarrStore(
        path=path, layout=layout, image_ids=list(ids), n_classes=int(n_classes), classes=classes,
        logits=bool(logits), channels_last=bool(channels_last), dtype=dtype,
        _arrays=arrays, _stacked=stacked, _index=index,
    )
