"""Finding and decoding annotation masks: PNG, TIFF, NIfTI or numpy files whose values are class indices.

A volume (NIfTI, or a 3-D ``.npy``/``.npz``; see :mod:`segaudit.io.volumes`) is read as one
tall 2-D image of Z * Y rows, slice after slice, so everything above sees ``(H, W)`` labels.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...errors import InputError, one_line
from .. import remote, volumes
from ..label_maps import LabelLookup

Palette = dict[tuple[int, int, int], int]

_INDEX_MODES = {"1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N"}
_RGB_MODES = {"RGB", "RGBA"}
_SUPPORTED = "1, L, P, I;16, I, and RGB/RGBA with --palette"
_INT32_MAX = 2**31 - 1
_TIFF_EXTS = (".tif", ".tiff")
_MASK_EXTS = (".png", *_TIFF_EXTS, *volumes.VOLUME_EXTS)


def _extension(name: str) -> str:
    """A file name's mask extension, lower case (``.nii.gz`` whole)."""
    return volumes.volume_extension(name) or os.path.splitext(name)[1].lower()


def mask_extension(name: str) -> str | None:
    """The mask extension a file name ends with (lower case, ``.nii.gz`` whole), or None."""
    ext = _extension(name)
    return ext if ext in _MASK_EXTS else None


@dataclass(frozen=True)
class MaskFile:
    """One mask on disk; ``image_id`` is its '/'-separated relative path without extension.

    A mask under a URL (see :func:`find_masks`) has its URL as ``path`` (a string) and the
    fsspec filesystem that reads it as ``fs``; a local mask has a Path and no ``fs``.
    """

    image_id: str
    path: Path | str
    fs: object = field(default=None, compare=False, repr=False)
    key: str | None = field(default=None, compare=False, repr=False)  # the path ``fs`` reads


#: The first bytes of a remote PNG that :func:`mask_shape` fetches: its header (IHDR) is in the
#: first 33, and the palette of a P-mode mask comes before the pixels.
_HEADER_BYTES = 1 << 16


def _name(path: Path | str) -> str:
    return path.name if isinstance(path, Path) else posixpath.basename(path)


def _source(mask: MaskFile, header_only: bool = False):
    """What Pillow and tifffile open: the local path, or the remote file's bytes (its first
    ``_HEADER_BYTES`` when only its header is read)."""
    if mask.fs is None:
        return mask.path
    try:
        data = mask.fs.cat_file(mask.key, start=0, end=_HEADER_BYTES) if header_only else mask.fs.cat_file(mask.key)
    except Exception as exc:  # noqa: BLE001 (each filesystem raises its own types)
        raise remote.remote_error(mask.path, exc, "mask") from None
    return io.BytesIO(data)


def read_bytes(mask: MaskFile) -> bytes:
    """The mask file's bytes, local or remote; InputError, one line, if it cannot be read."""
    if mask.fs is None:
        try:
            return Path(mask.path).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read mask {mask.path}: {one_line(exc.strerror or exc)}") from None
    return _source(mask).getvalue()


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
        raise remote.remote_error(url, exc, "masks directory") from None
    by_id: dict[str, str] = {}
    skipped = 0
    for key in listed:
        key = fs._strip_protocol(key).rstrip("/")
        relative = key[len(root):].lstrip("/") if key.startswith(root) else None
        if not relative or any(part.startswith(".") for part in relative.split("/")):
            continue
        name = posixpath.basename(relative)
        ext = _extension(name)
        if ext not in _MASK_EXTS:
            continue
        stem = name[: -len(ext)]
        if suffix and (not stem.endswith(suffix) or stem == suffix):
            skipped += 1
            continue
        if ext not in (".png", *_TIFF_EXTS):
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
    tiff = next((p for p in by_id.values() if _is_tiff(p)), None)
    if tiff is not None:
        _tifffile(tiff)
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
            ext = _extension(name)
            if name.startswith(".") or ext not in _MASK_EXTS:
                continue
            stem = name[: -len(ext)]
            # A file named exactly "<suffix>.png" would get an empty id, so it does not match.
            if suffix and (not stem.endswith(suffix) or stem == suffix):
                skipped += 1
                continue
            path = Path(dirpath) / name
            if not path.is_file():  # a FIFO or device would block or never end when read
                kind = "TIFF" if ext in _TIFF_EXTS else "PNG" if ext == ".png" else "volume"
                raise InputError(f"{path}: not a regular file (a mask must be a {kind} file)")
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
    tiff = next((p for p in by_id.values() if _is_tiff(p)), None)
    if tiff is not None:
        _tifffile(tiff)  # fail before any work when tifffile is missing
    nifti = next((p for p in by_id.values() if volumes.is_nifti(p)), None)
    if nifti is not None:
        volumes.require_nibabel(nifti)  # likewise for nibabel
    return [MaskFile(i, by_id[i]) for i in sorted(by_id)]


def _strip_extension(suffix: str) -> str:
    """Tolerate "--suffix _gtFine_labelIds.png": the extension is matched separately."""
    for ext in _MASK_EXTS:
        if suffix.lower().endswith(ext):
            return suffix[: -len(ext)]
    return suffix


def _code(colour: tuple[int, int, int]) -> int:
    """Pack (r, g, b) into one integer; ``f"#{code:06x}"`` spells it back."""
    return (colour[0] << 16) | (colour[1] << 8) | colour[2]


def _parse_colour(value: object) -> tuple[int, int, int] | None:
    """Return the (r, g, b) of ``[r,g,b]``, ``"#rrggbb"`` or ``"r,g,b"``, or None if malformed."""
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"#[0-9a-fA-F]{6}", text):
            return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
        if not re.fullmatch(r"\d+\s*,\s*\d+\s*,\s*\d+", text):
            return None
        value = [int(part) for part in text.split(",")]
    if not isinstance(value, list) or len(value) != 3:
        return None
    # bool is an int subclass, but true/false is never a channel value.
    if not all(type(c) is int and 0 <= c <= 255 for c in value):
        return None
    return value[0], value[1], value[2]


def load_palette(path: str | Path) -> Palette:
    """Read a JSON colour-to-class palette for RGB masks.

    Parameters
    ----------
    path : str or Path
        JSON file holding either a list of colours (list index = class) or a
        mapping colour -> class. Colours are ``[r, g, b]`` lists (list form
        only, JSON keys are strings), ``"#rrggbb"`` or ``"r,g,b"`` strings.

    Returns
    -------
    dict
        ``{(r, g, b): class_index}``. InputError for a missing file, invalid JSON,
        a malformed colour or class, or one colour mapped to two classes.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"palette file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError covers JSON and UTF-8 decoding errors
        raise InputError(f"{path}: cannot read palette JSON: {one_line(e, type(e).__name__)}") from None

    if isinstance(data, list):
        pairs = list(zip(data, range(len(data))))
    elif isinstance(data, dict):
        pairs = list(data.items())
    else:
        raise InputError(f"{path}: palette must be a JSON list or mapping of colours")
    if not pairs:
        raise InputError(f"{path}: palette is empty")

    palette: Palette = {}
    for raw, cls in pairs:
        colour = _parse_colour(raw)
        if colour is None:
            raise InputError(
                f"{path}: malformed colour {json.dumps(raw)} (use [r,g,b], \"#rrggbb\" or \"r,g,b\")"
            )
        if type(cls) is not int or not 0 <= cls <= _INT32_MAX:
            raise InputError(
                f"{path}: class for colour {json.dumps(raw)} must be a non-negative"
                f" integer, got {json.dumps(cls)}"
            )
        if palette.get(colour, cls) != cls:
            raise InputError(
                f"{path}: colour #{_code(colour):06x} mapped to both class {palette[colour]} and {cls}"
            )
        palette[colour] = cls
    return palette


def _is_tiff(path: Path | str) -> bool:
    return os.path.splitext(_name(path))[1].lower() in _TIFF_EXTS


def _is_array_file(path: Path | str) -> bool:
    """A NIfTI or ``.npy``/``.npz`` mask (read by :mod:`segaudit.io.volumes`)."""
    return volumes.volume_extension(_name(path)) is not None


def volume_header(mask: MaskFile) -> volumes.VolumeHeader | None:
    """A volume mask's header ((Z, Y, X) and, for NIfTI, the affine), or None for a 2-D mask."""
    if not _is_array_file(mask.path):
        return None
    header = volumes.read_header(mask.path)
    return header if header.is_volume else None


def _tifffile(path: Path):
    """Import tifffile (an optional dependency), or a one-line InputError saying how to get it."""
    try:
        import tifffile
    except ImportError:
        raise InputError(
            f"{path}: reading TIFF masks needs tifffile: pip install 'segaudit[tiff]'"
        ) from None
    return tifffile


def _tiff_header(mask: MaskFile) -> tuple[tuple[int, ...], np.dtype]:
    """Return a TIFF mask's (H, W) and dtype from its header; InputError unless single-band integer."""
    tifffile = _tifffile(mask.path)
    try:
        with tifffile.TiffFile(_source(mask)) as tif:
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
    tifffile = _tifffile(mask.path)
    try:
        arr = np.asarray(tifffile.imread(_source(mask), series=0))
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
        if high > _INT32_MAX:
            raise InputError(f"{mask.path}: class value {high} is larger than {_INT32_MAX}")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _open(mask: MaskFile, header_only: bool = False) -> Image.Image:
    """Open a mask and check it is a PNG; this reads only the header (of a remote mask, only
    its first bytes are fetched when ``header_only``)."""
    source = _source(mask, header_only)
    try:
        img = Image.open(source)
    except UnidentifiedImageError:
        raise InputError(f"cannot read mask {mask.path}: not a PNG file") from None
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad headers
        raise InputError(f"cannot read mask {mask.path}: {one_line(e, type(e).__name__)}") from None
    if img.format != "PNG":
        img.close()
        raise InputError(f"cannot read mask {mask.path}: not a PNG file (found {img.format})")
    return img


def _check_mode(mode: str, mask: MaskFile, palette: Palette | None) -> None:
    if mode in _RGB_MODES:
        if palette is None:
            raise InputError(
                f"{mask.path}: {mode} mask needs --palette FILE"
                " (a JSON list or mapping of colours to class indices)"
            )
    elif mode not in _INDEX_MODES:
        raise InputError(f"{mask.path}: unsupported image mode {mode} (supported: {_SUPPORTED})")


def mask_shape(mask: MaskFile, palette: Palette | None = None) -> tuple[int, int]:
    """Return a mask's (height, width) from its PNG header, without decoding pixels.

    Raises the same InputErrors as :func:`read_mask` for unreadable files and
    unsupported modes, so a cheap pre-pass catches them before any work.
    TIFF masks are checked (single band, integer) from their header the same way. A
    volume's (Z, Y, X) is returned as the (Z * Y, X) of its tall image (see
    :func:`volume_shape` for its own shape).
    """
    if _is_array_file(mask.path):
        shape = volumes.read_header(mask.path).shape
        return (shape[0] * shape[1], shape[2]) if len(shape) == 3 else (shape[0], shape[1])
    if _is_tiff(mask.path):
        shape, _ = _tiff_header(mask)
        return shape[0], shape[1]
    with _open(mask, header_only=True) as img:
        _check_mode(img.mode, mask, palette)
        return img.height, img.width


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
    """
    if _is_array_file(mask.path):
        labels = volumes.read_volume_mask(mask.path)
        if labels.ndim == 3:
            labels = labels.reshape(-1, labels.shape[2])  # the tall image: slice after slice
        return labels if label_map is None else label_map.apply(labels, str(mask.path))
    if _is_tiff(mask.path):
        labels = _read_tiff(mask)
        return labels if label_map is None else label_map.apply(labels, str(mask.path))
    with _open(mask) as img:
        _check_mode(img.mode, mask, palette)  # from the header, before decoding
        try:
            img.load()  # decoding happens here: truncated or corrupt data raises now
        except Exception as e:  # OSError, SyntaxError, ValueError, zlib errors, ...
            raise InputError(f"cannot read mask {mask.path}: {one_line(e, type(e).__name__)}") from None
        labels = _classes(img, mask, palette)
    return labels if label_map is None else label_map.apply(labels, str(mask.path))


def _classes(img: Image.Image, mask: MaskFile, palette: Palette | None) -> np.ndarray:
    """Convert an opened, loaded image in a supported mode to an int32 class array."""
    if img.mode in _RGB_MODES:
        assert palette is not None  # guaranteed by _check_mode
        return _map_colours(np.asarray(img)[..., :3], mask, palette)  # alpha ignored
    # P gives palette indices, 1 gives bools, I;16B gives big-endian uint16: all cast cleanly.
    arr = np.asarray(img)
    if img.mode == "I":
        negative = arr < 0
        if negative.any():
            raise InputError(
                f"{mask.path}: negative class value {int(arr[negative].min())}"
                f" in {int(negative.sum())} pixels"
            )
    return np.ascontiguousarray(arr, dtype=np.int32)


def _map_colours(rgb: np.ndarray, mask: MaskFile, palette: Palette) -> np.ndarray:
    """Map an (H, W, 3) uint8 array to classes through the palette, vectorised."""
    codes = _code(tuple(rgb[..., c].astype(np.uint32) for c in range(3)))
    # Masks hold few distinct colours, so look up each unique colour once.
    uniques, inverse = np.unique(codes.ravel(), return_inverse=True)
    by_code = {_code(colour): cls for colour, cls in palette.items()}
    lut = np.array([by_code.get(code, -1) for code in uniques.tolist()], dtype=np.int64)
    missing = np.flatnonzero(lut < 0)
    if missing.size:
        counts = np.bincount(inverse.ravel(), minlength=len(uniques))[missing]
        worst = np.argsort(-counts, kind="stable")[:3]
        shown = ", ".join(f"#{int(uniques[missing[j]]):06x} ({counts[j]} px)" for j in worst)
        more = f" and {missing.size - 3} more" if missing.size > 3 else ""
        raise InputError(f"{mask.path}: colours not in the palette: {shown}{more}")
    return np.ascontiguousarray(lut.astype(np.int32)[inverse].reshape(codes.shape))


def mask_palette(mask: MaskFile) -> list[tuple[int, int, int]] | None:
    """Return a P-mode mask's own PNG palette as RGB triples (index = class), else None."""
    if _is_tiff(mask.path) or _is_array_file(mask.path):
        return None
    with _open(mask) as img:
        flat = img.getpalette("RGB") if img.mode == "P" else None
    if flat is None:
        return None
    return [tuple(flat[i : i + 3]) for i in range(0, len(flat) - 2, 3)]  # type: ignore[misc]


def _colour_of(palette: Palette) -> dict[int, tuple[int, int, int]]:
    """Class -> the first colour (in file order) that maps to it."""
    colours: dict[int, tuple[int, int, int]] = {}
    for colour, cls in palette.items():
        colours.setdefault(cls, colour)
    return colours


def is_tiff(mask: MaskFile) -> bool:
    """Whether the mask is a TIFF file (written back as TIFF by :func:`encode_like`)."""
    return _is_tiff(mask.path)


def _encode_tiff_like(mask: MaskFile, new: np.ndarray) -> bytes:
    """TIFF bytes of ``new`` in the dtype of ``mask``'s file (its other tags are not kept)."""
    tifffile = _tifffile(mask.path)
    _, dtype = _tiff_header(mask)
    if new.size and dtype != np.bool_ and int(new.max()) > np.iinfo(dtype).max:
        raise InputError(f"{mask.path}: class {int(new.max())} does not fit the mask's {dtype}")
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, new.astype(dtype))
    return buffer.getvalue()


def encode_like(mask: MaskFile, old: np.ndarray, new: np.ndarray, palette: Palette | None) -> bytes:
    """PNG bytes of ``new`` in the mode of ``mask``'s file (same palette, transparency, bit layout),
    or TIFF bytes in its dtype for a TIFF mask.

    For RGB/RGBA masks only the changed pixels are recoloured (first colour of their class
    in ``palette``); alpha and every other pixel keep their values.
    """
    if _is_tiff(mask.path):
        return _encode_tiff_like(mask, new)
    from PIL import Image

    with Image.open(_source(mask)) as img:
        img.load()
        mode = img.mode
        values = np.unique(new[new != old]) if (new != old).any() else np.zeros(0, np.int64)
        limit = {"1": 1, "L": 255, "P": 255, "I": 2**31 - 1}.get(mode, 65535)
        if values.size and int(values.max()) > limit:
            raise InputError(f"{mask.path}: class {int(values.max())} does not fit a mode {mode} PNG "
                             f"(at most {limit})")
        if mode in ("RGB", "RGBA"):
            assert palette is not None  # read_mask needed it
            colours = _colour_of(palette)
            missing = [int(v) for v in values if int(v) not in colours]
            if missing:
                raise InputError(f"{mask.path}: class {missing[0]} has no colour in the --palette file")
            pixels = np.array(img)
            changed = new != old
            lut = np.array([colours.get(int(v), (0, 0, 0)) for v in values], np.uint8).reshape(-1, 3)
            pixels[changed, :3] = lut[np.searchsorted(values, new[changed])]
            result = Image.fromarray(pixels)
        else:
            if mode == "P" and values.size:
                entries = len(img.getpalette() or []) // 3
                if int(values.max()) >= entries:
                    raise InputError(f"{mask.path}: class {int(values.max())} has no entry in the PNG's "
                                     f"palette ({entries} colours)")
            result = img.copy()
            if mode == "1":
                data = np.packbits(new.astype(bool), axis=1).tobytes()
            elif mode in ("L", "P"):
                data = new.astype(np.uint8).tobytes()
            elif mode == "I":
                data = new.astype(np.int32).tobytes()
            else:  # I;16 family
                dtype = {"I;16B": ">u2", "I;16N": "=u2"}.get(mode, "<u2")
                data = new.astype(dtype).tobytes()
            result.frombytes(data)
        options = {}
        if "transparency" in img.info and result.mode == mode:
            options["transparency"] = img.info["transparency"]
        buffer = io.BytesIO()
        result.save(buffer, format="PNG", **options)
    return buffer.getvalue()
