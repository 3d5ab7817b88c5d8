"""CI use: gates and exit codes, --only, --baseline, formats, Markdown summary, check, diff,
and an end-to-end pull-request pipeline in a real git repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datasets import FIXTURES, write_masks, write_store
from segaudit.cli import app

REPO = Path(__file__).resolve().parents[2]
PLANTED = ["city_a/0003", "city_a/0005", "city_b/0002", "city_b/0004"]


def run(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def score(*args, input=None):
    # These gates and subsets are about rsoftmin's scores (the default before auto); a later -m wins.
    return run("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "-m", "rsoftmin", *args, input=input)


def test_fail_under_gate_exits_1_names_images_and_still_writes(tmp_path):
    out = tmp_path / "r.csv"
    result = score("--fail-under", 0.1, "-o", out, "--summary-md", tmp_path / "s.md")
    assert result.exit_code == 1
    line = [l for l in result.stderr.splitlines() if l.startswith("gate failed")]
    assert len(line) == 1 and "rsoftmin < 0.1: 4 image(s)" in line[0]
    assert all(image_id in line[0] for image_id in PLANTED)
    assert out.is_file() and (tmp_path / "r.run.json").is_file()
    summary = (tmp_path / "s.md").read_text()
    assert "❌ gate failed" in summary and "`city_b/0002`" in summary


def test_gates_that_pass_exit_0():
    result = score("--fail-under", 0.001, "-o", "-")
    assert result.exit_code == 0 and "gate failed" not in result.stderr


def test_fail_under_method_and_max_flagged(tmp_path):
    result = score("-m", "softmin,cil", "--fail-under", 0.5, "--fail-under-method", "cil", "-o", tmp_path / "r.csv")
    assert result.exit_code == 1 and "cil < 0.5: 1 image(s): city_b/0002" in result.stderr
    result = score("-m", "softmin", "--fail-under", 0.5, "--fail-under-method", "iou", "-o", tmp_path / "r.csv")
    assert result.exit_code == 2 and "iou is not computed" in result.stderr
    result = score("-m", "softmin", "--max-flagged", 10, "-o", tmp_path / "r.csv")
    assert result.exit_code == 2 and "add clc to --method" in result.stderr
    result = score("-m", "softmin,clc", "--max-flagged", 100, "-o", tmp_path / "r.csv")
    assert result.exit_code == 1
    failed = result.stderr.split("clc flagged pixels > 100:")[1]
    assert "city_b/0002" in failed and "city_a/0001" not in failed


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_machine_readable_stdout_stays_clean(fmt):
    result = score("--format", fmt, "-o", "-", "-m", "softmin,cil")
    assert result.exit_code == 0
    if fmt == "jsonl":
        records = [json.loads(line) for line in result.stdout.splitlines()]
    else:
        document = json.loads(result.stdout)
        assert document["columns"][:4] == ["rank", "image", "score", "softmin"]
        records = document["rows"]
    assert len(records) == 12 and records[0]["image"] == "city_b/0002"
    assert set(records[0]) >= {"rank", "image", "score", "softmin", "cil", "suspect_class"}


def test_unknown_format_is_a_usage_error():
    assert score("--format", "xml").exit_code == 2


def test_only_accepts_ids_and_git_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    entries = "city_a/0005\nfixtures/masks/city_b/0002.png\ncity_b/0004.png\n"
    result = score("--only", "-", "-o", tmp_path / "r.csv", input=entries)
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "r.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[1] for r in rows) == ["city_a/0005", "city_b/0002", "city_b/0004"]
    record = json.loads((tmp_path / "r.run.json").read_text())
    assert record["only"] == ["city_a/0005", "city_b/0002", "city_b/0004"]


def test_only_skips_deleted_masks_and_refuses_unknown_entries(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    listing = tmp_path / "changed.txt"
    listing.write_text("fixtures/masks/city_a/0001.png\nfixtures/masks/city_a/0099.png\n")
    result = score("--only", listing, "-o", tmp_path / "r.csv")
    assert result.exit_code == 0
    assert "skipped 1 deleted mask(s) listed by --only: fixtures/masks/city_a/0099.png" in result.stderr
    listing.write_text("README.md\n")
    result = score("--only", listing, "-o", tmp_path / "r.csv")
    assert result.exit_code == 2 and "--only: 1 entry name no mask" in result.stderr


def test_baseline_scores_a_subset_like_the_full_run(tmp_path):
    full = tmp_path / "main.csv"
    assert score("-m", "clc,softmin", "-o", full).exit_code == 0
    subset = tmp_path / "pr.csv"
    result = score("-m", "clc,softmin", "--only", "-", "--baseline", full, "-o", subset,
                   input="city_a/0005\ncity_b/0001\n")
    assert result.exit_code == 0, result.output

    def scores(path):
        return {r.split(",")[1]: r.split(",")[3] for r in path.read_text().splitlines()[1:]}

    assert scores(subset) == {k: v for k, v in scores(full).items() if k in ("city_a/0005", "city_b/0001")}
    # Without the baseline, clc on two images alone would count issues among them only.
    result = score("-m", "clc", "--only", "-", "-o", tmp_path / "alone.csv", input="city_a/0005\ncity_b/0001\n")
    assert scores(tmp_path / "alone.csv") != {k: v for k, v in scores(full).items() if k in ("city_a/0005", "city_b/0001")}


def test_baseline_without_clc_is_refused(tmp_path):
    assert score("-o", tmp_path / "main.csv").exit_code == 0
    result = score("-m", "clc", "--baseline", tmp_path / "main.csv", "-o", tmp_path / "pr.csv")
    assert result.exit_code == 2 and "has no clc results" in result.stderr


def test_check_ok_and_problems(tmp_path):
    result = run("check", FIXTURES / "masks", FIXTURES / "preds.zarr")
    assert result.exit_code == 0 and "ok: 12 images paired, 5 classes" in result.stderr
    masks = tmp_path / "masks"
    shutil.copytree(FIXTURES / "masks", masks)
    from PIL import Image

    for name, value in (("city_a/0001", 9), ("city_b/0006", 7)):
        image = Image.open(masks / f"{name}.png")
        pixels = np.array(image)
        pixels[0, 0] = value
        broken = Image.fromarray(pixels, mode="P")
        broken.putpalette(image.getpalette())
        broken.save(masks / f"{name}.png")
    result = run("check", masks, FIXTURES / "preds.zarr")
    assert result.exit_code == 2
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 2 and "0001.png" in errors[0] and "9 (1 px)" in errors[0] and "0006.png" in errors[1]


def test_check_samples_prediction_blocks(tmp_path):
    probs = {"a": np.full((2, 3, 4), 0.5), "b": np.full((2, 3, 4), 0.5)}
    probs["b"][0, 1, 1] = np.nan
    write_store(tmp_path / "p.zarr", probs)
    write_masks(tmp_path / "m", {"a": np.zeros((3, 4), np.uint8), "b": np.zeros((3, 4), np.uint8)})
    result = run("check", tmp_path / "m", tmp_path / "p.zarr")
    assert result.exit_code == 2 and "p.zarr/b: non-finite value nan at row 1, column 1" in result.stderr
    assert run("check", tmp_path / "m", tmp_path / "p.zarr", "--sample", 0).exit_code == 0


def write_ranking(path, rows, method="softmin"):
    lines = [f"rank,image,score,{method},pixels,low_pixels,suspect_class,likely_class"]
    lines += [f"{n},{image},{value},{value},10,0,," for n, (image, value) in enumerate(rows, 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_diff(tmp_path):
    base = write_ranking(tmp_path / "base.csv", [("a", 0.5), ("b", 0.9), ("c", 0.8)])
    head = write_ranking(tmp_path / "head.csv", [("a", 0.49), ("b", 0.7), ("d", 0.2)])
    result = run("diff", base, head, "--tolerance", 0.05, "--fail-under", 0.3, "--format", "csv")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "image,change,base_score,head_score,delta",
        f"b,regressed,0.9,0.7,{0.7 - 0.9!r}",
        "d,new under gate,,0.2,",
        "c,removed,0.8,,",
    ]
    assert run("diff", base, base).exit_code == 0
    other = write_ranking(tmp_path / "other.csv", [("a", 0.5)], method="cil")
    result = run("diff", base, other)
    assert result.exit_code == 2 and "different methods" in result.stderr
    assert run("diff", base, tmp_path / "missing.csv").exit_code == 2


def test_diff_reads_jsonl_rankings(tmp_path):
    base = tmp_path / "base.jsonl"
    assert score("--format", "jsonl", "-o", base).exit_code == 0
    assert run("diff", base, base, "--format", "json").exit_code == 0


# --- the pull-request pipeline, end to end ------------------------------------------------


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})


def test_pull_request_pipeline_names_exactly_the_broken_masks(tmp_path):
    segaudit = shutil.which("segaudit") or str(Path(sys.executable).with_name("segaudit"))
    repo = tmp_path / "dataset"
    rng = np.random.default_rng(0)
    ids = [f"scene{n:02d}" for n in range(12)]
    truth = {i: np.repeat(np.repeat(rng.integers(0, 4, size=(4, 5)), 4, axis=0), 4, axis=1) for i in ids}
    probs = {}
    for image_id, t in truth.items():
        p = np.full((4, *t.shape), 0.1 / 3)
        np.put_along_axis(p, t[None], 0.9, axis=0)
        probs[image_id] = p
    write_masks(repo / "masks", {i: t.astype(np.uint8) for i, t in truth.items()})
    write_store(repo / "preds.zarr", probs, dtype="float32")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "masks")
    git(repo, "commit", "-q", "-m", "dataset")
    env = {**os.environ, "PATH": f"{Path(segaudit).parent}:{os.environ['PATH']}"}
    main = subprocess.run([segaudit, "score", "masks", "preds.zarr", "--method", "softmin,clc", "-o", "main.csv"],
                          cwd=repo, env=env, capture_output=True, text=True)
    assert main.returncode == 0, main.stderr

    git(repo, "checkout", "-q", "-b", "pr")
    broken = {"scene03": 1, "scene08": 2}
    for image_id, wrong in broken.items():  # a whole quarter relabelled: a real annotation error
        labels = truth[image_id].astype(np.uint8).copy()
        labels[:8, :10] = (labels[:8, :10] + wrong) % 4
        write_masks(repo / "masks", {image_id: labels})
    # A benign edit: the same labels, re-saved as a greyscale PNG.
    write_masks(repo / "masks", {"scene05": truth["scene05"].astype(np.uint8)}, mode="L")
    (repo / "masks" / "scene11.png").unlink()  # a deleted mask
    git(repo, "add", "-A", "masks")
    git(repo, "commit", "-q", "-m", "edit masks")

    result = subprocess.run(["bash", str(REPO / "examples/ci/pr_check.sh"), "masks", "preds.zarr", "main",
                             "main.csv", "0.5"], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    gate_lines = [l for l in result.stderr.splitlines() if l.startswith("gate failed")]
    assert len(gate_lines) == 1
    named = gate_lines[0].split("image(s): ")[1]
    assert sorted(part.split(" ")[0] for part in named.split(", ")) == ["scene03", "scene08"]
    assert "skipped 1 deleted mask(s)" in result.stderr
    assert sorted(r.split(",")[1] for r in (repo / "pr-ranking.csv").read_text().splitlines()[1:]) == [
        "scene03", "scene05", "scene08"]
    assert "❌ gate failed" in (repo / "pr-summary.md").read_text()


def test_only_with_every_listed_mask_deleted_scores_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    result = score("--only", "-", "-o", tmp_path / "r.csv", "--fail-under", 0.5, input="fixtures/masks/gone.png\n")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.csv").read_text().splitlines() == [
        "rank,image,score,rsoftmin,pixels,low_pixels,suspect_class,likely_class"]


def test_diff_compares_a_subset_ranking_on_its_images_only(tmp_path, monkeypatch):
    """The README's PR recipe: main's full ranking against an --only run."""
    masks = tmp_path / "masks"
    shutil.copytree(FIXTURES / "masks", masks)
    monkeypatch.chdir(tmp_path)
    main = tmp_path / "main.csv"
    preds = FIXTURES / "preds.zarr"
    assert run("score", masks, preds, "-m", "softmin,clc", "-o", main).exit_code == 0
    (masks / "city_a" / "0001.png").unlink()  # the PR deletes one mask and re-saves another
    pr = tmp_path / "pr.csv"
    result = run("score", masks, preds, "--only", "-", "--baseline", main, "-m", "softmin,clc", "-o", pr,
                 "--allow-missing", input="masks/city_a/0001.png\nmasks/city_a/0005.png\n")
    assert result.exit_code == 0, result.stderr
    result = run("diff", main, pr, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [f"city_a/0001,removed,{load_score(main, 'city_a/0001')},,"]
    assert "10 image(s) outside the --only subset were not compared" in result.stderr
    # A full head against a full base still reports what is gone.
    assert "removed" in run("diff", main, write_ranking(tmp_path / "one.csv", [("city_a/0005", 0.9)])).stderr


def load_score(path, image_id):
    from segaudit.io.rankings import load_ranking

    return load_ranking(path).by_id()[image_id].score


def test_check_lists_every_unreadable_and_mis_sized_mask(tmp_path):
    ids = [f"img{n:02d}" for n in range(25)]
    write_store(tmp_path / "p.zarr", {i: np.full((2, 3, 4), 0.5) for i in ids})
    labels = {i: np.zeros((3, 4), np.uint8) for i in ids}
    for i in ids[:12]:
        labels[i] = np.zeros((5, 4), np.uint8)  # mis-sized
    write_masks(tmp_path / "m", labels)
    for i in ids[12:22]:
        (tmp_path / "m" / f"{i}.png").write_bytes(b"not a png")  # unreadable
    labels_bad = np.zeros((3, 4), np.uint8)
    labels_bad[0, 0] = 9
    write_masks(tmp_path / "m", {ids[22]: labels_bad})  # a bad label value
    result = run("check", tmp_path / "m", tmp_path / "p.zarr")
    assert result.exit_code == 2
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 21  # the first 20, then the count of the rest
    assert errors[-1] == "error: ... and 3 more problem(s)"
    assert sum("mask is 5x4 (HxW)" in e for e in errors) == 12
    assert sum("img1" in e and "5x4" not in e for e in errors[12:20]) == 8
    assert "23 problem(s) in 25 image(s)" in result.stderr
