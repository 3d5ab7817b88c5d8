"""Reading a class-confusion summary (``segaudit summary --csv`` or ``--format``), as
``segaudit report --confusions`` shows it: the columns of :data:`segaudit.results.CONFUSION_COLUMNS`."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..results import CONFUSION_COLUMNS
from .tables import read_table

#: One row of the class-confusion summary: (annotated, seen instead, pixels, images, share).
ConfusionRow = tuple[str, str, int, int, float]


def load_confusions(path: str | Path) -> list[ConfusionRow]:
    """Read a class-confusion summary (columns annotated,predicted,pixels,images,share) in
    any of the ``--format``s ``segaudit summary`` writes."""
    table = read_table(path, "confusion summary")
    missing = [c for c in CONFUSION_COLUMNS if c not in table.header]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} "
                         f"(expected {','.join(CONFUSION_COLUMNS)})")
    rows = []
    for index, row in enumerate(table.rows):
        try:
            rows.append((row["annotated"], row["predicted"], int(row["pixels"]), int(row["images"]),
                         float(row["share"])))
        except ValueError as exc:
            raise table.error(index, str(exc)) from None
    return rows
