"""TIFF / GeoTIFF photos for overlays: any band count, any bit depth, read with tifffile.

A photo is drawn from its first three bands as RGB, or from its one band as grey (two bands:
the first). 8-bit RGB is used as it is; anything else (16-bit, float, multispectral) is
stretched per image: the 0.5 and 99.5 percentiles of the drawn bands, together, become 0
and 255 (NaN and no-data values aside, they become black).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, one_line
from .masks.tiff import import_tifffile

#: Percentiles of the drawn values that the stretch maps to 0 and 255.
STRETCH = (0.5, 99.5)


def _plane_axes(axes: str, shape: tuple[int, ...], path: Path) -> tuple[int, int, int | None]:
    """Positions of Y, X and the band axis (None for one band) in a TIFF series."""
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"cannot read photo {path}: no image plane in its axes {axes!r}")
    y, x = axes.index("Y"), axes.index("X")
    others = [i for i in range(len(shape)) if i not in (y, x) and shape[i] > 1]
    if len(others) > 1:
        raise InputError(f"cannot read photo {path}: shape {shape} (axes {axes}) holds more than one image; "
                         "an overlay photo is one plane of bands")
    return y, x, others[0] if others else None


def _first_series(path: Path, pixels: bool) -> tuple[tuple[int, ...], str, np.ndarray | None] | None:
    """A TIFF photo's first series: its shape, its axes and (with ``pixels``) its array; None
    without tifffile. InputError, one line naming the file, when it cannot be read."""
    tifffile = import_tifffile()
    if tifffile is None:
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return tuple(series.shape), series.axes, np.asarray(series.asarray()) if pixels else None
    except Exception as exc:  # TiffFileError, OSError, IndexError (no image), truncated data, ...
        raise InputError(f"cannot read photo {path}: {one_line(exc, type(exc).__name__)}") from None


def tiff_photo_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) of a TIFF photo from its header, or None without tifffile."""
    path = Path(path)
    found = _first_series(path, pixels=False)
    if found is None:
        return None
    shape, axes, _ = found
    y, x, _ = _plane_axes(axes, shape, path)
    return shape[y], shape[x]


def stretch(values: np.ndarray) -> np.ndarray:
    """Values (any dtype) to uint8 by the per-image percentile stretch of :data:`STRETCH`."""
    values = values.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    low, high = np.percentile(values[finite], STRETCH)
    scaled = (np.where(finite, values, low) - low) / max(high - low, 1e-12) * 255
    return np.clip(scaled, 0, 255).astype(np.uint8)


def read_tiff_photo(path: str | Path) -> np.ndarray | None:
    """A TIFF photo as (H, W, 3) uint8 RGB (see the module's docstring), or None without tifffile.

    InputError, one line naming the file, for an unreadable file or one holding more than
    one plane of bands.
    """
    path = Path(path)
    found = _first_series(path, pixels=True)
    if found is None:
        return None
    _, axes, data = found
    y, x, band = _plane_axes(axes, data.shape, path)
    order = [y, x] + ([band] if band is not None else [])
    order += [i for i in range(data.ndim) if i not in order]  # axes of length 1
    data = data.transpose(order).reshape(data.shape[y], data.shape[x], -1)
    bands = data[..., :3] if data.shape[2] >= 3 else data[..., :1]
    if bands.dtype == np.uint8 and bands.shape[2] == 3:
        return np.ascontiguousarray(bands)
    if bands.dtype == np.bool_:
        bands = bands.astype(np.uint8)
    grey = stretch(bands)
    return np.ascontiguousarray(np.repeat(grey, 3, axis=2) if grey.shape[2] == 1 else grey)


# --- scans: the photo of a volume -------------------------------------------------------

#: A volume's scan: a NIfTI image (nnU-Net's ``imagesTr/case_0000.nii.gz``) or a 3-D ``.npy``.
SCAN_EXTENSIONS = (".nii.gz", ".nii", ".npy")


def _scan_nifti(path: Path):
    from .volumes import _load_nifti

    image = _load_nifti(path)
    shape = tuple(int(n) for n in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"cannot read scan {path}: shape {shape} is not one 3-D volume (give one channel's "
                         "file, e.g. nnU-Net's _0000)")
    return image, shape


def scan_shape(path: str | Path) -> tuple[int, int, int]:
    """(Z, Y, X) of a scan (a NIfTI's voxel axes reversed, as its mask's) from its header."""
    path = Path(path)
    if str(path).lower().endswith((".nii", ".nii.gz")):
        _, shape = _scan_nifti(path)
        return shape[2], shape[1], shape[0]
    from .volumes import read_npy_header

    try:
        with open(path, "rb") as stream:
            shape, _ = read_npy_header(stream)
    except Exception as exc:  # OSError, a bad header
        raise InputError(f"cannot read scan {path}: {one_line(exc, type(exc).__name__)}") from None
    if len(shape) != 3:
        raise InputError(f"cannot read scan {path}: shape {tuple(shape)} is not a 3-D (Z, Y, X) volume")
    return tuple(int(n) for n in shape)


def read_scan_slice(path: str | Path, z: int) -> np.ndarray:
    """Slice ``z`` of a scan as an (Y, X, 3) uint8 grey image, stretched per slice (see
    :func:`stretch`), oriented as its mask's slice is read."""
    path = Path(path)
    try:
        if str(path).lower().endswith((".nii", ".nii.gz")):
            image, shape = _scan_nifti(path)
            plane = np.asarray(image.dataobj[:, :, z] if len(image.shape) == 3 else image.dataobj[:, :, z, 0])
            plane = plane.T  # (X, Y) voxels to (Y, X), as read_volume_mask reverses the axes
        else:
            plane = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False)[z])
    except InputError:
        raise
    except Exception as exc:  # truncated gzip, bad array data
        raise InputError(f"cannot read scan {path}: {one_line(exc, type(exc).__name__)}") from None
    grey = stretch(np.asarray(plane, np.float64))
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
