"""Class colours for overlays: which colour each class index is drawn in.

The colours come from, in order of preference:

1. the palette the masks carry (P-mode PNGs, where the palette index is the class), when
   it gives the classes distinct colours and is not just a grey ramp;
2. a ``--palette`` JSON file (the same format as for RGB masks, see docs/formats.md);
3. a fixed palette: Cityscapes' colours when the 19 Cityscapes train classes are named,
   otherwise a fixed list of distinct colours (20 hand-picked ones, then, for K > 20, a
   Glasbey-style table: each next colour the farthest in CIELAB from all before it).

The colour of pixels flagged by a per-pixel method is chosen per palette
(:attr:`ClassColours.flag_colour`), so that it is never one of the class colours.

numpy only; no file is read here except a palette file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

RGB = tuple[int, int, int]

#: The colour of ignored pixels when no palette gives one (Cityscapes draws void black).
IGNORE_COLOUR: RGB = (0, 0, 0)

#: Cityscapes' 19 train classes and their official colours (cityscapesScripts labels.py).
CITYSCAPES: dict[str, RGB] = {
    "road": (128, 64, 128), "sidewalk": (244, 35, 232), "building": (70, 70, 70),
    "wall": (102, 102, 156), "fence": (190, 153, 153), "pole": (153, 153, 153),
    "traffic light": (250, 170, 30), "traffic sign": (220, 220, 0), "vegetation": (107, 142, 35),
    "terrain": (152, 251, 152), "sky": (70, 130, 180), "person": (220, 20, 60),
    "rider": (255, 0, 0), "car": (0, 0, 142), "truck": (0, 0, 70), "bus": (0, 60, 100),
    "train": (0, 80, 100), "motorcycle": (0, 0, 230), "bicycle": (119, 11, 32),
}

#: Twenty distinct colours, neither black nor white (Sasha Trubetskoy's list, reordered so
#: the first ten are the most distinct).
DISTINCT: tuple[RGB, ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (128, 128, 128),
    (0, 128, 128), (250, 190, 212), (170, 110, 40), (128, 0, 0), (170, 255, 195),
    (128, 128, 0), (0, 0, 128), (220, 190, 255), (255, 215, 180), (255, 250, 200),
)


#: The colours classes never get: the ignore colour, the white background, and the error
#: map's low-s colour (kept in step with segaudit.outputs.overlay.LOW_COLOUR).
RESERVED: tuple[RGB, ...] = ((0, 0, 0), (255, 255, 255), (255, 0, 110))

#: Candidate colours for flagged pixels, in order of preference: the first whose CIELAB
#: distance to every class colour (and to the reserved ones) is at least
#: :data:`FLAG_MIN_DISTANCE` is used; else the farthest of them all.
FLAG_CANDIDATES: tuple[RGB, ...] = (
    (255, 200, 0), (0, 255, 255), (0, 255, 0), (255, 128, 0), (128, 0, 255), (0, 64, 255),
    (255, 255, 0), (255, 0, 255), (0, 160, 90), (140, 255, 200),
)
FLAG_MIN_DISTANCE = 40.0

#: Candidate colours for the outlines of error regions on the error map, in order of
#: preference: the first at least :data:`FLAG_MIN_DISTANCE` (CIELAB) from the flag colour,
#: the reserved colours and every colour the error map is drawn in (its greys and the light
#: grey class outlines) is used; else the farthest of them all. Class colours do not count:
#: the error map shows none.
REGION_CANDIDATES: tuple[RGB, ...] = ((0, 255, 255), (0, 255, 0), (0, 64, 255), (128, 0, 255), (255, 128, 0))
#: The colours of the error map besides the low-s and flag colours: the dimmed greys of its
#: base (kept in step with overlay._dimmed_grey, 50-177) and the class outlines (215).
ERROR_MAP_GREYS: tuple[RGB, ...] = ((50, 50, 50), (114, 114, 114), (177, 177, 177), (215, 215, 215))


def to_lab(rgb) -> np.ndarray:
    """CIELAB (D65) of sRGB colours, (..., 3) uint8-range values -> (..., 3) float."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124564, 0.2126729, 0.0193339],
                             [0.3575761, 0.7151522, 0.1191920],
                             [0.1804375, 0.0721750, 0.9503041]])
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_distance(a, b) -> np.ndarray:
    """CIE76 distance between colours (broadcast)."""
    return np.linalg.norm(to_lab(a) - to_lab(b), axis=-1)


@dataclass(frozen=True)
class ClassColours:
    """One colour per class index, plus the colour of ignored pixels.

    ``table`` is (K + 1, 3) uint8: row k is class k, the last row is the ignore colour.
    """

    table: np.ndarray
    names: list[str]
    source: str  # "mask palette", "palette file", "cityscapes" or "distinct"

    @property
    def n_classes(self) -> int:
        return self.table.shape[0] - 1

    def colour(self, k: int) -> RGB:
        return tuple(int(v) for v in self.table[k])  # type: ignore[return-value]

    def name(self, k: int) -> str:
        return self.names[k]

    @property
    def flag_colour(self) -> RGB:
        """The colour of flagged pixels: distinct from every class colour and the ignore
        colour (see :data:`FLAG_CANDIDATES`)."""
        return _flag_colour(tuple(map(tuple, self.table.tolist())))

    @property
    def region_colour(self) -> RGB:
        """The colour of error-region outlines and numbers on the error map: distinct from
        the flag colour and the map's own colours (see :data:`REGION_CANDIDATES`)."""
        return _region_colour(self.flag_colour)

    def paint(self, labels: np.ndarray, ignored: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) uint8 colours of a label map.

        Values >= K (ignore indices) and pixels where ``ignored`` is True get the ignore
        colour.
        """
        index = np.minimum(labels, self.n_classes)
        if ignored is not None:
            index = np.where(ignored, self.n_classes, index)
        return self.table[index]


@lru_cache(maxsize=64)
def _flag_colour(used: tuple[RGB, ...]) -> RGB:
    avoid = np.array([*used, *RESERVED], dtype=np.float64)
    candidates = np.array(FLAG_CANDIDATES, dtype=np.float64)
    nearest = lab_distance(candidates[:, None], avoid[None]).min(axis=1)
    good = np.flatnonzero(nearest >= FLAG_MIN_DISTANCE)
    best = int(good[0]) if good.size else int(np.argmax(nearest))
    return FLAG_CANDIDATES[best]


@lru_cache(maxsize=16)
def _region_colour(flag: RGB) -> RGB:
    avoid = np.array([flag, *RESERVED, *ERROR_MAP_GREYS], dtype=np.float64)
    candidates = np.array(REGION_CANDIDATES, dtype=np.float64)
    nearest = lab_distance(candidates[:, None], avoid[None]).min(axis=1)
    good = np.flatnonzero(nearest >= FLAG_MIN_DISTANCE)
    return REGION_CANDIDATES[int(good[0]) if good.size else int(np.argmax(nearest))]


def distinct_colours(n: int) -> list[RGB]:
    """``n`` fixed colours: :data:`DISTINCT`, then (for ``n`` > 20) a Glasbey-style table."""
    return list(_glasbey(n)) if n > len(DISTINCT) else list(DISTINCT[:n])


@lru_cache(maxsize=8)
def _glasbey(n: int) -> tuple[RGB, ...]:
    """:data:`DISTINCT` followed by colours chosen greedily: each the sRGB colour (of a
    32-level grid) farthest in CIELAB from every colour before it and from the reserved
    ones (:data:`RESERVED`). Deterministic (ties go to the lowest grid index); after the
    grid runs out, colours repeat."""
    levels = np.linspace(0, 255, 32).round().astype(np.int64)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = to_lab(grid)
    nearest = np.full(len(grid), np.inf)
    for colour in (*RESERVED, *DISTINCT):
        nearest = np.minimum(nearest, np.linalg.norm(lab - to_lab(colour), axis=-1))
    colours = list(DISTINCT)
    while len(colours) < n:
        best = int(np.argmax(nearest))
        if not np.isfinite(nearest[best]) or nearest[best] <= 0:
            colours += colours[: n - len(colours)]  # more classes than grid colours
            break
        colour = tuple(int(v) for v in grid[best])
        colours.append(colour)
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[best], axis=-1))
    return tuple(colours[:n])


def _normalise(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def cityscapes_colours(names: list[str]) -> list[RGB] | None:
    """Cityscapes colours by class name when all 19 train classes are named, else None.

    Classes beyond the 19 (e.g. ``unlabeled``) get distinct colours.
    """
    normalised = [_normalise(n) for n in names]
    if not set(CITYSCAPES) <= set(normalised):
        return None
    others = iter(c for c in distinct_colours(len(names) + len(CITYSCAPES)) if c not in CITYSCAPES.values())
    return [CITYSCAPES[n] if n in CITYSCAPES else next(others) for n in normalised]


def usable_mask_palette(palette: list[RGB] | None, n_classes: int) -> bool:
    """Whether a mask's own PNG palette colours the K classes meaningfully.

    Pillow and many tools write P-mode masks with a grey ramp (index i = (i, i, i)) or an
    all-black palette, which carry no colours; such palettes, and palettes that give two
    classes the same colour or are shorter than K, are not used.
    """
    if not palette or len(palette) < n_classes:
        return False
    used = palette[:n_classes]
    if len(set(used)) < n_classes:
        return False
    return not all(r == g == b for r, g, b in used)


def palette_file_colours(path: str | Path) -> dict[int, RGB]:
    """Class -> colour from a ``--palette`` JSON file (the first colour listed for a class)."""
    from ..io.masks import load_palette

    by_class: dict[int, RGB] = {}
    for colour, cls in load_palette(path).items():
        by_class.setdefault(cls, colour)
    return by_class


def class_colours(
    n_classes: int,
    classes: list[str] | None = None,
    *,
    mask_palette: list[RGB] | None = None,
    palette_file: str | Path | None = None,
    ignore: tuple[int, ...] = (255,),
) -> ClassColours:
    """Choose the class colours (see the module docstring for the order).

    Parameters
    ----------
    n_classes : int
        K.
    classes : list of str, optional
        Class names; the class index is used as the name when absent.
    mask_palette : list of (r, g, b), optional
        A P-mode mask's own palette (:func:`segaudit.io.masks.mask_palette`).
    palette_file : path, optional
        A ``--palette`` JSON file; classes it leaves out get distinct colours.
    ignore : tuple of int
        The ignore indices; the first one's colour in the chosen palette, if it has one,
        becomes the ignore colour.
    """
    names = list(classes) if classes else [str(k) for k in range(n_classes)]
    ignore_colour = IGNORE_COLOUR
    if usable_mask_palette(mask_palette, n_classes):
        assert mask_palette is not None
        colours = list(mask_palette[:n_classes])
        source = "mask palette"
        if ignore and ignore[0] < len(mask_palette):
            ignore_colour = mask_palette[ignore[0]]
    elif palette_file is not None:
        by_class = palette_file_colours(palette_file)
        spare = iter(c for c in distinct_colours(2 * n_classes + 20) if c not in by_class.values())
        colours = [by_class[k] if k in by_class else next(spare) for k in range(n_classes)]
        source = "palette file"
        if ignore and ignore[0] in by_class:
            ignore_colour = by_class[ignore[0]]
    else:
        cityscapes = cityscapes_colours(names)
        if cityscapes is not None:
            colours, source = cityscapes, "cityscapes"
        else:
            colours, source = distinct_colours(n_classes), "distinct"
    table = np.array([*colours, ignore_colour], dtype=np.uint8).reshape(n_classes + 1, 3)
    return ClassColours(table=table, names=names, source=source)
