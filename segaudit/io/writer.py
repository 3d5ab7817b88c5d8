"""Writing a model's predictions to a zarr store as they are computed: ``PredictionWriter``.

The store has segaudit's per-image layout (one (K, H, W) array per image id, see
docs/formats.md) with the chunking and codec that read fastest, and the root attributes
``classes``, ``kind`` and ``channels_last``. Every array is checked as it is written
(shape, class count, finite non-negative probabilities summing to 1), one row chunk at a
time, so memory stays at a few chunks whatever the batch size.

The root attribute ``segaudit_complete`` is ``false`` from the moment the store is
created and becomes ``true`` only on a clean :meth:`PredictionWriter.close`. A loop that
dies leaves it ``false`` (with the reason in ``segaudit_incomplete`` when Python saw the
exception), and :func:`segaudit.io.predictions.open_predictions` refuses such a store.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError, one_line
from .predictions import decoding, sum_hint, sum_tolerance

#: Root attribute: false while the store is being written, true after a clean close().
COMPLETE_ATTR = "segaudit_complete"
#: Root attribute: why writing stopped, set when the writer saw the exception.
INCOMPLETE_ATTR = "segaudit_incomplete"
#: Root attribute: the segaudit version that wrote the store.
WRITER_ATTR = "segaudit_writer"

#: Stored dtypes the reader understands. uint8/uint16 hold round(p * 255) / round(p * 65535).
DTYPES = ("float16", "float32", "float64", "uint8", "uint16")
#: Codecs (see docs/predictions.md for the measurements behind the default).
CODECS = ("none", "lz4", "zstd")
DEFAULT_CODEC = "none"
DEFAULT_DTYPE = "float16"
#: Chunks are (K, rows, W) with the largest power-of-two rows that keeps them at most this.
CHUNK_BYTES = 32 * 2**20
#: Row chunks checked, converted and written at the same time.
WORKERS = 2

_RESERVED_NAMES = {"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"}


def chunk_rows(n_classes: int, width: int, itemsize: int, limit: int = CHUNK_BYTES) -> int:
    """Rows per chunk: the largest power of two with K * rows * W * itemsize <= ``limit``."""
    row_bytes = max(1, n_classes * width * itemsize)
    rows = 1
    while rows * 2 * row_bytes <= limit:
        rows *= 2
    return rows


def codec_arguments(codec: str, dtype: np.dtype) -> dict:
    """``create_array`` keyword arguments for one of :data:`CODECS`."""
    from zarr.codecs import BloscCodec, ZstdCodec

    if codec == "none":
        return {"compressors": None}
    if codec == "lz4":  # blosc: byte shuffle, then LZ4 (fast to decode)
        return {"compressors": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=dtype.itemsize)}
    if codec == "zstd":
        return {"compressors": ZstdCodec(level=1)}
    raise InputError(f"unknown codec {codec!r} (use one of {', '.join(CODECS)})")


def check_image_id(image_id: object, where: str) -> str:
    """An image id must be a string that names a node inside the store and nothing else."""
    from .files import safe_relative_path

    if not isinstance(image_id, str):
        raise InputError(f"{where}: image ids must be strings, got {type(image_id).__name__} {image_id!r}")
    try:
        safe_relative_path(image_id)
    except InputError:
        raise InputError(f"{where}: image id {image_id!r} cannot be stored (it is empty, or has an "
                         "empty, '.' or '..' part, a leading '/', a backslash or a NUL)") from None
    for part in image_id.split("/"):
        if part in _RESERVED_NAMES or part.startswith("__"):
            raise InputError(f"{where}: image id {image_id!r} cannot be stored ({part!r} is a name "
                             "zarr reserves)")
    return str(image_id)  # numpy's str_ too


def as_numpy(values: object, where: str) -> np.ndarray:
    """A numpy array from a numpy array or anything with ``__array__`` (torch tensors too).

    Objects with ``detach()`` and ``cpu()`` (torch tensors, also on a GPU or with
    gradients) are detached and moved to the CPU first.
    """
    if not isinstance(values, np.ndarray):
        if callable(getattr(values, "detach", None)) and callable(getattr(values, "cpu", None)):
            values = values.detach().cpu()
        try:
            values = np.asarray(values)
        except Exception as exc:  # torch raises TypeError/RuntimeError (e.g. bfloat16)
            raise InputError(f"{where}: cannot convert {type(values).__name__} to a numpy array "
                             f"({one_line(exc)}); pass float32 values") from None
    dtype = values.dtype
    if dtype.kind != "f" and dtype not in (np.uint8, np.uint16):
        raise InputError(f"{where}: dtype {dtype} is not probabilities (pass floats, or uint8/uint16 "
                         "holding round(p * 255) / round(p * 65535))")
    if dtype.kind == "f" and dtype.itemsize > 8:
        raise InputError(f"{where}: dtype {dtype} is not supported (use float16, float32 or float64)")
    if not dtype.isnative:
        values = values.astype(dtype.newbyteorder("="))
    return values


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


class _BadValues(ValueError):
    """A block of one image fails the checks; the writer adds the store and image."""


def input_sum_tolerance(given: np.dtype, stored: np.dtype, n_classes: int) -> float:
    """How far the given values of a pixel may sum from 1 so the stored ones pass the reader.

    The reader allows :func:`segaudit.io.predictions.sum_tolerance` of the stored dtype. Storing
    a different dtype rounds each value: by at most half a step each for uint8/uint16
    (K half steps in all), and by a relative 2**-11 (float16) or 2**-24 (float32) for
    floats (at most twice that in all, the values summing to about 1). Summing in float32
    adds up to K * 2**-24 more.
    """
    tolerance = sum_tolerance(stored, n_classes)
    half_step = decoding(stored)[1]
    if given != stored:
        tolerance -= n_classes * half_step if stored.kind == "u" else 2 * half_step
    if given.kind == "f" and given.itemsize < 8:
        tolerance -= 2 * n_classes * 2.0**-24
    return tolerance


def _check_and_encode(block: np.ndarray, dtype: np.dtype, logits: bool, row0: int) -> np.ndarray:
    """Check a (K, rows, W) block of given values and return it in the stored dtype.

    Probabilities must be finite and non-negative, and sum to 1 closely enough that the
    stored values pass the reader's check (:func:`input_sum_tolerance`). Logits must be
    finite and fit in the stored dtype (70000 overflows float16). One sum and one min
    over the block, then the conversion.
    """
    n_classes = block.shape[0]
    if block.dtype.kind == "f":
        # A NaN or inf anywhere makes the pixel's sum non-finite: one pass checks both.
        total = block.sum(axis=0, dtype=np.float64 if block.dtype == np.float64 else np.float32)
        if not np.isfinite(total).all():
            bad = ~np.isfinite(block)
            if bad.any():  # (else finite logits so large their sum overflowed: fine)
                k, r, c = _first(bad)
                raise _BadValues(f"non-finite value {block[k, r, c]} at row {row0 + r}, column {c} (class {k})")
        if not logits and block.min() < 0:
            k, r, c = _first(block < 0)
            raise _BadValues(f"negative probability {block[k, r, c]} at row {row0 + r}, column {c} (class {k})"
                             " (for logits use --logits / logits=True)")
    else:  # uint8/uint16 quantised probabilities
        total = block.sum(axis=0, dtype=np.float64) / np.iinfo(block.dtype).max
    if logits:
        if dtype.itemsize < block.dtype.itemsize:  # float64 -> float32 or -> float16, float32 -> float16
            limit = float(np.finfo(dtype).max)
            if block.max() > limit or block.min() < -limit:
                k, r, c = _first(np.abs(block) > limit)
                raise _BadValues(f"logit {block[k, r, c]} at row {row0 + r}, column {c} (class {k}) does not "
                                 f"fit in {dtype} (store float32)")
    else:
        deviation = np.abs(total - 1)
        allowed = input_sum_tolerance(block.dtype, dtype, n_classes)
        if deviation.max() > allowed:
            r, c = _first(deviation > allowed)
            what = "all probabilities 0" if total[r, c] == 0 else f"probabilities summing to {total[r, c]:.6g}, not 1"
            hint = (f"{block.dtype} values: store them as {block.dtype}" if block.dtype.kind == "u"
                    else sum_hint(float(total[r, c]), n_classes, block)
                    or "for logits use --logits / logits=True")
            raise _BadValues(f"{what} at row {row0 + r}, column {c} ({hint})")
    if block.dtype == dtype:
        return block
    if dtype.kind == "u":  # quantise: round(p * max), clipped so 1.0004 stays at max
        top = np.iinfo(dtype).max
        work = np.float64 if block.dtype == np.float64 else np.float32
        scaled = block.astype(work)  # a copy, scaled in place
        scaled *= work(top / np.iinfo(block.dtype).max) if block.dtype.kind == "u" else work(top)
        np.rint(scaled, out=scaled)
        np.minimum(scaled, top, out=scaled)
        return scaled.astype(dtype)
    if block.dtype.kind == "u":
        return (block / np.float64(np.iinfo(block.dtype).max)).astype(dtype)
    return block.astype(dtype)


class PredictionWriter:
    """Write per-image predictions to a zarr store, streaming, checked as they come.

    Use it as a context manager::

        with PredictionWriter("preds.zarr", classes=names, dtype="float16") as w:
            for ids, probs in loader:        # numpy arrays or torch tensors
                w.write_batch(ids, probs)    # (B, K, H, W); w.write(id, probs) for one (K, H, W)

    Parameters
    ----------
    path : str or Path
        The store (a directory) to create. It must not exist, or be an empty directory,
        unless ``overwrite=True`` (which replaces an existing zarr store, and nothing else).
    classes : list of str, optional
        Class names; K is taken from them, or else from the first array written.
    dtype : str
        Stored dtype: ``"float16"`` (default: half the bytes of float32, relative error
        below 2**-11), ``"float32"``, ``"float64"``, or ``"uint8"``/``"uint16"``, which
        store round(p * 255) / round(p * 65535) (uint8 shifts softmin by a few percent;
        see docs/predictions.md).
    logits : bool
        The arrays are logits (the reader applies a softmax per pixel); only finiteness is
        checked. Logits cannot be stored as uint8/uint16.
    channels_last : bool
        The arrays you pass are (H, W, K) / (B, H, W, K). They are stored as (K, H, W),
        which scores faster, unless ``store_channels_last=True``.
    store_channels_last : bool
        Store (H, W, K) arrays as given, with the ``channels_last`` attribute.
    codec : str
        ``"none"`` (default, fastest to read), ``"lz4"`` (blosc, byte shuffle) or ``"zstd"``.
    chunk_bytes : int
        Upper bound of a chunk's size; chunks hold all classes, all columns and a
        power-of-two number of rows.
    overwrite : bool
        Replace an existing zarr store at ``path``.
    fold : int, optional
        The fold whose model made these predictions (k-fold cross-validation): stored on
        each image's array as the attribute ``segaudit_fold``, so that ``segaudit info
        --folds`` and ``segaudit score --folds`` can check that no image was predicted by a
        model that trained on it. ``write``/``write_batch``/``write_volume`` take ``fold=``
        too, for one writer shared by all folds.

    Raises
    ------
    InputError
        For a bad argument, id, shape or value: one line naming the store, the image and
        the problem. A failed ``write`` leaves no array for that id behind.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        classes: list[str] | None = None,
        *,
        dtype: str = DEFAULT_DTYPE,
        logits: bool = False,
        channels_last: bool = False,
        store_channels_last: bool = False,
        codec: str = DEFAULT_CODEC,
        chunk_bytes: int = CHUNK_BYTES,
        overwrite: bool = False,
        fold: int | None = None,
    ) -> None:
        import zarr

        from .folds import check_fold_value

        self.path = Path(path)
        if str(dtype) not in DTYPES:
            raise InputError(f"{self._where()}: dtype {dtype!r} is not supported (use one of {', '.join(DTYPES)})")
        self.dtype = np.dtype(str(dtype))
        if logits and self.dtype.kind == "u":
            raise InputError(f"{self._where()}: logits cannot be stored as {self.dtype} (quantised "
                             "probabilities); use float16 or float32")
        if store_channels_last and not channels_last:
            raise InputError(f"{self._where()}: store_channels_last needs channels_last (H, W, K) input")
        codec_arguments(codec, self.dtype)  # checks the name
        if classes is not None:
            if isinstance(classes, str) or not all(isinstance(name, str) for name in classes):
                raise InputError(f"{self._where()}: classes must be a list of class names (strings)")
            classes = list(classes)
            if len(classes) < 2:
                raise InputError(f"{self._where()}: classes names {len(classes)} class(es); predictions need K >= 2")
        self.classes = classes
        self.n_classes: int | None = len(classes) if classes is not None else None
        self.logits = bool(logits)
        self.channels_last = bool(channels_last)
        self.store_channels_last = bool(store_channels_last)
        self.codec = codec
        self.chunk_bytes = int(chunk_bytes)
        self.fold = None if fold is None else check_fold_value(fold, self._where())
        self.image_ids: list[str] = []
        self._ids: set[str] = set()
        self._folders: set[str] = set()
        self._closed = False

        _clear_target(self.path, overwrite)
        self._group = zarr.open_group(str(self.path), mode="w", zarr_format=3)
        attrs = {
            COMPLETE_ATTR: False,
            WRITER_ATTR: f"segaudit {__version__} PredictionWriter",
            "kind": "logits" if self.logits else "probabilities",
            "channels_last": self.store_channels_last,
        }
        if classes is not None:
            attrs["classes"] = classes
        self._group.attrs.update(attrs)

    # --- context manager -------------------------------------------------------

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is None:
            self.close()
        else:
            self.abort(f"{kind.__name__}: {error}" if str(error) else kind.__name__)

    # --- writing ---------------------------------------------------------------

    @property
    def images_written(self) -> int:
        return len(self.image_ids)

    def write(self, image_id: str, probs: object, *, fold: int | None = None) -> None:
        """Write one image's (K, H, W) predictions ((H, W, K) with ``channels_last``).

        ``fold``: the fold whose model predicted it (default: the writer's ``fold``).
        """
        self._check_open()
        image_id = self._check_new_id(image_id, self._where())
        where = self._where(image_id)
        fold = self._fold(fold, where)
        array = as_numpy(probs, where)
        if array.ndim != 3:
            hint = " (for a batch use write_batch)" if array.ndim == 4 else ""
            raise InputError(f"{where}: expected a {self._shape_text()} array, got shape {array.shape}{hint}")
        self._write_one(image_id, array, where, fold=fold)

    def write_volume(self, image_id: str, probs: object, attributes: dict | None = None, *,
                     fold: int | None = None) -> None:
        """Write one volume's (K, Z, Y, X) predictions, slice by slice, as one image.

        ``attributes`` (JSON values, e.g. ``affine`` and ``spacing``) are stored on its
        array. The checks are those of :meth:`write`, per slice; a message names the slice.
        ``fold`` as for :meth:`write`.
        """
        self._check_open()
        image_id = self._check_new_id(image_id, self._where())
        where = self._where(image_id)
        fold = self._fold(fold, where)
        array = as_numpy(probs, where)
        if array.ndim != 4:
            raise InputError(f"{where}: expected a (K, Z, Y, X) volume, got shape {array.shape}")
        if self.channels_last:
            raise InputError(f"{where}: volumes are (K, Z, Y, X); channels-last volumes are not supported")
        self._write_one(image_id, array, where, attributes, fold=fold)

    def write_batch(self, image_ids, probs: object, *, fold: int | None = None) -> None:
        """Write a batch: ids (a sequence of B strings) and (B, K, H, W) predictions.

        ``fold`` as for :meth:`write`.
        """
        self._check_open()
        fold = self._fold(fold, self._where())
        if isinstance(image_ids, str):
            raise InputError(f"{self._where()}: write_batch needs a sequence of image ids, not one string "
                             "(use write for a single image)")
        image_ids = list(image_ids)
        array = as_numpy(probs, self._where())
        if array.ndim != 4:
            raise InputError(f"{self._where()}: write_batch expects (B, {self._shape_text()[1:]} predictions, "
                             f"got shape {array.shape}" + (" (for one image use write)" if array.ndim == 3 else ""))
        if len(image_ids) != array.shape[0]:
            raise InputError(f"{self._where()}: {len(image_ids)} image ids for a batch of {array.shape[0]} images")
        seen: set = set()
        for image_id in image_ids:  # the whole batch's ids first, so a bad id writes nothing
            self._check_new_id(image_id, self._where())
            if image_id in seen:
                raise InputError(f"{self._where()}: duplicate image id {image_id!r} in the batch")
            seen.add(image_id)
        for image_id, one in zip(image_ids, array):
            self._write_one(image_id, one, self._where(image_id), fold=fold)

    def close(self) -> None:
        """Mark the store complete. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if not self.image_ids:
            self._mark_incomplete("no image was written")
            raise InputError(f"{self._where()}: no image was written; the store is left marked incomplete")
        self._group.attrs.update({COMPLETE_ATTR: True})

    def abort(self, reason: str = "the writer was aborted") -> None:
        """Stop writing and leave the store marked incomplete, recording ``reason``."""
        if self._closed:
            return
        self._closed = True
        self._mark_incomplete(f"writing stopped after {len(self.image_ids)} image(s): {reason}")

    # --- internals -------------------------------------------------------------

    def _mark_incomplete(self, reason: str) -> None:
        reason = one_line(reason)
        if len(reason) > 300:
            reason = reason[:297] + "..."
        try:
            self._group.attrs.update({COMPLETE_ATTR: False, INCOMPLETE_ATTR: reason})
        except Exception:  # the disk may be what failed; segaudit_complete is false already
            pass

    def _check_open(self) -> None:
        if self._closed:
            raise InputError(f"{self._where()}: the writer is closed")

    def _shape_text(self) -> str:
        return "(H, W, K)" if self.channels_last else "(K, H, W)"

    def _where(self, image_id: str | None = None) -> str:
        """How messages name the store or one of its images."""
        return f"{self.path}" if image_id is None else f"{self.path}/{image_id}"

    def _fold(self, fold: int | None, where: str) -> int | None:
        """The fold to record: the one given to the call, or else the writer's."""
        if fold is None:
            return self.fold
        from .folds import check_fold_value

        return check_fold_value(fold, where)

    def _check_new_id(self, image_id: object, where: str) -> str:
        image_id = check_image_id(image_id, where)
        if image_id in self._ids:
            raise InputError(f"{where}: duplicate image id {image_id!r} (already written)")
        if image_id in self._folders:
            raise InputError(f"{where}: image id {image_id!r} is also a folder of other written ids")
        parts = image_id.split("/")
        for n in range(1, len(parts)):
            prefix = "/".join(parts[:n])
            if prefix in self._ids:
                raise InputError(f"{where}: image id {image_id!r} would be inside image {prefix!r}, "
                                 "which is already written")
        return image_id

    def _write_one(self, image_id: str, array: np.ndarray, where: str, attributes: dict | None = None, *,
                   fold: int | None = None) -> None:
        class_axis = -1 if self.channels_last else 0
        n_classes = array.shape[class_axis]
        depth = array.shape[1] if array.ndim == 4 else None  # a volume's slices
        height, width = (array.shape[:2] if self.channels_last else array.shape[-2:])
        if self.n_classes is None:
            if n_classes < 2:
                raise InputError(f"{where}: {n_classes} class(es) along the class axis of shape {array.shape}; "
                                 f"expected {self._shape_text()}" + ("" if self.channels_last else " (channels_last?)"))
            self.n_classes = n_classes
        elif n_classes != self.n_classes:
            named = "the class names give" if self.classes is not None else "earlier images have"
            raise InputError(f"{where}: {n_classes} classes (shape {array.shape}, {self._shape_text()}), "
                             f"but {named} K={self.n_classes}")
        if height == 0 or width == 0 or depth == 0:
            raise InputError(f"{where}: empty image, shape {array.shape}")
        attributes = dict(attributes or {})
        if fold is not None:
            from .folds import FOLD_ATTR

            attributes[FOLD_ATTR] = fold
        if depth is not None:
            self._write_volume(image_id, array, where, attributes)
            return

        stored_shape = (height, width, n_classes) if self.store_channels_last else (n_classes, height, width)
        rows = min(height, chunk_rows(n_classes, width, self.dtype.itemsize, self.chunk_bytes))
        chunks = (rows, width, n_classes) if self.store_channels_last else (n_classes, rows, width)
        self._add_array(image_id, where, lambda target: self._fill(target, array, rows, height),
                        shape=stored_shape, chunks=chunks, **({"attributes": attributes} if attributes else {}))

    def _write_volume(self, image_id: str, array: np.ndarray, where: str, attributes: dict) -> None:
        """A (K, Z, Y, X) volume as one array chunked by slice (and rows), checked slice by slice."""
        n_classes, depth, height, width = array.shape
        rows = min(height, chunk_rows(n_classes, width, self.dtype.itemsize, self.chunk_bytes))

        def fill(target) -> None:
            for z in range(depth):
                try:
                    target[:, z] = _check_and_encode(np.asarray(array[:, z]), self.dtype, self.logits, 0)
                except _BadValues as exc:
                    raise _BadValues(f"slice {z}: {exc}") from None

        self._add_array(image_id, where, fill, shape=array.shape, chunks=(n_classes, 1, rows, width),
                        attributes=attributes)

    def _add_array(self, image_id: str, where: str, fill, **create) -> None:
        """Create the image's array, ``fill(target)`` it and record the id; on any failure the
        half-written array is deleted again (bad values become an InputError naming ``where``)."""
        try:
            target = self._group.create_array(name=image_id, dtype=self.dtype, fill_value=0, **create,
                                              **codec_arguments(self.codec, self.dtype))
        except Exception as exc:
            raise InputError(f"{where}: cannot create the array: {type(exc).__name__}: {exc}") from None
        try:
            fill(target)
        except BaseException as exc:
            try:
                del self._group[image_id]
            except Exception:
                pass
            if isinstance(exc, _BadValues):
                raise InputError(f"{where}: {exc}") from None
            raise
        self.image_ids.append(image_id)
        self._ids.add(image_id)
        parts = image_id.split("/")
        self._folders.update("/".join(parts[:n]) for n in range(1, len(parts)))

    def _fill(self, target, array: np.ndarray, rows: int, height: int) -> None:
        def job(start: int) -> None:
            stop = min(start + rows, height)
            if self.channels_last:
                block = array[start:stop]
                if not self.store_channels_last:
                    block = np.ascontiguousarray(np.moveaxis(block, -1, 0))
                    stored = _check_and_encode(block, self.dtype, self.logits, start)
                else:
                    stored = np.moveaxis(
                        _check_and_encode(np.moveaxis(block, -1, 0), self.dtype, self.logits, start), 0, -1)
                target[start:stop] = stored
            else:
                stored = _check_and_encode(array[:, start:stop], self.dtype, self.logits, start)
                target[:, start:stop] = stored

        starts = range(0, height, rows)
        if len(starts) == 1:
            job(0)
            return
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="segaudit-write") as pool:
            pending = []
            try:
                for start in starts:
                    pending.append(pool.submit(job, start))
                    if len(pending) > WORKERS:
                        pending.pop(0).result()
                while pending:
                    pending.pop(0).result()
            finally:
                for future in pending:
                    future.cancel()


def _clear_target(path: Path, overwrite: bool) -> None:
    """Make room for a new store at ``path``: absent, an empty directory, or (overwrite) a zarr store."""
    if path.is_symlink() or path.exists():
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            return
        if not overwrite:
            raise InputError(f"{path} already exists (pass overwrite=True / --overwrite to replace it)")
        if not is_zarr_store(path):
            raise InputError(f"refusing to replace {path}: it is not a zarr store")
        shutil.rmtree(path)
    elif not path.parent.is_dir():
        from .remote import refuse_url_output

        refuse_url_output(path, "output")
        raise InputError(f"output directory does not exist: {path.parent}")


def is_zarr_store(path: Path) -> bool:
    """A directory with zarr (format 3 or 2) group or array metadata at its root."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and any(
        (path / name).is_file() for name in ("zarr.json", ".zgroup", ".zarray"))
