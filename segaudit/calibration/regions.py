"""Region scores that scale with the model: calibrated on errors planted into the user's masks.

The raw region score (:func:`segaudit.core.regions.region_score`) grows with a region's
summed margin; what a given value means depends on the model: a weak model leaves hundreds
of confident mistakes on clean images, a strong one a few. So, during the regions pass, a
seeded sample of images (the same :class:`~segaudit.calibration.CalibrationPlan` and the
same planted kinds as ``--method auto``) also has its planted copies' regions found, from
the same prediction blocks, by the same finder. A copy's region is *planted* when at least
half of its pixels are planted pixels, and *not planted* when none are (the others are
left out). A monotone (isotonic) map from the region's evidence to the share of planted
regions, with the planted regions weighted as if :data:`PREVALENCE` of the images held an
error, gives every region of the dataset a calibrated probability of being an annotation
error. The threshold from which a region counts is the lowest at which the planted regions'
precision reaches :data:`TARGET_PRECISION` (docs/methods.md, "Calibrated region scores").

The evidence is log(strength) (:func:`segaudit.core.regions.region_strength`), minus
``pair_weight`` times the log of the share of the dataset's images that hold a region of
the same (annotated, likely) class pair: a weak model's typical mistakes repeat one class
pair over many images, a planted error need not. ``pair_weight`` is chosen from
``pair_weights`` by the planted regions' average precision; the default, :data:`PAIR_WEIGHTS`,
is 0 only (no discount: it cost systematic errors their recall, see there).

Everything is deterministic for a seed: the copies depend on the seed and the image id,
samples are merged in dataset order, and the fit is plain numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..core.dataset import Dataset
from ..core.pooling import pool
from ..errors import InputError
from ..core.regions import Region, RegionFinder, RegionRule, RegionRun, find_regions, rank_regions
from . import PREVALENCE, SUSPICIOUS_SHARE, CalibrationPlan, check_calibration_options
from .kinds import phrase, plant

#: The planted regions' precision the default threshold reaches (the lowest threshold that does).
TARGET_PRECISION = 0.5
#: A copy's region is planted when at least this share of its pixels were planted.
PLANTED_SHARE = 0.5
#: The candidate weights of the class-pair discount the fit chooses from: none. The discount
#: (DISCOUNT_WEIGHTS) was measured on both grids (docs/benchmarks.md, Table C3): on CamVid
#: it raised image precision by 0.04 at the same recall, on the synthetic grid it halved the
#: recall of swapped classes, whose pair repeats over many images as a systematic
#: annotation error does; so it is off.
PAIR_WEIGHTS = (0.0,)
#: The weights measured for the discount (benchmarks/detection/regions.py --calibrated).
DISCOUNT_WEIGHTS = (0.0, 0.5, 1.0)
#: A calibration needs at least this many planted and not-planted regions.
MIN_REGIONS = 8
#: Calibrated scores stay below 1 (a region is never certain): the top is clipped to this.
MAX_SCORE = 0.999
#: A planted kind of which less than this share has a region at or above the threshold is
#: one the regions rarely find with this model: the terminal says so.
KIND_RECALL_WARNING = 0.5
#: ... when at least this many copies of it were planted (fewer tell too little).
KIND_RECALL_MIN_COPIES = 5


# --- isotonic regression (pool adjacent violators) ---------------------------------


def isotonic(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weighted least-squares non-decreasing fit of ``y`` on ``x`` (pool adjacent violators).

    Returns ``(starts, values)``: per pooled block, its smallest x and its fitted value (the
    block's weighted mean of ``y``), both increasing; :func:`isotonic_predict` is the step
    function they define. Equal x values always fall in one block.
    """
    order = np.lexsort((y, x))
    x, y, weight = x[order], y[order], weight[order]
    if not x.size:
        return np.zeros(0), np.zeros(0)
    # Equal x first: one point each (their weighted sums), so ties are never split.
    firsts = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
    w = np.add.reduceat(weight, firsts)
    wy = np.add.reduceat(weight * y, firsts)
    blocks: list[list[float]] = []  # [weight, weighted y, smallest x]
    for a, b, start in zip(w, wy, x[firsts]):
        blocks.append([a, b, start])
        # Merge while the last block's mean is at or below the one before it (a violation, or
        # a tie that would leave two blocks of one value).
        while len(blocks) > 1 and blocks[-1][1] * blocks[-2][0] <= blocks[-2][1] * blocks[-1][0]:
            a2, b2, _ = blocks.pop()
            blocks[-1][0] += a2
            blocks[-1][1] += b2
    kept = [block for block in blocks if block[0] > 0]
    return (np.array([block[2] for block in kept], np.float64),
            np.array([block[1] / block[0] for block in kept], np.float64))


def isotonic_predict(starts: np.ndarray, values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The fitted step function at ``x``: the value of the last block starting at or below
    it (the first block's below every start)."""
    if not starts.size:
        return np.full(np.shape(x), np.nan)
    index = np.searchsorted(starts, np.asarray(x, np.float64), side="right") - 1
    return values[np.clip(index, 0, values.size - 1)]


# --- what one image's copies contribute ------------------------------------------


@dataclass
class RegionSample:
    """One region of a planted copy: its evidence and whether it is the planted error."""

    log_strength: float
    pair: tuple[int, int]  # (annotated, likely)
    planted: bool
    copy: int  # the copy's number within its image
    weight: float  # 1 / copies of its image: each sampled image counts once


@dataclass
class ImageRegionSamples:
    """What the calibration keeps of one image (small and picklable)."""

    image_id: str
    pairs: frozenset[tuple[int, int]]  # the real image's region class pairs
    samples: list[RegionSample] = field(default_factory=list)
    copies: int = 0
    kinds: tuple[str, ...] = ()
    worst: float = -math.inf  # the real image's largest log(strength): suspicious images are set aside


def _log_strength(region: Region) -> float:
    return math.log(max(region.strength, 1e-300))


class CopyRegions:
    """The regions of one image's planted copies, fed the image's blocks in row order."""

    def __init__(self, plan: CalibrationPlan, image_id: str, labels: np.ndarray, n_classes: int,
                 ignore: tuple[int, ...], rule: RegionRule, slice_rows: int | None):
        ignored = (labels < 0) | (labels >= n_classes)
        if ignore:
            ignored |= np.isin(labels, ignore)
        self.copies = []
        self.samples: ImageRegionSamples | None = None  # what finish() found
        for kind in plan.kinds_for(image_id):
            copy = plant(kind, labels, ignored, n_classes, plan.seed, image_id, plan.unlabeled)
            if copy is not None:
                changed = copy != labels
                self.copies.append((kind.name, copy, RegionFinder(copy, n_classes, rule, slice_rows=slice_rows,
                                                                  marked=changed)))

    def add_block(self, block, decoding) -> None:
        for _, copy, finder in self.copies:
            cells = pool(block.probs, copy[block.start:block.stop], decoding, 1, pixel_dtype=None)
            finder.add_block(block.start, cells.label, cells.pred, cells.s, cells.p_pred)

    def finish(self, image_id: str, background, real: list[Region]) -> ImageRegionSamples:
        out = ImageRegionSamples(image_id, frozenset((r.annotated_class, r.likely_class) for r in real),
                                 copies=len(self.copies), kinds=tuple(k for k, _, _ in self.copies),
                                 worst=max((_log_strength(r) for r in real), default=-math.inf))
        weight = 1.0 / len(self.copies) if self.copies else 0.0
        for number, (_, _, finder) in enumerate(self.copies):
            regions = finder.finish(image_id, background)
            for region, marked in zip(regions, finder.marked_areas):
                share = marked / region.area
                if 0 < share < PLANTED_SHARE:
                    continue  # partly planted: neither an error found nor a clean region
                out.samples.append(RegionSample(_log_strength(region), (region.annotated_class, region.likely_class),
                                                share >= PLANTED_SHARE, number, weight))
        self.copies = []
        self.samples = out
        return out


def image_region_samples(dataset: Dataset, rule: RegionRule, plan: CalibrationPlan, *, on_regions=None,
                         prefetch: int = 4, progress=None) -> tuple[list[Region], dict[str, int],
                                                                    list[ImageRegionSamples]]:
    """One pass: every image's raw regions, and what its planted copies' regions say.

    The pass is :func:`~segaudit.core.regions.find_regions`'s, with each image's
    :class:`CopyRegions` fed the same blocks. ``on_regions(index, image_id, regions)`` after
    each image. Returns the regions (raw scores), the regions per image and the samples per
    image, in dataset order.
    """
    n_classes = dataset.store.n_classes
    made: list[CopyRegions] = []

    def copies(image_id, labels, slice_rows):
        made.append(CopyRegions(plan, image_id, labels, n_classes, dataset.ignore, rule, slice_rows))
        return made[-1]

    on_image = (lambda index, image_id, labels, regions, finder: on_regions(index, image_id, regions)) \
        if on_regions else None
    run = find_regions(dataset, rule, on_image=on_image, prefetch=prefetch, progress=progress, companion=copies)
    return run.regions, run.counts, [c.samples for c in made]


# --- the fit ----------------------------------------------------------------------


@dataclass(frozen=True)
class RegionCalibration:
    """The map from a region's evidence to its calibrated score, and the chosen threshold.

    ``apply`` sets each region's ``score`` (its ``raw_score`` keeps the rule's score).
    """

    seed: int
    calibrated: bool  # False: too few planted regions; scores stay raw, threshold RAW_THRESHOLD
    threshold: float
    precision: float | None  # of the planted regions at the threshold (prevalence-weighted)
    recall: float | None  # planted copies with a region at or above the threshold
    pair_weight: float
    images: int  # images the copies were planted into
    copies: int
    planted_regions: int
    other_regions: int
    starts: tuple[float, ...] = ()
    values: tuple[float, ...] = ()
    pair_share: dict = field(default_factory=dict)  # (annotated, likely) -> share of images
    n_images: int = 0
    set_aside: int = 0  # images left out of the fit as suspicious
    #: Per planted kind: (copies with a planted region at or above the threshold, copies).
    kind_recall: dict = field(default_factory=dict)

    def evidence(self, log_strength: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
        """log(strength) - pair_weight * log(share of images with a region of the pair)."""
        floor = 1.0 / max(1, self.n_images)
        share = np.array([self.pair_share.get(tuple(p), 0.0) for p in pairs], np.float64).reshape(-1)
        return np.asarray(log_strength, np.float64) - self.pair_weight * np.log(np.maximum(share, floor))

    def probability(self, evidence: np.ndarray) -> np.ndarray:
        """The calibrated score of each evidence value, in [0, MAX_SCORE]."""
        fitted = isotonic_predict(np.array(self.starts), np.array(self.values), np.asarray(evidence, np.float64))
        return np.clip(fitted, 0.0, MAX_SCORE)

    def apply(self, regions: list[Region]) -> None:
        """Set each region's calibrated ``score`` in place (no-op when not calibrated)."""
        if not self.calibrated or not regions:
            return
        evidence = self.evidence(np.array([_log_strength(r) for r in regions]),
                                 [(r.annotated_class, r.likely_class) for r in regions])
        for region, p in zip(regions, self.probability(evidence)):
            region.score = float(p)

    def describe(self) -> str:
        """One line for the terminal: the threshold and what it achieves on planted errors."""
        if not self.calibrated:
            return (f"region scores not calibrated (only {self.planted_regions} planted and {self.other_regions} "
                    f"other regions on the copies); raw scores, threshold {self.threshold:g}")
        if self.precision is None:
            return (f"region scores calibrated on {self.copies} planted copies in {self.images} images: no threshold "
                    f"reaches planted precision {TARGET_PRECISION:g}, so no region counts (threshold "
                    f"{self.threshold:g})")
        return (f"region scores calibrated on {self.copies} planted copies in {self.images} images: threshold "
                f"{self.threshold:.3f} (planted precision {self.precision:.2f}, recall {self.recall:.2f}"
                + (f", class-pair discount {self.pair_weight:g}" if self.pair_weight else "") + ")")

    def hard_kinds(self) -> list[tuple[str, int, int]]:
        """The planted kinds the regions rarely find at the threshold: (kind, found, copies),
        those found in less than KIND_RECALL_WARNING of at least KIND_RECALL_MIN_COPIES copies."""
        return [(kind, found, copies) for kind, (found, copies) in sorted(self.kind_recall.items())
                if copies >= KIND_RECALL_MIN_COPIES and found < KIND_RECALL_WARNING * copies]

    def hard_sentences(self) -> list[str]:
        """One plain sentence naming the kinds of :meth:`hard_kinds` (none when there are none)."""
        hard = self.hard_kinds()
        if not hard:
            return []
        listed = ", ".join(f"{phrase(kind)} ({found} of {copies})" for kind, found, copies in hard)
        return [f"with this model, few planted errors of these kinds have a region at or above the threshold "
                f"{self.threshold:.3f}, so regions and proposals will rarely show them: {listed}; look for them "
                f"in the image ranking"]

    def to_dict(self) -> dict:
        """The run record's view: the outcome, and the fit (a few dozen numbers) so that
        ``overlay`` and ``export`` can score regions as the run did."""
        return {"seed": self.seed, "calibrated": self.calibrated, "threshold": self.threshold,
                "precision": self.precision, "recall": self.recall, "pair_weight": self.pair_weight,
                "images": self.images, "set_aside": self.set_aside, "copies": self.copies,
                "planted_regions": self.planted_regions, "other_regions": self.other_regions,
                "n_images": self.n_images, "starts": list(self.starts), "values": list(self.values),
                "kind_recall": {kind: list(pair) for kind, pair in sorted(self.kind_recall.items())},
                "pairs": [[a, b, share] for (a, b), share in self.pair_share.items()]}

    @classmethod
    def from_dict(cls, data: dict, source: str = "run record") -> RegionCalibration:
        """The calibration :meth:`to_dict` wrote; InputError naming ``source`` when malformed."""
        def fail(name, expected):
            raise InputError(f"{source}: malformed run record: 'regions.calibration.{name}' must be {expected}")

        def number(name, nullable=False, low=-math.inf, high=math.inf):
            value = data.get(name)
            if value is None and nullable:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                fail(name, "a number" + (f" in [{low:g}, {high:g}]" if math.isfinite(low) else ""))
            return value

        def whole(name):
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                fail(name, "a whole number >= 0")
            return value

        if not isinstance(data.get("calibrated"), bool):
            fail("calibrated", "true or false")
        starts, values = data.get("starts"), data.get("values")
        for name, seq in (("starts", starts), ("values", values)):
            if not isinstance(seq, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                    for v in seq):
                fail(name, "a list of numbers")
        if len(starts) != len(values) or starts != sorted(starts):
            fail("starts", "increasing, as many as 'values'")
        kind_recall = data.get("kind_recall", {})  # absent from records written before it existed
        if not isinstance(kind_recall, dict) or not all(
                isinstance(k, str) and isinstance(v, list) and len(v) == 2
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in v) and v[0] <= v[1]
                for k, v in kind_recall.items()):
            fail("kind_recall", "a mapping of kind to [found, copies]")
        pairs = data.get("pairs")
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in p[:2])
                and isinstance(p[2], (int, float)) and not isinstance(p[2], bool) for p in pairs):
            fail("pairs", "a list of [annotated, likely, share]")
        return cls(seed=whole("seed"), calibrated=data["calibrated"], threshold=number("threshold", low=0.0, high=1.0),
                   precision=number("precision", nullable=True), recall=number("recall", nullable=True),
                   pair_weight=number("pair_weight", low=0.0), images=whole("images"), copies=whole("copies"),
                   planted_regions=whole("planted_regions"), other_regions=whole("other_regions"),
                   starts=tuple(float(v) for v in starts), values=tuple(float(v) for v in values),
                   pair_share={(int(a), int(b)): float(share) for a, b, share in pairs}, n_images=whole("n_images"),
                   set_aside=whole("set_aside"),
                   kind_recall={k: (int(v[0]), int(v[1])) for k, v in sorted(kind_recall.items())})


def pair_shares(samples: list[ImageRegionSamples]) -> dict[tuple[int, int], float]:
    """Per (annotated, likely) class pair, the share of the images with a region of it."""
    n = max(1, len(samples))
    counts: dict[tuple[int, int], int] = {}
    for image in samples:
        for pair in image.pairs:
            counts[pair] = counts.get(pair, 0) + 1
    return {pair: c / n for pair, c in sorted(counts.items())}


def _weighted_ap(evidence: np.ndarray, planted: np.ndarray, weight: np.ndarray) -> float:
    """Average precision of ranking planted regions first by descending evidence (weighted)."""
    order = np.argsort(-evidence, kind="stable")
    w, y = weight[order], planted[order]
    tp = np.cumsum(w * y)
    total = np.cumsum(w)
    if tp[-1] <= 0:
        return math.nan
    return float(np.sum((w * y) * tp / total) / tp[-1])


def set_aside(samples: list[ImageRegionSamples]) -> np.ndarray:
    """The images left out of the fit: the SUSPICIOUS_SHARE whose real regions are strongest
    (they may hold real errors, which would count as false alarms on their copies)."""
    n = len(samples)
    worst = np.array([image.worst for image in samples], np.float64)
    order = np.lexsort((np.arange(n), -worst))
    out = np.zeros(n, bool)
    out[order[: int(math.floor(SUSPICIOUS_SHARE * n))]] = True
    return out


#: A planted copy's key is image index * COPY_KEY_BASE + copy number (an image has one copy per
#: planted kind, far fewer than this).
COPY_KEY_BASE = 64


def _copy_key(index: int, copy: int) -> int:
    """One number per planted copy of the dataset: the image's index and the copy's number in it."""
    return index * COPY_KEY_BASE + copy


def _flat(samples: list[ImageRegionSamples], skip: np.ndarray | None = None):
    log_strength, pairs, planted, weight, copy_key = [], [], [], [], []
    for index, image in enumerate(samples):
        if skip is not None and skip[index]:
            continue
        for s in image.samples:
            log_strength.append(s.log_strength)
            pairs.append(s.pair)
            planted.append(s.planted)
            weight.append(s.weight * (PREVALENCE if s.planted else 1.0))
            copy_key.append(_copy_key(index, s.copy))
    return (np.array(log_strength, np.float64), pairs, np.array(planted, bool), np.array(weight, np.float64),
            np.array(copy_key, np.int64))


def _every_copy(samples: list[ImageRegionSamples], skip: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Every planted copy of the images kept (those without any region too): keys and kinds."""
    keys, kinds = [], []
    for index, image in enumerate(samples):
        if not skip[index]:
            keys += [_copy_key(index, number) for number in range(image.copies)]
            kinds += list(image.kinds)
    return np.array(keys, np.int64), kinds


def kind_recall(scores: np.ndarray, planted: np.ndarray, copy_key: np.ndarray, every_copy: np.ndarray,
                kinds: list[str], threshold: float) -> dict[str, tuple[int, int]]:
    """Per kind: (copies with a planted region scoring at least ``threshold``, copies)."""
    found = set(copy_key[planted & (scores >= threshold)].tolist())
    out: dict[str, list[int]] = {}
    for key, kind in zip(every_copy.tolist(), kinds):
        row = out.setdefault(kind, [0, 0])
        row[0] += key in found
        row[1] += 1
    return {kind: (row[0], row[1]) for kind, row in sorted(out.items())}


def fit_region_calibration(samples: list[ImageRegionSamples], seed: int,
                           pair_weights: tuple[float, ...] = PAIR_WEIGHTS) -> RegionCalibration:
    """Fit the calibrated map and choose the threshold (the images in dataset order).

    Positives (planted regions) weigh ``PREVALENCE / copies`` of their image, negatives
    ``1 / copies``: the fit's probabilities are those of a dataset where a fifth of the
    images hold an error (as ``--method auto``'s average precision assumes).
    """
    from ..core.regions import RAW_THRESHOLD

    shares = pair_shares(samples)
    skip = set_aside(samples)
    log_strength, pairs, planted, weight, copy_key = _flat(samples, skip)
    images = sum(1 for s, out in zip(samples, skip) if s.copies and not out)
    copies = sum(s.copies for s, out in zip(samples, skip) if not out)
    n_planted, n_other = int(planted.sum()), int((~planted).sum())
    base = dict(seed=seed, images=images, copies=copies, planted_regions=n_planted, other_regions=n_other,
                pair_share=shares, n_images=len(samples), set_aside=int(skip.sum()))
    if n_planted < MIN_REGIONS or n_other < MIN_REGIONS:
        return RegionCalibration(calibrated=False, threshold=RAW_THRESHOLD, precision=None, recall=None,
                                 pair_weight=0.0, **base)
    every_copy, kinds = _every_copy(samples, skip)
    best = None
    for pair_weight in pair_weights:
        probe = RegionCalibration(calibrated=True, threshold=0.0, precision=None, recall=None,
                                  pair_weight=pair_weight, **base)
        evidence = probe.evidence(log_strength, pairs)
        ap = _weighted_ap(evidence, planted, weight)
        if best is None or ap > best[0] + 1e-12:  # ties keep the smaller weight
            best = (ap, pair_weight, evidence)
    _, pair_weight, evidence = best
    starts, values = isotonic(evidence, planted.astype(np.float64), weight)
    fitted = RegionCalibration(calibrated=True, threshold=0.0, precision=None, recall=None, pair_weight=pair_weight,
                               starts=tuple(float(c) for c in starts), values=tuple(float(v) for v in values),
                               **base)
    scores = fitted.probability(evidence)
    threshold, precision, recall = choose_threshold(scores, planted, weight, copy_key, every_copy)
    return RegionCalibration(calibrated=True, threshold=threshold, precision=precision, recall=recall,
                             pair_weight=pair_weight, starts=fitted.starts, values=fitted.values,
                             kind_recall=kind_recall(scores, planted, copy_key, every_copy, kinds, threshold), **base)


def choose_threshold(scores: np.ndarray, planted: np.ndarray, weight: np.ndarray, copy_key: np.ndarray,
                     every_copy: np.ndarray | None = None) -> tuple[float, float | None, float | None]:
    """The lowest score at which "the image has a region at or above it" finds planted
    errors with precision TARGET_PRECISION, at PREVALENCE; that precision and recall.

    Per planted copy: found when one of its planted regions reaches the score (recall R), a
    false alarm when one of its other regions does (F, the rate on clean-looking images).
    Precision is PREVALENCE * R / (PREVALENCE * R + (1 - PREVALENCE) * F): the share of the
    images proposed that hold an error when a fifth of them do. None reaching it:
    threshold 1.0 (no region counts), precision and recall None. ``every_copy``: the keys of
    every copy, those without any region too (a planted error no region finds is missed).
    """
    copies = np.unique(copy_key if every_copy is None else np.concatenate([copy_key, every_copy]))
    inverse = np.searchsorted(copies, copy_key)
    best_planted = np.full(copies.size, -np.inf)
    best_other = np.full(copies.size, -np.inf)
    np.maximum.at(best_planted, inverse[planted], scores[planted])
    np.maximum.at(best_other, inverse[~planted], scores[~planted])
    # Each image counts once, however many copies it has.
    image = copies // COPY_KEY_BASE
    _, image_index, per_image = np.unique(image, return_inverse=True, return_counts=True)
    copy_weight = 1.0 / per_image[image_index]
    total = copy_weight.sum()
    for t in np.unique(best_planted[np.isfinite(best_planted)]):  # ascending: the first is the lowest
        recall = float(copy_weight[best_planted >= t].sum() / total)
        alarms = float(copy_weight[best_other >= t].sum() / total)
        found = PREVALENCE * recall
        precision = found / (found + (1 - PREVALENCE) * alarms)
        if precision >= TARGET_PRECISION:
            return float(t), precision, recall
    return 1.0, None, None


def reliability(calibration: RegionCalibration, samples: list[ImageRegionSamples],
                bins: int = 10) -> tuple[list[tuple[float, float, float, float]], float]:
    """The reliability diagram of ``calibration`` on (held-out) samples: per bin of calibrated
    score, (mean score, weighted share planted, weight, regions), and the expected
    calibration error (weighted by the bins' weight). The images the fit sets aside are
    left out here too."""
    log_strength, pairs, planted, weight, _ = _flat(samples, set_aside(samples))
    scores = calibration.probability(calibration.evidence(log_strength, pairs))
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, bins - 1)
    rows, ece, total = [], 0.0, weight.sum()
    for b in range(bins):
        inside = which == b
        w = weight[inside].sum()
        if w <= 0:
            continue
        mean = float(np.sum(weight[inside] * scores[inside]) / w)
        share = float(np.sum(weight[inside] * planted[inside]) / w)
        rows.append((mean, share, float(w), int(inside.sum())))
        ece += w / total * abs(mean - share)
    return rows, float(ece)


def calibrated_regions(dataset: Dataset, rule: RegionRule | None = None, *, seed: int = 0,
                       unlabeled: int | None = None, prefetch: int = 4, progress=None) -> tuple[RegionRun, list]:
    """Every region of ``dataset`` with calibrated scores, ranked, and the samples it was fitted on.

    One streamed pass (:func:`image_region_samples`): the real regions keep only their sums,
    as :func:`segaudit.core.regions.find_regions` does, and each sampled image's copies
    add their regions' evidence. InputError for a bad ``seed`` or ``unlabeled``.
    """
    check_calibration_options(seed, unlabeled, dataset)
    rule = rule or RegionRule()
    plan = CalibrationPlan(seed, len(dataset.pairs), unlabeled=unlabeled)
    found, counts, samples = image_region_samples(dataset, rule, plan, prefetch=prefetch, progress=progress)
    calibration = fit_region_calibration(samples, seed)
    calibration.apply(found)
    run = RegionRun(rank_regions(found), len(dataset.pairs), counts, dataset.store.classes, rule, calibration)
    return run, samples


def calibrated_regions_part(dataset: Dataset, first: int, cache, prefetch: int, done, rule: RegionRule,
                            seed: int, unlabeled: int | None,
                            n_images: int) -> tuple[list[Region], list[ImageRegionSamples]]:
    """:func:`image_region_samples` over one partition (a
    :meth:`~segaudit.methods.base.Partitions.map` job, on a Dask worker say): its raw regions
    and its images' samples, in the partition's order (the client fits on every partition's,
    in order). ``n_images``: the whole dataset's, which sets the plan's chance per image."""
    plan = CalibrationPlan(seed, n_images, unlabeled=unlabeled)
    found, _, samples = image_region_samples(dataset, rule, plan, prefetch=prefetch,
                                             on_regions=lambda index, image_id, regions: done(first + index))
    return found, samples


__all__ = ["DISCOUNT_WEIGHTS", "KIND_RECALL_WARNING", "MAX_SCORE", "PAIR_WEIGHTS", "RegionCalibration", "TARGET_PRECISION", "calibrated_regions",
           "check_calibration_options",
           "choose_threshold", "fit_region_calibration", "image_region_samples", "isotonic", "isotonic_predict", "kind_recall",
           "reliability"]
