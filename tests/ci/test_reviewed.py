"""``--reviewed decisions.csv``: images a reviewer marked ok are exempt from the gates of
score and diff while their masks are unchanged; a changed mask is judged again; check says
which images the decisions exempt."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from datasets import FIXTURES
from segaudit.ci.gates import Gate, check_gates
from segaudit.cli import app
from segaudit.errors import InputError
from segaudit.io.decisions import file_sha256, read_decisions
from segaudit.io.rankings import read_run_record
from segaudit.results import ImageResult, ScoreRun

PLANTED = ["city_a/0003", "city_a/0005", "city_b/0002", "city_b/0004"]
HEADER = "image,region,decision,note,mask_sha256\n"


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def sha(image_id: str, masks: Path = FIXTURES / "masks") -> str:
    return file_sha256(masks / f"{image_id}.png")


def decisions_file(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(row + "\n" for row in rows))
    return path


def score(masks, out, *args):
    # The gates here are about rsoftmin's scores (the default before auto); a later -m wins.
    return run("score", masks, FIXTURES / "preds.zarr", "-o", out, "-m", "rsoftmin", *args)


def test_images_marked_ok_are_ranked_but_exempt_from_the_gate(tmp_path):
    plain = score(FIXTURES / "masks", tmp_path / "plain.csv", "--fail-under", 0.1)
    assert plain.exit_code == 1
    decisions = decisions_file(tmp_path / "d.csv", [f"{i},,ok,checked,{sha(i)}" for i in PLANTED[:3]])
    some = score(FIXTURES / "masks", tmp_path / "some.csv", "--fail-under", 0.1, "--reviewed", decisions,
                 "--summary-md", tmp_path / "s.md")
    assert some.exit_code == 1
    (gate,) = [line for line in some.stderr.splitlines() if line.startswith("gate failed")]
    assert "1 image(s): city_b/0004" in gate
    assert "3 image(s) marked ok" in some.stderr and "exempt from the gates" in some.stderr
    # The ranking is the same: exempt images are still reported.
    assert (tmp_path / "some.csv").read_text() == (tmp_path / "plain.csv").read_text()
    record = json.loads((tmp_path / "some.run.json").read_text())
    assert record["reviewed"] == {"decisions": str(decisions.resolve()), "exempted": 3, "stale": 0, "not_found": 0}
    assert read_run_record(tmp_path / "some.run.json").reviewed.exempted == 3
    summary = (tmp_path / "s.md").read_text()
    assert "reviewed: 3 image(s) marked ok with unchanged masks exempt from the gates; 0 stale" in summary
    assert "3 more fail it but are exempt (reviewed ok)" in summary
    every = decisions_file(tmp_path / "all.csv", [f"{i},,ok,,{sha(i)}" for i in PLANTED])
    assert score(FIXTURES / "masks", tmp_path / "all_.csv", "--fail-under", 0.1, "--reviewed", every).exit_code == 0


def test_only_whole_image_ok_exempts(tmp_path):
    image = PLANTED[0]
    decisions = decisions_file(tmp_path / "d.csv", [f"{image},1,ok,,{sha(image)}", f"{PLANTED[1]},,fix,,",
                                                     f"{PLANTED[2]},,skip,,{sha(PLANTED[2])}"])
    result = score(FIXTURES / "masks", tmp_path / "r.csv", "--fail-under", 0.1, "--reviewed", decisions)
    assert result.exit_code == 1
    assert "4 image(s)" in [l for l in result.stderr.splitlines() if l.startswith("gate failed")][0]
    assert json.loads((tmp_path / "r.run.json").read_text())["reviewed"]["exempted"] == 0


def test_a_changed_mask_is_judged_again(tmp_path):
    masks = tmp_path / "masks"
    shutil.copytree(FIXTURES / "masks", masks)
    decisions = decisions_file(tmp_path / "d.csv", [f"{i},,ok,,{sha(i, masks)}" for i in PLANTED])
    assert score(masks, tmp_path / "a.csv", "--fail-under", 0.1, "--reviewed", decisions).exit_code == 0
    # Re-save one mask with different bytes (same labels would do: the hash is of the file).
    path = masks / "city_b/0002.png"
    image = Image.open(path)
    image.save(path, optimize=True, compress_level=1)
    assert file_sha256(path) != sha("city_b/0002")
    result = score(masks, tmp_path / "b.csv", "--fail-under", 0.1, "--reviewed", decisions)
    assert result.exit_code == 1
    assert "gate failed: rsoftmin < 0.1: 1 image(s): city_b/0002" in result.stderr
    assert "1 ok decision(s) are stale (the mask changed since), judged again: city_b/0002" in result.stderr
    record = json.loads((tmp_path / "b.run.json").read_text())["reviewed"]
    assert (record["exempted"], record["stale"]) == (3, 1)


def test_without_reviewed_the_record_has_no_reviewed_field(tmp_path):
    assert score(FIXTURES / "masks", tmp_path / "r.csv").exit_code == 0
    text = (tmp_path / "r.run.json").read_text()
    assert "reviewed" not in json.loads(text)
    assert read_run_record(tmp_path / "r.run.json").reviewed is None


def test_decisions_for_images_the_run_does_not_have_are_counted(tmp_path):
    decisions = decisions_file(tmp_path / "d.csv", [f"nowhere/1,,ok,,{'0' * 64}"])
    result = score(FIXTURES / "masks", tmp_path / "r.csv", "--reviewed", decisions)
    assert result.exit_code == 0
    assert "1 ok decision(s) name images this run does not have" in result.stderr
    assert json.loads((tmp_path / "r.run.json").read_text())["reviewed"]["not_found"] == 1


@pytest.mark.parametrize("rows, problem", [
    (["city_a/0001,,maybe,,"], "line 2: decision must be one of ok, fix, skip, got 'maybe'"),
    (["city_a/0001,0,fix,,"], "line 2: region must be empty (the whole image) or a region number >= 1, got '0'"),
    (["city_a/0001,x,fix,,"], "line 2: region must be empty"),
    (["city_a/0001,,ok,,abc"], "line 2: mask_sha256 must be 64 hexadecimal digits"),
    (["city_a/0001,,ok,,"], "line 2: an ok decision about the whole image needs the mask's mask_sha256"),
    (["city_a/0001,,fix,,", "city_a/0002,,fix,,", "city_a/0001,,skip,,"],
     "line 4: city_a/0001 the whole image is decided twice (also line 2)"),
    ([",,fix,,"], "line 2: empty image id"),
])
def test_a_malformed_decisions_file_is_one_line_naming_file_and_row(tmp_path, rows, problem):
    decisions = decisions_file(tmp_path / "d.csv", rows)
    with pytest.raises(InputError, match=None) as caught:
        read_decisions(decisions)
    assert f"{decisions} {problem}" in str(caught.value)
    result = score(FIXTURES / "masks", tmp_path / "r.csv", "--reviewed", decisions)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and problem in " ".join(result.stderr.split())
    assert not (tmp_path / "r.csv").exists()  # refused before scoring


def test_a_decisions_file_without_the_columns_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,verdict\na,ok\n")
    with pytest.raises(InputError, match="not a decisions file: no column image, decision"):
        read_decisions(path)
    with pytest.raises(InputError, match="decisions file not found"):
        read_decisions(tmp_path / "missing.csv")


def test_gates_list_exempt_images_apart():
    results = [ImageResult(i, {"rsoftmin": s}, 10, 1, None, None, flagged_pixels=f)
               for i, s, f in (("a", 0.05, 9), ("b", 0.01, 20), ("c", 0.9, 0))]
    run_ = ScoreRun(results, ("rsoftmin", "clc"), None, {})
    under, flagged = check_gates(run_, [Gate("rsoftmin", 0.1), Gate("flagged", 5)], exempt={"b"})
    assert under.failures == [("a", 0.05)] and under.exempted == [("b", 0.01)]
    assert flagged.failures == [("a", 9.0)] and flagged.exempted == [("b", 20.0)]
    (alone,) = check_gates(run_, [Gate("rsoftmin", 0.1)], exempt={"a", "b"})
    assert alone.passed and len(alone.exempted) == 2


def test_diff_exempts_a_reviewed_regression_until_the_mask_changes(tmp_path):
    masks = tmp_path / "masks"
    shutil.copytree(FIXTURES / "masks", masks)
    assert score(FIXTURES / "masks", tmp_path / "base.csv").exit_code == 0
    # A clean image gets a wrong block: it regresses in the head ranking.
    path = masks / "city_a/0001.png"
    image = Image.open(path)
    labels = np.array(image)
    labels[10:30, 10:40] = (labels[10:30, 10:40] + 1) % 5
    edited = Image.fromarray(labels, image.mode)
    if image.mode == "P":
        edited.putpalette(image.getpalette())
    edited.save(path)
    assert score(masks, tmp_path / "head.csv").exit_code == 0
    plain = run("diff", tmp_path / "base.csv", tmp_path / "head.csv")
    assert plain.exit_code == 1
    decisions = decisions_file(tmp_path / "d.csv", [f"city_a/0001,,ok,,{file_sha256(path)}"])
    reviewed = run("diff", tmp_path / "base.csv", tmp_path / "head.csv", "--reviewed", decisions)
    assert reviewed.exit_code == 0, reviewed.output
    assert "1 regressed or new image(s) exempt (reviewed ok): city_a/0001" in reviewed.stderr
    rows = run("diff", tmp_path / "base.csv", tmp_path / "head.csv", "--reviewed", decisions, "--format", "csv")
    assert rows.exit_code == 0
    (row,) = list(csv.DictReader(io.StringIO(rows.stdout)))
    assert (row["image"], row["change"]) == ("city_a/0001", "regressed, reviewed ok") and float(row["delta"]) < -0.05
    # A decision made on the mask before the edit is stale: the regression fails again.
    stale = decisions_file(tmp_path / "old.csv", [f"city_a/0001,,ok,,{sha('city_a/0001')}"])
    again = run("diff", tmp_path / "base.csv", tmp_path / "head.csv", "--reviewed", stale)
    assert again.exit_code == 1 and "stale" in again.stderr
    # Without the head's run record the masks cannot be found.
    (tmp_path / "head.run.json").unlink()
    missing = run("diff", tmp_path / "base.csv", tmp_path / "head.csv", "--reviewed", decisions)
    assert missing.exit_code == 2 and "--reviewed needs the masks of" in missing.stderr


def test_check_says_which_images_the_decisions_exempt(tmp_path):
    masks = tmp_path / "masks"
    shutil.copytree(FIXTURES / "masks", masks)
    decisions = decisions_file(tmp_path / "d.csv", [f"{i},,ok,,{sha(i, masks)}" for i in PLANTED[:3]]
                               + [f"city_z/9999,,ok,,{'0' * 64}", f"{PLANTED[3]},,fix,,"])
    # The reviewer's ok on city_b/0002 goes stale: its mask is edited after the review.
    edited = masks / "city_b" / "0002.png"
    pixels = np.array(Image.open(edited))
    pixels[0, 0] = 1 if pixels[0, 0] != 1 else 2
    Image.fromarray(pixels, mode=Image.open(edited).mode).save(edited)
    result = run("check", masks, FIXTURES / "preds.zarr", "--reviewed", decisions)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [
        f"note: 2 image(s) marked ok in {decisions} with unchanged masks are exempt from the gates",
        "note: 1 ok decision(s) are stale (the mask changed since), judged again: city_b/0002",
        "note: 1 ok decision(s) name images this run does not have",
    ]
    from segaudit.ci.check import check

    report = check(masks, FIXTURES / "preds.zarr", reviewed=decisions)
    assert report.review.exempt == {"city_a/0003", "city_a/0005"} and report.review.stale == ["city_b/0002"]
    assert check(masks, FIXTURES / "preds.zarr").review is None


def test_check_refuses_a_malformed_decisions_file(tmp_path):
    bad = tmp_path / "d.csv"
    bad.write_text("image,decision\ncity_a/0003,maybe\n")
    result = run("check", FIXTURES / "masks", FIXTURES / "preds.zarr", "--reviewed", bad)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0], result.stderr
