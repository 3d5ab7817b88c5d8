"""Writing a run's ranking: the CSV and the run record beside it, atomically."""

from __future__ import annotations

from pathlib import Path

from ..io.files import atomic_write_all, run_record_path
from ..io.tables import render
from ..results import RunRecord, ScoreRun, ranking_columns


def ranking_rows(run: ScoreRun) -> list[list]:
    """One row per image, worst first, in :func:`segaudit.results.ranking_columns` order."""
    key = run.methods[0]
    return [
        [rank, result.image_id, result.scores[key], *(result.scores[m] for m in run.methods),
         result.pixels, result.low_pixels,
         run.class_name(result.suspect_class) or None, run.class_name(result.likely_class) or None,
         *([result.regions, result.worst_region] if run.regions is not None else []),
         *([result.worst_slice] if run.volumes else [])]
        for rank, result in enumerate(run.results, 1)
    ]


def ranking_text(run: ScoreRun, fmt: str = "csv") -> str:
    """The ranking as CSV (byte-identical for the same input), JSON Lines or JSON."""
    return render(ranking_columns(run.methods, run.regions is not None, run.volumes), ranking_rows(run), fmt)


def write_ranking(run: ScoreRun, csv_path: str | Path, fmt: str = "csv") -> Path:
    """Write the CSV and its run record (``<stem>.run.json``); return the record's path.

    Both are written to temporary files first and renamed into place only when both are
    complete.
    """
    csv_path = Path(csv_path)
    record_path = run_record_path(csv_path)
    record = RunRecord.from_run(run, csv_path.name)
    atomic_write_all({csv_path: ranking_text(run, fmt), record_path: record.to_json()})
    return record_path
