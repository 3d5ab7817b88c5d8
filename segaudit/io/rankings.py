"""Reading a ranking written by ``segaudit score`` (csv, jsonl or json) and its run record."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, one_line
from ..results import RANKING_IMAGE_COLUMNS, RANKING_LEAD_COLUMNS, RANKING_NOT_SCORES, RunRecord
from .files import run_record_path
from .tables import read_image_table, read_table


@dataclass(frozen=True)
class RankedImage:
    """One row of a ranking CSV."""

    rank: int
    image_id: str
    score: float  # NaN when the image has no scored pixel
    scores: dict[str, float]  # every method column
    pixels: int | None
    low_pixels: int | None
    suspect: str
    likely: str
    regions: int | None = None  # score --regions: regions scoring >= 0.5
    worst_region: str = ""  # and the worst one's kind
    worst_slice: int | None = None  # a volume's worst slice (the column exists for volumes only)


@dataclass
class Ranking:
    """A ranking CSV written by ``segaudit score`` and, when present, its run record."""

    path: Path
    rows: list[RankedImage]  # in file order (rank order)
    methods: list[str]  # the method columns, ranking method first
    record: RunRecord | None
    record_path: Path

    @property
    def method(self) -> str:
        return self.methods[0] if self.methods else "score"

    @property
    def digits(self) -> int:
        """Width of the zero-padded rank in overlay names, so that names sort by rank."""
        return max(4, len(str(max((r.rank for r in self.rows), default=0))))

    def by_id(self) -> dict[str, RankedImage]:
        return {r.image_id: r for r in self.rows}


def _float(text: str) -> float:
    return float(text) if text.strip() else math.nan


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip() else None


def load_ranking(path: str | Path, *, need_record: bool = True) -> Ranking:
    """Read a ranking CSV and its run record (``<stem>.run.json``).

    InputError for a missing or malformed file; a missing run record is an error only
    with ``need_record``.
    """
    path = Path(path)
    record_path = run_record_path(path)
    if not path.is_file():
        raise InputError(f"ranking not found: {path} (run segaudit score first, or pass --ranking FILE)")
    table = read_table(path, "ranking", unique="image")
    header = table.header
    if not header or not set(RANKING_LEAD_COLUMNS) <= set(header):
        raise InputError(f"{path}: not a segaudit ranking (needs the columns rank, image and score)")
    column = {name: i for i, name in enumerate(header)}
    end = column.get(RANKING_IMAGE_COLUMNS[0], len(header))  # the method columns end where the image's begin
    methods = [name for name in header[column["score"] + 1:end]]
    rows: list[RankedImage] = []
    for index, get in enumerate(table.rows):
        try:
            rows.append(RankedImage(
                rank=int(get["rank"]), image_id=get["image"], score=_float(get["score"]),
                scores={m: _float(get[m]) for m in methods},
                pixels=_int(get.get("pixels")), low_pixels=_int(get.get("low_pixels")),
                suspect=get.get("suspect_class", ""), likely=get.get("likely_class", ""),
                regions=_int(get.get("regions")), worst_region=get.get("worst_region") or "",
                worst_slice=_int(get.get("worst_slice")),
            ))
        except ValueError as exc:
            raise table.error(index, str(exc)) from None
    record = None
    if record_path.is_file():
        record = read_run_record(record_path)
    elif need_record:
        raise InputError(f"run record not found: {record_path} (segaudit score writes it next to {path.name})")
    if not methods and record and record.methods:
        methods = list(record.methods)
    return Ranking(path=path, rows=rows, methods=methods, record=record, record_path=record_path)


def read_run_record(path: str | Path) -> RunRecord:
    """Read and check a run record (``<stem>.run.json``); InputError naming the file and,
    for a malformed field, the field."""
    from .files import require_regular_file

    path = Path(path)
    require_regular_file(path, "run record")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read run record: {one_line(exc)}") from None
    return RunRecord.from_dict(data, path)


def read_score_columns(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """A ranking (CSV, JSON or JSON Lines, as ``segaudit score --format`` writes it) ->
    (image ids, {score column: float64 scores, NaN for empty}).

    For ``segaudit evaluate``, which also takes other tools' rankings (an ``image`` column and
    score columns). The score columns are every column but those of :data:`RANKING_NOT_SCORES`; ``score`` is left out when method columns are
    present (it repeats the first of them).
    """
    path = Path(path)
    table = read_image_table(path, "ranking")
    columns = [name for name in table.header if name not in RANKING_NOT_SCORES]
    if len(columns) > 1 and "score" in columns:
        columns.remove("score")
    if not columns:
        raise InputError(f"{path}: ranking has no score column (header: {','.join(table.header)})")
    if not table.rows:
        raise InputError(f"{path}: ranking has no rows")
    scores = {name: np.empty(len(table.rows)) for name in columns}
    for index, row in enumerate(table.rows):
        for name in columns:
            text = row[name].strip()
            try:
                value = float(text) if text else math.nan
            except ValueError:
                raise table.error(index, f"column {name!r} is not a number: {text!r}") from None
            if math.isinf(value):
                raise table.error(index, f"column {name!r} is infinite")
            if text and math.isnan(value):  # an empty cell is the one way to say "no score"
                raise table.error(index, f"column {name!r} is {text!r} (leave the cell empty for an image "
                                         "with no scored pixel)")
            scores[name][index] = value
    return [row["image"] for row in table.rows], scores
