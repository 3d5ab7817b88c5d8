"""The ranking calibrates itself: plant errors into the user's own masks, measure every
candidate score on them, rank with the one that finds them (``--method auto``).

The predictions are out of fold, so a planted copy of image i's mask scored against image
i's prediction is exactly what a mislabeled image of *this* dataset looks like to *this*
model. During the one pass over the store, a seeded sample of images also scores planted
copies of its masks (:mod:`.kinds`: a missed object, an object of the wrong class, a
wrong outline, a biased boundary, a spurious blob) from the same prediction blocks. After
the pass, the images that look suspicious to a consensus of the scores are set aside
(they may hold real errors); each candidate's average precision at separating the
planted copies of the others from their real masks is measured per kind; the candidate
with the best mean over the kinds ranks the dataset. See docs/methods.md.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..results import CalibrationRecord
from .candidates import CANDIDATES, CLC, clc_delta, image_values, temperatures
from ..methods import AUTO  # the name of the calibrated ranking, defined with the other methods' names
from .kinds import PLANTED_KINDS, Kind, plant_kinds

#: Planted copies aimed at per kind: each image gets a copy of a kind with probability
#: min(1, COPIES_PER_KIND / images), and at most about COPIES_PER_IMAGE copies per image
#: on average once the dataset has COPY_FLOOR / COPIES_PER_IMAGE images (small datasets
#: are cheap; on larger ones the copies stay a bounded share of the work).
COPIES_PER_KIND = 48
COPIES_PER_IMAGE = 2
COPY_FLOOR = 128
#: Share of the images set aside as suspicious by the consensus before calibrating.
SUSPICIOUS_SHARE = 0.15
#: The average precision is computed as if this share of the images were planted.
PREVALENCE = 0.2
#: Below this average precision, a kind is reported as hard to detect with this model.
HARD_AUPRC = 0.3
#: Candidates whose ranks the consensus averages (diverse ones: a cold, a warm and the
#: size-scaled softmin, the mean and the counts).
CONSENSUS = ("rsoftmin", "softmin t=0.05", "softmin t=0.5", "cil", "ccp", "clc")
#: A calibration needs at least this many clean images and copies of some kind.
MIN_IMAGES = 4
#: The default's candidate: auto ranks by it unless the planted copies say surely that
#: another candidate finds them better.
PRIOR = "rsoftmin"
#: "Surely": the best candidate beats the prior's mean log-odds in at least this share of
#: BOOTSTRAP resamples of the clean images and of each kind's copies.
CONFIDENCE = 0.9
BOOTSTRAP = 200
#: Mean log-odds gaps this small are rounding, not a win.
TIE = 1e-9


@dataclass(frozen=True)
class CalibrationPlan:
    """Which images get which planted copies: the same for a seed and an image id on any
    thread or machine, so the run is byte-identical however it is split."""

    seed: int
    n_images: int
    per_kind: int = COPIES_PER_KIND
    unlabeled: int | None = None  # the scored unlabeled class a missed object becomes (None: its surroundings)

    @property
    def chance(self) -> float:
        """The probability that an image gets a copy of a given kind."""
        n = max(1, self.n_images)
        budget = max(COPIES_PER_IMAGE * n, COPY_FLOOR) / len(PLANTED_KINDS)
        return min(1.0, self.per_kind / n, budget / n)

    def kinds_for(self, image_id: str) -> tuple[Kind, ...]:
        chance = self.chance
        chosen = []
        for kind in PLANTED_KINDS.values():
            draw = zlib.crc32(f"{self.seed}/{kind.order}/{image_id}".encode("utf-8")) / 2**32
            if draw < chance:
                chosen.append(kind)
        return tuple(chosen)


def check_calibration_options(seed, unlabeled=None, dataset=None) -> None:
    """InputError for a seed that is not a whole number >= 0, or an ``unlabeled`` class that
    is not a scored class of ``dataset`` (a core Dataset; named as the command line names
    them). Shared by the image ranking's and the regions' calibrations."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"--calibration-seed must be a whole number >= 0, got {seed}")
    if unlabeled is not None and dataset is not None:
        n_classes = dataset.store.n_classes
        if not isinstance(unlabeled, int) or isinstance(unlabeled, bool) or not 0 <= unlabeled < n_classes:
            raise InputError(f"--unlabeled must be a class index from 0 to {n_classes - 1}, got {unlabeled}")
        if bool(dataset.decoding.ignore[unlabeled]):
            raise InputError(f"--unlabeled {unlabeled} is an ignored value: a missed object annotated as it would "
                             "not be scored; leave --unlabeled out (missed objects then keep their surroundings)")


@dataclass
class PlantedCopy:
    """One planted copy's candidate values (clc as its change against the real mask)."""

    kind: str
    values: np.ndarray
    clc_s: np.ndarray
    clc_weight: np.ndarray


@dataclass
class ImageCalibration:
    """What the calibration keeps of one image: small and picklable (it rides on the
    engine's ImagePiece, from a thread or a Dask worker)."""

    values: np.ndarray  # the real mask's candidate values (clc filled in after the run)
    copies: list[PlantedCopy] = field(default_factory=list)


def planted_copies(plan: CalibrationPlan, image_id: str, labels: np.ndarray, ignore: np.ndarray,
                   n_classes: int) -> list[tuple[str, np.ndarray]]:
    """The (kind, labels) of the image's planted copies (kinds that cannot change it pass)."""
    kinds = plan.kinds_for(image_id)
    if not kinds:
        return []
    ignored = labels >= n_classes
    ignored |= ignore[np.minimum(labels, n_classes - 1)]
    copies = plant_kinds(kinds, labels, ignored, n_classes, plan.seed, image_id, plan.unlabeled)
    return [(kind.name, copy) for kind, copy in zip(kinds, copies) if copy is not None]


def average_precision(negatives: np.ndarray, positives: np.ndarray, prevalence: float = PREVALENCE) -> float:
    """Average precision of ranking ``positives`` before ``negatives``, lowest score first,
    with the positives weighted to make up ``prevalence`` of the whole; ties are ranked
    together (precision is taken at each distinct score). NaN scores rank last."""
    positives = positives[~np.isnan(positives)] if positives.size else positives
    if not positives.size or not negatives.size:
        return math.nan
    negatives = np.where(np.isnan(negatives), np.inf, negatives)
    weight = prevalence / (1 - prevalence) * negatives.size / positives.size
    scores = np.concatenate([positives, negatives])
    weights = np.concatenate([np.full(positives.size, weight), np.zeros(negatives.size)])
    false = np.concatenate([np.zeros(positives.size), np.ones(negatives.size)])
    order = np.argsort(scores, kind="stable")
    scores, weights, false = scores[order], weights[order], false[order]
    last = np.r_[scores[1:] != scores[:-1], True]  # the last of each run of ties
    tp = np.cumsum(weights)[last]
    fp = np.cumsum(false)[last]
    recall = tp / tp[-1]
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


#: AUPRC is clipped to [LOG_ODDS_CLIP, 1 - LOG_ODDS_CLIP] before its log-odds are taken.
LOG_ODDS_CLIP = 0.001


def log_odds(auprc: float) -> float:
    """log(AUPRC / (1 - AUPRC)), clipped: the scale the choice averages kinds on."""
    value = min(max(auprc, LOG_ODDS_CLIP), 1 - LOG_ODDS_CLIP)
    return math.log(value / (1 - value))


class _ResampledAP:
    """:func:`average_precision` of one candidate for any multiplicities of the clean images
    and of each kind's copies: a bootstrap resample is a vector of counts, so everything is
    sorted once, and a resample costs one cumulative sum over the clean images (shared by
    the kinds) and a few sums over the copies."""

    def __init__(self, negatives: np.ndarray, positives: list[np.ndarray]):
        negatives = np.where(np.isnan(negatives), np.inf, negatives)
        self.negative_order = np.argsort(negatives, kind="stable")
        ordered = negatives[self.negative_order]
        self.kinds = []
        for values in positives:
            keep = np.flatnonzero(~np.isnan(values))
            levels, group = np.unique(values[keep], return_inverse=True)
            # A level's precision counts every clean image scored at or below it (ties together).
            self.kinds.append((keep, group, levels.size, np.searchsorted(ordered, levels, side="right")))

    def __call__(self, negative_counts: np.ndarray, positive_counts: list[np.ndarray]) -> list[float]:
        below = np.r_[0.0, np.cumsum(negative_counts[self.negative_order])]
        total_negative = below[-1]
        out = []
        for (keep, group, n_levels, at), counts in zip(self.kinds, positive_counts):
            per_level = np.bincount(group, weights=counts[keep], minlength=n_levels)
            total = per_level.sum()
            if not total or not total_negative:
                out.append(math.nan)
                continue
            tp = np.cumsum(per_level) * (PREVALENCE / (1 - PREVALENCE) * total_negative / total)
            precision = tp / np.maximum(tp + below[at], 1e-300)
            out.append(float(np.sum(per_level / total * precision)))
        return out


def _bootstrap_wins(negatives: np.ndarray, positives: list[np.ndarray], best: int, prior: int, seed: int) -> float:
    """The share of bootstrap resamples (of the clean images, and of each kind's copies) in
    which candidate ``best``'s mean log-odds of AUPRC over the kinds beats ``prior``'s.
    Seeded by the calibration's seed: the same for any threads or partitions."""
    rng = np.random.default_rng([seed, 26])
    of_best = _ResampledAP(negatives[:, best], [p[:, best] for p in positives])
    of_prior = _ResampledAP(negatives[:, prior], [p[:, prior] for p in positives])
    wins = 0
    for _ in range(BOOTSTRAP):
        negative_counts = np.bincount(rng.integers(0, len(negatives), len(negatives)), minlength=len(negatives))
        counts = [np.bincount(rng.integers(0, len(p), len(p)), minlength=len(p)) for p in positives]
        gap = [log_odds(a) - log_odds(b) for a, b in zip(of_best(negative_counts, counts), of_prior(negative_counts, counts))
               if not (math.isnan(a) or math.isnan(b))]
        wins += bool(gap) and float(np.mean(gap)) > TIE  # equal AUPRCs, summed in another order, are a tie
    return wins / BOOTSTRAP


def _ecdf(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where ``values`` fall in ``reference`` (share of it at or below), NaN kept."""
    finite = np.sort(reference[~np.isnan(reference)])
    if not finite.size:
        return np.full(values.shape, np.nan)
    out = np.searchsorted(finite, values, side="right") / finite.size
    return np.where(np.isnan(values), np.nan, out)


@dataclass
class Calibration:
    """The outcome: the table of every candidate's AUPRC per kind, the choice, and the
    chosen candidate's value for every image of the run (in dataset order)."""

    record: CalibrationRecord
    scores: np.ndarray


def calibrate(plan: CalibrationPlan, pieces: list[ImageCalibration], flagged: list[int | None],
              pixels: list[int], clc_cut: float) -> Calibration:
    """Choose the ranking from the planted copies (the images in dataset order).

    Parameters
    ----------
    plan : CalibrationPlan
    pieces : list of ImageCalibration
        Every image's, in dataset order.
    flagged, pixels : lists of int
        Every image's clc-flagged and scored pixels.
    clc_cut : float
        s of clc's dataset-wide cut: cells with s below it are flagged (-inf: none).
    """
    n = len(pieces)
    real = np.array([p.values for p in pieces]) if n else np.zeros((0, len(CANDIDATES)))
    for i, (f, px) in enumerate(zip(flagged, pixels)):
        real[i, CLC] = 1.0 - f / px if px and f is not None else math.nan
    scored = np.array([px > 0 for px in pixels], bool)
    # The consensus: each image's mean place among the real images by diverse scores.
    ranks = np.array([_ecdf(real[:, CANDIDATES.index(c)], real[:, CANDIDATES.index(c)]) for c in CONSENSUS])
    known = (~np.isnan(ranks)).sum(axis=0)
    places = np.where(known > 0, np.nansum(ranks, axis=0) / np.maximum(known, 1), np.inf) if n else np.zeros(0)
    order = np.lexsort((np.arange(n), places))
    suspicious = np.zeros(n, bool)
    suspicious[order[: int(math.floor(SUSPICIOUS_SHARE * scored.sum()))]] = True
    clean = scored & ~suspicious

    kinds = list(PLANTED_KINDS)
    copies: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
    for i, piece in enumerate(pieces):
        if not clean[i]:
            continue
        for copy in piece.copies:
            values = copy.values.copy()
            below = copy.clc_s < clc_cut
            changed = int(copy.clc_weight[below].sum())
            values[CLC] = 1.0 - ((flagged[i] or 0) + changed) / pixels[i]
            copies[copy.kind].append(values)
    positives = {k: np.array(v).reshape(-1, len(CANDIDATES)) for k, v in copies.items()}
    negatives = real[clean]

    names = list(CANDIDATES)
    table = [[average_precision(negatives[:, c], positives[k][:, c]) for k in kinds] for c in range(len(CANDIDATES))]
    usable = [j for j, k in enumerate(kinds) if positives[k].shape[0] >= MIN_IMAGES]
    enough = negatives.shape[0] >= MIN_IMAGES and bool(usable)

    def mean_of(row):
        values = [row[j] for j in usable if not math.isnan(row[j])]
        return float(np.mean(values)) if values else math.nan

    def log_odds_of(row):
        values = [log_odds(row[j]) for j in usable if not math.isnan(row[j])]
        return float(np.mean(values)) if values else math.nan

    means = [mean_of(row) for row in table]
    odds = [log_odds_of(row) for row in table]
    prior = names.index(PRIOR)
    best, confidence = prior, None
    if enough:
        best = max(range(len(names)), key=lambda c: (np.nan_to_num(odds[c], nan=-math.inf), -c))
        if best != prior:
            confidence = _bootstrap_wins(negatives, [positives[kinds[j]] for j in usable], best, prior, plan.seed)
    chosen = best if confidence is None or confidence >= CONFIDENCE else prior
    scores = real[:, chosen]
    hard = [kinds[j] for j in usable if not math.isnan(table[chosen][j]) and table[chosen][j] < HARD_AUPRC]
    record = CalibrationRecord(
        seed=plan.seed, chosen=names[chosen], calibrated=enough, images=int(clean.sum()),
        set_aside=int((scored & suspicious).sum()), kinds=tuple(kinds),
        copies=tuple(int(positives[k].shape[0]) for k in kinds), candidates=tuple(names),
        auprc=tuple(tuple(None if math.isnan(v) else round(float(v), 6) for v in row) for row in table),
        mean_auprc=tuple(None if math.isnan(v) else round(float(v), 6) for v in means),
        mean_log_odds=tuple(None if math.isnan(v) else round(float(v), 6) for v in odds), hard_kinds=tuple(hard),
        unlabeled=plan.unlabeled, best=names[best],
        confidence=None if confidence is None else round(float(confidence), 6),
    )
    return Calibration(record, np.asarray(scores, dtype=np.float64))


__all__ = ["AUTO", "CANDIDATES", "Calibration", "CalibrationPlan", "check_calibration_options", "ImageCalibration", "PLANTED_KINDS", "PlantedCopy",
           "average_precision", "calibrate", "clc_delta", "image_values", "log_odds", "planted_copies", "temperatures"]
