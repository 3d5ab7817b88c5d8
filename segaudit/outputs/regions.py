"""Writing error regions: the ranked region table, and the proposed corrected masks.

The table (``segaudit regions -o regions.csv``) has one row per region, ranked over the
whole dataset, worst first (:func:`segaudit.results.region_columns`). Proposals (``--propose-dir``) are
the input masks with every region scoring at least ``--min-score`` relabeled to its
likely class (:func:`segaudit.core.regions.propose`), written in each source mask's own
encoding (palette, bit depth, label-map values); the input masks are never written.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.dataset import Dataset, open_dataset
from ..core.regions import Region, RegionRule, RegionRun, check_min_score, find_regions, propose
from ..errors import InputError
from ..io.files import (atomic_write_all, contained_path, lies_within, refuse_overwriting_inputs, safe_relative_path,
                        staged_directory)
from ..io.masks import encode_like, read_mask, suffix_like
from ..io.tables import render
from ..results import InputSpec, region_columns


#: The staging folder of proposals inside --propose-dir (this + the process id + ``-`` ... ``.tmp``).
STAGING_PREFIX = ".segaudit-proposals-"


def _class(index: int, classes: list[str] | None) -> str | int:
    return classes[index] if classes and 0 <= index < len(classes) else index


def _has_volumes(run: RegionRun) -> bool:
    return any(r.z0 is not None for r in run.regions)


def region_rows(run: RegionRun) -> list[list]:
    """The table's rows, in ranking order (1-based ranks), in :func:`segaudit.results.region_columns` order."""
    volumes = _has_volumes(run)
    return [[rank, r.image_id, r.region, r.score, r.raw_score, r.area, r.x0, r.y0, r.x1, r.y1, *([r.z0, r.z1] if volumes else []),
             _class(r.annotated_class, run.classes), _class(r.likely_class, run.classes), r.mean_s,
             r.mean_p_likely, r.kind] for rank, r in enumerate(run.regions, 1)]


def regions_text(run: RegionRun, fmt: str = "csv") -> str:
    """The region table as csv, jsonl or json (as :func:`segaudit.io.tables.render`)."""
    return render(region_columns(_has_volumes(run)), region_rows(run), fmt)


def write_regions(run: RegionRun, path: str | Path, fmt: str = "csv") -> Path:
    """Write the region table (csv, jsonl or json) atomically: complete or not at all."""
    path = Path(path)
    atomic_write_all({path: regions_text(run, fmt)})
    return path


@dataclass
class RegionOutcome:
    """What ``segaudit regions`` did."""

    run: RegionRun
    proposals: list[tuple[str, int]] = field(default_factory=list)  # (image id, pixels relabeled)
    threshold: float = 0.5  # the min score used: --min-score, or the calibration's threshold


def _raw_values(dataset: Dataset) -> np.ndarray | None:
    """With a label map: for each class, the first mask value mapping to it (-1 for none)."""
    if dataset.label_map is None:
        return None
    table = dataset.label_map.table
    first = np.full(dataset.store.n_classes, -1, np.int64)
    for value in range(table.size - 1, -1, -1):
        cls = int(table[value])
        if 0 <= cls < first.size:
            first[cls] = value
    return first


def _in_mask_values(dataset: Dataset, mask, labels: np.ndarray, new: np.ndarray,
                    raw_of: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(old, new) in the values the mask file holds: class indices, or with a label map the
    file's own values (each changed pixel gets the first value mapping to its new class)."""
    if raw_of is None:
        return labels, new
    raw = read_mask(mask, dataset.colour_map)
    changed = new != labels
    values = raw_of[new[changed]]
    if values.size and int(values.min()) < 0:
        cls = int(new[changed][values < 0][0])
        raise InputError(f"{mask.path}: no mask value maps to class {cls} in {dataset.label_map.source}, "
                         "so a proposal cannot write it")
    corrected = raw.copy()
    corrected[changed] = values
    return raw, corrected


def _proposal_bytes(dataset: Dataset, mask, labels: np.ndarray, new: np.ndarray, raw_of: np.ndarray | None) -> bytes:
    """The bytes of a corrected mask in its source's encoding (PNG, TIFF or a volume's file)."""
    old, new = _in_mask_values(dataset, mask, labels, new, raw_of)
    return encode_like(mask, old, new, dataset.colour_map)


def find_and_write_regions(masks=None, predictions=None, *, rule: RegionRule | None = None,
                           out: str | Path | None = None, fmt: str = "csv", propose_dir: str | Path | None = None,
                           min_score: float | None = None, calibration_seed: int = 0, unlabeled: int | None = None,
                           prefetch: int = 4, on_progress=None, spec: InputSpec | None = None,
                           **inputs) -> RegionOutcome:
    """Find every image's error regions, with scores calibrated on errors planted into a
    sample of the masks; write the region table and, optionally, proposals.

    The first pass finds the regions and calibrates their scores
    (:func:`segaudit.calibration.regions.calibrated_regions`); proposals need each image's
    region map, so a second pass reads only the images with a region at or above the
    threshold and writes their proposals.

    Parameters
    ----------
    masks, predictions
        As :func:`segaudit.score`; ``inputs`` are its input keywords (ignore_index,
        label_map, palette, ...), or ``spec`` all of them in one (:class:`segaudit.InputSpec`).
    rule : RegionRule, optional
        Which pixels are suspect and how regions score.
    out : str or Path, optional
        The region table (csv, jsonl or json by ``fmt``); None writes none.
    propose_dir : str or Path, optional
        Where to write a corrected mask per image with a region scoring at least
        ``min_score`` (files mirror the mask ids).
    min_score : float, optional
        Regions scoring (calibrated) at least this are relabeled in the proposals; None: the
        calibration's threshold (``outcome.threshold``).
    calibration_seed : int
        The seed of the planted copies the scores are calibrated on.
    unlabeled : int, optional
        The dataset's scored unlabeled class, which planted missed objects become.
    """
    from ..calibration.regions import calibrated_regions

    if min_score is not None:
        check_min_score(min_score)
    if propose_dir is not None and out is not None and lies_within(out, propose_dir):
        raise InputError(f"--output {out} is inside --propose-dir {propose_dir}: a proposal could overwrite it; "
                         "write the region table elsewhere")
    spec = InputSpec.of(masks, predictions, spec, **inputs)
    dataset = open_dataset(spec)
    outcome = RegionOutcome(run=None)  # type: ignore[arg-type]
    on_image = None
    staging = contextlib.nullcontext(None)
    if propose_dir is not None:
        propose_dir = Path(propose_dir)
        if propose_dir.exists() and not propose_dir.is_dir():
            raise InputError(f"--propose-dir is not a directory: {propose_dir}")
    outcome.run, _ = calibrated_regions(dataset, rule, seed=calibration_seed, unlabeled=unlabeled,
                                        prefetch=prefetch, progress=on_progress)
    if min_score is None:
        min_score = outcome.run.threshold
    outcome.threshold = min_score
    if propose_dir is not None:
        raw_of = _raw_values(dataset)
        mask_of = {image_id: mask for mask, image_id in dataset.pairs}
        # Proposals are written into a staging folder and moved in when every one is complete:
        # an error, SIGINT or SIGTERM mid-pass leaves none of them.
        staging = staged_directory(propose_dir, STAGING_PREFIX)

        def on_image(index, image_id, labels, regions: list[Region], finder) -> None:
            if not any(r.score >= min_score for r in regions):
                return
            slice_rows = dataset.store.slice_rows(image_id)
            new = propose(labels, finder.region_map, finder.likely_map, regions, min_score, slice_rows)
            # The proposal keeps its source's format: PNG, TIFF or the volume's own (same suffix).
            mask = mask_of[image_id]
            relative = safe_relative_path(image_id, suffix_like(mask))
            refuse_overwriting_inputs({"masks directory": spec.masks, "prediction store": spec.predictions},
                                      {"proposal": contained_path(propose_dir, relative)})
            data = _proposal_bytes(dataset, mask, labels, new, raw_of)
            atomic_write_all({staged.path(relative): data})
            outcome.proposals.append((image_id, int(np.count_nonzero(new != labels))))

    with staging as staged:
        if on_image is not None:
            wanted = {r.image_id for r in outcome.run.regions if r.score >= min_score}
            # The same regions again (deterministic), calibrated by the same fit, with their maps.
            find_regions(dataset, outcome.run.rule, keep_maps=lambda image_id: True, on_image=on_image,
                         prefetch=prefetch, calibration=outcome.run.calibration, images=wanted)
        if out is not None:
            if staged is not None:
                staged.check()  # the table goes with the proposals, or neither does
            write_regions(outcome.run, out, fmt)
    return outcome


def recorded_calibration(record, source, rule: RegionRule, storage_options=None, progress=None):
    """The region scores' calibration of a scoring run: the one ``score --regions`` recorded,
    else fitted now on the whole dataset its run record names (one more pass, as ``segaudit
    regions`` makes, with --method auto's seed and unlabeled class when it ran), so that
    ``overlay`` and ``export`` score and count regions as ``segaudit regions`` does."""
    from ..calibration.regions import RegionCalibration, calibrated_regions

    if record.regions is not None and record.regions.calibration is not None:
        return RegionCalibration.from_dict(record.regions.calibration, str(source))
    from dataclasses import replace

    dataset = open_dataset(replace(InputSpec.from_record(record, storage_options=storage_options), allow_missing=True))
    auto = record.calibration
    return calibrated_regions(dataset, rule, seed=auto.seed if auto else 0, unlabeled=auto.unlabeled if auto else None,
                              progress=progress)[0].calibration
