"""One reader for the csv, jsonl and json tables that every --format writes."""

from __future__ import annotations

import pytest

from segaudit.errors import InputError
from segaudit.io.tables import read_table, render


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_read_table_reads_what_render_writes(tmp_path, fmt):
    path = tmp_path / f"t.{fmt}"
    path.write_text(render(["image", "score", "n"], [["a,b", 0.25, 3], ["c", float("nan"), None]], fmt))
    table = read_table(path, "table")
    assert table.header == ["image", "score", "n"]
    assert table.rows == [{"image": "a,b", "score": "0.25", "n": "3"}, {"image": "c", "score": "", "n": ""}]


@pytest.mark.parametrize("text, message", [
    ("image,score\na,1,2\n", "line 2: 3 fields, the header has 2"),
    ('{"image": "a"}\n{"image": \n', "line 2: table is neither CSV nor JSON"),
    ('{"image": "a"}\n{"name": "b"}\n', "line 2: expected an object with the columns image"),
    ('{"columns": ["image"], "rows": [1]}', "row 1: expected an object with the columns image"),
    ('{"columns": "image", "rows": []}', "'columns' must be a list of column names"),
    ("image\na\na\n", "line 3: image 'a' is listed twice"),
])
def test_read_table_errors_are_one_line(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        read_table(path, "table", unique="image")
    assert str(error.value).startswith(str(path)) and message in str(error.value)
    assert "\n" not in str(error.value)


def test_read_table_missing_file(tmp_path):
    with pytest.raises(InputError, match="^table not found: "):
        read_table(tmp_path / "nope.csv", "table")
    with pytest.raises(InputError, match="is a directory"):
        read_table(tmp_path, "table")


def test_a_confusion_summary_in_json_feeds_the_report(tmp_path):
    from segaudit.io.confusions import load_confusions
    from segaudit.results import CONFUSION_COLUMNS

    rows = [["car", "road", 10, 2, 0.5]]
    for fmt in ("csv", "jsonl", "json"):
        path = tmp_path / f"c.{fmt}"
        path.write_text(render(CONFUSION_COLUMNS, rows, fmt))
        assert load_confusions(path) == [("car", "road", 10, 2, 0.5)]
