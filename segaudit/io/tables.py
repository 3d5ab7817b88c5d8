"""Machine-readable tables: the same rows as CSV, JSON Lines or one JSON document.

Every command with ``--format`` renders through here, so the formats agree: CSV with a
header row (empty field for a missing value), JSONL with one object per row, JSON with
``{"columns": [...], "rows": [{...}, ...]}``; missing numbers are null, floats are written
in full precision.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence

FORMATS = ("csv", "jsonl", "json")


def _json_value(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _csv_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same float
    return str(value)


def render(columns: Sequence[str], rows: Iterable[Sequence], fmt: str = "csv") -> str:
    """The rows (sequences in column order) as text in ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    rows = list(rows)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_csv_value(v) for v in row] for row in rows)
        return buffer.getvalue()
    records = [{c: _json_value(v) for c, v in zip(columns, row)} for row in rows]
    if fmt == "jsonl":
        return "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
    return json.dumps({"columns": list(columns), "rows": records}, indent=1, allow_nan=False) + "\n"
