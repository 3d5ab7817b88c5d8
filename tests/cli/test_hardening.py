"""Hardening: no command writes over what it reads, signals clean up, no tracebacks.

Every refusal is ``error: <one line>`` on stderr, exit 2, and nothing written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from datasets import FIXTURES, make_dataset
from segaudit.cli import app


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def snapshot(root: Path) -> dict[str, str]:
    """Every file and symlink under ``root`` with a hash of its contents."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = "link:" + os.readlink(path)
        elif path.is_file():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[str(path.relative_to(root))] = "dir"
    return found


def refused(result, *fragments):
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def work(tmp_path, monkeypatch):
    """The bundled fixtures copied into tmp, a ranking of them, a classes file; cwd = tmp."""
    shutil.copytree(FIXTURES / "masks", tmp_path / "masks")
    shutil.copytree(FIXTURES / "preds.zarr", tmp_path / "preds.zarr")
    shutil.copy(FIXTURES / "truth.csv", tmp_path / "truth.csv")
    (tmp_path / "classes.txt").write_text("a\nb\nc\nd\ne\nf\ng\nh\n")
    monkeypatch.chdir(tmp_path)
    result = run("score", "masks", "preds.zarr", "-o", "ranking.csv", "-m", "all", "-q")
    assert result.exit_code == 0, result.output
    return tmp_path


def first_mask(root: Path) -> Path:
    return sorted((root / "masks").rglob("*.png"))[0].relative_to(root)


OVERWRITES = {
    "score -o mask": lambda w: ["score", "masks", "preds.zarr", "-o", first_mask(w)],
    "score -o store metadata": lambda w: ["score", "masks", "preds.zarr", "-o", "preds.zarr/zarr.json"],
    "score -o classes file": lambda w: ["score", "masks", "preds.zarr", "--classes", "classes.txt", "-o", "classes.txt"],
    "score -o masks dir": lambda w: ["score", "masks", "preds.zarr", "-o", "masks"],
    "score --summary-md mask": lambda w: ["score", "masks", "preds.zarr", "-o", "r2.csv", "--summary-md", first_mask(w)],
    "score -o baseline": lambda w: ["score", "masks", "preds.zarr", "-m", "clc", "--baseline", "ranking.csv",
                                    "-o", "ranking.csv"],
    "summary --csv mask": lambda w: ["summary", "masks", "preds.zarr", "--csv", first_mask(w)],
    "corrupt --truth mask": lambda w: ["corrupt", "masks", "--out", "bad", "--kind", "drop", "--rate", "0.5",
                                       "--truth", first_mask(w)],
    "corrupt --out parent of masks": lambda w: ["corrupt", "masks/..", "--out", ".", "--kind", "drop", "--rate",
                                                "0.5", "--truth", "t.csv"],
    "issues --out masks": lambda w: ["issues", "masks", "preds.zarr", "--out", "masks"],
    "issues --out in store": lambda w: ["issues", "masks", "preds.zarr", "--out", "preds.zarr/x"],
    "report -o ranking": lambda w: ["report", "-r", "ranking.csv", "-o", "ranking.csv"],
    "report -o run record": lambda w: ["report", "-r", "ranking.csv", "-o", "ranking.run.json"],
    "evaluate -o ranking": lambda w: ["evaluate", "ranking.csv", "truth.csv", "-o", "ranking.csv"],
    "evaluate -o truth": lambda w: ["evaluate", "ranking.csv", "truth.csv", "-o", "truth.csv"],
    "overlay --out masks": lambda w: ["overlay", "-r", "ranking.csv", "--out", "masks", "--top", "2"],
    "overlay --out store": lambda w: ["overlay", "-r", "ranking.csv", "--out", "preds.zarr", "--top", "2"],
    "pack-masks -o over its labels": lambda w: ["pack-masks", "labels.npy", "-o", ".", "--overwrite"],
}


@pytest.mark.parametrize("name", OVERWRITES)
def test_no_command_writes_over_its_inputs(work, name):
    import numpy as np

    np.save(work / "labels.npy", np.zeros((2, 4, 4), np.uint8))
    before = snapshot(work)
    refused(run(*OVERWRITES[name](work)), "refusing to write over an input")
    assert snapshot(work) == before


def test_symlinked_output_onto_an_input_is_refused(work):
    (work / "link.csv").symlink_to(work / first_mask(work))
    before = snapshot(work)
    refused(run("score", "masks", "preds.zarr", "-o", "link.csv"), "refusing to write over an input")
    assert snapshot(work) == before


def test_outputs_beside_the_inputs_are_still_written(work):
    result = run("score", "masks", "preds.zarr", "-o", "masks.csv", "-q", "--summary-md", "summary.md")
    assert result.exit_code == 0, result.output
    assert (work / "masks.csv").is_file() and (work / "summary.md").is_file()


# --- (3) one line and exit 2, never a traceback ----------------------------------------


def _store_with(work: Path, edit) -> Path:
    """A copy of the fixture store whose first array's zarr.json (or the group's) is edited."""
    import json

    store = work / "edited.zarr"
    shutil.copytree(work / "preds.zarr", store)
    edit(store, json)
    return store


def _arrays(store, json):
    return [p for p in sorted(store.rglob("zarr.json")) if json.loads(p.read_text())["node_type"] == "array"]


def _classes_42(store, json):
    meta = json.loads((store / "zarr.json").read_text())
    meta.setdefault("attributes", {})["classes"] = 42
    (store / "zarr.json").write_text(json.dumps(meta))


def _chunk_zero(store, json):
    path = _arrays(store, json)[0]
    meta = json.loads(path.read_text())
    meta["chunk_grid"]["configuration"]["chunk_shape"][1] = 0
    path.write_text(json.dumps(meta))


def _grid_mismatch(store, json):
    for path in _arrays(store, json):
        meta = json.loads(path.read_text())
        meta["chunk_grid"]["configuration"]["chunk_shape"][1] //= 4
        path.write_text(json.dumps(meta))


def _bad_array_json(store, json):
    _arrays(store, json)[0].write_text('{"zarr_format": 3, "node_type": "array", "shape": [')


@pytest.mark.parametrize("edit, fragment", [(_classes_42, "'classes' must be a list"),
                                            (_chunk_zero, "chunk shape"),
                                            (_grid_mismatch, "cannot read rows"),
                                            (_bad_array_json, "JSONDecodeError")])
def test_malformed_store_metadata_is_one_line(work, edit, fragment):
    store = _store_with(work, edit)
    for _ in range(3):  # the asyncio noise came in some runs only
        result = run("score", "masks", store, "-o", "x.csv")
        refused(result, fragment)
        assert not (work / "x.csv").exists()


@pytest.mark.parametrize("args", [["score", "masks", "preds.zarr", "-m", "clc", "--downsample", "99999999999999999999"],
                                  ["issues", "masks", "preds.zarr", "--downsample", "0", "--out", "iss"],
                                  ["summary", "masks", "preds.zarr", "--downsample", "0"]])
def test_downsample_out_of_range_is_one_line(work, args):
    before = snapshot(work)
    refused(run(*args), "--downsample must be a whole number")
    assert snapshot(work) == before


def test_issue_masks_refuse_downsample_zero_in_the_library(work):
    from segaudit.errors import InputError
    from segaudit.outputs.findings import write_issue_masks

    with pytest.raises(InputError, match="^downsample must be a whole number"):
        write_issue_masks(work / "masks", work / "preds.zarr", work / "iss", downsample=0)
    assert not (work / "iss").exists()


@pytest.mark.parametrize("field, value", [("ignore_index", "abc"), ("ignore_index", [1.5]), ("clc", 7),
                                          ("clc", {"downsample": "x"})])
def test_overlay_with_a_malformed_run_record_is_one_line(work, field, value):
    import json

    record = work / "ranking.run.json"
    data = json.loads(record.read_text())
    data[field] = value
    record.write_text(json.dumps(data))
    refused(run("overlay", "-r", "ranking.csv", "--out", "ov", "--top", "2"), field)
    assert not (work / "ov").exists()


# --- (4) escapes -------------------------------------------------------------------------


def test_issue_masks_do_not_follow_a_symlink_out_of_the_output_directory(work, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (work / "iss").mkdir()
    ids = [line.split(",")[1] for line in (work / "ranking.csv").read_text().splitlines()[1:]]
    folder = ids[0].split("/")[0]
    (work / "iss" / folder).symlink_to(outside, target_is_directory=True)
    before = snapshot(work)
    refused(run("issues", "masks", "preds.zarr", "--out", "iss", "--top", str(len(ids))), "leads outside")
    assert os.listdir(outside) == []
    assert snapshot(work) == before


def test_summary_md_escapes_class_names_and_image_ids(tmp_path):
    from markdown_it import MarkdownIt

    ds = make_dataset(tmp_path / "d", ids=("a`b/x", "c``d/y|z", "plain"), flip_fraction=0.6)
    classes = "<b>road</b>,<img src=x onerror=alert(1)>,*sky*,[car](http://x)"
    summary = tmp_path / "summary.md"
    result = run("score", ds.masks, ds.store, "-o", tmp_path / "r.csv", "--classes", classes, "--summary-md",
                 summary, "-q")
    assert result.exit_code == 0, result.output
    html = MarkdownIt("commonmark").enable("table").render(summary.read_text())
    assert "<b>" not in html and "<img" not in html and "<em>" not in html and "<a " not in html
    for image_id in ("a`b/x", "c``d/y|z", "plain"):
        assert f"<code>{image_id.replace('<', '&lt;')}</code>" in html, (image_id, html)


# --- (5) hangs and environment ------------------------------------------------------------


def test_a_fifo_where_a_mask_should_be_is_refused_not_read(work):
    import subprocess
    import sys

    import segaudit

    fifo = work / "masks" / "city_a" / "fifo.png"
    os.mkfifo(fifo)
    env = dict(os.environ, PYTHONPATH=str(Path(segaudit.__file__).resolve().parent.parent))
    for command in (["score", "masks", "preds.zarr", "-o", "x.csv"], ["check", "masks", "preds.zarr"]):
        done = subprocess.run([sys.executable, "-m", "segaudit", *command], capture_output=True, text=True,
                              timeout=120, env=env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [f"error: {Path('masks/city_a/fifo.png')}: not a regular file "
                                            "(a mask must be a PNG file)"]
    assert not (work / "x.csv").exists()


# --- (6) options that passed silently ------------------------------------------------------


@pytest.mark.parametrize("args, fragment", [
    (["score", "masks", "preds.zarr", "-o", "x.csv", "--top", "-1"], "--top must be >= 0"),
    (["summary", "masks", "preds.zarr", "--top", "-1"], "--top must be >= 0"),
    (["check", "masks", "preds.zarr", "--sample", "-1"], "--sample must be >= 0"),
    (["score", "masks", "preds.zarr", "-o", "x.csv", "--fail-under", "nan"], "--fail-under must be a finite"),
    (["score", "masks", "preds.zarr", "-o", "x.csv", "-m", "rsoftmin", "--baseline", "nope.csv"], "needs clc in --method"),
    (["overlay", "-r", "ranking.csv", "--out", "ov", "--palette", "classes.txt"], "classes.txt"),
])
def test_bad_option_values_are_refused(work, args, fragment):
    before = snapshot(work)
    refused(run(*args), fragment)
    assert snapshot(work) == before


def test_evaluate_refuses_a_nan_score(work):
    lines = (work / "ranking.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("cil")] = "nan"
    (work / "ranking.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    refused(run("evaluate", "ranking.csv", "truth.csv"), "'cil' is 'nan'")
