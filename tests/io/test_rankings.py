"""The run record: one writer (RunRecord.to_json), one reader (read_run_record) that checks
every field."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from datasets import FIXTURES
from segaudit.cli import app
from segaudit.errors import InputError
from segaudit.io.rankings import load_ranking, read_run_record
from segaudit.results import ClcRecord, RunRecord


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    directory = tmp_path_factory.mktemp("scored")
    result = CliRunner().invoke(app, ["score", str(FIXTURES / "masks"), str(FIXTURES / "preds.zarr"),
                                      "-m", "softmin,clc", "-o", str(directory / "r.csv"), "-q"])
    assert result.exit_code == 0, result.output
    return directory


def one_line_error(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_the_record_reads_back_to_the_same_bytes(scored):
    text = (scored / "r.run.json").read_text()
    record = read_run_record(scored / "r.run.json")
    assert record.to_json() == text
    assert record.methods == ("softmin", "clc") and record.ignore_index == (255,)
    assert isinstance(record.clc, ClcRecord) and record.clc.downsample == 4
    assert RunRecord.from_dict(record.to_dict()) == record


def test_absent_fields_are_none_and_stay_absent():
    record = RunRecord.from_dict({"masks": "/m", "temperature": 0.2})
    assert record.masks == "/m" and record.predictions is None and record.clc is None
    assert record.to_dict() == {"masks": "/m", "temperature": 0.2}
    assert RunRecord.from_dict({"record_version": RunRecord.RECORD_VERSION}).to_dict() == {}


@pytest.mark.parametrize("change, field", [
    ({"ignore_index": "255"}, "'ignore_index' must be a list of whole numbers >= 0"),
    ({"ignore_index": [-1]}, "'ignore_index'"),
    ({"classes": [1, 2]}, "'classes' must be a list of text"),
    ({"pixel_threshold": True}, "'pixel_threshold' must be a number"),
    ({"clc": [1]}, "'clc' must be a JSON object"),
    ({"clc": {"downsample": 4}}, "no 'clc.thresholds' field"),
    ({"clc": {"downsample": 4, "thresholds": [0.5], "issues": 1, "cut_bits": "x", "cut_ties": 0, "passes": 3}},
     "'clc.cut_bits' must be a whole number >= 0 or null, got 'x'"),
    ({"clc": {"downsample": 4, "thresholds": [0.5], "issues": 1, "cut_bits": 3, "cut_ties": None, "passes": 3}},
     "'clc.cut_ties' must be null exactly when"),
    ({"record_version": 99}, "run record version 99 is newer"),
])
def test_a_malformed_field_is_a_one_line_error_naming_file_and_field(tmp_path, change, field):
    path = tmp_path / "r.run.json"
    path.write_text(json.dumps({"masks": "/m", "predictions": "/p", **change}))
    with pytest.raises(InputError) as error:
        read_run_record(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and field in message and "\n" not in message


def test_commands_report_a_malformed_record(scored, tmp_path):
    record = json.loads((scored / "r.run.json").read_text())
    (tmp_path / "r.csv").write_bytes((scored / "r.csv").read_bytes())
    (tmp_path / "r.run.json").write_text(json.dumps({**record, "ignore_index": "none"}))
    line = one_line_error("overlay", "-r", tmp_path / "r.csv", "-o", tmp_path / "ov", "-q")
    assert "r.run.json: malformed run record: 'ignore_index'" in line
    (tmp_path / "r.run.json").write_text(json.dumps({**record, "clc": {**record["clc"], "downsample": 0}}))
    line = one_line_error("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "-m", "softmin,clc",
                          "--baseline", tmp_path / "r.csv", "-o", tmp_path / "s.csv", "-q")
    assert line.startswith("error: --baseline: ") and "'clc.downsample' must be a whole number >= 1" in line
    assert not (tmp_path / "s.csv").exists()


def test_a_baseline_may_be_a_dict_or_a_record(scored):
    import segaudit

    record = read_run_record(scored / "r.run.json")
    inputs = dict(methods=("softmin", "clc"), only=["city_a/0001", "city_b/0002"])
    typed = segaudit.score(FIXTURES / "masks", FIXTURES / "preds.zarr", baseline=record.clc, **inputs)
    plain = segaudit.score(FIXTURES / "masks", FIXTURES / "preds.zarr", baseline=record.clc.to_dict(), **inputs)
    assert [r.flagged_pixels for r in typed.results] == [r.flagged_pixels for r in plain.results]
    assert typed.clc.record() == plain.clc.record()


def test_ranking_in_every_format(scored, tmp_path):
    csv_rows = load_ranking(scored / "r.csv").rows
    for fmt in ("jsonl", "json"):
        result = CliRunner().invoke(app, ["score", str(FIXTURES / "masks"), str(FIXTURES / "preds.zarr"),
                                          "-m", "softmin,clc", "-o", str(tmp_path / f"r.{fmt}"), "--format", fmt, "-q"])
        assert result.exit_code == 0, result.output
        assert load_ranking(tmp_path / f"r.{fmt}").rows == csv_rows
