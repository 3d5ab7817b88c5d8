"""What a run produces: per-image results, the ranked run, and what confident learning found.

These types sit below the engine and every writer, so that outputs need not import the
engine to read a run. :class:`RunRecord` is the run record (``<stem>.run.json``) written
beside a ranking: written only by :meth:`RunRecord.to_json` and read only by
:meth:`RunRecord.from_dict`, which checks every field. :class:`InputSpec` is what a run
reads (masks, predictions and every input option): the CLI builds it, the API takes it,
the run record stores it and :meth:`InputSpec.from_record` reopens it, and Dask ships it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import numpy as np

from .errors import InputError

#: The columns of the class-confusion summary (written by ``segaudit summary``, read by
#: ``segaudit report --confusions``).
CONFUSION_COLUMNS = ("annotated", "predicted", "pixels", "images", "share")

#: The columns of the region table (written by ``segaudit regions``, read by
#: :func:`segaudit.io.regions.load_regions` for ``report --regions`` and ``export --regions``):
#: the box in pixels, x1 and y1 exclusive.
REGION_COLUMNS = ("rank", "image", "region", "score", "raw_score", "area", "x0", "y0", "x1", "y1", "annotated_class",
                  "likely_class", "mean_s", "mean_p_likely", "kind")
#: Columns a region table written before the calibration lacks (its reader accepts that).
REGION_NEWER_COLUMNS = ("raw_score",)
#: A volume's regions also span slices z0 .. z1 - 1: these columns follow ``y1``.
REGION_VOLUME_COLUMNS = ("z0", "z1")


def region_columns(volumes: bool = False) -> tuple[str, ...]:
    """A region table's columns: :data:`REGION_COLUMNS`, with :data:`REGION_VOLUME_COLUMNS`
    after ``y1`` when a region lies in a volume."""
    if not volumes:
        return REGION_COLUMNS
    at = REGION_COLUMNS.index("y1") + 1
    return (*REGION_COLUMNS[:at], *REGION_VOLUME_COLUMNS, *REGION_COLUMNS[at:])


#: The columns of a ranking (written by ``segaudit score``, read by :mod:`segaudit.io.rankings`),
#: in order: these, then one per method, then the image's counts and classes, then the
#: optional groups below.
RANKING_LEAD_COLUMNS = ("rank", "image", "score")  # score repeats the first method's column
RANKING_IMAGE_COLUMNS = ("pixels", "low_pixels", "suspect_class", "likely_class")
RANKING_REGION_COLUMNS = ("regions", "worst_region")  # score --regions
RANKING_VOLUME_COLUMNS = ("worst_slice",)  # a dataset holding volumes

#: Ranking columns that are never scores: every column but score and the methods'.
RANKING_NOT_SCORES = frozenset({*RANKING_LEAD_COLUMNS, *RANKING_IMAGE_COLUMNS, *RANKING_REGION_COLUMNS,
                                *RANKING_VOLUME_COLUMNS} - {"score"})


def ranking_columns(methods: tuple[str, ...], regions: bool = False, volumes: bool = False) -> list[str]:
    """A ranking's columns, in order; ``regions`` (score --regions) adds
    :data:`RANKING_REGION_COLUMNS`, ``volumes`` (a dataset holding volumes) :data:`RANKING_VOLUME_COLUMNS`."""
    return [*RANKING_LEAD_COLUMNS, *methods, *RANKING_IMAGE_COLUMNS,
            *(RANKING_REGION_COLUMNS if regions else ()), *(RANKING_VOLUME_COLUMNS if volumes else ())]


@dataclass
class Selection:
    """Which cells the flagging pass flags: s bits below ``low``, and ``take`` of [low, high)."""

    low: int
    high: int
    take: int

    @property
    def exact(self) -> bool:
        return self.high - self.low == 1


@dataclass
class ClcState:
    """What confident learning found over the dataset."""

    downsample: int
    thresholds: np.ndarray  # t_k per class
    issues: int  # n, the number of cells flagged
    selection: Selection | None  # the exact rule that flags those cells (None when n = 0)
    flagged: np.ndarray  # flagged full-resolution pixels per image, in dataset order
    passes: int  # passes over the data (store or cell cache), the per-image pass included

    def record(self) -> ClcRecord:
        """For the run record: enough to flag the same pixels again without the counting."""
        return ClcRecord(
            downsample=self.downsample,
            thresholds=tuple(self.thresholds.tolist()),
            issues=self.issues,
            cut_bits=None if self.selection is None else self.selection.low,
            cut_ties=None if self.selection is None else self.selection.take,
            passes=self.passes,
        )


@dataclass
class ImageResult:
    """One image's scores (NaN when it has no scored pixel) and its low-pixel summary."""

    image_id: str
    scores: dict[str, float]
    pixels: int
    low_pixels: int
    suspect_class: int | None  # annotated class holding most low pixels
    likely_class: int | None  # the predicted class most common among those pixels
    flagged_pixels: int | None = None  # clc-flagged pixels, when clc was computed
    regions: int | None = None  # error regions scoring >= the run's region threshold, when regions were found
    worst_region: str | None = None  # the kind of the image's worst such region
    slices: int | None = None  # a volume's slice count (None: a 2-D image)
    worst_slice: int | None = None  # a volume's slice with the most low voxels (see core.slices)


@dataclass
class ScoreRun:
    """The ranked results of a run and what the run was."""

    results: list[ImageResult]  # worst first
    methods: tuple[str, ...]
    classes: list[str] | None
    options: dict
    skipped_masks: list[str] = field(default_factory=list)  # masks with no prediction
    skipped_predictions: list[str] = field(default_factory=list)  # predictions with no mask
    clc: ClcState | None = None  # what confident learning found, when clc was computed
    class_pixels: np.ndarray | None = None  # per class, scored pixels annotated with it
    warnings: list[str] = field(default_factory=list)  # dataset-level problems found after scoring
    regions: RegionsRecord | None = None  # the region rule and count, when regions were found
    volumes: bool = False  # the dataset holds volumes: the ranking has a worst_slice column
    reviewed: ReviewRecord | None = None  # what --reviewed exempted, when it was given
    calibration: CalibrationRecord | None = None  # what --method auto measured and chose

    @property
    def empty_images(self) -> list[str]:
        return [r.image_id for r in self.results if r.pixels == 0]

    def class_name(self, index: int | None) -> str:
        if index is None:
            return ""
        return self.classes[index] if self.classes else str(index)


# --- the run record ---------------------------------------------------------------------


def _is_whole(value, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_list_of(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: isinstance(value, list) and all(check(v) for v in value)


_TEXT = (lambda v: isinstance(v, str), "text")
_TEXTS = (_is_list_of(lambda v: isinstance(v, str)), "a list of text")
_FLAG = (lambda v: isinstance(v, bool), "true or false")
_NUMBER = (_is_number, "a number")
_COUNT = (_is_whole, "a whole number >= 0")
_POSITIVE = (lambda v: _is_whole(v, 1), "a whole number >= 1")
_COUNTS = (_is_list_of(_is_whole), "a list of whole numbers >= 0")
_NUMBERS = (_is_list_of(_is_number), "a list of numbers")
# --label-map: a built-in name or a file's path, or a mapping given to the API (value -> class or null).
_LABEL_MAP = (lambda v: isinstance(v, str) or (isinstance(v, dict) and all(
    k.isascii() and k.isdigit() and (c is None or _is_whole(c)) for k, c in v.items())),
    "text or an object of mask value -> class index or null")


class _Reader:
    """The fields of one JSON object of a run record; every error names the file and field."""

    def __init__(self, data, source: str | Path, prefix: str = ""):
        self.source, self.prefix = source, prefix
        if not isinstance(data, dict):
            if prefix:
                self.fail(prefix.rstrip("."), "a JSON object", data)
            raise InputError(f"{source}: not a segaudit run record (expected a JSON object)")
        self.data = data

    def fail(self, name: str, expected: str, value) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise InputError(f"{self.source}: malformed run record: '{name}' must be {expected}, got {shown}")

    def get(self, name: str, kind: tuple[Callable[[object], bool], str], *, required: bool = False,
            nullable: bool = True):
        """The field's value (lists as tuples); None when it is absent (and not required)."""
        if name not in self.data:
            if required:
                raise InputError(f"{self.source}: malformed run record: no '{self.prefix}{name}' field")
            return None
        value = self.data[name]
        check, expected = kind
        if value is None and nullable:
            return None
        if not check(value):
            self.fail(self.prefix + name, expected + (" or null" if nullable else ""), value)
        return tuple(value) if isinstance(value, list) else value


def _json_ready(value):
    return list(value) if isinstance(value, tuple) else value.to_dict() if hasattr(value, "to_dict") else value


class _Section:
    """A section of the run record: a frozen dataclass written as a JSON object of its fields."""

    def to_dict(self) -> dict:
        return {f.name: _json_ready(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class ClcRecord(_Section):
    """The clc section of a run record: an earlier run's dataset-wide cut, enough to flag
    the same pixels again without the counting (``score --baseline``, ``overlay``)."""

    downsample: int
    thresholds: tuple[float, ...]  # t_k per class
    issues: int
    cut_bits: int | None  # the cut: s bits of the last flagged cell (None when nothing was flagged)
    cut_ties: int | None  # cells flagged at exactly the cut
    passes: int

    @property
    def selection(self) -> Selection | None:
        """The run's exact rule (None when it flagged nothing)."""
        if self.cut_bits is None:
            return None
        return Selection(self.cut_bits, self.cut_bits + 1, self.cut_ties)

    @property
    def at_or_below_cut(self) -> Selection | None:
        """Every cell at or below the cut (ties at the cut cannot be ordered within a
        subset or a single image); None when the run flagged nothing."""
        if self.cut_bits is None:
            return None
        return Selection(self.cut_bits + 1, self.cut_bits + 1, 0)

    @classmethod
    def from_dict(cls, data, source: str | Path = "run record") -> ClcRecord:
        """Check and read a clc section; InputError naming ``source`` and the field."""
        read = _Reader(data, source, "clc.")
        record = cls(
            downsample=read.get("downsample", _POSITIVE, required=True, nullable=False),
            thresholds=read.get("thresholds", _NUMBERS, required=True, nullable=False),
            issues=read.get("issues", _COUNT, required=True, nullable=False),
            cut_bits=read.get("cut_bits", _COUNT, required=True),
            cut_ties=read.get("cut_ties", _COUNT, required=True),
            passes=read.get("passes", _COUNT, required=True, nullable=False),
        )
        if (record.cut_bits is None) != (record.cut_ties is None):
            read.fail("clc.cut_ties", "null exactly when 'clc.cut_bits' is null", record.cut_ties)
        return record

    @classmethod
    def coerce(cls, value: ClcRecord | dict) -> ClcRecord:
        """A ClcRecord from itself or from the clc section of a run record as a dict."""
        return value if isinstance(value, ClcRecord) else cls.from_dict(value, "baseline")


#: A region counted in the ranking's ``regions`` column when it scored at least this, before
#: region scores were calibrated (a run record without a ``threshold`` means it).
REGION_COUNT_SCORE = 0.5

_OBJECT = (lambda v: isinstance(v, dict), "a JSON object")


@dataclass(frozen=True)
class RegionsRecord(_Section):
    """The regions section of a run record (``score --regions``): the rule that found the
    regions (so ``overlay`` draws the same ones), the threshold from which a region counts,
    how many did, and the calibration of the region scores (its fit, so that ``overlay``
    and ``export`` score regions the same way)."""

    margin: float
    band: int
    band_weight: float
    regions: int  # regions scoring >= threshold
    threshold: float = REGION_COUNT_SCORE
    #: :meth:`segaudit.calibration.regions.RegionCalibration.to_dict` (None: raw scores).
    calibration: dict | None = None

    @classmethod
    def from_dict(cls, data, source: str | Path = "run record") -> RegionsRecord:
        read = _Reader(data, source, "regions.")
        threshold = read.get("threshold", _NUMBER)
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            read.fail("regions.threshold", "a number in [0, 1]", threshold)
        return cls(margin=read.get("margin", _NUMBER, required=True, nullable=False),
                   band=read.get("band", _COUNT, required=True, nullable=False),
                   band_weight=read.get("band_weight", _NUMBER, required=True, nullable=False),
                   regions=read.get("regions", _COUNT, required=True, nullable=False),
                   threshold=REGION_COUNT_SCORE if threshold is None else threshold,
                   calibration=read.get("calibration", _OBJECT))


@dataclass(frozen=True)
class ReviewRecord(_Section):
    """The reviewed section of a run record (``--reviewed decisions.csv``): the decisions
    file, how many images it exempted from the gates (marked ok, mask unchanged), how many
    of its ok decisions were stale (the mask changed since) and how many named images the
    run does not have."""

    decisions: str
    exempted: int
    stale: int
    not_found: int = 0

    @classmethod
    def from_dict(cls, data, source: str | Path = "run record") -> ReviewRecord:
        read = _Reader(data, source, "reviewed.")
        return cls(decisions=read.get("decisions", _TEXT, required=True, nullable=False),
                   exempted=read.get("exempted", _COUNT, required=True, nullable=False),
                   stale=read.get("stale", _COUNT, required=True, nullable=False),
                   not_found=read.get("not_found", _COUNT) or 0)


def _is_table(value) -> bool:
    return isinstance(value, list) and all(isinstance(row, list) and all(v is None or _is_number(v) for v in row)
                                           for row in value)


_OPTIONAL_NUMBERS = (_is_list_of(lambda v: v is None or _is_number(v)), "a list of numbers or nulls")
_TABLE = (_is_table, "a list of lists of numbers or nulls")


@dataclass(frozen=True)
class CalibrationRecord(_Section):
    """The calibration section of a run record (``--method auto``): every candidate's
    AUPRC at finding the planted copies of each kind, the chosen candidate and the kinds
    that even it finds poorly."""

    seed: int
    chosen: str
    calibrated: bool  # False: too few images; the ranking is rsoftmin's
    images: int  # clean-looking images the copies were planted into and compared with
    set_aside: int  # images left out as suspicious by the consensus of the scores
    kinds: tuple[str, ...]
    copies: tuple[int, ...]  # planted copies per kind
    candidates: tuple[str, ...]
    auprc: tuple[tuple[float | None, ...], ...]  # [candidate][kind]
    mean_auprc: tuple[float | None, ...]  # per candidate, over the kinds with copies
    mean_log_odds: tuple[float | None, ...]  # per candidate: the mean log-odds of its AUPRC, which chose
    hard_kinds: tuple[str, ...]  # kinds the chosen candidate finds with AUPRC < 0.3
    unlabeled: int | None = None  # the scored unlabeled class planted missed objects became (--unlabeled)
    best: str | None = None  # the candidate best on the planted copies (chosen unless not surely better than rsoftmin)
    confidence: float | None = None  # share of bootstrap resamples where best beat rsoftmin (None: best is rsoftmin)

    def to_dict(self) -> dict:
        data = super().to_dict()
        data["auprc"] = [list(row) for row in self.auprc]
        return data

    @property
    def chosen_auprc(self) -> tuple[float | None, ...]:
        return self.auprc[self.candidates.index(self.chosen)]

    @classmethod
    def from_dict(cls, data, source: str | Path = "run record") -> CalibrationRecord:
        read = _Reader(data, source, "calibration.")
        record = cls(
            seed=read.get("seed", _COUNT, required=True, nullable=False),
            chosen=read.get("chosen", _TEXT, required=True, nullable=False),
            calibrated=read.get("calibrated", _FLAG, required=True, nullable=False),
            images=read.get("images", _COUNT, required=True, nullable=False),
            set_aside=read.get("set_aside", _COUNT, required=True, nullable=False),
            kinds=read.get("kinds", _TEXTS, required=True, nullable=False),
            copies=read.get("copies", _COUNTS, required=True, nullable=False),
            candidates=read.get("candidates", _TEXTS, required=True, nullable=False),
            auprc=tuple(tuple(row) for row in read.get("auprc", _TABLE, required=True, nullable=False)),
            mean_auprc=read.get("mean_auprc", _OPTIONAL_NUMBERS, required=True, nullable=False),
            mean_log_odds=read.get("mean_log_odds", _OPTIONAL_NUMBERS, required=True, nullable=False),
            hard_kinds=read.get("hard_kinds", _TEXTS, required=True, nullable=False),
            unlabeled=read.get("unlabeled", _COUNT),
            best=read.get("best", _TEXT),
            confidence=read.get("confidence", _NUMBER),
        )
        if record.chosen not in record.candidates or len(record.auprc) != len(record.candidates) or len(
                record.mean_log_odds) != len(record.candidates) or any(
                len(row) != len(record.kinds) for row in record.auprc) or len(record.copies) != len(record.kinds):
            read.fail("calibration", "a table of one row per candidate and one column per kind", data)
        return record


def _recorded(kind, *, omit_none: bool = False) -> dict:
    """An :class:`InputSpec` field's metadata: the run record keeps it under its name, checked
    as ``kind`` when read; with ``omit_none``, a None value is left out of the record."""
    return {"record": kind, "omit_none": omit_none}


@dataclass(frozen=True)
class InputSpec:
    """What a run reads: the masks, the prediction store and every input option, in one place.

    The command line builds it (``cli/_options.py``), :func:`segaudit.score` and the other
    readers take it (``spec=``; their input keywords build one),
    :func:`segaudit.core.dataset.open_dataset` opens it, the run record stores its recorded
    fields (the metadata ``record``: how the record's reader checks the field) and
    :meth:`from_record` reopens it; it is small and picklable, so Dask ships it to the
    workers. An input option is one field here (docs/development.md, "add an input option").

    The fields hold what was given; :func:`~segaudit.core.dataset.open_dataset` checks and
    resolves them (the default ignore index, the store's classes and kind, ``only``'s mask
    paths as ids) and records the resolved spec (``Dataset.spec``).
    """

    masks: str = field(metadata=_recorded(_TEXT))  # a directory of masks, or a URL
    predictions: str = field(metadata=_recorded(_TEXT))  # a zarr store, or a URL
    ignore_index: int | tuple[int, ...] | None = field(default=None, metadata=_recorded(_COUNTS))  # None: 255
    mask_suffix: str = field(default="", metadata=_recorded(_TEXT))
    palette: str | None = field(default=None, metadata=_recorded(_TEXT))
    # A built-in name, a file, or a mapping {value: class or None}; recorded only when given,
    # so that the records of runs without one keep their bytes.
    label_map: str | dict | None = field(default=None, metadata=_recorded(_LABEL_MAP, omit_none=True))
    classes: tuple[str, ...] | None = field(default=None, metadata=_recorded(_TEXTS))
    logits: bool | None = field(default=None, metadata=_recorded(_FLAG))
    channels_last: bool | None = field(default=None, metadata=_recorded(_FLAG))
    allow_missing: bool = field(default=False, metadata=_recorded(_FLAG))
    only: tuple[str, ...] | None = field(default=None, metadata=_recorded(_TEXTS))  # ids or mask paths
    # fsspec options of inputs given as URLs (a dict or its JSON text): never recorded (credentials).
    storage_options: dict | str | None = None

    def __post_init__(self):
        # Paths as text (a Path would lose a URL's slash) and lists as tuples, so that a spec
        # compares equal to the one its run record reopens.
        for name in ("masks", "predictions", "palette"):
            value = getattr(self, name)
            if isinstance(value, Path):
                object.__setattr__(self, name, str(value))
        if isinstance(self.label_map, Path):
            object.__setattr__(self, "label_map", str(self.label_map))
        for name in ("ignore_index", "classes", "only"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    @classmethod
    def recorded_fields(cls) -> tuple[str, ...]:
        """The fields the run record keeps, in this order."""
        return tuple(f.name for f in fields(cls) if "record" in f.metadata)

    def recorded(self) -> dict:
        """The recorded fields as the run record's options (``ScoreRun.options``): tuples as
        lists, a None ``omit_none`` field left out."""
        return {f.name: list(value) if isinstance(value, tuple) else value
                for f in fields(self) if "record" in f.metadata
                for value in [getattr(self, f.name)] if not (value is None and f.metadata["omit_none"])}

    @classmethod
    def from_record(cls, record: RunRecord, *, storage_options: dict | str | None = None) -> InputSpec:
        """The inputs of the run ``record`` describes (its resolved options: absolute paths,
        the ignore indices, the classes and kind read from the store); ``storage_options``
        for inputs recorded as URLs (they are never recorded). A field an older record
        leaves out takes its default (masks and predictions have none: None)."""
        given = {}
        for f in fields(cls):
            if "record" in f.metadata:
                value = getattr(record, f.name)
                given[f.name] = value if value is not None or f.default is MISSING else f.default
        return cls(**given, storage_options=storage_options)

    @classmethod
    def of(cls, masks, predictions, spec: InputSpec | None = None, **inputs) -> InputSpec:
        """``spec``, or the spec of ``masks``, ``predictions`` and the input keywords
        ``inputs`` (the fields of InputSpec): the readers' two ways of being told their
        inputs. TypeError when both or neither are given."""
        if spec is None:
            if masks is None or predictions is None:
                raise TypeError("give masks and predictions, or spec=")
            return cls(masks, predictions, **inputs)
        if masks is not None or predictions is not None or inputs:
            raise TypeError("give spec= or masks, predictions and input keywords, not both")
        return spec


#: The scoring options a run records (``ScoreRun.options``): the recorded input fields of
#: :class:`InputSpec`, what the store says, and the settings; how each is checked when read.
#: The record's order is the order of the fields of :class:`RunRecord`.
_OPTIONS = {
    **{f.name: f.metadata["record"] for f in fields(InputSpec) if "record" in f.metadata},
    "layout": _TEXT, "n_classes": _POSITIVE, "only_deleted": _TEXTS, "methods": _TEXTS,
    "temperature": _NUMBER, "pixel_threshold": _NUMBER, "downsample": _POSITIVE,
}


@dataclass(frozen=True)
class RunRecord:
    """What a scoring run was (``<stem>.run.json`` beside its ranking), so that later
    commands can work from the ranking alone.

    Every field may be None in a record read from a file: older or hand-written records
    leave fields out. The JSON keys are the field names, in this order.
    """

    #: The layout of the record this segaudit writes and reads. It is not written (the
    #: record's bytes stay those of earlier versions); a record that carries a
    #: ``record_version`` above it is refused.
    RECORD_VERSION: ClassVar[int] = 1

    segaudit_version: str | None = None
    command: str | None = None
    ranking: str | None = None  # the ranking's file name
    masks: str | None = None  # absolute paths
    predictions: str | None = None
    layout: str | None = None
    ignore_index: tuple[int, ...] | None = None
    mask_suffix: str | None = None
    palette: str | None = None
    label_map: str | dict | None = None  # only in the records of runs with --label-map
    classes: tuple[str, ...] | None = None
    n_classes: int | None = None
    logits: bool | None = None
    channels_last: bool | None = None
    allow_missing: bool | None = None
    only: tuple[str, ...] | None = None
    only_deleted: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    temperature: float | None = None
    pixel_threshold: float | None = None
    downsample: int | None = None
    images_scored: int | None = None
    images_without_scored_pixels: tuple[str, ...] | None = None
    skipped_masks_without_prediction: tuple[str, ...] | None = None
    skipped_predictions_without_mask: tuple[str, ...] | None = None
    clc: ClcRecord | None = None
    #: What the dataset-level checks found (labels and predictions in different class
    #: spaces); written only when there is a warning, so other records keep their bytes.
    warnings: tuple[str, ...] | None = None
    #: The region rule and count of a run with --regions (absent otherwise).
    regions: RegionsRecord | None = None
    #: What --reviewed exempted from the gates (absent without --reviewed).
    reviewed: ReviewRecord | None = None
    #: What --method auto measured on the planted copies and chose (absent otherwise).
    calibration: CalibrationRecord | None = None
    #: Fields the record leaves out: options the run did not have (an in-memory dataset
    #: has no mask suffix), or keys missing from the file read.
    absent: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The record's JSON keys, in order."""
        return tuple(f.name for f in fields(cls) if f.name != "absent")

    @classmethod
    def from_run(cls, run: ScoreRun, ranking: str) -> RunRecord:
        """The record of ``run``, whose ranking is the file named ``ranking``."""
        from . import __version__

        unknown = [name for name in run.options if name not in _OPTIONS]
        if unknown:
            raise TypeError(f"run options {unknown} have no field in RunRecord")
        return cls(
            segaudit_version=__version__, command="score", ranking=ranking,
            **{name: tuple(value) if isinstance(value, list) else value for name, value in run.options.items()},
            images_scored=len(run.results),
            images_without_scored_pixels=tuple(run.empty_images),
            skipped_masks_without_prediction=tuple(run.skipped_masks),
            skipped_predictions_without_mask=tuple(run.skipped_predictions),
            clc=run.clc.record() if run.clc else None,
            warnings=tuple(run.warnings),
            regions=run.regions,
            reviewed=run.reviewed,
            calibration=run.calibration,
            absent=frozenset([name for name in _OPTIONS if name not in run.options]
                             + ([] if run.warnings else ["warnings"]) + ([] if run.regions else ["regions"])
                             + ([] if run.reviewed else ["reviewed"])
                             + ([] if run.calibration else ["calibration"])),
        )

    def to_dict(self) -> dict:
        return {name: _json_ready(getattr(self, name)) for name in self.keys() if name not in self.absent}

    def to_json(self) -> str:
        """The record as written beside a ranking (the same bytes for the same run)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data, source: str | Path = "run record") -> RunRecord:
        """Check and read a parsed run record; InputError naming ``source`` and the field.

        Absent fields are None; keys this version does not know are ignored.
        """
        read = _Reader(data, source)
        version = read.get("record_version", _POSITIVE)
        if version is not None and version > cls.RECORD_VERSION:
            raise InputError(f"{source}: run record version {version} is newer than this segaudit reads "
                             f"({cls.RECORD_VERSION}); upgrade segaudit")
        clc = data.get("clc")
        regions = data.get("regions")
        reviewed = data.get("reviewed")
        calibration = data.get("calibration")
        return cls(
            segaudit_version=read.get("segaudit_version", _TEXT),
            command=read.get("command", _TEXT),
            ranking=read.get("ranking", _TEXT),
            **{name: read.get(name, kind) for name, kind in _OPTIONS.items()},
            images_scored=read.get("images_scored", _COUNT),
            images_without_scored_pixels=read.get("images_without_scored_pixels", _TEXTS),
            skipped_masks_without_prediction=read.get("skipped_masks_without_prediction", _TEXTS),
            skipped_predictions_without_mask=read.get("skipped_predictions_without_mask", _TEXTS),
            clc=None if clc is None else ClcRecord.from_dict(clc, source),
            warnings=read.get("warnings", _TEXTS),
            regions=None if regions is None else RegionsRecord.from_dict(regions, source),
            reviewed=None if reviewed is None else ReviewRecord.from_dict(reviewed, source),
            calibration=None if calibration is None else CalibrationRecord.from_dict(calibration, source),
            absent=frozenset(name for name in cls.keys() if name not in data),
        )
