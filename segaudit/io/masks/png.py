"""PNG masks (modes 1, L, P, I;16, I; RGB/RGBA through a ``--palette`` of colours), and the
greyscale PNGs of issue masks."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...errors import InputError, one_line
from .base import INT32_MAX, MaskFile, MaskFormat, Palette, source

_INDEX_MODES = {"1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N"}
_RGB_MODES = {"RGB", "RGBA"}
_SUPPORTED = "1, L, P, I;16, I, and RGB/RGBA with --palette"


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
    from ..files import require_regular_file

    path = Path(path)
    require_regular_file(path, "palette file")
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
        if type(cls) is not int or not 0 <= cls <= INT32_MAX:
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


def _open(mask: MaskFile, header_only: bool = False) -> Image.Image:
    """Open a mask and check it is a PNG; this reads only the header (of a remote mask, only
    its first bytes are fetched when ``header_only``)."""
    opened = source(mask, header_only)
    try:
        img = Image.open(opened)
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


def _colour_of(palette: Palette) -> dict[int, tuple[int, int, int]]:
    """Class -> the first colour (in file order) that maps to it."""
    colours: dict[int, tuple[int, int, int]] = {}
    for colour, cls in palette.items():
        colours.setdefault(cls, colour)
    return colours


def _encode_like(mask: MaskFile, old: np.ndarray, new: np.ndarray, palette: Palette | None) -> bytes:
    """PNG bytes of ``new`` in the mode of ``mask``'s file (same palette, transparency, bit layout).

    For RGB/RGBA masks only the changed pixels are recoloured (first colour of their class
    in ``palette``); alpha and every other pixel keep their values.
    """
    with Image.open(source(mask)) as img:
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


def encode_grey(image: np.ndarray) -> bytes:
    """A 2-D uint8 array as a greyscale (mode L) PNG."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


class PngFormat(MaskFormat):
    name = "png"
    label = "PNG"
    extensions = (".png",)

    def shape(self, mask: MaskFile, palette: Palette | None) -> tuple[int, int]:
        with _open(mask, header_only=True) as img:
            _check_mode(img.mode, mask, palette)
            return img.height, img.width

    def read(self, mask: MaskFile, palette: Palette | None) -> np.ndarray:
        with _open(mask) as img:
            _check_mode(img.mode, mask, palette)  # from the header, before decoding
            try:
                img.load()  # decoding happens here: truncated or corrupt data raises now
            except Exception as e:  # OSError, SyntaxError, ValueError, zlib errors, ...
                raise InputError(f"cannot read mask {mask.path}: {one_line(e, type(e).__name__)}") from None
            return _classes(img, mask, palette)

    def encode_like(self, mask: MaskFile, old: np.ndarray, new: np.ndarray, palette: Palette | None) -> bytes:
        return _encode_like(mask, old, new, palette)

    def palette(self, mask: MaskFile) -> list[tuple[int, int, int]] | None:
        with _open(mask) as img:
            flat = img.getpalette("RGB") if img.mode == "P" else None
        if flat is None:
            return None
        return [tuple(flat[i : i + 3]) for i in range(0, len(flat) - 2, 3)]  # type: ignore[misc]


FORMAT = PngFormat()
