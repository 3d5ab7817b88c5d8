"""``segaudit regions`` and ``score --regions`` end to end: the table, proposals, the run record."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import naive
from datasets import FIXTURES, make_dataset, write_masks, write_store
from segaudit.cli import app
from segaudit.core.dataset import open_dataset
from segaudit.core.regions import KINDS, RegionRule, find_regions
from segaudit.io.rankings import load_ranking
from segaudit.results import REGION_COLUMNS

TRUTH = {row["image"]: row for row in csv.DictReader(open(FIXTURES / "truth.csv"))}
PLANTED = {image for image, row in TRUTH.items() if row["is_error"] == "1"}


def run(*args):
    return CliRunner().invoke(app, [*map(str, args)])


@functools.lru_cache(maxsize=1)
def fixture_threshold() -> float:
    """The fixtures' calibrated region threshold (what --min-score defaults to)."""
    import segaudit

    return segaudit.regions(FIXTURES / "masks", FIXTURES / "preds.zarr").threshold


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_fixture_regions_rank_the_planted_errors_first_with_their_kinds(tmp_path):
    out = tmp_path / "regions.csv"
    ok(run("regions", FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", out))
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == list(REGION_COLUMNS)
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s < 1.0 for s in scores)  # calibrated probabilities, never certain
    # The raw score keeps the rule's order within an image (regions are numbered by it).
    for image in {r["image"] for r in rows}:
        raw = [float(r["raw_score"]) for r in sorted(rows, key=lambda r: int(r["region"])) if r["image"] == image]
        assert raw == sorted(raw, reverse=True)
    threshold = fixture_threshold()
    assert 0.0 < threshold < 1.0
    strong = [r for r in rows if float(r["score"]) >= threshold]
    assert {r["image"] for r in strong} == PLANTED
    kinds = {r["image"]: r["kind"] for r in strong if r["region"] == "1"}
    # The swap is a whole object in another class; the dropped cars are annotated as background.
    assert kinds["city_b/0002"] == "wrong_class"
    assert kinds["city_a/0005"] == kinds["city_b/0004"] == "missing"
    swap = [r for r in strong if r["image"] == "city_b/0002"]
    assert {(r["annotated_class"], r["likely_class"]) for r in swap} == {("sky", "building"), ("building", "sky")}
    for r in rows:
        assert r["kind"] in KINDS
        assert 0 <= int(r["x0"]) < int(r["x1"]) <= 64 and 0 <= int(r["y0"]) < int(r["y1"]) <= 48


def test_json_and_stdout_formats_carry_the_same_rows(tmp_path):
    csv_rows = list(csv.DictReader(io.StringIO(ok(run("regions", FIXTURES / "masks", FIXTURES / "preds.zarr",
                                                      "-o", "-", "-q")).stdout)))
    ok(run("regions", FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", tmp_path / "r.jsonl", "--format", "jsonl"))
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [(r["image"], r["region"], r["kind"]) for r in lines] == \
        [(r["image"], int(r["region"]), r["kind"]) for r in csv_rows]


def test_proposals_relabel_the_planted_errors_and_nothing_else(tmp_path):
    before = digest(FIXTURES / "masks")
    fixes = tmp_path / "fixes"
    result = ok(run("regions", FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", tmp_path / "r.csv",
                    "--propose-dir", fixes))
    assert "proposed mask" in result.stderr
    assert digest(FIXTURES / "masks") == before
    written = {str(p.relative_to(fixes).with_suffix("")) for p in fixes.rglob("*.png")}
    assert written == PLANTED
    assert f"regions scoring >= {fixture_threshold():.3f}" in result.stderr
    rows = [r for r in csv.DictReader(open(tmp_path / "r.csv")) if float(r["score"]) >= fixture_threshold()]
    for image_id in written:
        old_img = Image.open(FIXTURES / "masks" / f"{image_id}.png")
        new_img = Image.open(fixes / f"{image_id}.png")
        assert new_img.mode == old_img.mode == "P" and new_img.getpalette() == old_img.getpalette()
        old, new = np.asarray(old_img), np.asarray(new_img)
        changed = old != new
        assert changed.any()
        # Every changed pixel goes from a proposed region's annotated class to its likely one,
        # and at least the regions' own pixels change (missing ones grow to the model's outline).
        classes = json.loads((FIXTURES / "preds.zarr" / "zarr.json").read_text())["attributes"]["classes"]
        mine = [r for r in rows if r["image"] == image_id]
        pairs = {(classes.index(r["annotated_class"]), classes.index(r["likely_class"])) for r in mine}
        assert set(zip(old[changed].tolist(), new[changed].tolist())) <= pairs
        assert changed.sum() >= sum(int(r["area"]) for r in mine)


def test_proposals_never_go_into_the_masks(tmp_path):
    result = run("regions", FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", tmp_path / "r.csv",
                 "--propose-dir", FIXTURES / "masks")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("args, message", [
    (["--margin", "1"], "--margin must be in [0, 1)"),
    (["--band", "-1"], "--band must be"),
    (["--band-weight", "2"], "--band-weight must be"),
    (["--min-score", "1.5"], "--min-score must be in [0, 1]"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    result = run("regions", FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", tmp_path / "r.csv", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.csv").exists()


def test_score_regions_adds_columns_and_the_rule_to_the_record(tmp_path):
    plain = tmp_path / "plain.csv"
    with_regions = tmp_path / "regions.csv"
    ok(run("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", plain, "-q"))
    ok(run("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", with_regions, "--regions", "-q"))
    plain_rows = list(csv.DictReader(open(plain)))
    rows = list(csv.DictReader(open(with_regions)))
    assert list(rows[0])[-2:] == ["regions", "worst_region"]
    assert "regions" not in plain_rows[0]
    for a, b in zip(plain_rows, rows):  # the ranking itself is unchanged
        assert {k: b[k] for k in a} == a
    table = list(csv.DictReader(io.StringIO(
        ok(run("regions", FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", "-", "-q")).stdout)))
    for row in rows:
        mine = [r for r in table if r["image"] == row["image"] and float(r["score"]) >= fixture_threshold()]
        assert int(row["regions"]) == len(mine)
        assert row["worst_region"] == (mine[0]["kind"] if mine else "")
    record = json.loads((tmp_path / "regions.run.json").read_text())
    calibration = record["regions"].pop("calibration")
    assert record["regions"] == {"margin": 0.25, "band": 2, "band_weight": 1.0,
                                 "regions": sum(int(r["regions"]) for r in rows), "threshold": fixture_threshold()}
    assert calibration["calibrated"] and calibration["threshold"] == fixture_threshold()
    assert 0.5 <= calibration["precision"] <= 1.0 and 0.0 < calibration["recall"] <= 1.0
    assert "regions" not in json.loads((tmp_path / "plain.run.json").read_text())
    ranking = load_ranking(with_regions)
    assert ranking.record.regions.band == 2
    assert {r.image_id: r.worst_region for r in ranking.rows}["city_b/0002"] == "wrong_class"
    # evaluate does not mistake the new columns for scores.
    result = ok(run("evaluate", with_regions, FIXTURES / "truth.csv", "--format", "csv"))
    assert "regions" not in result.stdout


def test_regions_streamed_in_row_chunks_match_the_reference(tmp_path):
    data = make_dataset(tmp_path, ids=("a", "b", "c"), n_classes=3, size=(13, 9), row_chunk=2, flip_fraction=0.4)
    dataset = open_dataset(data.masks, data.store)
    rule = RegionRule(margin=0.1, band=1)
    run_ = find_regions(dataset, rule)
    assert run_.images == 3
    for image_id in ("a", "b", "c"):
        labels = data.labels[image_id].astype(np.int32)
        probs = data.probs[image_id]
        likely = probs.argmax(axis=0)
        scored = labels < 3
        s = np.where(scored, np.take_along_axis(probs, np.where(scored, labels, 0)[None], 0)[0], np.nan)
        expected = naive.regions(np.where(scored, labels, -1), s, likely, probs.max(axis=0), 3, margin=0.1, band=1)
        # naive's edge band sees the ignore value 255 as a label of its own, as the finder does.
        expected_band = naive.regions(labels, s, likely, probs.max(axis=0), 3, margin=0.1, band=1)
        got = sorted((r.area, r.x0, r.y0, r.core_area, r.kind) for r in run_.regions if r.image_id == image_id)
        assert got == sorted((e["area"], e["x0"], e["y0"], e["core_area"], e["kind"]) for e in expected_band)
        assert len(got) == len(expected)
        assert run_.counts[image_id] == len(got)


def test_label_map_proposals_are_written_in_the_mask_values(tmp_path):
    # Masks store 10 + class (a label map maps them back); the proposal must too.
    labels = np.zeros((12, 12), np.int64)
    labels[6:] = 1
    truth = labels.copy()
    labels[1:4, 1:4] = 1  # a planted square: annotated 1, truly 0
    probs = np.stack([truth == k for k in range(2)]).astype(np.float64) * 0.9 + 0.05
    probs /= probs.sum(axis=0)
    write_masks(tmp_path / "masks", {"x": (labels + 10).astype(np.uint8)}, mode="L")
    write_store(tmp_path / "p.zarr", {"x": probs})
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"10": 0, "11": 1}))
    ok(run("regions", tmp_path / "masks", tmp_path / "p.zarr", "-o", tmp_path / "r.csv", "--label-map", mapping,
           "--propose-dir", tmp_path / "fixes", "--band", "0"))
    fixed = np.asarray(Image.open(tmp_path / "fixes" / "x.png"))
    np.testing.assert_array_equal(fixed, (truth + 10).astype(np.uint8))


def test_the_command_line_defaults_are_the_rule_defaults():
    import inspect

    from segaudit.cli import evaluate_regions, regions

    rule = RegionRule()
    for module in (regions, evaluate_regions):
        defaults = {name: p.default for name, p in inspect.signature(module.command).parameters.items()}
        assert (defaults["margin"], defaults["band"], defaults["band_weight"]) == \
            (rule.margin, rule.band, rule.band_weight)


def _planted_square(n_classes=3, size=16):
    """Labels with a planted square (annotated 1, truly 0) and a confident model of the truth."""
    truth = np.zeros((size, size), np.int64)
    truth[size // 2:] = 2
    labels = truth.copy()
    labels[2:6, 2:6] = 1
    probs = np.stack([truth == k for k in range(n_classes)]).astype(np.float64) * 0.9 + 0.1 / n_classes
    probs /= probs.sum(axis=0)
    return labels, truth, probs


@pytest.mark.parametrize("layout, dtype, logits", [("per-image", "float16", False), ("stacked", "uint8", False),
                                                   ("per-image", "float32", True)])
def test_regions_read_every_store_layout_and_dtype(tmp_path, layout, dtype, logits):
    labels, truth, probs = _planted_square()
    stored = np.log(probs) if logits else probs
    write_masks(tmp_path / "masks", {"a": labels, "b": truth}, mode="L")
    write_store(tmp_path / "p.zarr", {"a": stored, "b": np.log(probs) if logits else probs}, layout=layout,
                dtype=None if logits else dtype, attrs={"kind": "logits"} if logits else None)
    ok(run("regions", tmp_path / "masks", tmp_path / "p.zarr", "-o", tmp_path / "r.csv",
           "--propose-dir", tmp_path / "fixes"))
    rows = [r for r in csv.DictReader(open(tmp_path / "r.csv")) if float(r["score"]) >= 0.5]
    assert [(r["image"], r["area"], r["annotated_class"], r["likely_class"]) for r in rows] == [("a", "16", "1", "0")]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "fixes" / "a.png")), truth)
    assert not (tmp_path / "fixes" / "b.png").exists()


def test_rgb_masks_get_rgb_proposals(tmp_path):
    labels, truth, probs = _planted_square()
    colours = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]
    rgb = np.array(colours, np.uint8)[labels]
    (tmp_path / "masks").mkdir()
    Image.fromarray(rgb, "RGB").save(tmp_path / "masks" / "a.png")
    palette = tmp_path / "palette.json"
    palette.write_text(json.dumps([list(c) for c in colours]))
    write_store(tmp_path / "p.zarr", {"a": probs})
    ok(run("regions", tmp_path / "masks", tmp_path / "p.zarr", "-o", tmp_path / "r.csv", "--palette", palette,
           "--propose-dir", tmp_path / "fixes"))
    fixed = np.asarray(Image.open(tmp_path / "fixes" / "a.png").convert("RGB"))
    np.testing.assert_array_equal(fixed, np.array(colours, np.uint8)[truth])


def test_tiff_masks_get_tiff_proposals(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    labels, truth, probs = _planted_square()
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "masks" / "a.tif", labels.astype(np.uint16))
    write_store(tmp_path / "p.zarr", {"a": probs})
    ok(run("regions", tmp_path / "masks", tmp_path / "p.zarr", "-o", tmp_path / "r.csv",
           "--propose-dir", tmp_path / "fixes"))
    fixed = tifffile.imread(tmp_path / "fixes" / "a.tif")
    assert fixed.dtype == np.uint16
    np.testing.assert_array_equal(fixed, truth)


def test_python_api_gives_the_command_line_table(tmp_path):
    import segaudit

    found = segaudit.regions(FIXTURES / "masks", FIXTURES / "preds.zarr", rule=segaudit.RegionRule())
    assert isinstance(found.regions[0], segaudit.Region)
    segaudit.write_regions(found, tmp_path / "api.csv")
    ok(run("regions", FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", tmp_path / "cli.csv", "-q"))
    assert (tmp_path / "api.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()
    run_ = segaudit.score(FIXTURES / "masks", FIXTURES / "preds.zarr", regions=True)
    assert {r.image_id: r.worst_region for r in run_.results}["city_b/0002"] == "wrong_class"


def _planted_cube(depth=6, size=12, n_classes=3):
    """A volume with a planted cube across slices (annotated 1, truly 0), and a confident model."""
    truth = np.zeros((depth, size, size), np.int64)
    truth[:, size // 2:] = 2
    labels = truth.copy()
    labels[1:5, 2:5, 2:5] = 1
    probs = np.stack([truth == k for k in range(n_classes)]).astype(np.float64) * 0.9 + 0.1 / n_classes
    return labels, truth, probs / probs.sum(axis=0)


@pytest.mark.parametrize("suffix", [".npy", ".nii.gz"])
def test_volume_regions_span_slices_and_proposals_keep_the_format(tmp_path, suffix):
    from segaudit.io.writer import PredictionWriter

    labels, truth, probs = _planted_cube()
    (tmp_path / "masks").mkdir()
    if suffix == ".npy":
        np.save(tmp_path / "masks" / "case_0.npy", labels.astype(np.uint8))
    else:
        nib = pytest.importorskip("nibabel")
        affine = np.diag([0.8, 0.8, 2.5, 1.0])
        nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0).astype(np.uint8), affine),
                 str(tmp_path / "masks" / "case_0.nii.gz"))
    with PredictionWriter(tmp_path / "p.zarr") as writer:
        writer.write_volume("case_0", probs)
    ok(run("regions", tmp_path / "masks", tmp_path / "p.zarr", "-o", tmp_path / "r.csv",
           "--propose-dir", tmp_path / "fixes"))
    rows = [r for r in csv.DictReader(open(tmp_path / "r.csv")) if float(r["score"]) >= 0.5]
    # One region: the cube, across four slices, boxed in slice coordinates.
    assert [(r["area"], r["x0"], r["y0"], r["z0"], r["x1"], r["y1"], r["z1"]) for r in rows] == \
        [("36", "2", "2", "1", "5", "5", "5")]
    if suffix == ".npy":
        fixed = np.load(tmp_path / "fixes" / "case_0.npy")
        assert fixed.dtype == np.uint8
    else:
        image = nib.load(str(tmp_path / "fixes" / "case_0.nii.gz"))
        source = nib.load(str(tmp_path / "masks" / "case_0.nii.gz"))
        np.testing.assert_array_equal(image.affine, source.affine)  # as stored (float32 in the header)
        fixed = np.asarray(image.dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(fixed, truth)


@pytest.mark.parametrize("command, args, message", [
    ("regions", ["--calibration-seed", "-1"], "--calibration-seed must be a whole number >= 0, got -1"),
    ("regions", ["--unlabeled", "99"], "--unlabeled must be a class index from 0 to"),
    ("score", ["--regions", "--calibration-seed", "-1"], "--calibration-seed must be a whole number >= 0, got -1"),
])
def test_bad_calibration_options_are_one_line_errors(tmp_path, command, args, message):
    result = run(command, FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", tmp_path / "r.csv", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("command", ["regions", "score"])
def test_the_kinds_regions_rarely_find_are_warned_about(tmp_path, monkeypatch, command):
    import segaudit.calibration.regions as calibration_regions

    def args(out):
        return ([command, FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", tmp_path / out]
                + (["--regions", "--method", "rsoftmin", "--summary-md", tmp_path / f"{out}.md"]
                   if command == "score" else []))

    result = run(*args("out.csv"))
    assert result.exit_code == 0, result.output
    # On the fixtures the regions find every kind they planted: no warning.
    assert "few planted errors" not in result.output
    # Asking every kind to be found in more than all its copies warns about each kind with
    # enough copies (blob, planted 3 times, has too few), in one warning.
    monkeypatch.setattr(calibration_regions, "KIND_RECALL_WARNING", 1.01)
    result = run(*args("again.csv"))
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # the terminal may wrap the long line
    assert output.count("warning: with this model, few planted errors of these kinds") == 1
    from segaudit.calibration.kinds import PLANTED_KINDS

    for kind in PLANTED_KINDS.values():
        assert (f"{kind.phrase} (" in output) == (kind.name != "blob"), kind.name
    if command == "score":  # the Markdown summary says the same
        quiet, told = (tmp_path / "out.csv.md").read_text(), (tmp_path / "again.csv.md").read_text()
        assert "### Error regions" in quiet and "threshold" in quiet and "few planted errors" not in quiet
        assert told.count("**With this model, few planted errors of these kinds") == 1
