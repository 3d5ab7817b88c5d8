"""How well the error regions find planted errors: ``segaudit evaluate-regions``.

Judged the way component-level label-error detectors are (Rottmann & Reese, WACV 2023):

- **planted regions**: in each image, the 8-connected sets of scored pixels whose noisy label
  differs from the clean one, sharing one (noisy, clean) class pair (the same definition as
  a reported region's (annotated, likely) pair); those under ``min_area`` pixels are left out
  of recall (slivers a reviewer would not call an error);
- a planted region is **found** when a reported region overlaps it with IoU >= 0.5 (also
  reported at 0.25); each planted region is found at most once, by the best-ranked region;
- **AP** over the dataset-wide region ranking: the mean, over planted regions, of the
  precision at the rank where each is found (0 if never), i.e. the area under the
  precision-recall step curve;
- **kind accuracy**: of the planted regions found, the share whose region has the kind the
  planted error type implies (drop → missing, swap → wrong_class, shift and boundary →
  boundary);
- **restored**: of the planted error pixels, the share that the proposed fixes (regions
  scoring at least ``min_score``) set back to the clean label; **damaged**: clean pixels
  the fixes changed, per restored pixel.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.components import component_roots, numbered
from ..core.dataset import Dataset
from ..core.regions import Region, RegionRule, find_regions, propose
from ..errors import InputError
from ..io.masks import find_masks

#: The region kind each planted error type should get.
EXPECTED_KIND = {"drop": "missing", "swap": "wrong_class", "shift": "boundary", "boundary": "boundary"}
IOU_THRESHOLDS = (0.5, 0.25)


@dataclass
class ReportedRegion:
    """A reported region and the planted region it overlaps most."""

    region: Region
    planted: int  # global id of the planted region of highest IoU, -1 for none
    iou: float


@dataclass
class RegionEvaluation:
    """Every reported region with its best match, and the planted regions' counts."""

    reported: list[ReportedRegion]
    planted_kind: list[str]  # per planted region (global id): its image's error type
    planted_area: list[int]
    images: int
    planted_image: list[str] = field(default_factory=list)  # per planted region: its image id
    planted_pixels: int = 0  # every planted error pixel (min_area does not apply)
    restored_pixels: int = 0
    damaged_pixels: int = 0
    min_score: float = 0.5
    min_area: int = 0
    per_kind_pixels: Counter = field(default_factory=Counter)
    per_kind_restored: Counter = field(default_factory=Counter)


def planted_regions(noisy: np.ndarray, clean: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, areas): each planted pixel's region number (-1 elsewhere) and each region's area."""
    scored = (noisy >= 0) & (noisy < n_classes)
    planted = scored & (noisy != clean)
    first = np.where(planted, noisy, -1).astype(np.int32)
    second = np.where(planted, clean, -1).astype(np.int32)
    return numbered(component_roots(first, second), noisy.shape)


def _best_overlaps(region_map: np.ndarray, planted: np.ndarray, region_areas: np.ndarray,
                   planted_areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per reported region: the planted region of highest IoU (-1 for none) and that IoU."""
    n = region_areas.size
    best = np.full(n, -1, np.int64)
    best_iou = np.zeros(n)
    both = (region_map >= 0) & (planted >= 0)
    if not both.any() or n == 0:
        return best, best_iou
    pairs, counts = np.unique(np.stack([region_map[both], planted[both]]), axis=1, return_counts=True)
    for (r, p), inter in zip(pairs.T, counts):
        iou = inter / (region_areas[r] + planted_areas[p] - inter)
        if iou > best_iou[r]:
            best[r], best_iou[r] = p, iou
    return best, best_iou


def evaluate_regions(dataset: Dataset, clean_masks: str | Path, truth: dict[str, tuple[bool, str]],
                     rule: RegionRule | None = None, *, min_score: float = 0.5, min_area: int = 16,
                     mask_suffix: str = "", prefetch: int = 4, progress=None,
                     calibration=None) -> RegionEvaluation:
    """Find regions in ``dataset`` (noisy masks) and match them to the errors planted in it.

    Parameters
    ----------
    dataset : Dataset
        The noisy masks and their predictions.
    clean_masks : str or Path
        The masks before the errors were planted, with the same image ids.
    truth : dict
        ``load_truth``'s {image: (is_error, kind)}; the kind names each image's planted type.
    rule : RegionRule, optional
    min_score : float
        The proposals relabel regions scoring at least this.
    min_area : int
        Planted regions smaller than this many pixels are not counted in recall.
    calibration : RegionCalibration, optional
        Calibrated region scores (:func:`segaudit.calibration.regions.calibrated_regions`
        fitted it on the same dataset and rule); ``min_score`` then applies to them.
    """
    clean_files = {m.image_id: m for m in find_masks(clean_masks, mask_suffix)}
    missing = [image_id for _, image_id in dataset.pairs if image_id not in clean_files]
    if missing:
        raise InputError(f"{clean_masks}: no clean mask for {missing[0]}"
                         + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    unknown = [image_id for _, image_id in dataset.pairs if image_id not in truth]
    if unknown:
        raise InputError(f"truth file has no row for {unknown[0]}")
    n_classes = dataset.store.n_classes
    result = RegionEvaluation([], [], [], len(dataset.pairs), min_score=min_score, min_area=min_area)

    def on_image(index, image_id, noisy, regions, finder):
        clean = dataset.read_labels(clean_files[image_id])
        if clean.shape != noisy.shape:
            raise InputError(f"{clean_files[image_id].path}: clean mask is {clean.shape[0]}x{clean.shape[1]} "
                             f"but the noisy one is {noisy.shape[0]}x{noisy.shape[1]}")
        kind = truth[image_id][1] if truth[image_id][0] else ""
        planted, areas = planted_regions(noisy, clean, n_classes)
        offset = len(result.planted_kind)
        counted = areas >= min_area
        # Planted regions under min_area get no global id: finding them earns nothing.
        numbers = np.full(areas.size, -1, np.int64)
        numbers[counted] = offset + np.arange(int(counted.sum()))
        result.planted_kind.extend([kind] * int(counted.sum()))
        result.planted_area.extend(areas[counted].tolist())
        result.planted_image.extend([image_id] * int(counted.sum()))
        region_areas = np.array([r.area for r in regions], np.int64)
        best, iou = _best_overlaps(finder.region_map, planted, region_areas, areas)
        for r, region in enumerate(regions):
            match = int(numbers[best[r]]) if best[r] >= 0 else -1
            result.reported.append(ReportedRegion(region, match, float(iou[r]) if match >= 0 else 0.0))
        fixed = propose(noisy, finder.region_map, finder.likely_map, regions, min_score)
        error = planted >= 0
        result.planted_pixels += int(error.sum())
        restored = int((error & (fixed == clean)).sum())
        result.restored_pixels += restored
        scored = (noisy >= 0) & (noisy < n_classes)
        result.damaged_pixels += int((~error & scored & (fixed != clean)).sum())
        result.per_kind_pixels[kind] += int(error.sum())
        result.per_kind_restored[kind] += restored

    find_regions(dataset, rule, keep_maps=lambda image_id: True, on_image=on_image, prefetch=prefetch,
                 progress=progress, calibration=calibration)
    return result


def region_average_precision(scores: np.ndarray, matches: np.ndarray, n_planted: int) -> tuple[float, float]:
    """(AP, recall) of a region ranking; ``matches[i]`` is region i's planted id or -1.

    Regions are ranked by descending score (stable: the given order breaks ties); the
    first region to reach a planted region finds it, later ones count as false positives.
    """
    if n_planted == 0:
        return math.nan, math.nan
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    ranked = np.asarray(matches, np.int64)[order]
    hits = np.zeros(order.size, bool)
    matched = ranked >= 0
    if matched.any():
        # The first position of each planted id in ranking order finds it.
        _, first = np.unique(ranked[matched], return_index=True)
        hits[np.flatnonzero(matched)[first]] = True
    true_pos = np.cumsum(hits)
    precision = true_pos / np.arange(1, order.size + 1)
    return float(precision[hits].sum() / n_planted), float(hits.sum() / n_planted)


def summarise(evaluation: RegionEvaluation, scores: np.ndarray | None = None) -> dict:
    """AP and recall at each IoU threshold, precision/recall of the proposals, kind accuracy.

    ``scores``: an alternative score per reported region (for choosing a region score);
    default the regions' own.
    """
    reported = evaluation.reported
    ranked = scores
    if scores is None:
        scores = np.array([r.region.score for r in reported])
        # Calibrated scores tie in steps: the ranking breaks ties by strength, as rank_regions does.
        order = sorted(range(len(reported)), key=lambda i: (-reported[i].region.score,
                                                             -np.nan_to_num(reported[i].region.strength, nan=-np.inf)))
        ranked = np.empty(len(reported))
        ranked[order] = -np.arange(len(reported), dtype=np.float64)
    n_planted = len(evaluation.planted_kind)
    out: dict = {"images": evaluation.images, "regions": len(reported), "planted": n_planted}
    for threshold in IOU_THRESHOLDS:
        matches = np.array([r.planted if r.iou >= threshold else -1 for r in reported], np.int64)
        ap, recall = region_average_precision(ranked, matches, n_planted)
        key = f"{int(threshold * 100)}"
        out[f"ap@{key}"] = ap
        out[f"recall@{key}"] = recall
        chosen = np.asarray(scores) >= evaluation.min_score
        found = {int(m) for m in matches[chosen] if m >= 0}
        out[f"precision_proposed@{key}"] = (float(np.mean(matches[chosen] >= 0)) if chosen.any() else math.nan)
        out[f"recall_proposed@{key}"] = len(found) / n_planted if n_planted else math.nan
    # Kind accuracy over the planted regions found at IoU >= 0.25, by their best-scored region.
    best: dict[int, tuple[float, str]] = {}
    for r, score in zip(reported, scores):
        if r.planted >= 0 and r.iou >= 0.25 and (r.planted not in best or score > best[r.planted][0]):
            best[r.planted] = (float(score), r.region.kind)
    kinds: dict[str, list[int]] = {}
    for planted, (_, kind) in best.items():
        planted_type = evaluation.planted_kind[planted]
        expected = EXPECTED_KIND.get(planted_type)
        if expected is not None:
            kinds.setdefault(planted_type, []).append(int(kind == expected))
    out["kind_accuracy"] = {k: (float(np.mean(v)), len(v)) for k, v in sorted(kinds.items())}
    out["restored"] = (evaluation.restored_pixels / evaluation.planted_pixels
                       if evaluation.planted_pixels else math.nan)
    out["damaged_per_restored"] = (evaluation.damaged_pixels / evaluation.restored_pixels
                                   if evaluation.restored_pixels else math.nan)
    out["restored_by_kind"] = {k: evaluation.per_kind_restored[k] / v
                               for k, v in sorted(evaluation.per_kind_pixels.items()) if v}
    return out


def summary_rows(summary: dict) -> list[list]:
    """``summarise``'s result as (metric, value) rows, for a table or a CSV."""
    rows = [[name, summary[name]] for name in ("images", "regions", "planted")]
    for threshold in IOU_THRESHOLDS:
        key = f"{int(threshold * 100)}"
        rows += [[f"AP (IoU >= {threshold:g})", summary[f"ap@{key}"]],
                 [f"recall, every region (IoU >= {threshold:g})", summary[f"recall@{key}"]],
                 [f"precision of the proposed regions (IoU >= {threshold:g})", summary[f"precision_proposed@{key}"]],
                 [f"recall of the proposed regions (IoU >= {threshold:g})", summary[f"recall_proposed@{key}"]]]
    for kind, (accuracy, found) in summary["kind_accuracy"].items():
        rows.append([f"kind accuracy, {kind} (of {found} found)", accuracy])
    rows.append(["planted pixels restored by the proposals", summary["restored"]])
    for kind, share in summary["restored_by_kind"].items():
        rows.append([f"  of {kind or 'clean images'}", share])
    rows.append(["clean pixels changed per restored pixel", summary["damaged_per_restored"]])
    return rows
