"""Machine-readable tables: the same rows as CSV, JSON Lines or one JSON document.

Every command with ``--format`` renders through here, so the formats agree: CSV with a
header row (empty field for a missing value), JSONL with one object per row, JSON with
``{"columns": [...], "rows": [{...}, ...]}``; missing numbers are null, floats are written
in full precision. Every command that reads such a table (a ranking, a truth file, a
class-confusion summary) reads it with :func:`read_table`, in any of the three formats.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, one_line

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


@dataclass
class Table:
    """A table read by :func:`read_table`: every value as text ('' for a missing one)."""

    path: Path
    header: list[str]
    rows: list[dict[str, str]]
    places: list[str]  # where each row is, for messages: "line 3" (csv, jsonl) or "row 2" (json)

    def error(self, index: int, problem: str) -> InputError:
        """An InputError about row ``index``, naming the file and where the row is."""
        return InputError(f"{self.path} {self.places[index]}: {problem}")


def _text(value) -> str:
    return "" if value is None else str(value)


def _csv_rows(text: str, path: Path, what: str) -> tuple[list[str], list[dict[str, str]], list[str]]:
    reader = csv.reader(io.StringIO(text))
    rows, places = [], []
    try:
        header = [name.strip() for name in next(reader, [])]
        for values in reader:
            if not values:  # a blank line
                continue
            place = f"line {reader.line_num}"
            if len(values) != len(header):
                raise InputError(f"{path} {place}: {len(values)} fields, the header has {len(header)}")
            rows.append(dict(zip(header, values)))
            places.append(place)
    except csv.Error as exc:
        raise InputError(f"{path}: cannot read {what}: {one_line(exc)}") from None
    return header, rows, places


def _json_rows(text: str, path: Path, what: str) -> tuple[list[str], list[dict[str, str]], list[str]]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None  # JSON Lines: one object per line
    if isinstance(document, dict) and isinstance(document.get("rows"), list):
        records = document["rows"]
        places = [f"row {n}" for n in range(1, len(records) + 1)]
        header = document.get("columns")
        if header is None:
            header = list(records[0]) if records and isinstance(records[0], dict) else []
        if not isinstance(header, list) or not all(isinstance(name, str) for name in header):
            raise InputError(f"{path}: {what} 'columns' must be a list of column names")
    else:
        records, places = [], []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path} line {number}: {what} is neither CSV nor JSON ({exc.msg})") from None
                places.append(f"line {number}")
        header = list(records[0]) if records and isinstance(records[0], dict) else []
    for record, place in zip(records, places):
        if not isinstance(record, dict) or set(record) != set(header):
            raise InputError(f"{path} {place}: expected an object with the columns {','.join(header)}")
    return header, [{name: _text(record[name]) for name in header} for record in records], places


def read_table(path: str | Path, what: str = "table", *, unique: str | None = None) -> Table:
    """Read a table in any of :data:`FORMATS` (what :func:`render` writes; a UTF-8 BOM is
    skipped): the header and every row, values as text.

    ``what`` names the table in messages. ``unique``: a column whose values must not repeat
    (checked when the table has it). InputError, one line naming the file (and the line or
    row), for a missing or unreadable file or a malformed table.
    """
    from .files import require_regular_file

    path = Path(path)
    require_regular_file(path, what)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what}: {one_line(exc)}") from None
    parse = _json_rows if text.lstrip().startswith("{") else _csv_rows
    table = Table(path, *parse(text, path, what))
    if unique is not None and unique in table.header:
        seen: set[str] = set()
        for index, row in enumerate(table.rows):
            if row[unique] in seen:
                raise table.error(index, f"{unique} {row[unique]!r} is listed twice")
            seen.add(row[unique])
    return table


def read_image_table(path: str | Path, what: str) -> Table:
    """A table (any of :data:`FORMATS`) with a unique ``image`` column: a ranking, a truth file."""
    table = read_table(path, what, unique="image")
    if "image" not in table.header:
        raise InputError(f"{path}: {what} has no 'image' column (header: {','.join(table.header) or 'empty'})")
    return table
