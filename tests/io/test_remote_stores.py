"""Masks and prediction stores given as URLs, read through fsspec (issue 20, part 1).

The S3 tests run against a real S3-compatible server that this module starts on 127.0.0.1
(moto in server mode, one per module), never against the internet: the fixtures' store and
masks are uploaded to a bucket, and every command's output from there must be the one it
writes from the local copies, byte for byte. A local ``http.server`` serving the fixtures
shows that any fsspec protocol works. Credentials are dummies set in the environment.
"""

from __future__ import annotations

import csv
import functools
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from datasets import FIXTURES
from segaudit.cli import app
from segaudit.errors import InputError
from segaudit.io import remote
from services import AWS_ENV, s3_server

moto_server = pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (pip install 'segaudit[test]')")
s3fs = pytest.importorskip("s3fs", reason="the S3 tests need s3fs (pip install 'segaudit[test]' or 'segaudit[s3]')")

BUCKET = "segaudit-test"
SECRET = "Sup3r-S3cret-0f-the-test"  # passed through --storage-options: must appear in no output


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 (a free port) holding the fixtures under s3://segaudit-test/:
    preds.zarr, preds_stacked.zarr and masks/. Yields its endpoint URL; stopped at the end."""
    with s3_server(BUCKET, {name: FIXTURES / name for name in ("preds.zarr", "preds_stacked.zarr", "masks")}) as url:
        yield url


def options(endpoint: str, **more) -> str:
    return json.dumps({"endpoint_url": endpoint, **more})


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def one_line_error(result, *expected: str) -> str:
    """Exit 2, one ``error:`` line naming what was expected, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def record_without_paths(path: Path) -> dict:
    record = json.loads(path.read_text())
    for key in ("ranking", "masks", "predictions"):
        record.pop(key)
    return record


# -- URLs, redaction, options ------------------------------------------------------------


def test_is_url_and_redact():
    assert remote.is_url("s3://bucket/preds.zarr") and remote.is_url("https://host/a") and remote.is_url("gs://b/k")
    assert not remote.is_url("preds.zarr") and not remote.is_url("/data/preds.zarr")
    assert not remote.is_url("C:\\data\\preds.zarr") and not remote.is_url(Path("s3://bucket"))
    assert remote.redact("https://user:token@host:8000/a/preds.zarr?X-Amz-Signature=abc#x") == \
        "https://host:8000/a/preds.zarr"
    assert remote.redact("s3://bucket/preds.zarr/") == "s3://bucket/preds.zarr"
    assert remote.location_text("s3://u:p@bucket/m") == "s3://bucket/m"
    assert remote.location_text("fixtures/masks") == str((Path("fixtures") / "masks").resolve())


def test_storage_options_parse():
    assert remote.parse_storage_options(None) == {}
    assert remote.parse_storage_options('{"anon": true}') == {"anon": True}
    with pytest.raises(InputError, match="not valid JSON") as raised:
        remote.parse_storage_options('{"secret": "hunter2"')
    assert "hunter2" not in str(raised.value)  # the text may hold a secret: never quoted
    with pytest.raises(InputError, match="JSON object"):
        remote.parse_storage_options("[1, 2]")


def test_refuse_url_output():
    remote.refuse_url_output(Path("out/ranking.csv"), "--output")
    remote.refuse_url_output(Path("/tmp/ranking.csv"), "--output")
    with pytest.raises(InputError, match="local files only"):
        remote.refuse_url_output(Path("s3://bucket/ranking.csv"), "--output")


# -- score from S3 -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """``score --method all --regions`` on the local fixtures: the reference of every S3 run."""
    out = tmp_path_factory.mktemp("local") / "ranking.csv"
    ok(cli("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "--method", "all", "--regions", "-o", out, "-q"))
    return out


@pytest.mark.parametrize("masks_remote", [False, True], ids=["local-masks", "s3-masks"])
def test_score_from_s3_matches_local(s3, local_run, tmp_path, masks_remote):
    masks = f"s3://{BUCKET}/masks" if masks_remote else FIXTURES / "masks"
    out = tmp_path / "ranking.csv"
    ok(cli("score", masks, f"s3://{BUCKET}/preds.zarr", "--storage-options", options(s3), "--method", "all",
           "--regions", "-o", out, "-q"))
    assert out.read_bytes() == local_run.read_bytes()
    record = json.loads((tmp_path / "ranking.run.json").read_text())
    assert record["predictions"] == f"s3://{BUCKET}/preds.zarr"
    assert record["masks"] == (f"s3://{BUCKET}/masks" if masks_remote else str((FIXTURES / "masks").resolve()))
    assert record_without_paths(tmp_path / "ranking.run.json") == \
        record_without_paths(local_run.with_name("ranking.run.json"))


def test_stacked_store_from_s3(s3, tmp_path):
    local, remote_out = tmp_path / "local.csv", tmp_path / "remote.csv"
    ok(cli("score", FIXTURES / "masks", FIXTURES / "preds_stacked.zarr", "-m", "rsoftmin,clc", "-o", local, "-q"))
    ok(cli("score", f"s3://{BUCKET}/masks", f"s3://{BUCKET}/preds_stacked.zarr", "--storage-options", options(s3),
           "-m", "rsoftmin,clc", "-o", remote_out, "-q"))
    assert remote_out.read_bytes() == local.read_bytes()


def test_python_api_from_s3(s3):
    import segaudit

    here = segaudit.score(FIXTURES / "masks", FIXTURES / "preds.zarr", methods=("rsoftmin", "coco"))
    there = segaudit.score(f"s3://{BUCKET}/masks", f"s3://{BUCKET}/preds.zarr", methods=("rsoftmin", "coco"),
                           storage_options={"endpoint_url": s3})
    assert [(r.image_id, r.scores) for r in there.results] == [(r.image_id, r.scores) for r in here.results]
    assert there.options["predictions"] == f"s3://{BUCKET}/preds.zarr"


def test_remote_store_reads_chunk_by_chunk(s3):
    """Row blocks are read from the store as they are asked for, not the whole array first."""
    from segaudit.io.predictions import open_predictions

    store = open_predictions(f"s3://{BUCKET}/preds.zarr", storage_options={"endpoint_url": s3})
    local = open_predictions(FIXTURES / "preds.zarr")
    image = store.image_ids[0]
    assert store.row_blocks(image, block_bytes=1) == local.row_blocks(image, block_bytes=1)
    for start, stop in store.row_blocks(image, block_bytes=1):
        assert (store.read_rows(image, start, stop) == local.read_rows(image, start, stop)).all()
    assert str(store.path) == f"s3://{BUCKET}/preds.zarr"


@pytest.mark.parametrize("command", ["check", "regions", "summary", "issues"])
def test_input_commands_take_urls(s3, tmp_path, command):
    """Every command that reads masks and predictions reads them from S3 as from disk."""
    outputs = {}
    for where, masks, preds in (("local", FIXTURES / "masks", FIXTURES / "preds.zarr"),
                                ("s3", f"s3://{BUCKET}/masks", f"s3://{BUCKET}/preds.zarr")):
        extra = ["--storage-options", options(s3)] if where == "s3" else []
        out = tmp_path / where
        out.mkdir()
        if command == "check":
            args = []
        elif command == "regions":
            args = ["-o", out / "regions.csv"]
        elif command == "summary":
            args = ["--format", "csv"]
        else:
            args = ["--out", out / "issues"]
        result = ok(cli(command, masks, preds, *extra, *args, "-q"))
        files = sorted(p for p in out.rglob("*") if p.is_file())
        outputs[where] = (result.stdout, [(p.relative_to(out), p.read_bytes()) for p in files])
    assert outputs["s3"] == outputs["local"]


def test_only_with_remote_masks(s3, tmp_path):
    only = tmp_path / "only.txt"
    only.write_text("city_a/0002\ncity_b/0001.png\n")
    out = tmp_path / "ranking.csv"
    ok(cli("score", f"s3://{BUCKET}/masks", f"s3://{BUCKET}/preds.zarr", "--storage-options", options(s3),
           "--only", only, "-o", out, "-q"))
    assert sorted(row["image"] for row in csv.DictReader(out.open())) == ["city_a/0002", "city_b/0001"]
    only.write_text("fixtures/masks/city_a/0002.png\n")  # a local checkout's path names no remote mask
    one_line_error(cli("score", f"s3://{BUCKET}/masks", f"s3://{BUCKET}/preds.zarr", "--storage-options",
                       options(s3), "--only", only, "-o", tmp_path / "other.csv"), "--only", "by image id")
    assert not (tmp_path / "other.csv").exists()


def test_reviewed_hashes_remote_masks(s3, tmp_path):
    """--reviewed: a mask marked ok is exempt while its bytes (read from S3) keep their sha256."""
    import hashlib

    digest = hashlib.sha256((FIXTURES / "masks" / "city_a" / "0002.png").read_bytes()).hexdigest()
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(f"image,region,decision,note,mask_sha256\ncity_a/0002,,ok,,{digest}\n")
    result = ok(cli("score", f"s3://{BUCKET}/masks", f"s3://{BUCKET}/preds.zarr", "--storage-options", options(s3),
                    "--reviewed", decisions, "-o", tmp_path / "ranking.csv"))
    record = json.loads((tmp_path / "ranking.run.json").read_text())
    assert record["reviewed"]["exempted"] == 1 and record["reviewed"]["stale"] == 0, (record["reviewed"], result.stderr)


# -- info, overlay, export on a remote store ----------------------------------------------


def test_info_on_s3(s3):
    here = json.loads(ok(cli("info", FIXTURES / "preds.zarr", "--json")).stdout)
    there = json.loads(ok(cli("info", f"s3://{BUCKET}/preds.zarr", "--storage-options", options(s3), "--json")).stdout)
    assert there.pop("path") == f"s3://{BUCKET}/preds.zarr"
    here.pop("path")
    assert there == here  # bytes_on_disk included: the objects' sizes are the files' sizes
    text = ok(cli("info", f"s3://{BUCKET}/preds.zarr", "--storage-options", options(s3))).stdout
    assert f"s3://{BUCKET}/preds.zarr (zarr format 3)" in text and "readable       yes" in text


def test_overlay_from_s3_matches_local(s3, local_run, tmp_path):
    remote_ranking = tmp_path / "ranking.csv"
    ok(cli("score", f"s3://{BUCKET}/masks", f"s3://{BUCKET}/preds.zarr", "--storage-options", options(s3),
           "--method", "all", "--regions", "-o", remote_ranking, "-q"))
    ok(cli("overlay", "-r", local_run, "--top", "3", "-o", tmp_path / "local", "-q"))
    ok(cli("overlay", "-r", remote_ranking, "--top", "3", "-o", tmp_path / "s3", "--storage-options", options(s3),
           "-q"))
    drawn = {p.name: p.read_bytes() for p in (tmp_path / "local").iterdir()}
    assert len(drawn) == 3
    assert {p.name: p.read_bytes() for p in (tmp_path / "s3").iterdir()} == drawn


def test_secret_in_storage_options_is_written_nowhere(s3, tmp_path):
    secret_options = options(s3, key="testing", secret=SECRET)
    out = tmp_path / "out"
    out.mkdir()
    runs = [
        cli("score", f"s3://{BUCKET}/masks", f"s3://{BUCKET}/preds.zarr", "--storage-options", secret_options,
            "--method", "all", "--regions", "-o", out / "ranking.csv", "--summary-md", out / "summary.md"),
        cli("regions", f"s3://{BUCKET}/masks", f"s3://{BUCKET}/preds.zarr", "--storage-options", secret_options,
            "-o", out / "regions.csv", "--propose-dir", out / "proposals"),
        cli("overlay", "-r", out / "ranking.csv", "--top", "2", "-o", out / "overlays", "--storage-options",
            secret_options),
        cli("export", "--to", "coco", "-r", out / "ranking.csv", "-o", out / "regions.coco.json", "--top", "2",
            "--storage-options", secret_options),
        cli("report", "-r", out / "ranking.csv", "-o", out / "report.html"),
    ]
    for result in runs:
        ok(result)
        assert SECRET not in result.output
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"ranking.csv", "ranking.run.json", "summary.md", "regions.csv",
                                         "regions.coco.json", "report.html"}
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    assert "storage" not in (out / "ranking.run.json").read_text()


# -- errors: one line naming the URL, exit 2, nothing written ------------------------------


@pytest.mark.parametrize("masks, preds, expected", [
    ("local", f"s3://{BUCKET}/missing.zarr", ["prediction store not found", f"s3://{BUCKET}/missing.zarr"]),
    ("local", "s3://no-such-bucket/preds.zarr", ["not found", "s3://no-such-bucket/preds.zarr"]),
    ("local", f"s3://{BUCKET}/masks", [f"s3://{BUCKET}/masks", "not a zarr group"]),
    (f"s3://{BUCKET}/no-masks", f"s3://{BUCKET}/preds.zarr", ["masks directory not found", f"s3://{BUCKET}/no-masks"]),
    ("s3://no-such-bucket/masks", f"s3://{BUCKET}/preds.zarr", ["masks directory not found", "s3://no-such-bucket"]),
    (f"s3://{BUCKET}/preds.zarr", f"s3://{BUCKET}/preds.zarr", ["no PNG or TIFF masks", f"s3://{BUCKET}/preds.zarr"]),
], ids=["missing-key", "missing-bucket", "not-a-store", "missing-masks", "masks-missing-bucket", "no-masks-there"])
def test_missing_remote_inputs(s3, tmp_path, masks, preds, expected):
    out = tmp_path / "ranking.csv"
    result = cli("score", FIXTURES / "masks" if masks == "local" else masks, preds, "--storage-options", options(s3),
                 "-o", out)
    one_line_error(result, *expected)
    assert list(tmp_path.iterdir()) == []


def test_bad_storage_options(s3, tmp_path):
    out = tmp_path / "ranking.csv"
    one_line_error(cli("score", FIXTURES / "masks", f"s3://{BUCKET}/preds.zarr", "--storage-options", '{"endpoint',
                       "-o", out), "--storage-options", "not valid JSON")
    one_line_error(cli("score", FIXTURES / "masks", f"s3://{BUCKET}/preds.zarr", "--storage-options", '"text"',
                       "-o", out), "--storage-options", "JSON object")
    one_line_error(cli("score", FIXTURES / "masks", f"s3://{BUCKET}/preds.zarr", "--storage-options",
                       options(s3, no_such_option=1), "-o", out), f"s3://{BUCKET}/preds.zarr", "--storage-options")
    one_line_error(cli("info", f"s3://{BUCKET}/preds.zarr", "--storage-options", "{"), "not valid JSON")
    one_line_error(cli("score", FIXTURES / "masks", "nosuchproto://x/preds.zarr", "-o", out),
                   "nosuchproto://x/preds.zarr", "no filesystem")
    assert list(tmp_path.iterdir()) == []


def test_unreachable_endpoint(s3, tmp_path):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    nowhere = json.dumps({"endpoint_url": f"http://127.0.0.1:{closed}",
                          "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}})
    out = tmp_path / "ranking.csv"
    one_line_error(cli("score", FIXTURES / "masks", f"s3://{BUCKET}/preds.zarr", "--storage-options", nowhere,
                       "-o", out), f"prediction store s3://{BUCKET}/preds.zarr", "cannot reach the endpoint")
    one_line_error(cli("score", f"s3://{BUCKET}/masks", FIXTURES / "preds.zarr", "--storage-options", nowhere,
                       "-o", out), f"masks directory s3://{BUCKET}/masks", "cannot reach the endpoint")
    assert list(tmp_path.iterdir()) == []


def test_no_credentials(s3, tmp_path):
    """Without credentials in the environment: one line saying where they come from, no traceback
    (the installed command in a subprocess, so that no cached filesystem holds credentials)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update({name: AWS_ENV[name] for name in ("AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED",
                                                  "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE")})
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    out = tmp_path / "ranking.csv"
    for masks in (FIXTURES / "masks", f"s3://{BUCKET}/masks"):
        done = subprocess.run([sys.executable, "-m", "segaudit", "score", str(masks), f"s3://{BUCKET}/preds.zarr",
                               "--storage-options", options(s3), "-o", str(out)],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "no credentials found" in lines[0] and "AWS_ACCESS_KEY_ID" in lines[0], done.stderr
        assert f"s3://{BUCKET}/" in lines[0]
    assert not out.exists()


def test_outputs_to_urls_are_refused(tmp_path):
    result = cli("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", "s3://bucket/ranking.csv")
    one_line_error(result, "local files only")
    result = cli("corrupt", "s3://bucket/masks", "--out", tmp_path / "copy", "--kind", "drop", "--rate", "0.5",
                 "--truth", tmp_path / "truth.csv")
    one_line_error(result, "s3://bucket/masks", "local masks directory")
    assert list(tmp_path.iterdir()) == []


# -- any fsspec protocol: a local HTTP server ----------------------------------------------


@pytest.fixture(scope="module")
def http_fixtures():
    """The fixtures folder served by http.server on 127.0.0.1 (a free port); yields its URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(FIXTURES)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_score_over_http_matches_local(http_fixtures, tmp_path):
    pytest.importorskip("aiohttp", reason="fsspec's http filesystem needs aiohttp")
    local, there = tmp_path / "local.csv", tmp_path / "http.csv"
    ok(cli("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "-m", "rsoftmin,coco", "-o", local, "-q"))
    # user:password in the URL (here ignored by the server) never reaches the run record.
    masks = http_fixtures.replace("http://", "http://reader:pa55word@") + "/masks"
    ok(cli("score", masks, f"{http_fixtures}/preds.zarr", "-m", "rsoftmin,coco", "-o", there, "-q"))
    assert there.read_bytes() == local.read_bytes()
    record = (tmp_path / "http.run.json").read_text()
    assert "pa55word" not in record and "reader" not in record
    assert json.loads(record)["masks"] == f"{http_fixtures}/masks"


def test_tiff_masks_on_s3(s3, tmp_path):
    """TIFF masks under a URL are read through fsspec as PNG ones are."""
    tifffile = pytest.importorskip("tifffile", reason="TIFF masks need tifffile (pip install 'segaudit[tiff]')")
    import numpy as np
    from PIL import Image

    local = tmp_path / "masks"
    for png in (FIXTURES / "masks").rglob("*.png"):
        target = local / png.relative_to(FIXTURES / "masks").with_suffix(".tif")
        target.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(target, np.asarray(Image.open(png)).astype(np.uint8))
    fs = s3fs.S3FileSystem(endpoint_url=s3, skip_instance_cache=True)
    fs.mkdir("tiff-masks")
    fs.put(str(local), "tiff-masks/masks", recursive=True)
    here, there = tmp_path / "local.csv", tmp_path / "s3.csv"
    ok(cli("score", local, FIXTURES / "preds.zarr", "-m", "rsoftmin,coco", "-o", here, "-q"))
    ok(cli("score", "s3://tiff-masks/masks", f"s3://{BUCKET}/preds.zarr", "--storage-options", options(s3),
           "-m", "rsoftmin,coco", "-o", there, "-q"))
    assert there.read_bytes() == here.read_bytes()


def test_missing_filesystem_package(tmp_path):
    """A protocol whose fsspec filesystem is not installed: the package to install, in one line."""
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed: its missing-package message cannot be shown")
    one_line_error(cli("score", FIXTURES / "masks", "gs://bucket/preds.zarr", "-o", tmp_path / "r.csv"),
                   "gs://bucket/preds.zarr", "needs gcsfs")
    assert list(tmp_path.iterdir()) == []


def test_diff_reviewed_with_remote_masks(s3, tmp_path):
    """diff --reviewed hashes the head ranking's masks where its run record says they are: on S3."""
    import hashlib

    ranking = tmp_path / "ranking.csv"
    ok(cli("score", f"s3://{BUCKET}/masks", f"s3://{BUCKET}/preds.zarr", "--storage-options", options(s3),
           "-o", ranking, "-q"))
    digest = hashlib.sha256((FIXTURES / "masks" / "city_a" / "0002.png").read_bytes()).hexdigest()
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(f"image,region,decision,note,mask_sha256\ncity_a/0002,,ok,,{digest}\n")
    result = ok(cli("diff", ranking, ranking, "--reviewed", decisions, "--storage-options", options(s3)))
    assert "1 image(s) marked ok" in result.stderr and "stale" not in result.stderr, result.stderr
