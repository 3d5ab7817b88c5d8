"""Error regions: connected suspect pixels, found block by block while an image streams.

A pixel is *suspect* when it is scored, the model's argmax ``likely`` is not its label,
and the model prefers ``likely`` to the label by at least ``margin``
(p[likely] - p[label] >= margin). Pixels within ``band`` pixels of an annotation edge
(where the label changes) are *band* pixels: real models blur every boundary, so their
margin counts only ``band_weight`` as much in a region's score. A *region* is a maximal
8-connected set of suspect pixels sharing one (annotated class, likely class) pair, so it
lies inside one 8-connected component of its annotated class (its *object*).

:class:`RegionFinder` labels the rows of one image block by block with a union-find whose
provisional labels carry over the last row of each block, so a region that crosses block
edges is one region, and keeps only per-label sums: memory is the suspect pixels' labels,
not the image. :func:`classify` gives each region a ``kind`` hint (see docs/methods.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..errors import option_error
from .components import _find, component_roots, component_roots_3d, numbered
from .dataset import Dataset
from .kernel import ImageStats, KernelConfig
from .passes import walk
from .pooling import accumulate_and_pool

#: The kinds of region, in the order of their rules (docs/methods.md, "Regions").
KINDS = ("wrong_class", "spurious", "boundary", "missing")

#: Class names treated as background for the ``spurious`` kind (case-insensitive).
BACKGROUND_NAMES = ("background", "unlabeled", "unlabelled", "other", "void", "clutter", "none")

# Columns of the integer and float statistics per provisional label.
_AREA, _CORE, _ROW0, _ROW1, _COL0, _COL1, _OBJECT, _LABEL, _LIKELY, _TOUCH, _Z0, _Z1 = range(12)
_N_INTS = 12
_SUM_S, _SUM_P, _MASS_CORE, _MASS_BAND = range(4)


@dataclass(frozen=True)
class RegionRule:
    """Which pixels are suspect and how a region is scored.

    Parameters
    ----------
    margin : float
        A scored pixel is suspect when p[likely] - p[label] >= margin (and likely != label).
    band : int
        Pixels within this many pixels (Chebyshev distance) of an annotation edge are band pixels.
    band_weight : float
        How much a band pixel's margin counts in the region's mass, in [0, 1].
    scale : float
        Area scale of the score, as a fraction of the image's pixels: a whole object of
        mass ``scale * pixels`` scores 1 - 1/e.
    coverage_power : float
        The mass is weighted by coverage ** coverage_power (coverage: the share of its
        annotated object the region covers).
    thin : float
        A region along the likely class's annotation is a ``boundary`` region when its
        thickness (pixels per pixel touching that annotation) is at most ``thin`` times
        the image's mean side (sqrt of its pixels), or 2 pixels.
    reach : int
        A pixel touches the likely class's annotation when a pixel annotated so lies within
        this many pixels (Chebyshev).
    """

    margin: float = 0.25
    band: int = 2
    band_weight: float = 1.0
    scale: float = 0.002
    coverage_power: float = 0.25
    thin: float = 0.02
    reach: int = 3

    def __post_init__(self):
        if not (isinstance(self.margin, (int, float)) and 0.0 <= self.margin < 1.0):
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")
        if not isinstance(self.band, int) or isinstance(self.band, bool) or self.band < 0:
            raise ValueError(f"band must be a whole number >= 0, got {self.band}")
        if not 0.0 <= self.band_weight <= 1.0:
            raise ValueError(f"band weight must be in [0, 1], got {self.band_weight}")
        if not self.scale > 0.0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if not self.coverage_power >= 0.0:
            raise ValueError(f"coverage power must be >= 0, got {self.coverage_power}")
        if not isinstance(self.reach, int) or isinstance(self.reach, bool) or self.reach < 1:
            raise ValueError(f"reach must be a whole number >= 1, got {self.reach}")


@dataclass(slots=True)
class Region:
    """One error region of one image. ``x1``/``y1`` are exclusive; classes are indices."""

    image_id: str
    region: int  # 1-based, worst first within the image
    score: float  # in [0, 1); higher = more likely an annotation error (calibrated when the run is)
    area: int
    x0: int
    y0: int
    x1: int
    y1: int
    annotated_class: int
    likely_class: int
    mean_s: float
    mean_p_likely: float
    kind: str
    core_area: int  # pixels outside the annotation-edge band
    object_pixels: int  # scored pixels of the annotated object the region lies in
    mass: float  # sum of the margins, band pixels weighted
    band_mass: float = 0.0  # the sum of the band pixels' margins (unweighted)
    touching: int = 0  # pixels near (within the rule's reach) an annotation of the likely class
    z0: int | None = None  # a volume's slices [z0, z1) (y0/y1 are then rows within a slice)
    z1: int | None = None
    #: The rule's score (region_score), before any calibration: what ranks regions within an image.
    raw_score: float = math.nan
    #: mass * coverage**coverage_power / (scale * pixels): raw_score is 1 - exp(-strength),
    #: which saturates at 1.0 in floating point while the strength still tells regions apart.
    strength: float = math.nan

    @property
    def thickness(self) -> float:
        """Pixels per pixel touching the likely class's annotation (inf when none touches)."""
        return self.area / self.touching if self.touching else math.inf

    @property
    def coverage(self) -> float:
        """The share of its annotated object that the region covers."""
        return self.area / self.object_pixels if self.object_pixels else 0.0


# --- the annotation's objects and edge band (the whole mask is in memory) --------


def annotation_objects(labels: np.ndarray, n_classes: int,
                       slice_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each scored pixel's object (8-connected component of its class; 26-connected in a
    volume's tall image of slices of ``slice_rows`` rows), and object sizes.

    Returns ``(objects, sizes)``: int64 (H, W) numbered 0.. in row-major order of first
    pixel (-1 where not scored), and the scored pixels of each object.
    """
    scored = np.where((labels >= 0) & (labels < n_classes), labels, -1).astype(np.int32)
    roots = component_roots_3d(scored, scored, slice_rows) if slice_rows else component_roots(scored, scored)
    return numbered(roots, labels.shape)


def edge_band(labels: np.ndarray, band: int) -> np.ndarray:
    """True within ``band`` pixels (Chebyshev) of a pixel whose 4-neighbour has another label value.

    A band wider than the image is the image's: the growth stops once it covers every pixel
    it can reach (at most the image's longer side), whatever ``band`` says.
    """
    edge = np.zeros(labels.shape, bool)
    if band == 0:
        return edge
    vertical = labels[1:] != labels[:-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    horizontal = labels[:, 1:] != labels[:, :-1]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    # An edge pixel pair straddles the edge, so band - 1 more pixels on each side.
    grown = edge
    for _ in range(min(band, max(labels.shape)) - 1):
        step = grown.copy()
        step[1:] |= grown[:-1]
        step[:-1] |= grown[1:]
        step[:, 1:] |= step[:, :-1].copy()
        step[:, :-1] |= step[:, 1:].copy()
        if np.array_equal(step, grown):  # nothing left to reach: every further step is the same
            break
        grown = step
    return grown


# --- the streaming labeller ---------------------------------------------------------


@njit(cache=True, nogil=True)
def _label_rows(label, likely, s, p, band, objects, whole, margin, reach, row_offset, slice_rows,
                carry_ids, carry_label, carry_likely, ids, parent, count, ints, floats):
    """Label the suspect pixels of a block; returns the new provisional label count.

    ``carry_*``: the rows just above the block (ids -1 where not suspect or above the top of
    the image): one row for an image, a slice and a row for a volume (``slice_rows`` > 0:
    row z * slice_rows + y of the tall image is row y of slice z, and regions are
    26-connected across slices). ``whole``: the image's whole mask, for the pixels'
    neighbours in other blocks. ``parent``, ``ints`` and ``floats`` have room for
    ``count`` plus every pixel of the block.
    """
    rows, cols = label.shape
    height = whole.shape[0]
    plane = slice_rows if slice_rows > 0 else height  # rows of one slice (a 2-D image: all)
    n_carry = carry_ids.shape[0]
    for i in range(rows):
        row = row_offset + i
        z = row // plane
        y = row - z * plane
        for j in range(cols):
            ids[i, j] = -1
            lab = label[i, j]
            if lab < 0:
                continue
            lik = likely[i, j]
            if lik == lab or p[i, j] - s[i, j] < margin:
                continue
            here = -1
            # The neighbours earlier in scan order: 9 in the previous slice (volumes), 3 in
            # the row above and the one on the left.
            for k in range(13):
                if k < 9:
                    if slice_rows == 0 or z == 0:
                        continue
                    dy = k // 3 - 1
                    if y + dy < 0 or y + dy >= plane:
                        continue
                    other_row = row - plane + dy
                    dx = k % 3 - 1
                elif k < 12:
                    if y == 0:
                        continue
                    other_row = row - 1
                    dx = k - 10
                else:
                    other_row = row
                    dx = -1
                nj = j + dx
                if nj < 0 or nj >= cols:
                    continue
                if other_row >= row_offset:
                    qi = other_row - row_offset
                    other = ids[qi, nj]
                    if other < 0 or label[qi, nj] != lab or likely[qi, nj] != lik:
                        continue
                else:
                    ci = other_row - (row_offset - n_carry)
                    if ci < 0:
                        continue
                    other = carry_ids[ci, nj]
                    if other < 0 or carry_label[ci, nj] != lab or carry_likely[ci, nj] != lik:
                        continue
                if here < 0:
                    here = _find(parent, other)
                else:
                    a, b = _find(parent, here), _find(parent, other)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
                        here = min(a, b)
            if here < 0:
                here = count
                parent[count] = count
                ints[count, _ROW0] = y
                ints[count, _ROW1] = y
                ints[count, _COL0] = j
                ints[count, _COL1] = j
                ints[count, _Z0] = z
                ints[count, _Z1] = z
                ints[count, _OBJECT] = objects[i, j]
                ints[count, _LABEL] = lab
                ints[count, _LIKELY] = lik
                count += 1
            ids[i, j] = here
            # Statistics go to the pixel's label as it is now; roots are merged at the end.
            ints[here, _AREA] += 1
            ints[here, _ROW0] = min(ints[here, _ROW0], y)
            ints[here, _ROW1] = max(ints[here, _ROW1], y)
            ints[here, _COL0] = min(ints[here, _COL0], j)
            ints[here, _COL1] = max(ints[here, _COL1], j)
            ints[here, _Z0] = min(ints[here, _Z0], z)
            ints[here, _Z1] = max(ints[here, _Z1], z)
            gap = p[i, j] - s[i, j]
            floats[here, _SUM_S] += s[i, j]
            floats[here, _SUM_P] += p[i, j]
            # Near the likely class's annotation in its slice (within ``reach``): an outline
            # in the wrong place.
            touches = False
            for di in range(-reach, reach + 1):
                if touches:
                    break
                if y + di < 0 or y + di >= plane:
                    continue
                ni = row + di
                for dj in range(-reach, reach + 1):
                    nj = j + dj
                    if 0 <= nj < cols and whole[ni, nj] == lik:
                        touches = True
                        break
            ints[here, _TOUCH] += touches
            if band[i, j]:
                floats[here, _MASS_BAND] += gap
            else:
                ints[here, _CORE] += 1
                floats[here, _MASS_CORE] += gap
    return count


@njit(cache=True, nogil=True)
def _merge(parent, count, ints, floats):
    """Fold every provisional label's statistics into its root; returns the roots' flags."""
    is_root = np.zeros(count, np.bool_)
    for i in range(count):
        r = _find(parent, i)
        if r == i:
            is_root[i] = True
            continue
        ints[r, _AREA] += ints[i, _AREA]
        ints[r, _CORE] += ints[i, _CORE]
        ints[r, _TOUCH] += ints[i, _TOUCH]
        ints[r, _Z0] = min(ints[r, _Z0], ints[i, _Z0])
        ints[r, _Z1] = max(ints[r, _Z1], ints[i, _Z1])
        ints[r, _ROW0] = min(ints[r, _ROW0], ints[i, _ROW0])
        ints[r, _ROW1] = max(ints[r, _ROW1], ints[i, _ROW1])
        ints[r, _COL0] = min(ints[r, _COL0], ints[i, _COL0])
        ints[r, _COL1] = max(ints[r, _COL1], ints[i, _COL1])
        for f in range(floats.shape[1]):
            floats[r, f] += floats[i, f]
    return is_root


@njit(cache=True, nogil=True)
def _roots(parent, count):
    roots = np.empty(count, np.int64)
    for i in range(count):
        roots[i] = _find(parent, i)
    return roots


def region_strength(mass: float, coverage: float, pixels: int, rule: RegionRule) -> float:
    """mass * coverage**coverage_power / (scale * pixels): the evidence :func:`region_score` maps to [0, 1).

    ``mass``: the region's summed margin p[likely] - p[label] (band pixels weighted);
    ``coverage``: the share of its annotated object it covers (a whole object in another
    class is likelier an annotation error than a part of one); ``pixels``: the image's
    scored pixels, so that the score means the same at any image size.
    """
    if pixels <= 0:
        return 0.0
    return float(mass * coverage ** rule.coverage_power / (rule.scale * pixels))


def region_score(mass: float, coverage: float, pixels: int, rule: RegionRule) -> float:
    """1 - exp(-strength) (:func:`region_strength`), in [0, 1] (1.0 only once floating point
    saturates, for strengths above about 37)."""
    return float(-math.expm1(-region_strength(mass, coverage, pixels, rule)))


def classify(region: Region, background: frozenset[int], rule: RegionRule, image_pixels: int) -> str:
    """The kind hint of a region (the rules of docs/methods.md, "Regions").

    A region that covers at least half of its annotated object is the object mislabeled:
    ``missing`` when it is annotated as background and the model sees an object there (a
    dropped object), ``spurious`` when the model sees background (an object that is not
    there), else ``wrong_class`` (a swapped class). A smaller region is ``boundary`` when it
    is a thin band along the annotation of its likely class (at most ``rule.thin`` of the
    image's mean side thick, or 2 pixels): an outline shifted or drawn sloppily; otherwise
    it is a compact part of a larger annotated area that the model sees as another class:
    ``spurious`` if that class is background, else ``missing`` (an object painted over by
    its surroundings). Background classes are those named like :data:`BACKGROUND_NAMES`.
    """
    annotated_background = region.annotated_class in background
    likely_background = region.likely_class in background
    if region.coverage >= 0.5:
        if annotated_background and not likely_background:
            return "missing"
        return "spurious" if likely_background else "wrong_class"
    if region.thickness <= max(2.0, rule.thin * math.sqrt(image_pixels)):
        return "boundary"
    return "spurious" if likely_background and not annotated_background else "missing"


def background_classes(classes: list[str] | None) -> frozenset[int]:
    """Indices of the classes named like background (:data:`BACKGROUND_NAMES`)."""
    if not classes:
        return frozenset()
    return frozenset(i for i, name in enumerate(classes) if name.strip().lower() in BACKGROUND_NAMES)


class RegionFinder:
    """The regions of one image, fed block by block, top to bottom.

    Parameters
    ----------
    labels : np.ndarray
        The whole mask's int32 class indices, values < 0 or >= ``n_classes`` unscored
        (the mask is read whole anyway; its objects and edge band come from it).
    n_classes : int
    rule : RegionRule
    keep_ids : bool
        Keep every pixel's region (for proposals and evaluation): :meth:`finish` then
        fills ``region_map``, (H, W) int32 with the region's index in the returned list
        (-1 where no region).
    slice_rows : int, optional
        The image is a volume's tall image of slices of this many rows: regions and
        objects are 26-connected across slices; the edge band, the kind's thickness and
        the likely class's annotation nearby are taken within each slice.
    marked : np.ndarray, optional
        bool (H, W): pixels to count per region (a planted error's, for the calibration);
        :meth:`finish` then sets ``marked_areas``, each returned region's marked pixels.
    """

    def __init__(self, labels: np.ndarray, n_classes: int, rule: RegionRule, *, keep_ids: bool = False,
                 slice_rows: int | None = None, marked: np.ndarray | None = None):
        self.rule = rule
        self.shape = labels.shape
        self.slice_rows = int(slice_rows) if slice_rows else 0
        self.labels = np.ascontiguousarray(labels, np.int32)
        self.objects, self.object_sizes = annotation_objects(labels, n_classes, self.slice_rows or None)
        if self.slice_rows:
            plane = self.slice_rows
            self.band = np.concatenate([edge_band(labels[z:z + plane], rule.band)
                                        for z in range(0, labels.shape[0], plane)]) if labels.size else \
                np.zeros(labels.shape, bool)
        else:
            self.band = edge_band(labels, rule.band)
        width = labels.shape[1]
        # The rows above a block that its pixels may touch: one, or a slice and a row.
        carry = self.slice_rows + 1 if self.slice_rows else 1
        self.carry_ids = np.full((carry, width), -1, np.int64)
        self.carry_label = np.full((carry, width), -1, np.int32)
        self.carry_likely = np.full((carry, width), -1, np.int32)
        self.count = 0
        self.parent = np.zeros(0, np.int64)
        self.ints = np.zeros((0, _N_INTS), np.int64)
        self.floats = np.zeros((0, 4))
        self.ids = np.full(labels.shape, -1, np.int64) if keep_ids else None
        self.likely_map = np.full(labels.shape, -1, np.int32) if keep_ids else None
        self.region_map: np.ndarray | None = None
        self.marked = marked
        self.marked_counts = np.zeros(0, np.int64)
        self.marked_areas: list[int] = []
        self.next_row = 0

    def _room(self, pixels: int) -> None:
        need = self.count + pixels
        if need <= self.parent.size:
            return
        size = max(need, 2 * self.parent.size)
        grow = size - self.parent.size
        self.parent = np.concatenate([self.parent, np.arange(self.parent.size, size, dtype=np.int64)])
        ints = np.zeros((grow, _N_INTS), np.int64)
        ints[:, _ROW0] = ints[:, _COL0] = ints[:, _Z0] = np.iinfo(np.int64).max
        ints[:, _ROW1] = ints[:, _COL1] = ints[:, _Z1] = -1
        self.ints = np.concatenate([self.ints, ints])
        self.floats = np.concatenate([self.floats, np.zeros((grow, 4))])
        self.marked_counts = np.concatenate([self.marked_counts, np.zeros(grow, np.int64)])

    def add_block(self, start: int, label: np.ndarray, likely: np.ndarray, s: np.ndarray, p: np.ndarray) -> None:
        """Rows [start, start + len(label)): scored labels (-1 ignored), argmax, s and p[argmax]."""
        if start != self.next_row:
            raise ValueError(f"blocks must come in order: expected row {self.next_row}, got {start}")
        rows = label.shape[0]
        stop = start + rows
        self._room(label.size)
        ids = np.empty(label.shape, np.int64) if self.ids is None else self.ids[start:stop]
        self.count = _label_rows(label, likely, s, p, self.band[start:stop], self.objects[start:stop], self.labels,
                                 float(self.rule.margin), int(self.rule.reach), start, self.slice_rows,
                                 self.carry_ids, self.carry_label, self.carry_likely, ids, self.parent,
                                 self.count, self.ints, self.floats)
        if self.likely_map is not None:
            self.likely_map[start:stop] = likely
        if self.marked is not None:
            hit = ids[self.marked[start:stop] & (ids >= 0)]
            if hit.size:
                self.marked_counts[: self.count] += np.bincount(hit, minlength=self.count)
        if rows:
            # The carried rows shift up by the block's rows and its last rows fill in below;
            # only those rows are copied, not the block.
            keep = self.carry_ids.shape[0]
            fresh = min(rows, keep)
            for carried, block in ((self.carry_ids, ids), (self.carry_label, label), (self.carry_likely, likely)):
                carried[: keep - fresh] = carried[fresh:]
                carried[keep - fresh:] = block[rows - fresh:]
        self.next_row = stop

    def finish(self, image_id: str, background: frozenset[int] = frozenset()) -> list[Region]:
        """The image's regions, worst first (score, then area, then position)."""
        if self.next_row != self.shape[0]:
            raise ValueError(f"{image_id}: rows {self.next_row}-{self.shape[0]} were never added")
        is_root = _merge(self.parent, self.count, self.ints, self.floats)
        roots = np.flatnonzero(is_root)
        pixels = int(self.object_sizes.sum())
        found = []
        for root in roots:
            n = self.ints[root]
            f = self.floats[root]
            area = int(n[_AREA])
            mass = float(f[_MASS_CORE] + self.rule.band_weight * f[_MASS_BAND])
            object_pixels = int(self.object_sizes[n[_OBJECT]])
            strength = region_strength(mass, area / object_pixels, pixels, self.rule)
            score = float(-math.expm1(-strength))
            region = Region(
                image_id=image_id, region=0, score=score, raw_score=score, strength=strength,
                area=area,
                x0=int(n[_COL0]), y0=int(n[_ROW0]), x1=int(n[_COL1]) + 1, y1=int(n[_ROW1]) + 1,
                annotated_class=int(n[_LABEL]), likely_class=int(n[_LIKELY]),
                mean_s=float(f[_SUM_S]) / area, mean_p_likely=float(f[_SUM_P]) / area, kind="",
                core_area=int(n[_CORE]), object_pixels=object_pixels, mass=mass, band_mass=float(f[_MASS_BAND]),
                touching=int(n[_TOUCH]),
                z0=int(n[_Z0]) if self.slice_rows else None, z1=int(n[_Z1]) + 1 if self.slice_rows else None)
            plane_pixels = self.slice_rows * self.shape[1] if self.slice_rows else self.labels.size
            region.kind = classify(region, background, self.rule, plane_pixels)
            found.append((root, region))
        found.sort(key=lambda item: (-item[1].strength, -item[1].area, item[1].z0 or 0, item[1].y0, item[1].x0))
        if self.marked is not None:
            per_root = np.bincount(_roots(self.parent, self.count), weights=self.marked_counts[: self.count],
                                   minlength=self.count) if self.count else np.zeros(0)
            self.marked_areas = [int(per_root[root]) for root, _ in found]
        if self.ids is not None:
            number = np.full(self.count + 1, -1, np.int32)  # index count: "no region" (-1)
            for index, (root, _) in enumerate(found):
                number[root] = index
            number[: self.count] = number[_roots(self.parent, self.count)]
            ids = np.where(self.ids < 0, self.count, self.ids)
            self.region_map = number[ids]
        regions = []
        for index, (_, region) in enumerate(found):
            region.region = index + 1
            regions.append(region)
        return regions



# --- over a dataset -------------------------------------------------------------------


@dataclass
class RegionRun:
    """Every region of a dataset, ranked worst first over the whole dataset."""

    regions: list[Region]
    images: int  # images scanned
    counts: dict[str, int]  # regions per image id (every image, 0 included)
    classes: list[str] | None
    rule: RegionRule
    #: How scores were calibrated (a :class:`segaudit.calibration.regions.RegionCalibration`),
    #: None when ``score`` is the rule's raw score.
    calibration: object | None = None

    @property
    def threshold(self) -> float:
        """The score from which a region counts (is suspect, proposed, exported): the
        calibration's threshold, else :data:`RAW_THRESHOLD`."""
        return self.calibration.threshold if self.calibration is not None else RAW_THRESHOLD

    def counted(self) -> dict[str, int]:
        """Regions at or above :attr:`threshold` per image id (every image, 0 included)."""
        out = dict.fromkeys(self.counts, 0)
        for region in self.regions:
            if region.score >= self.threshold:
                out[region.image_id] = out.get(region.image_id, 0) + 1
        return out


#: The threshold of uncalibrated (raw) scores: what --min-score meant before the calibration.
RAW_THRESHOLD = 0.5


def rank_regions(regions: list[Region]) -> list[Region]:
    """Worst first: score (descending), strength (descending: calibrated scores tie in
    steps, raw ones once they saturate), then image id and region number."""
    return sorted(regions, key=lambda r: (-r.score, -np.nan_to_num(r.strength, nan=-np.inf), r.image_id, r.region))


def find_regions(dataset: Dataset, rule: RegionRule | None = None, *, keep_maps=None, on_image=None,
                 prefetch: int = 4, progress=None, calibration=None, images=None, companion=None) -> RegionRun:
    """Find the error regions of every image of ``dataset``, one streamed pass over the store.

    Parameters
    ----------
    dataset : Dataset
    rule : RegionRule, optional
        Which pixels are suspect and how regions score (the defaults when None).
    keep_maps : callable, optional
        ``keep_maps(image_id) -> bool``: keep that image's region map and argmax at full
        resolution for ``on_image`` (for proposals); otherwise only the regions' sums are kept.
    on_image : callable, optional
        ``on_image(index, image_id, labels, regions, finder)`` after each image, in dataset order.
    prefetch : int
        Reads in flight ahead of the kernel.
    progress : callable, optional
        ``progress(stage, done, total)``.
    calibration : RegionCalibration, optional
        Maps each region's raw score to its calibrated ``score`` (before ``on_image``);
        it must come from the same dataset and rule.
    images : set of str, optional
        Only these image ids are read (the rest are not scanned, and count 0 regions).
    companion : callable, optional
        ``companion(image_id, labels, slice_rows)`` at each image's start: an object that is
        fed the image's blocks (``add_block(block, decoding)``) and, at its end, the image's
        raw regions (``finish(image_id, background, regions)``), so that work on the same
        blocks (the region calibration's planted copies) needs no pass of its own.
    """
    rule = rule or RegionRule()
    if images is not None:
        from dataclasses import replace

        dataset = replace(dataset, pairs=[pair for pair in dataset.pairs if pair[1] in images])
    n_classes = dataset.store.n_classes
    background = background_classes(dataset.store.classes)
    config = KernelConfig(dataset.decoding)
    found: list[Region] = []
    counts: dict[str, int] = {}
    state = {}

    def start(index, image_id, labels):
        state["labels"] = labels
        state["stats"] = ImageStats(n_classes, image_pixels=labels.size)
        keep = bool(keep_maps(image_id)) if keep_maps else False
        slice_rows = dataset.store.slice_rows(image_id)
        state["finder"] = RegionFinder(labels, n_classes, rule, keep_ids=keep, slice_rows=slice_rows)
        state["companion"] = companion(image_id, labels, slice_rows) if companion else None

    def block(index, image_id, b):
        # The scoring kernel validates the probabilities (finite, >= 0, summing to 1), and
        # gives each pixel (a cell at F = 1) in the same walk.
        cells = accumulate_and_pool(state["stats"], b.probs, b.labels, config, 1, row_offset=b.start,
                                    pixel_dtype=None)
        state["finder"].add_block(b.start, cells.label, cells.pred, cells.s, cells.p_pred)
        if state["companion"] is not None:
            state["companion"].add_block(b, dataset.decoding)

    def end(index, image_id):
        finder = state.pop("finder")
        regions = finder.finish(image_id, background)
        if state["companion"] is not None:
            state["companion"].finish(image_id, background, regions)  # the raw regions
        if calibration is not None:
            calibration.apply(regions)
        counts[image_id] = len(regions)
        found.extend(regions)
        if on_image:
            on_image(index, image_id, state["labels"], regions, finder)
        state.clear()
        if progress:
            progress("regions", index + 1, len(dataset.pairs))

    walk(dataset, block, on_image_start=start, on_image_end=end, prefetch=prefetch)
    return RegionRun(rank_regions(found), len(dataset.pairs), counts, dataset.store.classes, rule, calibration)


def check_min_score(min_score: float) -> float:
    """The score from which regions are suspect (and relabeled by :func:`propose`), which must
    lie in [0, 1]; InputError (``min_score``, ``--min-score`` on the command line) otherwise."""
    if not 0.0 <= min_score <= 1.0:  # NaN fails too
        raise option_error("min_score", f"must be in [0, 1], got {min_score}")
    return min_score


def propose(labels: np.ndarray, region_map: np.ndarray, likely_map: np.ndarray, regions: list[Region],
            min_score: float, slice_rows: int | None = None) -> np.ndarray:
    """The mask with every region scoring at least ``min_score`` relabeled to its likely class.

    A ``missing`` region grows to its likely class's own connected region in the
    prediction (argmax = likely, 8-connected), within pixels annotated as the region's
    class: the model's outline of the dropped object. No other pixel changes.

    Parameters
    ----------
    labels : np.ndarray
        The image's class indices (H, W).
    region_map, likely_map : np.ndarray
        :attr:`RegionFinder.region_map` and :attr:`RegionFinder.likely_map` of the image.
    regions : list of Region
        The image's regions, as :meth:`RegionFinder.finish` returned them.
    min_score : float
    slice_rows : int, optional
        A volume's rows per slice (the growth is then 26-connected across slices).
    """
    new = np.array(labels, copy=True)
    grown = None
    for index, region in enumerate(regions):
        if region.score < min_score:
            continue
        pixels = region_map == index
        if region.kind == "missing":
            if grown is None:
                grown = {}
            key = (region.annotated_class, region.likely_class)
            if key not in grown:
                inside = (likely_map == region.likely_class) & (labels == region.annotated_class)
                grid = np.where(inside, 0, -1).astype(np.int32)
                roots = component_roots_3d(grid, grid, slice_rows) if slice_rows else component_roots(grid, grid)
                grown[key] = roots.reshape(labels.shape)
            roots = grown[key]
            chosen = np.unique(roots[pixels])
            pixels = np.isin(roots, chosen[chosen >= 0])
        new[pixels] = region.likely_class
    return new
