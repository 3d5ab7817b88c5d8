"""Export for relabeling: the images to fix, in an annotation tool's own format.

Every module of this package that defines ``EXPORTER`` (an
:class:`~segaudit.outputs.exports.base.Exporter`) is a format, found by this registry
(``segaudit export --to NAME``): ``label-studio`` (tasks with brush pre-annotations),
``cvat`` (a "Segmentation mask 1.1" archive), ``coco`` (regions as RLE segments).

:func:`export` chooses the images and their suspect regions from a ranking (and
optionally a region table and a reviewer's decisions), finds the regions' pixels again
with one pass over the chosen images' predictions, and hands each image to the format's
writer; the files are written atomically, never inside an input.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ...core.regions import RegionRule, check_min_score, find_regions, propose
from ..regions import recorded_calibration
from ...errors import InputError
from ...io.decisions import read_decisions
from ...io.files import atomic_write_all, refuse_overwriting_inputs, safe_relative_path
from ...io.masks import MaskFile
from ...io.remote import parse_storage_options
from ...io.rankings import Ranking, load_ranking
from ...io.regions import load_regions
from ...results import InputSpec
from .base import ExportContext, ExportImage, Exporter, ExportRegion, ExportWriter, check_image_url

__all__ = ["EXPORTERS", "ExportContext", "ExportImage", "ExportOutcome", "ExportRegion", "ExportWriter", "Exporter",
           "export", "get_exporter"]


def _discover() -> dict[str, Exporter]:
    found = []
    for module in pkgutil.iter_modules(__path__):
        exporter = getattr(importlib.import_module(f"{__name__}.{module.name}"), "EXPORTER", None)
        if isinstance(exporter, Exporter):
            found.append(exporter)
    return {e.name: e for e in sorted(found, key=lambda e: e.name)}


#: Every export format by name.
EXPORTERS: dict[str, Exporter] = _discover()


def get_exporter(name: str) -> Exporter:
    """The exporter called ``name``; InputError naming the choices otherwise."""
    try:
        return EXPORTERS[name]
    except KeyError:
        raise InputError(f"unknown export format {name!r}; choose from {', '.join(EXPORTERS)}") from None


@dataclass
class ExportOutcome:
    """What an export wrote."""

    files: list[Path]
    images: list[str] = field(default_factory=list)  # exported, in ranking order
    regions: int = 0  # suspect regions exported
    without_proposal: list[str] = field(default_factory=list)  # --proposals had no file for these


def _region_table(path: Path) -> dict[str, dict[int, tuple[float, int]]]:
    """A region table (segaudit regions, read by :func:`segaudit.io.regions.load_regions`):
    per image, region number -> (score, area)."""
    table = load_regions(path)
    return {image: {row.region: (row.score, row.area) for row in rows} for image, rows in table.by_image.items()}


def _find_proposal(directory: Path, image_id: str) -> Path | None:
    for suffix in (".png", ".tif", ".tiff"):
        path = directory / safe_relative_path(image_id, suffix)
        if path.is_file():
            return path
    return None


def export(to: str, ranking: str | Path, out: str | Path, *, regions: str | Path | None = None,
           decisions: str | Path | None = None, top: int | None = None, min_score: float | None = None,
           proposals: str | Path | None = None, image_url: str = "{id}.png", rule: RegionRule | None = None,
           on_progress=None, storage_options: dict | str | None = None) -> ExportOutcome:
    """Export the images to relabel in an annotation tool's format.

    Parameters
    ----------
    to : str
        The format, a name of :data:`EXPORTERS`.
    ranking : str or Path
        A ranking written by ``segaudit score``; its run record names the masks, the
        predictions and how they were read.
    out : str or Path
        The output file (its parent directory must exist).
    regions : str or Path, optional
        A region table (``segaudit regions -o``): only its regions are exported, and they
        are checked against the regions found now (same numbers and areas).
    decisions : str or Path, optional
        A reviewer's decisions file: every image with a ``fix`` decision is exported
        (a region marked ``fix`` is exported whatever its score); regions marked ``ok``
        are left out, and so are, from ``top``, images marked ``ok`` whose masks are
        unchanged (:mod:`segaudit.ci.review`; a stale ``ok`` does not count).
    top : int, optional
        Also export the ``top`` worst images of the ranking.
    min_score : float
        Regions scoring at least this (in [0, 1]) are suspect. Without ``decisions`` and
        ``top``, the images exported are those with such a region.
    proposals : str or Path, optional
        A directory of proposed masks (``segaudit regions --propose-dir``), read with the
        masks' own decoding; by default the fix is proposed now, every exported region
        relabeled to its likely class (as ``--propose-dir`` does).
    image_url : str
        Where the tool finds each photo: ``{id}`` is replaced by the image id.
    rule : RegionRule, optional
        The region rule; by default the ranking's (``score --regions``) or the default one.
    storage_options : dict or str, optional
        For masks or predictions recorded as URLs: their fsspec options (never recorded).

    Returns
    -------
    ExportOutcome
        InputError (one line) for bad input; nothing is written then.
    """
    exporter = get_exporter(to)
    out = Path(out)
    if min_score is not None:
        check_min_score(min_score)
    if top is not None and top < 0:
        raise InputError(f"--top must be >= 0, got {top}")
    if "{id}" not in image_url:
        raise InputError(f"--image-url must contain {{id}} (replaced by the image id), got {image_url!r}")
    check_image_url(image_url.replace("{id}", "x"))  # checked before any work; each image's URL again
    if not out.parent.is_dir():
        raise InputError(f"output directory not found: {out.parent}")
    loaded = load_ranking(ranking)
    record = loaded.record
    assert record is not None  # load_ranking needs it
    for key in ("masks", "predictions"):
        if getattr(record, key) is None:
            raise InputError(f"{loaded.record_path}: no '{key}' path in the run record (export reads the masks "
                             "and predictions it names)")
    refuse_overwriting_inputs(
        {"ranking": loaded.path, "run record": loaded.record_path, "masks directory": record.masks,
         "prediction store": record.predictions, "--regions table": regions, "--decisions file": decisions,
         "--proposals directory": proposals},
        {f"output {path.name}": path for path in exporter.outputs(out)})
    if proposals is not None and not Path(proposals).is_dir():
        raise InputError(f"--proposals directory not found: {proposals}")
    if rule is None:
        rule = (RegionRule(margin=record.regions.margin, band=record.regions.band,
                           band_weight=record.regions.band_weight) if record.regions else RegionRule())
    calibration = recorded_calibration(record, loaded.record_path, rule, storage_options, on_progress)
    if min_score is None:
        min_score = calibration.threshold

    listed = _region_table(Path(regions)) if regions is not None else None
    whole: dict[str, str] = {}
    by_region: dict[str, dict[int, str]] = {}
    for d in read_decisions(decisions) if decisions is not None else ():
        if d.region is None:
            whole[d.image_id] = d.decision
        else:
            by_region.setdefault(d.image_id, {})[d.region] = d.decision
    rows = loaded.by_id()
    accepted: set[str] = set()
    if decisions is not None and top:  # --top leaves out the images accepted as they are now
        from ...ci.review import review_masks

        accepted = review_masks(decisions, record.masks, record.mask_suffix or "", rows,
                                storage_options=parse_storage_options(storage_options, "storage_options")).exempt
    chosen = _choose_images(loaded, listed, whole, by_region, top, min_score, decisions is not None, accepted)
    for image_id in chosen or ():
        if image_id not in rows:
            raise InputError(f"{decisions}: image {image_id!r} (marked fix) is not in the ranking {loaded.path}")
    if chosen is not None and not chosen:
        raise InputError("no image to export: none is marked fix, --top is 0, or no region scores >= "
                         f"{min_score:g} (lower --min-score or pass --top N)")

    from ...core.dataset import open_dataset

    dataset = open_dataset(replace(InputSpec.from_record(record, storage_options=storage_options), allow_missing=True,
                                   only=None if chosen is None else tuple(sorted(chosen))))
    for _, image_id in dataset.pairs:
        if dataset.slice_rows(image_id) is not None:
            raise InputError(f"{image_id} is a volume: the annotation tools import 2-D images, so export takes "
                             "2-D masks only")
    paired = {image_id for _, image_id in dataset.pairs}
    for image_id in sorted(chosen or ()):
        if image_id not in paired:
            raise InputError(f"{image_id} (rank {rows[image_id].rank} in {loaded.path}) has no mask in "
                             f"{record.masks} or no prediction in {record.predictions}")
    classes = tuple(dataset.store.classes or (str(k) for k in range(dataset.store.n_classes)))
    context = ExportContext(classes=classes, ignore=tuple(dataset.ignore), image_url=image_url,
                            ranking=loaded.path, min_score=min_score)
    writer = exporter.start(context)
    exported: list[tuple[int, str, int]] = []  # (rank, id, regions)
    outcome = ExportOutcome(files=exporter.outputs(out))

    def on_image(index, image_id, labels, found, finder) -> None:
        marks = by_region.get(image_id, {})
        wanted = _wanted_regions(image_id, found, listed, marks, min_score, regions)
        if chosen is None and not wanted:
            return
        if image_id not in rows:
            return  # masks the ranking does not list (a subset ranking): not asked for
        region_map = finder.region_map
        picked = [ExportRegion(found[n - 1], region_map == n - 1, "fix" if marks.get(n) == "fix" else "")
                  for n in wanted]
        if proposals is not None:
            path = _find_proposal(Path(proposals), image_id)
            if path is None:
                outcome.without_proposal.append(image_id)
                proposal = labels
            else:
                proposal = dataset.read_labels(MaskFile(image_id, path))
                if proposal.shape != labels.shape:
                    raise InputError(f"{path}: proposal is {proposal.shape[0]}x{proposal.shape[1]} (HxW) but the "
                                     f"mask of {image_id} is {labels.shape[0]}x{labels.shape[1]}")
        else:
            # propose() relabels the regions scoring >= its threshold: mark the exported ones.
            keep = set(wanted)
            marked = [replace(r, score=1.0 if r.region in keep else -1.0) for r in found]
            proposal = propose(labels, region_map, finder.likely_map, marked, 0.0)
        row = rows[image_id]
        writer.add(ExportImage(image_id=image_id, rank=row.rank, score=row.score,
                               labels=np.asarray(labels, np.int32), proposal=np.asarray(proposal, np.int32),
                               regions=picked, decision="fix" if whole.get(image_id) == "fix" else ""))
        exported.append((row.rank, image_id, len(picked)))

    find_regions(dataset, rule, keep_maps=lambda image_id: True, on_image=on_image, progress=on_progress,
                 calibration=calibration)
    if not exported:
        raise InputError(f"no image to export: no region scores >= {min_score:g} "
                         "(lower --min-score or pass --top N)")
    exported.sort()
    outcome.images = [image_id for _, image_id, _ in exported]
    outcome.regions = sum(n for _, _, n in exported)
    atomic_write_all(writer.files(out))
    return outcome


def _choose_images(ranking: Ranking, listed, whole: dict[str, str], by_region: dict[str, dict[int, str]],
                   top: int | None, min_score: float, with_decisions: bool, accepted: set[str]) -> set[str] | None:
    """The image ids to export, or None for "every image with a region scoring >= min_score"
    (found in the pass). ``accepted``: images marked ok whose masks are unchanged, left out
    of ``top``."""
    if with_decisions or top is not None:
        chosen = {i for i, d in whole.items() if d == "fix"}
        chosen |= {i for i, marks in by_region.items() if "fix" in marks.values()}
        for row in ranking.rows[: top or 0]:
            if row.image_id not in accepted:
                chosen.add(row.image_id)
        return chosen
    if listed is not None:
        known = ranking.by_id()
        return {i for i, regions in listed.items() if i in known
                and any(score >= min_score for score, _ in regions.values())}
    return None


def _wanted_regions(image_id: str, found, listed, marks: dict[int, str], min_score: float, source) -> list[int]:
    """The region numbers to export for one image: scoring >= min_score (among those of the
    region table when given) or marked fix, less those marked ok; the table checked
    against what was found."""
    if listed is not None:
        table = listed.get(image_id, {})
        for number, (_, area) in table.items():
            if number > len(found) or found[number - 1].area != area:
                now = f"area {found[number - 1].area}" if number <= len(found) else "no such region"
                raise InputError(f"{source}: region {number} of {image_id} has area {area} but the regions found "
                                 f"now give {now}: the table was made with another rule or other inputs "
                                 "(pass the same --margin/--band/--band-weight, or make the table again)")
        candidates = {n for n, (score, _) in table.items() if score >= min_score}
    else:
        candidates = {r.region for r in found if r.score >= min_score}
    for number, decision in marks.items():
        if decision == "fix":
            if number > len(found):
                raise InputError(f"decisions: region {number} of {image_id} is marked fix but the image has "
                                 f"{len(found)} region(s)")
            candidates.add(number)
        elif decision == "ok":
            candidates.discard(number)
    return sorted(candidates)
