"""Single-band integer TIFF / GeoTIFF masks (``.tif``, ``.tiff``), read with tifffile (an
optional dependency: ``pip install 'segaudit[tiff]'``); and the one test of a TIFF file name
and the one import of tifffile, which :mod:`segaudit.io.photos` uses too."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import InputError, one_line
from .base import INT32_MAX, MaskFile, MaskFormat, Palette, file_name, source

TIFF_EXTENSIONS = (".tif", ".tiff")


def is_tiff(path: Path | str) -> bool:
    """Whether a file name (a local path or a URL) is a TIFF's."""
    return os.path.splitext(file_name(path))[1].lower() in TIFF_EXTENSIONS


def import_tifffile():
    """The tifffile module (its log kept quiet), or None when it is not installed."""
    try:
        import tifffile
    except ImportError:
        return None
    quiet_tifffile()
    return tifffile


def quiet_tifffile() -> None:
    """Keep tifffile's log lines about a malformed file off stderr ("incorrect StripByteCounts
    count", logged as errors, three lines per read of a forged header): a file it cannot read
    raises, and segaudit says that in one line; the shape it reads is checked against the
    prediction's either way."""
    import logging

    logger = logging.getLogger("tifffile")
    if not any(isinstance(f, _Dropped) for f in logger.filters):
        logger.addFilter(_Dropped())


class _Dropped:
    """A logging filter that drops every record."""

    def filter(self, record) -> bool:
        return False


def require_tifffile(path: Path | str):
    """Import tifffile, or a one-line InputError naming ``path`` and saying how to get it."""
    tifffile = import_tifffile()
    if tifffile is None:
        raise InputError(f"{path}: reading TIFF masks needs tifffile: pip install 'segaudit[tiff]'")
    return tifffile


def _tiff_header(mask: MaskFile) -> tuple[tuple[int, ...], np.dtype]:
    """Return a TIFF mask's (H, W) and dtype from its header; InputError unless single-band integer."""
    tifffile = require_tifffile(mask.path)
    try:
        with tifffile.TiffFile(source(mask)) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), np.dtype(series.dtype)
    except InputError:
        raise
    except Exception as e:  # TiffFileError, OSError, IndexError (no image), ...
        raise InputError(f"cannot read mask {mask.path}: {one_line(e, type(e).__name__)}") from None
    _check_tiff(mask, shape, dtype)
    return shape, dtype


def _check_tiff(mask: MaskFile, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if len(shape) != 2:
        raise InputError(
            f"{mask.path}: TIFF mask must be a single band (H, W), found shape {shape}"
        )
    if not (np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        raise InputError(
            f"{mask.path}: TIFF mask must hold integer class values, found dtype {dtype}"
        )


def _read_tiff(mask: MaskFile) -> np.ndarray:
    """Decode a single-band integer TIFF mask into int32 class indices."""
    _tiff_header(mask)  # shape and dtype checked before decoding
    tifffile = require_tifffile(mask.path)
    try:
        arr = np.asarray(tifffile.imread(source(mask), series=0))
    except Exception as e:  # truncated or corrupt data, unsupported compression, ...
        raise InputError(f"cannot read mask {mask.path}: {one_line(e, type(e).__name__)}") from None
    _check_tiff(mask, arr.shape, arr.dtype)
    if arr.dtype != np.bool_ and arr.size:
        low, high = int(arr.min()), int(arr.max())
        if low < 0:
            negative = arr < 0
            raise InputError(
                f"{mask.path}: negative class value {low} in {int(negative.sum())} pixels"
            )
        if high > INT32_MAX:
            raise InputError(f"{mask.path}: class value {high} is larger than {INT32_MAX}")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _encode_tiff_like(mask: MaskFile, new: np.ndarray) -> bytes:
    """TIFF bytes of ``new`` in the dtype of ``mask``'s file (its other tags are not kept)."""
    tifffile = require_tifffile(mask.path)
    _, dtype = _tiff_header(mask)
    if new.size and dtype != np.bool_ and int(new.max()) > np.iinfo(dtype).max:
        raise InputError(f"{mask.path}: class {int(new.max())} does not fit the mask's {dtype}")
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, new.astype(dtype))
    return buffer.getvalue()


class TiffFormat(MaskFormat):
    name = "tiff"
    label = "TIFF"
    extensions = TIFF_EXTENSIONS

    def check_reader(self, paths: Sequence[Path | str]) -> None:
        if paths:
            require_tifffile(paths[0])

    def shape(self, mask: MaskFile, palette: Palette | None) -> tuple[int, int]:
        shape, _ = _tiff_header(mask)
        return shape[0], shape[1]

    def read(self, mask: MaskFile, palette: Palette | None) -> np.ndarray:
        return _read_tiff(mask)

    def encode_like(self, mask: MaskFile, old: np.ndarray, new: np.ndarray, palette: Palette | None) -> bytes:
        return _encode_tiff_like(mask, new)

    def suffix(self, mask: MaskFile) -> str:
        return os.path.splitext(file_name(mask.path))[1]  # as the source spells it (.tif, .TIFF ...)


FORMAT = TiffFormat()
