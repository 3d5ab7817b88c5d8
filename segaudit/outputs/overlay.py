"""Error-highlight overlays: one PNG per image that shows a reviewer where the suspect pixels are.

Each PNG holds, side by side,

1. the photo (without photos: the annotation in class colours),
2. the annotation in class colours over the photo (left out without photos: it would repeat 1),
3. the model's argmax prediction in class colours (over the photo when there is one),
4. the error map: pixels whose label quality s is below the pixel threshold (and, when
   given, pixels flagged by a per-pixel method such as clc) in a strong colour over a
   dimmed grey copy of the photo or annotation,

and a caption strip: rank, image id, score and method, low pixels, the suspect and likely
classes from the ranking, and a legend of the class colours that appear. When the image has
error regions (:mod:`segaudit.core.regions`) scoring at least ``--region-min-score``, the
worst ``--max-regions`` of them are outlined on the error map with their numbers, and the
caption ends with a legend line per region (:func:`region_legend`).

Rendering (:func:`render_overlay`) is numpy + Pillow only. :func:`write_overlays` reads the
ranking and its run record, reopens the dataset the ranking was scored on and streams each
drawn image's predictions through the same block reader and kernel as ``score``
(:meth:`segaudit.core.dataset.Dataset.pixel_maps`); only the images it draws are decoded.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .colours import ClassColours, class_colours
from .text import OVERLAY_NAME, class_phrase, format_score, overlay_name, region_line
from ..errors import InputError, one_line, option_error
from ..io.files import atomic_write_all, staged_directory
from ..io.masks.tiff import is_tiff
from ..io.photos import SCAN_EXTENSIONS, read_scan_slice, read_tiff_photo, scan_shape, stretch, tiff_photo_size
from ..core.kernel import check_pixel_threshold
from ..core.passes import prefetched
from ..io.rankings import RankedImage, Ranking
from ..results import InputSpec, RunRecord

#: Photo file extensions looked for with ``--images`` (any letter case).
PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: Images whose longer side is below this are enlarged by a whole factor (nearest neighbour).
SMALL_SIDE = 256
#: Default ``--max-width``: wider panels are downscaled to this width.
DEFAULT_MAX_WIDTH = 1024

LOW_COLOUR = (255, 0, 110)  # s below the threshold: hot pink-red, no class palette is this loud over grey
FLAG_COLOUR = (255, 200, 0)  # flagged by a per-pixel method only (e.g. clc): amber, unless a class
# has a colour near it: ClassColours.flag_colour chooses one distinct from every class colour
OUTLINE_COLOUR = (215, 215, 215)  # the annotation's class boundaries in the error map
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
MUTED = (90, 90, 90)
FRAME = (200, 200, 200)  # 1 px around each panel, so white regions keep their edge
ANNOTATION_ALPHA = 0.55  # class colours over the photo

#: A per-image flag source: ``flags_for(image_id, labels, s, predicted)`` returns a boolean
#: (H, W) mask of flagged pixels, or None. The hook for per-pixel methods such as clc; the
#: command line passes none yet, so its error map comes from s alone. For a volume the maps
#: are the drawn slice's, and ``rows=(start, stop)`` (a keyword) says where the slice lies in
#: the volume's tall image.
FlagSource = Callable[[str, np.ndarray, np.ndarray, np.ndarray], "np.ndarray | None"]
#: A per-image region source: ``regions_for(image_id)`` returns the image's regions
#: (:class:`segaudit.core.regions.Region`, worst first) and its region map ((H, W) int32,
#: each pixel's index in that list, -1 for none). :func:`recorded_regions` also takes
#: ``rows=(start, stop)``: the map of those rows only (a volume's slice in its tall image).
RegionSource = Callable[..., "tuple[list, np.ndarray]"]
#: Default ``--region-min-score`` and ``--max-regions``.
DEFAULT_REGION_MIN_SCORE = 0.5
DEFAULT_MAX_REGIONS = 5

#: Overlays are drawn into OUT/.segaudit-overlays-<pid>-<random>.tmp, then moved into OUT.
STAGING_PREFIX = ".segaudit-overlays-"


def select_images(ranking: Ranking, top: int, ids: Sequence[str] | None = None) -> list[RankedImage]:
    """The rows to draw: the given ids (each may be a comma list), else the ``top`` first rows."""
    if not ids:
        return ranking.rows[:max(0, top)]
    by_id = ranking.by_id()
    wanted: dict[str, RankedImage] = {}
    for value in ids:
        # An id that holds a comma is taken whole when the ranking has it.
        for image_id in ([value] if value in by_id else [part.strip() for part in value.split(",")]):
            if image_id not in by_id:
                raise InputError(f"{ranking.path}: no image {image_id!r} in the ranking")
            wanted[image_id] = by_id[image_id]
    return sorted(wanted.values(), key=lambda r: r.rank)


# --- file names and atomic writes -----------------------------------------------------


def save_png(image: Image.Image, path: Path, compress_level: int = 3) -> None:
    """Write a PNG atomically: to a temporary beside ``path``, then rename into place."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    atomic_write_all({Path(path): buffer.getvalue()})


# --- photos -------------------------------------------------------------------------------


def find_photo(images_dir: Path, image_id: str, suffix: str = "", extensions=PHOTO_EXTENSIONS) -> Path | None:
    """The photo of an image id: ``images_dir/<id><suffix>.<png|jpg|jpeg|tif|tiff>``, any case
    (a volume's scan: ``extensions`` :data:`~segaudit.io.photos.SCAN_EXTENSIONS`)."""
    from ..io.files import require_regular_file, safe_relative_path

    relative = safe_relative_path(image_id, suffix)
    folder = images_dir / relative.parent
    stem = relative.name
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    for name in names:
        if name.startswith(stem) and name[len(stem):].lower() in extensions:
            require_regular_file(folder / name, "photo")
            return folder / name
    return None


def photo_size(path: Path) -> tuple[int, int]:
    """(height, width) of a photo from its header (a TIFF's through tifffile, when installed)."""
    if is_tiff(path):
        size = tiff_photo_size(path)
        if size is not None:
            return size
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except Exception as exc:  # Pillow raises many types for unreadable files
        raise InputError(f"cannot read photo {path}: {one_line(exc, type(exc).__name__)}") from None


def load_photo(path: Path) -> Image.Image:
    """A photo as an 8-bit RGB image (16-bit and float images are stretched to 0-255 by
    :func:`segaudit.io.photos.stretch`, as TIFF photos are).

    TIFF / GeoTIFF photos of any band count and bit depth are read with tifffile, when
    installed (see :mod:`segaudit.io.photos`: the first three bands, or one, stretched).
    """
    if is_tiff(path):
        rgb = read_tiff_photo(path)
        if rgb is not None:
            return Image.fromarray(rgb, mode="RGB")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                return Image.fromarray(stretch(np.asarray(img))).convert("RGB")
            return img.convert("RGB")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read photo {path}: {one_line(exc, type(exc).__name__)}") from None


# --- rendering ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Caption:
    """What the caption strip says about an image (from the ranking CSV)."""

    image_id: str
    rank: int | None = None
    score: float = math.nan
    method: str = "score"
    suspect: str = ""
    likely: str = ""


def panel_size(height: int, width: int, max_width: int | None = DEFAULT_MAX_WIDTH) -> tuple[int, int]:
    """(h, w) of one panel: small images enlarged by a whole factor, wide ones cut to max_width."""
    if max_width and width > max_width:
        return max(1, round(height * max_width / width)), max_width
    factor = max(1, SMALL_SIDE // max(height, width))
    if max_width:
        factor = max(1, min(factor, max_width // width))
    return height * factor, width * factor


@dataclass(frozen=True)
class PanelLayout:
    """Where the panels of an overlay are: a title line above each, ``margin`` around and
    between them, the caption strip below."""

    panel_height: int
    panel_width: int
    font_size: int

    @property
    def margin(self) -> int:
        return max(6, self.font_size // 2)

    @property
    def line(self) -> int:
        return self.font_size + self.font_size // 2

    @property
    def top(self) -> int:
        """y of the panels' first row."""
        return self.margin + self.line

    def box(self, n: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of panel ``n``, right and bottom exclusive."""
        left = self.margin + n * (self.panel_width + self.margin)
        return left, self.top, left + self.panel_width, self.top + self.panel_height

    def width(self, n_panels: int) -> int:
        """Width of an overlay with ``n_panels`` panels."""
        return 2 * self.margin + n_panels * self.panel_width + (n_panels - 1) * self.margin


def panel_layout(height: int, width: int, max_width: int | None = DEFAULT_MAX_WIDTH) -> PanelLayout:
    """The layout of an overlay of an image of ``height`` × ``width`` pixels."""
    h, w = panel_size(height, width, max_width)
    return PanelLayout(panel_height=h, panel_width=w, font_size=int(np.clip(w // 18, 13, 26)))


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.intp), n_in - 1)


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D map (labels keep their exact values)."""
    if array.shape[:2] == (height, width):
        return array
    return array[_nearest_index(height, array.shape[0])][:, _nearest_index(width, array.shape[1])]


def _pool(array: np.ndarray, ufunc: np.ufunc, height: int, width: int) -> np.ndarray:
    """Reduce blocks with ``ufunc`` where shrinking, repeat (nearest) where enlarging."""
    for axis, n_out in ((0, height), (1, width)):
        n_in = array.shape[axis]
        if n_out < n_in:
            starts = (np.arange(n_out) * (n_in / n_out)).astype(np.intp)
            array = ufunc.reduceat(array, starts, axis=axis)
        elif n_out > n_in:
            array = np.take(array, _nearest_index(n_out, n_in), axis=axis)
    return array


def min_pool(s: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize s keeping each output pixel's lowest s (NaN only where every pixel is ignored),
    so that a small low region stays visible however far the image is shrunk."""
    return _pool(s, np.fmin, height, width)


def any_pool(flags: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a boolean mask: an output pixel is set if any pixel it covers is set."""
    return _pool(flags.astype(np.uint8), np.maximum, height, width).astype(bool)


def _blend(base: np.ndarray, colour: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    alpha = np.asarray(alpha, dtype=np.float32)
    if alpha.ndim and alpha.ndim == base.ndim - 1:  # one alpha per pixel
        alpha = alpha[..., None]
    mixed = base.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def _dimmed_grey(rgb: np.ndarray) -> np.ndarray:
    grey = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    dim = (50 + grey * 0.5).astype(np.uint8)
    return np.repeat(dim[..., None], 3, axis=2)


def boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another label (1 px class outlines)."""
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def error_map(base: np.ndarray, s: np.ndarray, threshold: float, flags: np.ndarray | None = None,
              outline: np.ndarray | None = None, flag_colour=FLAG_COLOUR) -> np.ndarray:
    """The error panel: ``base`` dimmed to grey, ``outline`` (the annotation's class
    boundaries) in light grey; s < threshold in :data:`LOW_COLOUR` (the lower s, the more
    opaque, at least 70 %); flagged-only pixels in ``flag_colour``."""
    out = _dimmed_grey(base)
    if outline is not None:
        out[outline] = OUTLINE_COLOUR
    with np.errstate(invalid="ignore"):
        low = s < threshold
    if flags is not None:
        flagged = flags & ~low
        out[flagged] = flag_colour
    if low.any():
        severity = 1.0 - s[low] / threshold if threshold > 0 else np.ones(int(low.sum()))
        alpha = 0.7 + 0.3 * np.clip(severity, 0, 1)
        out[low] = _blend(out[low], np.array(LOW_COLOUR, np.uint8), alpha)
    return out


def region_outline(mask: np.ndarray) -> np.ndarray:
    """The 1-px inner outline of a boolean mask: its pixels with a 4-neighbour outside it
    (the image's edge counts as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
                & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~interior


def region_legend(regions: Sequence, name: Callable[[int], str]) -> list[str]:
    """The legend lines of an overlay's regions, one per region, in the order given.

    Parameters
    ----------
    regions : sequence of Region
        The regions drawn (:class:`segaudit.core.regions.Region`).
    name : callable
        ``name(class_index) -> str``, e.g. :meth:`ClassColours.name`.

    Returns
    -------
    list of str
        ``#1 wrong_class: sky → building, 1,168 px, score 0.99`` per region.
    """
    return [region_line(r.region, r.kind, name(r.annotated_class), name(r.likely_class), r.area, r.score)
            for r in regions]


def _label_spot(box: tuple[int, int, int, int], size: tuple[int, int], panel: tuple[int, int],
                taken: list[tuple[int, int, int, int]]) -> tuple[int, int]:
    """Where a region's number goes: above its box's left corner, else below, left, right or
    inside it; the first spot in the panel that overlaps no number placed before."""
    x0, y0, x1, y1 = box
    lw, lh = size
    h, w = panel
    spots = [(x0, y0 - lh - 1), (x0, y1 + 1), (x0 - lw - 1, y0), (x1 + 1, y0), (x0 + 1, y0 + 1)]
    inside = [(x, y) for x, y in spots if 0 <= x <= w - lw and 0 <= y <= h - lh]
    for x, y in inside:
        if not any(x < b[2] and b[0] < x + lw and y < b[3] and b[1] < y + lh for b in taken):
            return x, y
    x, y = inside[0] if inside else spots[0]
    return int(np.clip(x, 0, max(0, w - lw))), int(np.clip(y, 0, max(0, h - lh)))


def draw_regions(panel: np.ndarray, region_map: np.ndarray, regions: Sequence, colour, font) -> np.ndarray:
    """The error panel with each region's 1-px outline and its number in ``colour``.

    ``region_map`` is at full resolution; each region's pixels are resized to the panel
    with :func:`any_pool`, so that a region stays visible however far the panel is shrunk,
    and outlined at the panel's resolution (1 px wide whatever the enlargement).
    """
    h, w = panel.shape[:2]
    out = np.array(panel, copy=True)
    boxes = []
    for region in regions:
        mask = any_pool(region_map == region.region - 1, h, w)
        ys, xs = np.nonzero(mask)
        if not ys.size:
            continue
        out[region_outline(mask)] = colour
        boxes.append((region, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    taken: list[tuple[int, int, int, int]] = []
    for region, box in boxes:
        text = str(region.region)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        size = (right - left + 4, bottom - top + 4)
        x, y = _label_spot(box, size, (h, w), taken)
        draw.rectangle((x, y, x + size[0] - 1, y + size[1] - 1), fill=colour)
        draw.text((x + 2 - left, y + 2 - top), text, fill=TEXT, font=font)
        taken.append((x, y, x + size[0], y + size[1]))
    return np.asarray(image)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType: fixed bitmap font
        return ImageFont.load_default()


def _drawable(font, text: str) -> str:
    """``text`` with an arrow the font has no glyph for written ``->`` (Pillow's default
    font has none: it would draw a box)."""
    if "→" not in text:
        return text
    try:
        arrow, unknown = font.getmask("→"), font.getmask("\U000F0000")
        missing = arrow.size == unknown.size and bytes(arrow) == bytes(unknown)
    except Exception:  # a font that cannot say
        missing = True
    return text.replace("→", "->") if missing else text


def _text_width(font, text: str) -> float:
    return font.getlength(text)


def _fit(font, text: str, width: float) -> str:
    """Cut ``text`` with an ellipsis so that it fits ``width`` pixels."""
    if _text_width(font, text) <= width:
        return text
    while text and _text_width(font, text + "…") > width:
        text = text[:-1]
    return text + "…"


@dataclass
class _Item:
    """A caption element: text, optionally preceded by a colour swatch."""

    text: str
    swatch: tuple[int, int, int] | None = None
    colour: tuple[int, int, int] = TEXT


def _flow(items: list[_Item], font, width: float, swatch: int, gap: int) -> list[list[tuple[_Item, float]]]:
    """Greedy line breaking: items with their x offsets, as lines no wider than ``width``."""
    lines: list[list[tuple[_Item, float]]] = [[]]
    x = 0.0
    for item in items:
        item_width = _text_width(font, item.text) + (swatch + gap // 2 if item.swatch else 0)
        if lines[-1] and x + item_width > width:
            lines.append([])
            x = 0.0
        lines[-1].append((item, x))
        x += item_width + gap
    return lines


def render_overlay(
    labels: np.ndarray,
    s: np.ndarray,
    predicted: np.ndarray,
    colours: ClassColours,
    *,
    threshold: float,
    photo: Image.Image | np.ndarray | None = None,
    flags: np.ndarray | None = None,
    caption: Caption | None = None,
    max_width: int | None = DEFAULT_MAX_WIDTH,
    regions: Sequence | None = None,
    region_map: np.ndarray | None = None,
) -> Image.Image:
    """Draw one image's review overlay.

    Parameters
    ----------
    labels : (H, W) int array
        The annotation (class indices; values >= K are ignore indices).
    s : (H, W) float array
        The model's probability of the annotated class per pixel, NaN where ignored.
    predicted : (H, W) int array
        The argmax class per pixel.
    colours : ClassColours
        The class colours (:func:`segaudit.outputs.colours.class_colours`).
    threshold : float
        Pixels with s below it are highlighted in the error map.
    photo : PIL image or (H, W, 3) uint8 array, optional
        The original photo, the same size as the mask. Without it there are three panels.
    flags : (H, W) bool array, optional
        Pixels flagged by a per-pixel method (e.g. confident learning); drawn in the
        error map in ``colours.flag_colour`` where s is not already low.
    caption : Caption, optional
        Rank, id, score and classes for the caption strip (the id alone by default).
    max_width : int or None
        Panels wider than this are downscaled (nearest for label maps, lowest s per
        output pixel for the error map); 0 or None keeps full resolution.
    regions : sequence of Region, optional
        Error regions to outline on the error map (:class:`segaudit.core.regions.Region`,
        in legend order), each numbered ``region.region``; a legend line each ends the
        caption. None or empty draws exactly what an overlay without regions draws.
    region_map : (H, W) int array, optional
        Each pixel's region, as an index into the image's region list (``region.region -
        1``; -1 for none): :attr:`segaudit.core.regions.RegionFinder.region_map`. Needed
        with ``regions``.

    Returns
    -------
    PIL.Image.Image
        RGB; the panels are where :func:`panel_layout` says.
    """
    height, width = labels.shape
    if s.shape != labels.shape or predicted.shape != labels.shape:
        raise ValueError(f"labels {labels.shape}, s {s.shape} and predicted {predicted.shape} differ")
    if flags is not None and flags.shape != labels.shape:
        raise ValueError(f"flags {flags.shape} and labels {labels.shape} differ")
    regions = list(regions or [])
    if regions and (region_map is None or region_map.shape != labels.shape):
        raise ValueError(f"regions need a region map of the mask's shape {labels.shape}, got "
                         f"{None if region_map is None else region_map.shape}")
    h, w = panel_size(height, width, max_width)
    ignored = np.isnan(s)
    small_labels = resize_nearest(labels, h, w)
    small_ignored = resize_nearest(ignored, h, w)
    small_pred = resize_nearest(predicted, h, w)
    small_s = min_pool(s, h, w)
    small_flags = any_pool(flags, h, w) if flags is not None else None

    annotation = colours.paint(small_labels, small_ignored)
    prediction = colours.paint(small_pred, small_ignored)  # unscored pixels: drawn ignored
    panels: list[tuple[str, np.ndarray]]
    if photo is not None:
        image = photo if isinstance(photo, Image.Image) else Image.fromarray(np.asarray(photo, np.uint8))
        if image.size != (width, height):
            raise ValueError(f"photo is {image.size[1]}x{image.size[0]} but the mask is {height}x{width}")
        if (w, h) != (width, height):
            shrink = w < width
            image = image.convert("RGB").resize(
                (w, h), Image.Resampling.LANCZOS if shrink else Image.Resampling.NEAREST,
                reducing_gap=3.0 if shrink else None,
            )
        base = np.asarray(image.convert("RGB"))
        panels = [("photo", base), ("annotation", _blend(base, annotation, ANNOTATION_ALPHA)),
                  ("prediction (argmax)", _blend(base, prediction, ANNOTATION_ALPHA))]
    else:
        base = annotation
        panels = [("annotation", annotation), ("prediction (argmax)", prediction)]
    error_title = f"error map: s < {threshold:g}" + (" or flagged" if flags is not None else "")
    errors = error_map(base, small_s, threshold, small_flags, boundaries(small_labels), colours.flag_colour)
    layout = panel_layout(height, width, max_width)
    if regions:
        errors = draw_regions(errors, region_map, regions, colours.region_colour, _font(layout.font_size))
    panels.append((error_title, errors))

    # Caption content, counted at full resolution.
    with np.errstate(invalid="ignore"):
        low_mask = s < threshold
    low = int(np.count_nonzero(low_mask))
    scored = int(s.size - np.count_nonzero(ignored))
    caption = caption or Caption(image_id="")
    k = colours.n_classes
    present = np.bincount(labels[~ignored & (labels < k)], minlength=k)[:k] > 0
    # The legend lists the classes of scored pixels only (annotated or predicted there).
    present |= np.bincount(predicted[~ignored & (predicted >= 0) & (predicted < k)], minlength=k)[:k] > 0

    font_size, margin, line = layout.font_size, layout.margin, layout.line
    font = _font(font_size)
    big = _font(font_size + 3)
    total_width = layout.width(len(panels))
    content_width = total_width - 2 * margin
    swatch = font_size
    item_gap = font_size

    head = []
    if caption.rank is not None:
        head.append(_Item(f"#{caption.rank}"))
    head.append(_Item(caption.image_id or "(image)"))
    facts = [_Item(f"{caption.method} {format_score(caption.score) or 'none (no scored pixels)'}"),
             _Item(f"{low:,} of {scored:,} px with s < {threshold:g}" + (f" ({100 * low / scored:.1f} %)" if scored else ""))]
    if caption.suspect:
        facts.append(_Item(class_phrase(caption.suspect, caption.likely)))
    if flags is not None:
        facts.append(_Item(f"{int(np.count_nonzero(flags)):,} px flagged"))
    legend = [_Item(colours.name(c), swatch=colours.colour(c)) for c in np.flatnonzero(present)]
    if ignored.any():
        legend.append(_Item("ignored", swatch=colours.colour(k)))
    legend.append(_Item(f"s < {threshold:g}", swatch=LOW_COLOUR, colour=MUTED))
    if flags is not None:
        legend.append(_Item("flagged", swatch=colours.flag_colour, colour=MUTED))

    head_lines = _flow(head, big, content_width, swatch, item_gap)
    fact_lines = _flow(facts, font, content_width, swatch, item_gap * 2)
    legend_lines = _flow(legend, font, content_width, swatch, item_gap)
    caption_height = (len(head_lines) * (line + 3) + len(fact_lines) * line + margin // 2
                      + len(legend_lines) * line)
    region_lines = region_legend(regions, lambda c: colours.name(c) if 0 <= c < k else str(c))
    if region_lines:
        caption_height += margin // 2 + len(region_lines) * line
    total_height = layout.top + h + margin + caption_height + margin

    canvas = Image.new("RGB", (total_width, total_height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for n, (title, pixels) in enumerate(panels):
        x, top, _, _ = layout.box(n)
        draw.text((x, margin), _fit(font, title, w), fill=MUTED, font=font)
        draw.rectangle((x - 1, top - 1, x + w, top + h), outline=FRAME)  # just outside the panel
        canvas.paste(Image.fromarray(np.ascontiguousarray(pixels)), (x, top))

    y = layout.top + h + margin
    for lines, line_font, height_step in ((head_lines, big, line + 3), (fact_lines, font, line)):
        for entries in lines:
            for item, x in entries:
                draw.text((margin + x, y), _fit(line_font, item.text, content_width - x), fill=item.colour, font=line_font)
            y += height_step
    y += margin // 2
    for entries in legend_lines:
        for item, x in entries:
            sx = margin + x
            if item.swatch is not None:
                draw.rectangle((sx, y + 1, sx + swatch - 1, y + swatch), fill=item.swatch, outline=(60, 60, 60))
                sx += swatch + item_gap // 2
            draw.text((sx, y), item.text, fill=item.colour, font=font)
        y += line
    if region_lines:
        y += margin // 2
        region_colour = colours.region_colour
        for text in (_drawable(font, line_text) for line_text in region_lines):
            draw.rectangle((margin, y + 1, margin + swatch - 1, y + swatch), outline=region_colour, width=2)
            sx = margin + swatch + item_gap // 2
            draw.text((sx, y), _fit(font, text, content_width - (sx - margin)), fill=TEXT, font=font)
            y += line
    return canvas




# --- the command: render the ranking's worst images ---------------------------------------


@dataclass
class OverlayRun:
    """What :func:`write_overlays` did."""

    written: list[Path] = field(default_factory=list)
    missing_photos: list[str] = field(default_factory=list)  # ids with no photo in --images
    stale: list[str] = field(default_factory=list)  # other overlay PNGs in the output directory
    threshold: float = 0.5
    colour_source: str = ""


def check_region_min_score(region_min_score: float) -> float:
    """The score from which an image's error regions are outlined: a number in [0, 1];
    InputError (``region_min_score``, ``--region-min-score`` on the command line) otherwise."""
    if isinstance(region_min_score, bool) or not isinstance(region_min_score, (int, float)) \
            or not 0.0 <= region_min_score <= 1.0:
        raise option_error("region_min_score", f"must be between 0 and 1, got {region_min_score}")
    return region_min_score


def write_overlays(
    ranking: Ranking,
    out_dir: str | Path,
    *,
    top: int = 20,
    ids: Sequence[str] | None = None,
    images: str | Path | None = None,
    image_suffix: str = "",
    pixel_threshold: float | None = None,
    max_width: int | None = DEFAULT_MAX_WIDTH,
    palette: str | Path | None = None,
    flags_for: FlagSource | None = None,
    workers: int | None = None,
    on_image: Callable[[int, int], None] | None = None,
    region_min_score: float | None = None,
    max_regions: int = DEFAULT_MAX_REGIONS,
    regions_for: RegionSource | None = None,
    storage_options: dict | str | None = None,
) -> OverlayRun:
    """Render the overlays of a ranking's worst images (or of ``ids``) into ``out_dir``.

    The masks, predictions and reading options come from the ranking's run record;
    ``pixel_threshold`` defaults to the recorded one, ``palette`` (colours only) to the
    recorded ``--palette``. ``flags_for`` supplies per-pixel flags per image (None: the
    recorded clc flags, if any). Each image's error regions scoring at least
    ``region_min_score`` (None: the threshold ``score --regions`` recorded, the one its
    ``regions`` column counts from; :data:`DEFAULT_REGION_MIN_SCORE` without one), at most
    ``max_regions`` of them (0: none, and no region pass), are outlined; ``regions_for``
    supplies them (None: :func:`recorded_regions`, the rule and calibrated scores of the run
    record; then an image whose ``regions`` column is 0 is not read again when
    ``region_min_score`` is at least the recorded threshold). Every check that needs no pixel data (ids, names, pairing, photo
    sizes) is done before the first PNG is written. ``storage_options``: for masks or
    predictions recorded as URLs (never recorded themselves). InputError for bad input.
    """
    from ..core.dataset import open_dataset
    from ..io.masks import mask_palette

    record = ranking.record
    if record is None:
        raise InputError(f"run record not found: {ranking.record_path}")
    if record.masks is None and record.predictions is None and record.layout == "arrays":
        raise InputError(f"{ranking.path} comes from arrays in memory (segaudit.score_arrays_run): overlays need "
                         "masks and a prediction store on disk (write them with segaudit pack / PredictionWriter "
                         "and run segaudit score); segaudit report works without them")
    for key, value in (("masks", record.masks), ("predictions", record.predictions)):
        if value is None:
            raise InputError(f"{ranking.record_path}: no '{key}' path in the run record")
    recorded = 0.5 if record.pixel_threshold is None else record.pixel_threshold
    threshold = recorded if pixel_threshold is None else pixel_threshold
    check_pixel_threshold(threshold)
    if max_width is not None and max_width < 0:
        raise InputError(f"--max-width must be 0 (full size) or a positive number of pixels, got {max_width}")
    if region_min_score is not None:
        check_region_min_score(region_min_score)
    if isinstance(max_regions, bool) or not isinstance(max_regions, int) or max_regions < 0:
        raise InputError(f"--max-regions must be a whole number >= 0, got {max_regions}")
    selected = select_images(ranking, top, ids)
    names = {row.image_id: overlay_name(row.rank, row.image_id, ranking.digits) for row in selected}

    # The masks read as score read them; only what is drawn opened and checked.
    dataset = open_dataset(replace(InputSpec.from_record(record, storage_options=storage_options),
                                   allow_missing=True, only=tuple(row.image_id for row in selected)))
    if flags_for is None:
        flags_for = recorded_clc_flags(dataset, record)
    recorded_rule = False  # whether regions_for uses the rule that counted the ranking's regions column
    recorded_threshold = record.regions.threshold if record.regions is not None else DEFAULT_REGION_MIN_SCORE
    if max_regions == 0:
        regions_for = None
    elif regions_for is None:
        regions_for = recorded_regions(dataset, record, ranking.record_path, storage_options=storage_options)
        # A run record from before the calibration counted raw scores: its column says nothing here.
        recorded_rule = record.regions is not None and record.regions.calibration is not None
        calibration = getattr(regions_for, "calibration", None)
        if calibration is not None:
            recorded_threshold = calibration.threshold
    if region_min_score is None:
        region_min_score = recorded_threshold
    masks = {image_id: mask for mask, image_id in dataset.pairs}
    for row in selected:
        if row.image_id not in masks:
            raise InputError(f"{row.image_id} (rank {row.rank} in {ranking.path}) has no mask in "
                             f"{record.masks} or no prediction in {record.predictions}")

    run = OverlayRun(threshold=float(threshold))
    photos: dict[str, Path | None] = {}
    if images is not None:
        images = Path(images)
        if not images.is_dir():
            raise InputError(f"photo directory not found: {images}")
        for row in selected:
            volume = dataset.store.volume_shape(row.image_id)
            if volume is not None:  # a volume: its scan, a NIfTI or .npy of the same (Z, Y, X)
                scan = find_photo(images, row.image_id, image_suffix, SCAN_EXTENSIONS)
                photos[row.image_id] = scan
                if scan is None:
                    run.missing_photos.append(row.image_id)
                elif (found := scan_shape(scan)) != tuple(volume):
                    raise InputError(f"{scan}: scan is {'x'.join(map(str, found))} (ZxYxX) but its "
                                     f"mask {row.image_id} is {'x'.join(map(str, volume))}")
                continue
            photo = find_photo(images, row.image_id, image_suffix)
            photos[row.image_id] = photo
            if photo is None:
                run.missing_photos.append(row.image_id)
                continue
            expected = dataset.store.image_shape(row.image_id)
            found = photo_size(photo)
            if found != tuple(expected):
                raise InputError(f"{photo}: photo is {found[0]}x{found[1]} (HxW) but its mask "
                                 f"{row.image_id} is {expected[0]}x{expected[1]}")

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output path is not a directory: {out}")
    # The colours come from the first drawn mask's own palette (all masks of a dataset
    # normally share one), so every overlay of a run uses the same colours.
    first = masks[selected[0].image_id] if selected else None
    colours = class_colours(
        dataset.store.n_classes, dataset.store.classes, mask_palette=mask_palette(first) if first else None,
        palette_file=palette if palette is not None else record.palette, ignore=dataset.ignore,
    )
    run.colour_source = colours.source

    def job(row: RankedImage) -> Callable[[], Path]:
        def render() -> Path:
            slice_rows = dataset.slice_rows(row.image_id)
            if slice_rows is None:
                labels, s, predicted, _ = dataset.pixel_maps(masks[row.image_id], row.image_id)
                flags = flags_for(row.image_id, labels, s, predicted) if flags_for else None
                title, rows = row.image_id, None
            else:  # a volume: its worst slice, read alone
                depth = dataset.store.volume_shape(row.image_id)[0]
                z = row.worst_slice if row.worst_slice is not None and 0 <= row.worst_slice < depth \
                    else worst_slice(dataset, masks[row.image_id], row.image_id, float(threshold))
                rows = (z * slice_rows, (z + 1) * slice_rows)
                labels, s, predicted, _ = dataset.pixel_maps(masks[row.image_id], row.image_id, rows=rows)
                flags = flags_for(row.image_id, labels, s, predicted, rows=rows) if flags_for else None
                title = f"{row.image_id} slice {z} of {depth}"
            photo_path = photos.get(row.image_id)
            if photo_path is None:
                photo = None
            elif rows is not None:  # a volume's scan, the drawn slice
                photo = Image.fromarray(read_scan_slice(photo_path, z), mode="RGB")
            else:
                photo = load_photo(photo_path)
            caption = Caption(image_id=title, rank=row.rank, score=row.score,
                              method=ranking.method, suspect=row.suspect, likely=row.likely)
            shown, region_map = [], None
            # score --regions counted the image's regions at >= its threshold with this rule.
            counted_none = row.regions == 0 and recorded_rule and region_min_score >= recorded_threshold
            if regions_for is not None and not counted_none:
                found, region_map = regions_for(row.image_id, **({} if rows is None else {"rows": rows}))
                # only regions with a pixel in the map drawn (all of them, but for a volume's slice)
                present = np.bincount(region_map.ravel() + 1, minlength=len(found) + 1)[1:] > 0
                shown = [r for r in found if r.score >= region_min_score and present[r.region - 1]][:max_regions]
            image = render_overlay(labels, s, predicted, colours, threshold=float(threshold), photo=photo,
                                   flags=flags, caption=caption, max_width=max_width,
                                   regions=shown, region_map=region_map if shown else None)
            del labels, s, predicted, region_map
            save_png(image, staged.path(names[row.image_id]))
            return out / names[row.image_id]

        return render

    workers = workers or min(2, os.cpu_count() or 1)
    # Every PNG is drawn into a staging folder inside ``out`` and moved in only when all are
    # complete: an interrupted or failed run (Ctrl-C, SIGTERM, a full disk) leaves none.
    with staged_directory(out, STAGING_PREFIX) as staged:
        for done, path in enumerate(prefetched((job(row) for row in selected), workers, workers), 1):
            run.written.append(path)  # type: ignore[arg-type]
            if on_image:
                on_image(done, len(selected))

    expected_names = {overlay_name(r.rank, r.image_id, ranking.digits) for r in ranking.rows
                      if _safe(r.image_id)}
    run.stale = sorted(name for name in os.listdir(out)
                       if OVERLAY_NAME.match(name) and name not in expected_names)
    return run


def recorded_clc_flags(dataset, record: RunRecord) -> FlagSource | None:
    """clc's flags for drawn images, when the scoring run computed clc: the pixels of cells
    at or below the run's dataset-wide cut whose argmax is not their label (the rule
    ``score --baseline`` uses), re-reading one image's predictions at a time."""
    clc = record.clc
    selection = None if clc is None else clc.at_or_below_cut
    if selection is None:
        return None
    import dataclasses

    from ..methods.clc import flag_pass

    masks = {image_id: mask for mask, image_id in dataset.pairs}

    def flags(image_id, labels, s, predicted, rows=None):
        found = {}
        single = dataclasses.replace(dataset, pairs=[(masks[image_id], image_id)])
        flag_pass(single, clc.downsample, selection, prefetch=1,
                  on_image=lambda index, _, flag_map, confusion: found.setdefault("map", flag_map))
        flag_map = found["map"] if rows is None else found["map"][rows[0]:rows[1]]
        return flag_map.astype(bool)

    return flags


def worst_slice(dataset, mask, image_id: str, threshold: float) -> int:
    """A volume's worst slice (see :mod:`segaudit.core.slices`), for rankings without the
    column: one pass over its predictions, slab by slab."""
    from ..core.slices import SliceTally

    labels, s, _, _ = dataset.pixel_maps(mask, image_id)
    slice_rows = dataset.slice_rows(image_id)
    tally = SliceTally(labels.shape[0] // slice_rows, slice_rows, threshold)
    tally.add(0, s)
    found = tally.worst()
    return 0 if found is None else found


def recorded_region_rule(record: RunRecord, source: str | Path = "run record"):
    """The region rule of a scoring run: its run record's ``regions`` entry (``score
    --regions``: margin, band, band weight), else :class:`segaudit.core.regions.RegionRule`'s
    defaults (those of ``segaudit regions``). InputError, naming ``source``, for values the
    rule refuses."""
    from ..core.regions import RegionRule

    entry = record.regions
    if entry is None:
        return RegionRule()
    try:
        return RegionRule(margin=entry.margin, band=entry.band, band_weight=entry.band_weight)
    except ValueError as exc:
        raise InputError(f"{source}: bad 'regions' entry: {one_line(exc)}") from None


def recorded_regions(dataset, record: RunRecord, source: str | Path = "run record", *,
                     storage_options: dict | str | None = None) -> RegionSource:
    """The error regions of drawn images, found as ``segaudit regions`` finds them (with the
    rule of :func:`recorded_region_rule`), re-reading one image's predictions at a time.

    The source returned is called as ``regions(image_id, rows=None)``: every region of the
    image, and its region map (of rows ``rows[0]:rows[1]`` only, when given); its
    ``calibration`` attribute calibrates their scores: the run record's (``score
    --regions``), else fitted now on the whole dataset (:func:`segaudit.outputs.regions.recorded_calibration`)."""
    import dataclasses

    from ..core.regions import find_regions
    from .regions import recorded_calibration

    rule = recorded_region_rule(record, source)
    calibration = recorded_calibration(record, source, rule, storage_options)
    masks = {image_id: mask for mask, image_id in dataset.pairs}

    def regions(image_id, rows=None):
        found = {}
        single = dataclasses.replace(dataset, pairs=[(masks[image_id], image_id)])

        def keep(index, _, labels, image_regions, finder):
            found["regions"], found["map"] = image_regions, finder.region_map

        find_regions(single, rule, keep_maps=lambda _: True, on_image=keep, prefetch=1, calibration=calibration)
        region_map = found["map"] if rows is None else found["map"][rows[0]:rows[1]]
        return found["regions"], region_map

    regions.calibration = calibration
    return regions


def _safe(image_id: str) -> bool:
    try:
        overlay_name(1, image_id)
    except InputError:
        return False
    return True
