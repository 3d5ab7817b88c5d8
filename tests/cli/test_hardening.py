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


# --- (7) bounded waits: a server that never answers, FIFOs, numbers beyond the data -------


def segaudit_cli(*args, env: dict | None = None, timeout: float = 120):
    """The real CLI in a subprocess (a hang fails the test instead of blocking it): (rc, stderr, seconds)."""
    import subprocess
    import sys
    import time

    import segaudit

    environment = dict(os.environ, PYTHONPATH=str(Path(segaudit.__file__).resolve().parent.parent),
                       AWS_EC2_METADATA_DISABLED="true", **(env or {}))
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "segaudit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=environment)
    return done.returncode, done.stderr, time.monotonic() - start


def one_error_line(rc: int, err: str, *fragments: str) -> str:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def silent_port():
    """A port on 127.0.0.1 whose server accepts every connection and never sends a byte."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


S3_KEYS = '"key": "testing", "secret": "testing"'


@pytest.mark.parametrize("where", ["http store", "http masks", "s3 store", "s3 masks"])
def test_a_url_that_never_answers_fails_within_the_timeout(work, silent_port, where):
    protocol, what = where.split()
    url = f"http://127.0.0.1:{silent_port}/x" if protocol == "http" else "s3://bucket/x"
    options = [] if protocol == "http" else \
        ["--storage-options", f'{{"endpoint_url": "http://127.0.0.1:{silent_port}", {S3_KEYS}}}']
    inputs = [url, "preds.zarr"] if what == "masks" else ["masks", url]
    before = snapshot(work)
    rc, err, seconds = segaudit_cli("score", *inputs, "-o", "x.csv", "--timeout", "1", *options)
    one_error_line(rc, err, "no answer within 1 s", "--timeout", "masks directory" if what == "masks"
                   else "prediction store")
    assert seconds < 60, seconds  # a few requests of 1 s (S3: two tries each) and the start-up
    assert snapshot(work) == before


def test_a_scheduler_that_never_answers_fails_within_the_timeout(work, silent_port):
    before = snapshot(work)
    rc, err, seconds = segaudit_cli("score", "masks", "preds.zarr", "-o", "x.csv", "--timeout", "1",
                                    "--scheduler", f"tcp://127.0.0.1:{silent_port}")
    one_error_line(rc, err, "cannot connect to the Dask scheduler", "no answer within 1 s (--timeout)")
    assert seconds < 60, seconds
    assert snapshot(work) == before


def test_the_timeouts_become_each_filesystems_own_settings():
    import aiohttp

    from segaudit.cli._options import DEFAULT_TIMEOUT
    from segaudit.errors import InputError
    from segaudit.io import remote

    assert DEFAULT_TIMEOUT == remote.DEFAULT_TIMEOUT
    http = remote.filesystem_options("https://host/x", {})
    assert isinstance(http["client_kwargs"]["timeout"], aiohttp.ClientTimeout)
    assert http["client_kwargs"]["timeout"].sock_read == remote.DEFAULT_TIMEOUT
    s3 = remote.filesystem_options("s3://b/x", {"timeout": 7, "config_kwargs": {"read_timeout": 99}})
    assert s3["config_kwargs"] == {"connect_timeout": 7, "read_timeout": 99, "retries": {"max_attempts": 1}}
    assert "timeout" not in s3
    assert remote.filesystem_options("gs://b/x", {"timeout": 5, "project": "p"}) == {"project": "p"}
    for bad in (0, -1, float("nan"), float("inf"), "10", True):
        with pytest.raises(InputError, match="--timeout must be a positive number of seconds"):
            remote.filesystem_options("s3://b/x", {"timeout": bad})


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_bad_timeout_is_refused(work, value):
    before = snapshot(work)
    refused(run("score", "masks", "preds.zarr", "-o", "x.csv", "--timeout", value), "--timeout must be a positive")
    assert snapshot(work) == before


def test_dask_workers_beyond_the_machine_are_refused(work):
    from segaudit.distributed import max_local_workers

    before = snapshot(work)
    refused(run("score", "masks", "preds.zarr", "-o", "x.csv", "--dask-workers", "10000"),
            f"at most {max_local_workers()} local worker processes", "--scheduler")
    assert snapshot(work) == before


def test_a_local_dask_cluster_leaves_no_scratch_space(work, tmp_path_factory):
    pytest.importorskip("distributed")
    tmpdir = tmp_path_factory.mktemp("tmpdir")
    rc, err, _ = segaudit_cli("score", "masks", "preds.zarr", "-o", "d.csv", "-q", "--dask-workers", "1",
                              env={"TMPDIR": str(tmpdir)}, timeout=300)
    assert rc == 0, err
    assert os.listdir(tmpdir) == []  # no dask-scratch-space, no segaudit-dask-* directory
    assert run("score", "masks", "preds.zarr", "-o", "local.csv", "-q").exit_code == 0
    assert (work / "d.csv").read_text() == (work / "local.csv").read_text()


FIFO_READS = {
    "score --reviewed": ["score", "masks", "preds.zarr", "-o", "x.csv", "--reviewed", "fifo"],
    "score --only": ["score", "masks", "preds.zarr", "-o", "x.csv", "--only", "fifo"],
    "score --label-map": ["score", "masks", "preds.zarr", "-o", "x.csv", "--label-map", "fifo"],
    "score --palette": ["score", "masks", "preds.zarr", "-o", "x.csv", "--palette", "fifo"],
    "score --classes": ["score", "masks", "preds.zarr", "-o", "x.csv", "--classes", "fifo"],
    "regions --only": ["regions", "masks", "preds.zarr", "-o", "x.csv", "--only", "fifo"],
    "diff --reviewed": ["diff", "ranking.csv", "ranking.csv", "--reviewed", "fifo"],
    "evaluate truth": ["evaluate", "ranking.csv", "fifo"],
    "export --decisions": ["export", "--to", "coco", "-r", "ranking.csv", "--decisions", "fifo", "-o", "x.json"],
    "export --regions": ["export", "--to", "coco", "-r", "ranking.csv", "--regions", "fifo", "-o", "x.json"],
    "pack-masks --ids": ["pack-masks", "labels.npy", "--ids", "fifo", "-o", "pm"],
}


@pytest.mark.parametrize("name", FIFO_READS)
def test_a_fifo_is_refused_for_every_file_a_command_reads(work, name):
    import numpy as np

    np.save(work / "labels.npy", np.zeros((2, 4, 4), np.uint8))
    os.mkfifo(work / "fifo")
    before = snapshot(work)
    rc, err, _ = segaudit_cli(*FIFO_READS[name], timeout=60)
    one_error_line(rc, err, "fifo: not a regular file")
    assert snapshot(work) == before


def test_a_band_wider_than_the_image_is_the_image(work):
    import time

    start = time.monotonic()
    result = run("regions", "masks", "preds.zarr", "-o", "huge.csv", "--band", "99999999999999999999", "-q")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - start < 60
    result = run("regions", "masks", "preds.zarr", "-o", "side.csv", "--band", "1024", "-q")  # > every side
    assert result.exit_code == 0, result.output
    assert (work / "huge.csv").read_text() == (work / "side.csv").read_text()


# --- (8) staged outputs: proposals and issue masks appear all at once or not at all -------


@pytest.mark.parametrize("command", ["regions", "issues"])
def test_a_write_that_fails_mid_pass_leaves_no_proposal_or_issue_mask(tmp_path, command):
    """The last image's file cannot be written (a directory stands there): the images before
    it were complete, and none of them may be left."""
    ds = make_dataset(tmp_path, ids=[f"c/{i:02d}" for i in range(12)], size=(24, 32), flip_fraction=0.4)
    out = tmp_path / "out"
    (out / "c" / "11.png").mkdir(parents=True)
    args = {"regions": ["regions", ds.masks, ds.store, "-o", tmp_path / "r.csv", "--propose-dir", out,
                        "--min-score", "0"],
            "issues": ["issues", ds.masks, ds.store, "--out", out, "--method", "threshold", "--top", "12"]}[command]
    before = snapshot(tmp_path)
    refused(run(*args), "is a directory")
    assert snapshot(tmp_path) == before, sorted(out.rglob("*"))


def test_a_symlink_in_the_propose_dir_is_refused_before_any_proposal_is_left(work, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (work / "fixes").mkdir()
    (work / "fixes" / "city_b").symlink_to(outside, target_is_directory=True)  # city_a's come first
    before = snapshot(work)
    refused(run("regions", "masks", "preds.zarr", "-o", "r.csv", "--propose-dir", "fixes", "--min-score", "0"),
            "leads outside")
    assert os.listdir(outside) == []
    assert snapshot(work) == before


@pytest.mark.parametrize("output", ["fixes/regions.csv", "fixes/city_a/0000.png", "fixes"])
def test_the_region_table_inside_the_propose_dir_is_refused(work, output):
    (work / "fixes").mkdir()
    before = snapshot(work)
    refused(run("regions", "masks", "preds.zarr", "-o", output, "--propose-dir", "fixes"),
            "is inside --propose-dir")
    assert snapshot(work) == before


def test_staged_directory_moves_every_file_in_or_none(tmp_path):
    from segaudit.io.files import staged_directory

    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_directory(out, ".stage-") as staged:
            staged.path("a/b.txt").write_text("b")
            raise RuntimeError("mid-pass")
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("k")
    with staged_directory(out, ".stage-") as staged:
        staged.path("a/b.txt").write_text("b")
        staged.path("c.txt").write_text("c")
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".stage-")) == ["keep.txt"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["a", "a/b.txt", "c.txt", "keep.txt"]


# --- (9) one line, never a traceback or a screenful of noise ----------------------------


def _decisions_with_region(work: Path, region: str) -> Path:
    image = (work / "ranking.csv").read_text().splitlines()[1].split(",")[1]
    path = work / "decisions.csv"
    path.write_text(f"image,region,decision,note,mask_sha256\n{image},{region},ok,,\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("args", [["score", "masks", "preds.zarr", "-o", "x.csv", "--reviewed", "decisions.csv"],
                                  ["diff", "ranking.csv", "ranking.csv", "--reviewed", "decisions.csv"],
                                  ["export", "--to", "coco", "-r", "ranking.csv", "--decisions", "decisions.csv",
                                   "-o", "x.json"],
                                  ["report", "-r", "ranking.csv", "--decisions", "decisions.csv", "-o", "x.html"]])
@pytest.mark.parametrize("region", ["²", "١", "0"])
def test_a_region_that_is_no_ascii_number_is_one_line(work, args, region):
    _decisions_with_region(work, region)
    before = snapshot(work)
    refused(run(*args), "region must be empty (the whole image) or a region number >= 1")
    assert snapshot(work) == before


@pytest.mark.parametrize("text, fragment", [('{"0": 0, "1": 1, "1": 2}', "mask value 1 is mapped twice (1 and 2)"),
                                            ('{"0": 0, "²": 1}', "mask value '²' must be a whole number"),
                                            ('{"0": "²"}', "class for mask value 0 must be a class index")])
def test_label_map_json_duplicates_and_unicode_digits_are_one_line(work, text, fragment):
    (work / "map.json").write_text(text, encoding="utf-8")
    before = snapshot(work)
    refused(run("score", "masks", "preds.zarr", "-o", "x.csv", "--label-map", "map.json"), fragment)
    assert snapshot(work) == before


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.5", "1.5"])
def test_report_score_threshold_out_of_range_is_one_line(work, value):
    before = snapshot(work)
    refused(run("report", "-r", "ranking.csv", "--score-threshold", value, "-o", "x.html"),
            "--score-threshold must be a number from 0 to 1")
    assert snapshot(work) == before


@pytest.mark.parametrize("args, fragment", [
    (["score", "masks", "preds.zarr", "-o", "x.csv", "--format", "xml"], "'xml' is not one of 'csv', 'jsonl', 'json'"),
    (["score", "masks", "preds.zarr", "--no-such-option"], "No such option: --no-such-option"),
    (["score", "masks"], "Missing argument 'PREDICTIONS'"),
    (["export", "-r", "ranking.csv"], "Missing option '--to'"),
    (["diff", "ranking.csv", "ranking.csv", "--tolerance", "abc"], "Invalid value for '--tolerance'"),
])
def test_usage_errors_are_one_line(work, args, fragment):
    before = snapshot(work)
    line = refused(run(*args), fragment)
    assert line.endswith("--help lists the options)"), line
    assert snapshot(work) == before


def test_diff_checks_storage_options_without_reviewed(work):
    refused(run("diff", "ranking.csv", "ranking.csv", "--storage-options", "{bad"), "--storage-options: not valid JSON")


def test_requests_left_pending_on_an_event_loop_print_nothing_at_exit(work):
    """A remote read that fails leaves the others of its batch pending on zarr's event loop;
    the interpreter destroys them on exit, which asyncio logs (dozens of lines, some runs only).
    Here one such request is left pending on purpose, deterministically."""
    import subprocess
    import sys

    import segaudit

    script = ("import asyncio, sys\n"
              "import zarr.core.sync as zsync\n"
              "async def never():\n"
              "    try:\n"
              "        await asyncio.sleep(3600)\n"
              "    finally:\n"
              "        await asyncio.sleep(0)\n"
              "asyncio.run_coroutine_threadsafe(never(), zsync._get_loop())\n"
              "sys.argv = ['segaudit', 'score', 'missing', 'preds.zarr', '-o', 'x.csv']\n"
              "from segaudit.cli import main\n"
              "main()\n")
    env = dict(os.environ, PYTHONPATH=str(Path(segaudit.__file__).resolve().parent.parent))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    one_error_line(done.returncode, done.stderr, "masks directory not found: missing")


def test_a_bad_mask_on_a_dask_worker_is_one_line(work):
    pytest.importorskip("distributed")
    from PIL import Image

    import numpy as np

    path = work / first_mask(work)
    with Image.open(path) as image:
        pixels, mode, palette = np.array(image), image.mode, image.getpalette()
    pixels[0, 0] = 200  # >= K and not ignored
    bad = Image.fromarray(pixels, mode=mode)
    if palette:
        bad.putpalette(palette)
    bad.save(path)
    rc, err, _ = segaudit_cli("score", "masks", "preds.zarr", "-o", "x.csv", "--dask-workers", "1", timeout=300)
    one_error_line(rc, err, "label values not below K")
    assert not (work / "x.csv").exists()


def test_a_forged_tiff_header_is_one_line(tmp_path):
    import struct

    tifffile = pytest.importorskip("tifffile")
    import numpy as np
    import zarr

    (tmp_path / "masks").mkdir()
    path = tmp_path / "masks" / "a.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8))
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        places = [(tags[name].valueoffset, int(tags[name].dtype)) for name in ("ImageWidth", "ImageLength")]
    data = bytearray(path.read_bytes())
    for offset, dtype in places:  # 60000 x 60000, with the 16 bytes of a 4 x 4 image behind it
        struct.pack_into({3: "<H", 4: "<I"}[dtype], data, offset, 60000)
    path.write_bytes(bytes(data))
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="w")
    group.create_array("a", shape=(2, 60000, 60000), chunks=(2, 256, 60000), dtype="float16")  # no chunk written
    rc, err, _ = segaudit_cli("score", tmp_path / "masks", tmp_path / "p.zarr", "-o", tmp_path / "x.csv")
    one_error_line(rc, err, "cannot read mask", "a.tif")
    assert not (tmp_path / "x.csv").exists()


# --- (10) input that passed silently -------------------------------------------------------


@pytest.mark.parametrize("url", ["javascript:alert(1)//{id}", " JaVa\tscript:alert(1)//{id}",
                                 "data:text/html,{id}", "vbscript:{id}"])
def test_export_refuses_image_urls_a_browser_would_run(work, url):
    before = snapshot(work)
    refused(run("export", "--to", "label-studio", "-r", "ranking.csv", "--top", "2", "--image-url", url,
                "-o", "tasks.json"), "an image reference must be a path or a")
    assert snapshot(work) == before


def test_export_refuses_an_image_id_that_begins_a_scheme(tmp_path):
    ds = make_dataset(tmp_path, ids=("javascript:alert(1)", "b"), flip_fraction=0.5)
    assert run("score", ds.masks, ds.store, "-o", tmp_path / "r.csv", "-q").exit_code == 0
    refused(run("export", "--to", "label-studio", "-r", tmp_path / "r.csv", "--top", "2", "--image-url", "{id}",
                "-o", tmp_path / "tasks.json"), "not javascript:")
    assert not (tmp_path / "tasks.json").exists()


@pytest.mark.parametrize("url", ["https://host/{id}.png", "/data/local-files/?d=photos/{id}.jpg", "s3://b/{id}.png",
                                 "{id}.png", "C:\\photos\\{id}.png"])
def test_export_keeps_ordinary_image_urls(work, url):
    result = run("export", "--to", "label-studio", "-r", "ranking.csv", "--top", "2", "--image-url", url,
                 "-o", "tasks.json", "-q")
    assert result.exit_code == 0, result.output


def test_cvat_export_refuses_an_image_id_with_a_line_break(tmp_path):
    ds = make_dataset(tmp_path, ids=("a\nb", "c"), flip_fraction=0.5)
    assert run("score", ds.masks, ds.store, "-o", tmp_path / "r.csv", "-q").exit_code == 0
    refused(run("export", "--to", "cvat", "-r", tmp_path / "r.csv", "--top", "2", "-o", tmp_path / "c.zip"),
            "holds a line break")
    assert not (tmp_path / "c.zip").exists()


# --- (11) what a new user met ---------------------------------------------------------------


@pytest.mark.parametrize("command, choices", [("export", "--to [label-studio|cvat|coco]"),
                                              ("issues", "--method [clc|threshold]")])
def test_help_lists_the_choices(command, choices):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert choices in result.output


def test_the_choices_in_help_are_the_librarys():
    from segaudit.cli.issues import ISSUE_METHODS
    from segaudit.outputs import findings

    assert ISSUE_METHODS == findings.ISSUE_METHODS


def test_issues_help_says_how_to_get_cleanlabs_flags():
    result = CliRunner().invoke(app, ["issues", "--help"], env={"COLUMNS": "300"})
    text = " ".join(result.output.split())
    assert "give 1 to flag exactly the pixels cleanlab.segmentation.filter.find_label_issues flags" in text


def test_issues_refuses_an_unknown_method_before_reading(work):
    before = snapshot(work)
    refused(run("issues", "masks", "preds.zarr", "--method", "nope", "--out", "iss"),
            "--method must be one of clc, threshold")
    assert snapshot(work) == before


@pytest.mark.parametrize("args", [["evaluate", "ranking.csv", "truth.csv", "--format", "csv", "-o", "-"],
                                  ["summary", "masks", "preds.zarr", "--csv", "-", "-q"],
                                  ["corrupt", "masks", "--out", "../bad", "--kind", "swap", "--rate", "0.5",
                                   "--truth", "-", "-q"]])
def test_dash_is_stdout_for_every_table(work, args):
    before = snapshot(work)
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert snapshot(work) == before  # no file named '-'
    header = result.stdout.splitlines()[0]
    assert header in ("method,auroc,auprc,lift_at_t,lift_at_100,images,errors,top",
                      "annotated,predicted,pixels,images,share", "image,is_error,kind,classes"), header


def _void_dataset(root: Path, n: int = 20):
    """CamVid's case: every mask holds value K (its void class), no --ignore-index given."""
    import numpy as np
    from PIL import Image

    ds = make_dataset(root, ids=[f"city/{i:02d}" for i in range(n)], n_classes=4, size=(8, 8))
    for path in sorted(Path(ds.masks).rglob("*.png")):
        with Image.open(path) as image:
            pixels, palette = np.array(image), image.getpalette()
        pixels[pixels == 255] = 4
        pixels[0, 0] = 4
        void = Image.fromarray(pixels, mode="P")
        void.putpalette(palette)
        void.save(path)
    return ds


def test_check_groups_masks_with_the_same_values_and_suggests_ignore_index(tmp_path):
    ds = _void_dataset(tmp_path)
    result = run("check", ds.masks, ds.store)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: 20 mask(s) hold label value 4 >= K=4, not ignored: city/00, city/01, city/02, city/03, "
                      "city/04, ... (if it marks void or unlabeled pixels: --ignore-index 4; masks numbered in another "
                      "convention? --label-map translates them, see docs/formats.md)"]
    assert run("check", ds.masks, ds.store, "--ignore-index", "4", "-q").exit_code == 0


def test_score_suggests_ignore_index_for_a_value_past_the_classes(tmp_path):
    ds = _void_dataset(tmp_path, n=2)
    refused(run("score", ds.masks, ds.store, "-o", tmp_path / "r.csv"), "not below K=4", "--ignore-index 4",
            "--label-map")
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("extra, warned", [([], True), (["--fill", "nearest"], False), (["--unlabeled", "0"], False),
                                           (["--fill", "unlabeled"], False)])
def test_corrupt_warns_when_dropped_pixels_become_a_real_class(work, extra, warned):
    result = run("corrupt", "masks", "--out", "bad", "--kind", "drop", "--rate", "0.5", "--truth", "t.csv", *extra)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    if warned:
        assert len(warnings) == 1 and "--unlabeled 0 is a class of" in warnings[0] and "--fill nearest" in warnings[0]
    else:
        assert warnings == []


def _spread_rankings(tmp_path: Path):
    """120 images scoring between 0.04 and 0.25 (a real dataset's rsoftmin spread); in the head,
    one image falls 0.113 -> 0.081 (by 0.032 of score, 14 points of rank percentile), one rises."""
    import numpy as np

    scores = {f"img{i:03d}": float(v) for i, v in enumerate(np.linspace(0.04, 0.25, 120))}
    head = dict(scores)
    fell = min(scores, key=lambda i: abs(scores[i] - 0.113))
    rose = min(scores, key=lambda i: abs(scores[i] - 0.09))
    head[fell], head[rose] = 0.081, 0.125

    def write(path, values):
        ranked = sorted(values, key=lambda i: (values[i], i))
        lines = ["rank,image,score,rsoftmin,pixels,low_pixels,suspect_class,likely_class"]
        lines += [f"{n},{i},{values[i]!r},{values[i]!r},10,0,," for n, i in enumerate(ranked, 1)]
        path.write_text("\n".join(lines) + "\n")
        return path

    return write(tmp_path / "base.csv", scores), write(tmp_path / "head.csv", head), fell, rose


def test_diff_judges_a_change_on_the_rank_percentile_and_reports_improvements(tmp_path):
    base, head, fell, rose = _spread_rankings(tmp_path)
    result = run("diff", base, head, "--format", "csv")
    assert result.exit_code == 1, result.output  # regressed
    rows = [line.split(",") for line in result.stdout.splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [(fell, "regressed"), (rose, "improved")]
    regressed = rows[0]
    assert float(regressed[5]) - float(regressed[6]) > 0.1  # 34th percentile -> 20th: more than 10 points
    # The same change on the score scale is within the old default tolerance: not reported.
    absolute = run("diff", base, head, "--scale", "score", "--format", "csv")
    assert absolute.exit_code == 0 and absolute.stdout.splitlines()[1:] == []


@pytest.mark.parametrize("args, fragment", [(["--scale", "rank"], "--scale must be one of percentile, score"),
                                            (["--tolerance", "1.5"], "below 1 on the percentile scale"),
                                            (["--tolerance", "nan"], "--tolerance must be a number >= 0")])
def test_diff_refuses_bad_scales_and_tolerances(tmp_path, args, fragment):
    base, head, _, _ = _spread_rankings(tmp_path)
    refused(run("diff", base, head, *args), fragment)
