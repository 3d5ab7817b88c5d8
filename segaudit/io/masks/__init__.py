"""Finding and decoding annotation masks: PNG, TIFF, NIfTI or numpy files whose values are class indices.

One module per format (``png.py``, ``tiff.py``, ``volume.py``), each a
:class:`~segaudit.io.masks.base.MaskFormat` (its extensions, a header's shape, the decoded
labels, a file written like the source); :data:`FORMATS` is their registry and every function
here dispatches on a file's extension. A volume (NIfTI, or a 3-D ``.npy``/``.npz``; see
:mod:`segaudit.io.volumes`) is read as one tall 2-D image of Z * Y rows, slice after slice, so
everything above sees ``(H, W)`` labels.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import numpy as np

from ...errors import InputError
from .. import remote, volumes
from ..label_maps import LabelLookup
from . import png, tiff, volume
from .base import MaskFile, MaskFormat, Palette, file_name, read_bytes
from .png import load_palette

__all__ = ["FORMATS", "MASK_EXTENSIONS", "MaskFile", "MaskFormat", "Palette", "encode_flags", "encode_like",
           "find_masks", "flags_suffix", "load_palette", "mask_extension", "mask_format", "mask_palette",
           "mask_shape", "read_bytes", "read_mask", "suffix_like", "volume_header"]

#: The mask formats, in the order their extensions are tried.
FORMATS: tuple[MaskFormat, ...] = (png.FORMAT, tiff.FORMAT, volume.FORMAT)
#: Extension (lower case, ``.nii.gz`` whole) -> its format.
FORMAT_OF: dict[str, MaskFormat] = {ext: fmt for fmt in FORMATS for ext in fmt.extensions}
MASK_EXTENSIONS = tuple(FORMAT_OF)


def mask_extension(name: str) -> str | None:
    """The mask extension a file name ends with (lower case, ``.nii.gz`` whole), or None."""
    ext = volumes.volume_extension(name) or os.path.splitext(name)[1].lower()
    return ext if ext in FORMAT_OF else None


def mask_format(mask: MaskFile) -> MaskFormat:
    """The format that reads ``mask`` (found by :func:`find_masks`, so its extension is known)."""
    return FORMAT_OF[mask_extension(file_name(mask.path))]


def _check_readers(paths: list[Path | str]) -> None:
    """Each format's check that its optional package is installed, on the files it will read."""
    for fmt in FORMATS:
        fmt.check_reader([p for p in paths if FORMAT_OF[mask_extension(file_name(p))] is fmt])


def _find_remote_masks(url: str, suffix: str, storage_options: dict | None) -> list[MaskFile]:
    """:func:`find_masks` for a directory given as a URL: PNG and TIFF masks listed and read
    through fsspec."""
    fs, root = remote.filesystem(url, storage_options, "masks directory")
    root = root.rstrip("/")
    shown = remote.redact(url).rstrip("/")
    try:
        if not fs.isdir(root):
            raise InputError(f"masks directory not found: {shown}" if not fs.exists(root)
                             else f"masks path is not a directory: {shown}")
        listed = sorted(fs.find(root, withdirs=False))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 (each filesystem raises its own types)
        raise remote.remote_error(url, exc, "masks directory", remote.timeout_of(storage_options)) from None
    by_id: dict[str, str] = {}
    skipped = 0
    for key in listed:
        key = fs._strip_protocol(key).rstrip("/")
        relative = key[len(root):].lstrip("/") if key.startswith(root) else None
        if not relative or any(part.startswith(".") for part in relative.split("/")):
            continue
        name = posixpath.basename(relative)
        ext = mask_extension(name)
        if ext is None:
            continue
        stem = name[: -len(ext)]
        if suffix and (not stem.endswith(suffix) or stem == suffix):
            skipped += 1
            continue
        if not FORMAT_OF[ext].remote:
            raise InputError(f"{shown}/{relative}: volume masks (NIfTI, .npy/.npz) are read from local files only; "
                             "copy them to a local directory")
        folder = posixpath.dirname(relative)
        stem = stem[: len(stem) - len(suffix)]
        image_id = f"{folder}/{stem}" if folder else stem
        if image_id in by_id:
            raise InputError(f"two masks map to image id '{image_id}': {by_id[image_id]} and {shown}/{relative}")
        by_id[image_id] = f"{shown}/{relative}"
    if not by_id:
        which = f"ending in '{suffix}.png' (or .tif/.tiff) " if suffix else ""
        others = f" ({skipped} other mask files)" if suffix else ""
        raise InputError(f"no PNG or TIFF masks {which}found in {shown}{others}")
    _check_readers(list(by_id.values()))
    # The filesystem reads the protocol's paths; the URL as redacted names the mask in messages.
    prefix = len(shown) + 1
    return [MaskFile(i, by_id[i], fs, f"{root}/{by_id[i][prefix:]}") for i in sorted(by_id)]


def find_masks(directory: str | Path, suffix: str = "", storage_options: dict | None = None) -> list[MaskFile]:
    """Find the masks under a directory, recursively: PNG, TIFF (``.tif``/``.tiff``), NIfTI
    (``.nii``/``.nii.gz``) and ``.npy``/``.npz`` files.

    Parameters
    ----------
    directory : str or Path
        Root of the masks tree. Hidden files and directories are skipped.
    suffix : str, optional
        If given (e.g. ``"_gtFine_labelIds"``), only files whose name without
        extension ends with it are used, and it is stripped from the id.
    storage_options : dict, optional
        For a directory given as a URL (``s3://bucket/masks``, anything fsspec lists): the
        options of its filesystem. Remote masks are PNG or TIFF files, read through fsspec.

    Returns
    -------
    list of MaskFile
        Sorted by ``image_id``. InputError if the directory is missing, holds no
        matching mask, or two files (e.g. a PNG and a TIFF) map to the same id.
    """
    if remote.is_url(directory):
        return _find_remote_masks(directory, _strip_extension(suffix), storage_options)
    root = Path(directory)
    if not root.exists():
        raise InputError(f"masks directory not found: {root}")
    if not root.is_dir():
        raise InputError(f"masks path is not a directory: {root}")
    suffix = _strip_extension(suffix)

    by_id: dict[str, Path] = {}
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            ext = mask_extension(name)
            if name.startswith(".") or ext is None:
                continue
            stem = name[: -len(ext)]
            # A file named exactly "<suffix>.png" would get an empty id, so it does not match.
            if suffix and (not stem.endswith(suffix) or stem == suffix):
                skipped += 1
                continue
            path = Path(dirpath) / name
            if not path.is_file():  # a FIFO or device would block or never end when read
                raise InputError(f"{path}: not a regular file (a mask must be a {FORMAT_OF[ext].label} file)")
            rel = path.relative_to(root).parent.as_posix()
            stem = stem[: len(stem) - len(suffix)]
            image_id = stem if rel == "." else f"{rel}/{stem}"
            if image_id in by_id:
                raise InputError(
                    f"two masks map to image id '{image_id}': {by_id[image_id]} and {path}"
                )
            by_id[image_id] = path

    if not by_id:
        which = f"ending in '{suffix}.png' (or .tif/.tiff/.nii.gz/.nii/.npy/.npz) " if suffix else ""
        others = f" ({skipped} other mask files)" if suffix else ""
        raise InputError(f"no PNG, TIFF, NIfTI or .npy masks {which}found in {root}{others}")
    _check_readers(list(by_id.values()))  # fail before any work when tifffile or nibabel is missing
    return [MaskFile(i, by_id[i]) for i in sorted(by_id)]


def _strip_extension(suffix: str) -> str:
    """Tolerate "--suffix _gtFine_labelIds.png": the extension is matched separately."""
    for ext in MASK_EXTENSIONS:
        if suffix.lower().endswith(ext):
            return suffix[: -len(ext)]
    return suffix


def volume_header(mask: MaskFile) -> volumes.VolumeHeader | None:
    """A volume mask's header ((Z, Y, X) and, for NIfTI, the affine), or None for a 2-D mask."""
    return mask_format(mask).volume_header(mask)


def mask_shape(mask: MaskFile, palette: Palette | None = None) -> tuple[int, int]:
    """Return a mask's (height, width) from its PNG header, without decoding pixels.

    Raises the same InputErrors as :func:`read_mask` for unreadable files and
    unsupported modes, so a cheap pre-pass catches them before any work.
    TIFF masks are checked (single band, integer) from their header the same way. A
    volume's (Z, Y, X) is returned as the (Z * Y, X) of its tall image (see
    :func:`volume_shape` for its own shape).
    """
    return mask_format(mask).shape(mask, palette)


def read_mask(mask: MaskFile, palette: Palette | None = None, label_map: LabelLookup | None = None) -> np.ndarray:
    """Decode a mask into class indices.

    Parameters
    ----------
    mask : MaskFile
        The mask to read.
    palette : dict, optional
        ``{(r, g, b): class}``; required for RGB/RGBA masks, ignored otherwise.
    label_map : LabelLookup, optional
        Applied to the decoded values (``--label-map``): each becomes its class or the
        ignore value; a value the map does not cover is an InputError.

    Returns
    -------
    numpy.ndarray
        2-D, C-contiguous, dtype int32. For P-mode masks the palette index is
        the class (Pascal VOC convention); for mode 1 the classes are 0 and 1.
        InputError for an unreadable or truncated file, an unsupported mode,
        RGB without palette, colours not in the palette, or negative values.
        A TIFF mask must be single-band with an integer dtype (palette ignored).
        A volume is its tall (Z * Y, X) image.
    """
    labels = mask_format(mask).read(mask, palette)
    return labels if label_map is None else label_map.apply(labels, str(mask.path))


def mask_palette(mask: MaskFile) -> list[tuple[int, int, int]] | None:
    """Return a P-mode mask's own PNG palette as RGB triples (index = class), else None."""
    return mask_format(mask).palette(mask)


# --- writing a mask like its source: proposals, corrupt's copies, issue masks ------------------


def suffix_like(mask: MaskFile) -> str:
    """The extension of a file :func:`encode_like` writes for ``mask`` (``.png``, the TIFF's
    own, the volume's)."""
    return mask_format(mask).suffix(mask)


def encode_like(mask: MaskFile, old: np.ndarray, new: np.ndarray, palette: Palette | None) -> bytes:
    """The bytes of ``new`` (labels as :func:`read_mask` returns them without a label map, some
    changed from ``old``) in ``mask``'s own encoding: a PNG in its mode (same palette,
    transparency, bit layout), a TIFF in its dtype, a volume in its file type, shape and dtype
    (NIfTI with its affine and header).

    For RGB/RGBA masks only the changed pixels are recoloured (first colour of their class
    in ``palette``); alpha and every other pixel keep their values.
    """
    return mask_format(mask).encode_like(mask, old, new, palette)


def flags_suffix(mask: MaskFile) -> str:
    """The extension of ``mask``'s issue mask (see :func:`encode_flags`)."""
    return mask_format(mask).flags_suffix(mask)


def encode_flags(mask: MaskFile, flags: np.ndarray) -> bytes:
    """The bytes of ``mask``'s issue mask, ``flags`` (the mask's 2-D (tall) shape, uint8, 0 fine,
    255 flagged): a greyscale PNG; a volume's is (Z, Y, X) uint8, a NIfTI image with the mask's
    geometry for a NIfTI mask (viewers overlay it on the scan), else a ``.npy``."""
    return mask_format(mask).encode_flags(mask, flags)
