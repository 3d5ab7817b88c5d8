"""The ``segaudit score`` command: outputs, options, the bundled fixtures and bad input.

Most tests go through typer's CliRunner (in-process, stdout and stderr kept apart); a few
run the installed ``segaudit`` executable in a subprocess.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

from datasets import FIXTURES, make_dataset, random_probs, read_csv, write_mask, write_masks, write_store
from segaudit import __version__
from segaudit.api import score, score_arrays
from segaudit.cli import app
from segaudit.errors import InputError

ALL_COLUMNS = "rank,image,score,rsoftmin,softmin,cil,ccp,tccp,iou,clc,coco,pixels,low_pixels,suspect_class,likely_class"
METHOD_COLUMNS = ["rsoftmin", "softmin", "cil", "ccp", "tccp", "iou"]
TRUTH = {row["image"]: row for row in csv.DictReader(open(FIXTURES / "truth.csv"))}
PLANTED = {image for image, row in TRUTH.items() if row["is_error"] == "1"}


def invoke(*args):
    """Run ``segaudit score ARGS`` in-process."""
    return CliRunner().invoke(app, ["score", *map(str, args)])


def ok(result):
    """Assert the run succeeded; return it."""
    assert result.exit_code == 0, result.output
    return result


def rows_of(path_or_text) -> list[dict[str, str]]:
    text = path_or_text.read_text() if isinstance(path_or_text, Path) else path_or_text
    return read_csv(text)


@pytest.fixture
def out(tmp_path):
    """An empty output directory."""
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


@pytest.fixture
def ds(tmp_path):
    """Three images, K=4, 10x7, some 255-ignored pixels, per-image float32 store."""
    return make_dataset(tmp_path / "data", dtype="float32")


# --- output files -----------------------------------------------------------


def test_default_output_is_ranking_csv_with_run_record(out, monkeypatch):
    monkeypatch.chdir(out)
    result = ok(invoke(FIXTURES / "masks", FIXTURES / "preds.zarr"))
    assert sorted(os.listdir(out)) == ["ranking.csv", "ranking.run.json"]  # no temporaries left
    assert result.stdout == ""
    assert "wrote ranking.csv (12 images, ranked by auto)" in result.stderr
    assert "auto: ranked by " in result.stderr and "AUPRC on planted errors" in result.stderr

    text = (out / "ranking.csv").read_text()
    assert text.splitlines()[0] == "rank,image,score,auto,pixels,low_pixels,suspect_class,likely_class"
    rows = rows_of(text)
    assert [r["rank"] for r in rows] == [str(n) for n in range(1, 13)]
    assert sorted(r["image"] for r in rows) == sorted(TRUTH)

    record = json.loads((out / "ranking.run.json").read_text())
    assert record["segaudit_version"] == __version__
    assert record["command"] == "score"
    assert record["ranking"] == "ranking.csv"
    assert record["masks"] == str((FIXTURES / "masks").resolve())
    assert record["predictions"] == str((FIXTURES / "preds.zarr").resolve())
    assert record["layout"] == "per-image"
    assert record["methods"] == ["auto"]
    assert record["calibration"]["calibrated"] and record["calibration"]["chosen"] in record["calibration"]["candidates"]
    assert record["temperature"] == 0.1 and record["pixel_threshold"] == 0.5
    assert record["ignore_index"] == [255]
    assert record["classes"] == ["unlabeled", "sky", "building", "road", "car"]
    assert record["n_classes"] == 5
    assert record["images_scored"] == 12
    assert record["images_without_scored_pixels"] == []


def test_output_files_get_the_usual_permissions(out, ds):
    ok(invoke(ds.masks, ds.store, "-o", out / "r.csv"))
    umask = os.umask(0)
    os.umask(umask)
    for name in ("r.csv", "r.run.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_run_record_is_named_after_the_csv(out, ds):
    ok(invoke(ds.masks, ds.store, "-o", out / "scores.v2.csv", "-m", "cil,iou"))
    assert sorted(os.listdir(out)) == ["scores.v2.csv", "scores.v2.run.json"]
    record = json.loads((out / "scores.v2.run.json").read_text())
    assert record["ranking"] == "scores.v2.csv"
    assert record["methods"] == ["cil", "iou"]


def test_dash_writes_csv_to_stdout_only(out, ds, monkeypatch):
    monkeypatch.chdir(out)
    result = ok(invoke(ds.masks, ds.store, "-o", "-", "--method", "all"))
    assert os.listdir(out) == []
    assert result.stdout.splitlines()[0] == ALL_COLUMNS
    assert "wrote" not in result.stderr
    ok(invoke(ds.masks, ds.store, "-o", out / "r.csv", "--method", "all"))
    assert result.stdout == (out / "r.csv").read_text()


def test_method_all_columns_and_score_is_the_default_rsoftmin(out, ds):
    ok(invoke(ds.masks, ds.store, "--method", "all", "-o", out / "r.csv"))
    text = (out / "r.csv").read_text()
    assert text.splitlines()[0] == ALL_COLUMNS
    rows = rows_of(text)
    assert len(rows) == 3
    assert all(r["score"] == r["rsoftmin"] for r in rows)
    rsoftmin = [float(r["rsoftmin"]) for r in rows]
    assert rsoftmin == sorted(rsoftmin)


def test_method_list_ranks_by_first_method(out, ds):
    ok(invoke(ds.masks, ds.store, "--method", "cil,softmin", "-o", out / "r.csv"))
    text = (out / "r.csv").read_text()
    assert text.splitlines()[0] == "rank,image,score,cil,softmin,pixels,low_pixels,suspect_class,likely_class"
    rows = rows_of(text)
    assert all(r["score"] == r["cil"] for r in rows)
    cil = [float(r["cil"]) for r in rows]
    assert cil == sorted(cil)


def test_csv_values_match_in_memory_scores(out, ds):
    ok(invoke(ds.masks, ds.store, "--method", "all", "-o", out / "r.csv"))
    for row in rows_of(out / "r.csv"):
        image = row["image"]
        [want], _ = score_arrays(ds.labels[image][None], ds.probs[image][None].astype(np.float32),
                                 methods=METHOD_COLUMNS, ignore_index=(255,))
        for method in METHOD_COLUMNS:
            assert float(row[method]) == want.scores[method]  # written losslessly
        assert int(row["pixels"]) == want.pixels == np.sum(ds.labels[image] != 255)
        assert int(row["low_pixels"]) == want.low_pixels
        assert row["suspect_class"] == str(want.suspect_class)
        assert row["likely_class"] == str(want.likely_class)


@pytest.mark.parametrize("store", ["preds.zarr", "preds_stacked.zarr"])
def test_reruns_are_byte_identical(tmp_path, store):
    outputs = []
    for run in ("one", "two"):
        directory = tmp_path / run
        directory.mkdir()
        ok(invoke(FIXTURES / "masks", FIXTURES / store, "-m", "all", "-o", directory / "r.csv"))
        outputs.append(((directory / "r.csv").read_bytes(), (directory / "r.run.json").read_bytes()))
    assert outputs[0] == outputs[1]


def tie_dataset(root, ids):
    """Images with identical labels and predictions, so every score ties."""
    rng = np.random.default_rng(4)
    probs = random_probs(rng, 3, 6, 5)
    labels = probs.argmax(0).astype(np.uint8)
    labels[0, :3] = (labels[0, :3] + 1) % 3
    write_masks(root / "masks", {i: labels for i in ids})
    write_store(root / "p.zarr", {i: probs for i in ids})
    return root / "masks", root / "p.zarr"


def test_ties_are_broken_by_image_id(tmp_path):
    masks, store = tie_dataset(tmp_path, ["zeta", "b/x", "alpha", "b/a"])
    result = ok(invoke(masks, store, "-m", "all", "-o", "-"))
    rows = rows_of(result.stdout)
    assert [r["image"] for r in rows] == ["alpha", "b/a", "b/x", "zeta"]
    assert len({r["score"] for r in rows}) == 1


def test_images_with_every_pixel_ignored_rank_last_with_empty_score(out, ds):
    for image in ("city/a", "other/c"):
        ds.labels[image][...] = 255
    write_masks(ds.masks, ds.labels)
    result = ok(invoke(ds.masks, ds.store, "-m", "all", "-o", out / "r.csv"))
    rows = rows_of(out / "r.csv")
    assert [r["image"] for r in rows] == ["city/b", "city/a", "other/c"]
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    for row in rows[1:]:
        assert [row[c] for c in ("score", *METHOD_COLUMNS)] == [""] * (1 + len(METHOD_COLUMNS))
        assert (row["pixels"], row["low_pixels"], row["suspect_class"], row["likely_class"]) == ("0", "0", "", "")
    assert rows[0]["score"] != ""
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1
    assert "2 image(s) have no scored pixel" in warning[0] and "city/a, other/c" in warning[0]
    record = json.loads((out / "r.run.json").read_text())
    assert record["images_without_scored_pixels"] == ["city/a", "other/c"]


def test_quiet_prints_nothing_on_success(out, ds):
    ds.labels["city/a"][...] = 255
    write_masks(ds.masks, ds.labels)
    result = ok(invoke(ds.masks, ds.store, "-q", "-o", out / "r.csv"))
    assert result.stderr == "" and result.stdout == ""
    assert (out / "r.csv").is_file()


# --- input options ------------------------------------------------------------


def test_mask_suffix_filters_and_strips(tmp_path, out):
    ds = make_dataset(tmp_path / "data", ids=("aachen/aachen_01", "bochum/bochum_02"))
    suffixed = tmp_path / "gtFine"
    write_masks(suffixed, ds.labels, suffix="_gtFine_labelIds")
    # Other files in the tree (Cityscapes' colour images) do not count as masks.
    for image in ds.labels:
        write_mask(suffixed / f"{image}_gtFine_color.png", np.zeros((10, 7, 3)), "RGB")
    ok(invoke(suffixed, ds.store, "--mask-suffix", "_gtFine_labelIds", "-o", out / "s.csv"))
    ok(invoke(ds.masks, ds.store, "-o", out / "plain.csv"))
    assert (out / "s.csv").read_text() == (out / "plain.csv").read_text()
    assert sorted(r["image"] for r in rows_of(out / "s.csv")) == ["aachen/aachen_01", "bochum/bochum_02"]
    assert json.loads((out / "s.run.json").read_text())["mask_suffix"] == "_gtFine_labelIds"


@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_mask_modes_read_the_same_classes(tmp_path, out, ds, mode):
    write_masks(tmp_path / mode, ds.labels, mode)
    ok(invoke(tmp_path / mode, ds.store, "-m", "all", "-o", out / "mode.csv"))
    ok(invoke(ds.masks, ds.store, "-m", "all", "-o", out / "palette.csv"))  # P mode
    assert (out / "mode.csv").read_text() == (out / "palette.csv").read_text()


@pytest.mark.parametrize("form", ["comma", "json file", "lines file"])
def test_classes_name_the_suspect_and_likely_classes(tmp_path, out, ds, form):
    names = ["road", "sky", "car", "tree"]
    if form == "comma":
        value = ",".join(names)
    elif form == "json file":
        value = tmp_path / "classes.json"
        value.write_text(json.dumps(names))
    else:
        value = tmp_path / "classes.txt"
        value.write_text("\n".join(names) + "\n")
    ok(invoke(ds.masks, ds.store, "--classes", value, "-o", out / "named.csv"))
    ok(invoke(ds.masks, ds.store, "-o", out / "plain.csv"))
    named, plain = rows_of(out / "named.csv"), rows_of(out / "plain.csv")
    assert [r["image"] for r in named] == [r["image"] for r in plain]
    for n, p in zip(named, plain):
        assert n["suspect_class"] == names[int(p["suspect_class"])]
        assert n["likely_class"] == names[int(p["likely_class"])]
    assert json.loads((out / "named.run.json").read_text())["classes"] == names


def test_classes_option_overrides_the_store_attribute(tmp_path, out):
    ds = make_dataset(tmp_path / "data", attrs={"classes": ["a", "b", "c", "d"]})
    ok(invoke(ds.masks, ds.store, "-o", out / "attr.csv"))
    assert {r["suspect_class"] for r in rows_of(out / "attr.csv")} <= {"a", "b", "c", "d"}
    ok(invoke(ds.masks, ds.store, "--classes", "w,x,y,z", "-o", out / "opt.csv"))
    assert {r["suspect_class"] for r in rows_of(out / "opt.csv")} <= {"w", "x", "y", "z"}


def test_ignore_index_is_repeatable(tmp_path, out, ds):
    # Treat class 0 as "unlabeled" as well as 255.
    ok(invoke(ds.masks, ds.store, "--ignore-index", "0", "--ignore-index", "255", "-m", "all", "-o", out / "r.csv"))
    for row in rows_of(out / "r.csv"):
        labels = ds.labels[row["image"]]
        assert int(row["pixels"]) == np.sum((labels != 0) & (labels != 255))
        [want], _ = score_arrays(labels[None], ds.probs[row["image"]][None].astype(np.float32),
                                 methods=METHOD_COLUMNS, ignore_index=(0, 255))
        assert float(row["cil"]) == want.scores["cil"]
        assert row["suspect_class"] != "0"
    assert json.loads((out / "r.run.json").read_text())["ignore_index"] == [0, 255]


def test_no_ignore_scores_every_pixel(tmp_path, out):
    ds = make_dataset(tmp_path / "data")
    for labels in ds.labels.values():
        labels[labels == 255] = 1
    write_masks(ds.masks, ds.labels)
    ok(invoke(ds.masks, ds.store, "--no-ignore", "-o", out / "r.csv"))
    assert {r["pixels"] for r in rows_of(out / "r.csv")} == {"70"}
    assert json.loads((out / "r.run.json").read_text())["ignore_index"] == []


def test_default_ignore_index_refused_when_255_is_a_class(tmp_path, out):
    ds = make_dataset(tmp_path / "data", n_classes=256, size=(3, 4), flip_fraction=0.0)
    for labels in ds.labels.values():
        labels[0, 0] = 255
    write_masks(ds.masks, ds.labels)
    result = invoke(ds.masks, ds.store, "-o", out / "r.csv")
    assert_input_error(result, out, "K=256", "default ignore index 255", "--ignore-index", "--no-ignore")
    # The Python API says the same with its argument.
    with pytest.raises(InputError, match=r"255 is a real class; pass ignore_index=N .*, or ignore_index=\(\)$"):
        score(ds.masks, ds.store)
    # Either explicit choice works: 255 as a real class, or 255 ignored on purpose.
    ok(invoke(ds.masks, ds.store, "--no-ignore", "-o", out / "none.csv"))
    ok(invoke(ds.masks, ds.store, "--ignore-index", "255", "-o", out / "ignored.csv"))
    pixels = {r["image"]: int(r["pixels"]) for r in rows_of(out / "none.csv")}
    assert set(pixels.values()) == {12}
    for row in rows_of(out / "ignored.csv"):
        assert int(row["pixels"]) == np.sum(ds.labels[row["image"]] != 255) < 12


def test_palette_maps_rgb_masks_to_classes(tmp_path, out, ds):
    colours = [(0, 0, 0), (255, 0, 0), (0, 128, 0), (10, 20, 30)]
    palette = tmp_path / "palette.json"
    palette.write_text(json.dumps({**{"#%02x%02x%02x" % c: k for k, c in enumerate(colours)}, "255,255,255": 255}))
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(colours)] = colours
    lut[255] = (255, 255, 255)
    rgb_masks = tmp_path / "rgb"
    for image, labels in ds.labels.items():
        write_mask(rgb_masks / f"{image}.png", lut[labels], "RGB")
    ok(invoke(rgb_masks, ds.store, "--palette", palette, "-m", "all", "-o", out / "rgb.csv"))
    ok(invoke(ds.masks, ds.store, "-m", "all", "-o", out / "indexed.csv"))
    assert (out / "rgb.csv").read_text() == (out / "indexed.csv").read_text()
    assert json.loads((out / "rgb.run.json").read_text())["palette"] == str(palette.resolve())


def test_channels_last_option(tmp_path, out):
    first = make_dataset(tmp_path / "first", dtype="float32")
    last = make_dataset(tmp_path / "last", dtype="float32", channels_last=True)
    ok(invoke(first.masks, first.store, "-m", "all", "-o", out / "first.csv"))
    ok(invoke(last.masks, last.store, "-m", "all", "--channels-last", "-o", out / "last.csv"))
    assert (out / "first.csv").read_text() == (out / "last.csv").read_text()
    assert json.loads((out / "last.run.json").read_text())["channels_last"] is True
    # Without the flag the (10, 7, 4) arrays read as K=10 classes of 7x4 images: the masks do not fit.
    result = invoke(last.masks, last.store, "-o", out / "x.csv")
    assert result.exit_code == 2 and "10x7" in result.stderr and "7x4" in result.stderr


def test_logits_option_matches_probabilities(tmp_path, out):
    ds = make_dataset(tmp_path / "data", dtype="float64")
    logits = {i: np.log(p) + 3.0 for i, p in ds.probs.items()}
    write_store(tmp_path / "logits.zarr", logits)
    ok(invoke(ds.masks, ds.store, "-m", "all", "-o", out / "p.csv"))
    ok(invoke(ds.masks, tmp_path / "logits.zarr", "--logits", "-m", "all", "-o", out / "l.csv"))
    probs, logit_rows = rows_of(out / "p.csv"), rows_of(out / "l.csv")
    assert [r["image"] for r in probs] == [r["image"] for r in logit_rows]
    for p, q in zip(probs, logit_rows):
        for column in METHOD_COLUMNS:
            assert float(q[column]) == pytest.approx(float(p[column]), rel=1e-12, abs=1e-12)
        assert (p["pixels"], p["low_pixels"], p["suspect_class"]) == (q["pixels"], q["low_pixels"], q["suspect_class"])
    assert json.loads((out / "l.run.json").read_text())["logits"] is True
    # The same store read as probabilities fails and says why.
    result = invoke(ds.masks, tmp_path / "logits.zarr", "-o", out / "x.csv")
    assert result.exit_code == 2 and "--logits" in result.stderr


def test_allow_missing_skips_and_reports(tmp_path, out, ds):
    (ds.masks / "city" / "b.png").unlink()
    write_mask(ds.masks / "new" / "x.png", ds.labels["city/a"])
    write_mask(ds.masks / "new" / "y.png", ds.labels["city/a"])
    result = ok(invoke(ds.masks, ds.store, "--allow-missing", "-o", out / "r.csv"))
    assert "skipped 2 mask(s) without prediction and 1 prediction(s) without mask" in result.stderr
    assert sorted(r["image"] for r in rows_of(out / "r.csv")) == ["city/a", "other/c"]
    record = json.loads((out / "r.run.json").read_text())
    assert record["skipped_masks_without_prediction"] == ["new/x", "new/y"]
    assert record["skipped_predictions_without_mask"] == ["city/b"]


# --- the bundled fixtures -----------------------------------------------------


@pytest.mark.parametrize("method", ["all", "softmin"])
@pytest.mark.parametrize("store", ["preds.zarr", "preds_stacked.zarr"])
def test_fixtures_rank_planted_errors_first(out, store, method):
    ok(invoke(FIXTURES / "masks", FIXTURES / store, "--method", method, "-o", out / "r.csv"))
    rows = rows_of(out / "r.csv")
    assert len(rows) == 12
    assert {r["image"] for r in rows[:4]} == PLANTED
    by_image = {r["image"]: r for r in rows}
    for image, truth in TRUTH.items():
        if truth["kind"] == "drop":  # cars annotated as unlabeled
            assert (by_image[image]["suspect_class"], by_image[image]["likely_class"]) == ("unlabeled", "car")
        if truth["kind"] == "swap":  # sky and building exchanged
            assert {by_image[image]["suspect_class"], by_image[image]["likely_class"]} == {"sky", "building"}
    # The ignore band of city_b/0004 (bottom row, 64 px) is not scored.
    assert by_image["city_b/0004"]["pixels"] == str(48 * 64 - 64)


# --- bad input ------------------------------------------------------------------


def assert_input_error(result, out_dir: Path, *fragments: str):
    """Exit 2, one 'error:' line naming the problem, no traceback, nothing written."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])
    if out_dir.exists():
        assert os.listdir(out_dir) == []


def _missing_masks(ds, tmp):
    return [tmp / "nope", ds.store], ["masks directory not found", tmp / "nope"]


def _missing_store(ds, tmp):
    return [ds.masks, tmp / "nope.zarr"], ["prediction store not found", tmp / "nope.zarr"]


def _not_zarr(ds, tmp):
    (tmp / "junk.zarr").mkdir()
    (tmp / "junk.zarr" / "readme.txt").write_text("not a store")
    return [ds.masks, tmp / "junk.zarr"], ["not a zarr group", tmp / "junk.zarr"]


def _no_pngs(ds, tmp):
    (tmp / "empty").mkdir()
    (tmp / "empty" / "labels.txt").write_text("x")
    return [tmp / "empty", ds.store], ["no PNG, TIFF, NIfTI or .npy masks found", tmp / "empty"]


def _mask_without_prediction(ds, tmp):
    write_mask(ds.masks / "city" / "zz.png", ds.labels["city/a"])
    return [ds.masks, ds.store], ["1 mask(s) with no prediction", "city/zz", "--allow-missing"]


def _prediction_without_mask(ds, tmp):
    (ds.masks / "city" / "b.png").unlink()
    return [ds.masks, ds.store], ["1 prediction(s) with no mask", "city/b", "--allow-missing"]


def _size_mismatch(ds, tmp):
    write_mask(ds.masks / "city" / "b.png", np.zeros((4, 5)))
    return [ds.masks, ds.store], ["city/b.png", "4x5", "10x7"]


def _label_not_below_k(ds, tmp):
    ds.labels["city/b"][0, :3] = 7
    write_masks(ds.masks, ds.labels)
    return [ds.masks, ds.store], ["city/b.png", "K=4", "7 (3 px)"]


def _rgb_without_palette(ds, tmp):
    write_mask(ds.masks / "city" / "b.png", np.zeros((10, 7, 3)), "RGB")
    return [ds.masks, ds.store], ["city/b.png", "RGB mask needs --palette"]


def _truncated_png(ds, tmp):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(64, 64))
    probs = random_probs(rng, 4, 64, 64)
    write_store(ds.store, {**ds.probs, "big": probs})
    path = write_mask(ds.masks / "big.png", labels)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return [ds.masks, ds.store], ["cannot read mask", "big.png"]


def _bad_probability(value, message):
    def build(ds, tmp):
        ds.probs["city/b"][0, 3, 4] = value
        ds.labels["city/b"][3, 4] = 1
        write_masks(ds.masks, ds.labels)
        write_store(ds.store, ds.probs, dtype="float32")
        return [ds.masks, ds.store], ["preds.zarr/city/b", message, "row 3, column 4", "--logits"]

    return build


def _stacked_without_ids(ds, tmp):
    write_store(ds.store, ds.probs, layout="stacked", image_ids=[])
    return [ds.masks, ds.store], [ds.store, "image_ids"]


def _duplicate_ids(ds, tmp):
    write_store(ds.store, ds.probs, layout="stacked", image_ids=["city/a", "city/b", "city/a"])
    return [ds.masks, ds.store], [ds.store, "duplicate image ids", "city/a"]


def _corrupt_chunk(ds, tmp):
    chunks = [p for p in (ds.store / "city" / "b").rglob("*") if p.is_file() and p.name != "zarr.json"]
    chunks[0].write_bytes(b"garbage")
    return [ds.masks, ds.store], ["preds.zarr/city/b", "cannot read rows"]


def _options(*options, fragments):
    return lambda ds, tmp: ([ds.masks, ds.store, *options], fragments)


BAD_INPUT = {
    "missing masks dir": _missing_masks,
    "missing store": _missing_store,
    "not a zarr store": _not_zarr,
    "no PNGs": _no_pngs,
    "mask without prediction": _mask_without_prediction,
    "prediction without mask": _prediction_without_mask,
    "size mismatch": _size_mismatch,
    "label >= K": _label_not_below_k,
    "RGB without palette": _rgb_without_palette,
    "truncated PNG": _truncated_png,
    "NaN": _bad_probability(np.nan, "non-finite value nan"),
    "inf": _bad_probability(np.inf, "non-finite value inf"),
    "negative": _bad_probability(-0.25, "negative probability -0.25"),
    "not summing to 1": _bad_probability(0.9, "probabilities summing to"),
    "stacked without image_ids": _stacked_without_ids,
    "duplicate image_ids": _duplicate_ids,
    "corrupt chunk": _corrupt_chunk,
    "unknown method": _options("--method", "softmin,foo", fragments=["unknown method 'foo'"]),
    "temperature 0": _options("--temperature", "0", fragments=["--temperature must be a positive number"]),
    "temperature < 0": _options("--temperature", "-0.5", fragments=["--temperature must be a positive number"]),
    "classes K mismatch": _options("--classes", "a,b", fragments=["--classes names 2 classes", "K=4"]),
    "255 not ignored": _options("--no-ignore", fragments=["city/a.png", "not below K=4", "255"]),
    "missing palette file": _options("--palette", "nope.json", fragments=["palette file not found", "nope.json"]),
}


@pytest.mark.parametrize("case", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input(tmp_path, out, ds, case):
    args, fragments = case(ds, tmp_path)
    result = invoke(*args, "-o", out / "ranking.csv")
    assert_input_error(result, out, *fragments)


def test_output_directory_missing(tmp_path, ds):
    missing = tmp_path / "missing"
    result = invoke(ds.masks, ds.store, "-o", missing / "ranking.csv")
    assert_input_error(result, missing, "output directory does not exist", missing)
    assert not missing.exists()


def test_run_record_in_the_way_leaves_no_csv(out, ds):
    (out / "r.run.json").mkdir()
    result = invoke(ds.masks, ds.store, "-o", out / "r.csv")
    assert result.exit_code == 2
    assert "r.run.json is a directory" in result.stderr
    assert os.listdir(out) == ["r.run.json"]


def nan_in_fifth_image(root):
    """Eight images; the 5th (img4) has a NaN at a scored pixel."""
    ids = [f"img{n}" for n in range(8)]
    ds = make_dataset(root, ids=ids, dtype="float32")
    ds.probs["img4"][:, 2, 2] = np.nan
    ds.labels["img4"][2, 2] = 0
    write_masks(ds.masks, ds.labels)
    write_store(ds.store, ds.probs, dtype="float32")
    return ds


def test_failure_mid_run_happens_after_earlier_images(tmp_path):
    import segaudit
    from segaudit.errors import InputError

    ds = nan_in_fifth_image(tmp_path)
    done = []
    with pytest.raises(InputError, match="img4"):
        segaudit.score(ds.masks, ds.store, on_progress=lambda stage, n, total: done.append((stage, n, total)))
    assert done == [("scoring", n, 8) for n in range(1, 5)]


def test_failure_mid_run_writes_nothing(tmp_path, out):
    ds = nan_in_fifth_image(tmp_path / "data")
    result = invoke(ds.masks, ds.store, "-o", out / "ranking.csv")
    assert_input_error(result, out, "preds.zarr/img4", "non-finite")
    result = invoke(ds.masks, ds.store, "-o", "-")
    assert_input_error(result, out, "preds.zarr/img4")


def test_failure_mid_run_keeps_the_previous_ranking(tmp_path, out):
    ds = nan_in_fifth_image(tmp_path / "data")
    (out / "ranking.csv").write_text("old ranking\n")
    (out / "ranking.run.json").write_text('{"old": true}\n')
    result = invoke(ds.masks, ds.store, "-o", out / "ranking.csv")
    assert result.exit_code == 2
    assert sorted(os.listdir(out)) == ["ranking.csv", "ranking.run.json"]
    assert (out / "ranking.csv").read_text() == "old ranking\n"
    assert (out / "ranking.run.json").read_text() == '{"old": true}\n'


def test_error_messages_are_literal_text(tmp_path, out, ds):
    # Paths are printed as they are, not as rich markup or emoji codes.
    weird = tmp_path / "[/bold] :smile: [red]x"
    result = invoke(weird, ds.store, "-o", out / "r.csv")
    assert_input_error(result, out, f"masks directory not found: {weird}")


# --- help and the installed executable ---------------------------------------------


def test_every_score_option_is_in_its_help():
    result = CliRunner().invoke(app, ["score", "--help"])
    assert result.exit_code == 0
    command = typer.main.get_command(app).commands["score"]
    options = [opt for param in command.params for opt in (*param.opts, *param.secondary_opts)
               if opt.startswith("-")]
    assert len(options) >= 20
    for option in options:
        assert option in result.output, option


def test_progress_bar_on_a_terminal(monkeypatch, out):
    from segaudit.cli import _app

    with _app.progress(False) as bar:
        assert bar.on_progress is None and bar.on_image is None
    monkeypatch.setattr(_app.stderr, "_force_terminal", True)
    assert _app.interactive(quiet=False) and not _app.interactive(quiet=True)
    with _app.progress(True, "drawing") as bar:
        bar.on_image(1, 2)
        bar.on_progress("scoring", 2, 2)
    result = invoke(FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", out / "r.csv")
    assert result.exit_code == 0, result.output
    assert len(read_csv((out / "r.csv").read_text())) == 12


@pytest.mark.parametrize("name", ["score", "check", "issues", "summary"])
def test_every_reader_has_the_input_options(name):
    import dataclasses

    from segaudit.cli._options import InputOptions

    command = typer.main.get_command(app).commands[name]
    assert [param.name for param in command.params[:2]] == ["masks", "predictions"]
    assert {field.name for field in dataclasses.fields(InputOptions)} <= {param.name for param in command.params}


def test_output_format_choices_are_the_table_formats():
    from segaudit.cli._options import OutputFormat
    from segaudit.io.tables import FORMATS

    assert tuple(fmt.value for fmt in OutputFormat) == FORMATS
    for name in ["score", "diff", "summary"]:
        help_text = CliRunner().invoke(app, [name, "--help"]).output
        assert "csv|jsonl|json" in help_text, name


def test_every_command_module_is_registered():
    import pkgutil

    import segaudit.cli
    from segaudit.cli import COMMANDS

    modules = {info.name for info in pkgutil.iter_modules(segaudit.cli.__path__) if not info.name.startswith("_")}
    assert {module.__name__.rsplit(".", 1)[1] for module in COMMANDS.values()} == modules
    assert list(typer.main.get_command(app).commands) == list(COMMANDS)


@pytest.mark.parametrize("args", [["--help"], ["score", "--help"], ["--version"]])
def test_help_does_not_import_numba_or_zarr(args):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from segaudit.cli import app\n"
        f"result = CliRunner().invoke(app, {args!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "assert result.output.strip()\n"
        "print('numba' in sys.modules, 'zarr' in sys.modules, 'segaudit.engine' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "False"]


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"segaudit {__version__}\n"


def segaudit_executable() -> str:
    beside = Path(sys.executable).parent / "segaudit"
    found = str(beside) if beside.is_file() else shutil.which("segaudit")
    if found is None:
        pytest.fail("the segaudit executable is not installed (pip install -e .)")
    return found


def test_executable_on_fixtures(out):
    done = subprocess.run(
        [segaudit_executable(), "score", FIXTURES / "masks", FIXTURES / "preds_stacked.zarr",
         "--method", "all", "-o", out / "ranking.csv"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr and "Traceback" not in done.stderr
    text = (out / "ranking.csv").read_text()
    assert text.splitlines()[0] == ALL_COLUMNS
    rows = rows_of(text)
    assert len(rows) == 12 and {r["image"] for r in rows[:4]} == PLANTED
    assert json.loads((out / "ranking.run.json").read_text())["layout"] == "stacked"


def test_executable_missing_store_exits_2(tmp_path, out):
    done = subprocess.run(
        [segaudit_executable(), "score", FIXTURES / "masks", tmp_path / "nope.zarr", "-o", out / "r.csv"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"error: prediction store not found: {tmp_path / 'nope.zarr'}"]
    assert os.listdir(out) == []


@pytest.mark.parametrize("image_id", ["../x", "a/../../x", "/etc/x", "a//b", "./a", "a\\b", ""])
def test_ids_that_would_escape_the_output_directory_are_refused(image_id):
    from segaudit.errors import InputError
    from segaudit.io.files import safe_relative_path

    with pytest.raises(InputError, match="cannot be used as an output file name"):
        safe_relative_path(image_id, ".png")


def test_nested_ids_map_to_nested_paths():
    from pathlib import Path

    from segaudit.io.files import safe_relative_path

    assert safe_relative_path("city/a.b", ".png") == Path("city") / "a.b.png"


def test_help_reads_well_at_80_columns():
    from segaudit.cli import COMMANDS

    runner = CliRunner()
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "80"}, terminal_width=80).output
    for name in COMMANDS:
        line = next(l for l in top.splitlines() if l.strip().startswith(name + " "))
        assert not line.rstrip().endswith(("...", "…")), line
    score_help = runner.invoke(app, ["score", "--help"], env={"COLUMNS": "80"}).output
    assert "Usage: root score [OPTIONS] MASKS PREDICTIONS" in score_help or \
        "score [OPTIONS] MASKS PREDICTIONS" in score_help
    assert "{masks}" not in score_help and "--ignore-index N " in score_help
    for name in COMMANDS:
        text = runner.invoke(app, [name, "--help"], env={"COLUMNS": "80"}).output
        for python_type in ("<int>", "<str>", "<float>", "<path>", "<list[int]>", "<list[str]>"):
            assert python_type not in text, (name, python_type)
    assert ".tiff" in runner.invoke(app, ["overlay", "--help"], env={"COLUMNS": "200"}).output
    summary_help = runner.invoke(app, ["summary", "--help"], env={"COLUMNS": "200"}).output
    assert "4 times" not in summary_help and "Reads the store once" in summary_help


def test_a_command_runs_the_same_from_an_app_of_it_alone(tmp_path):
    """main() runs an app of the named command alone (app_for): its help, its usage errors and
    its run are the full app's, and anything that names no command gets the full app."""
    from segaudit.cli import COMMANDS, app_for

    runner = CliRunner()
    for name in COMMANDS:
        one = app_for([name])
        assert one is not app
        for args in ([name, "--help"], [name, "--no-such-option"], [name]):
            got, want = runner.invoke(one, args, env={"COLUMNS": "100"}), runner.invoke(app, args, env={"COLUMNS": "100"})
            assert (got.exit_code, got.stdout, got.stderr) == (want.exit_code, want.stdout, want.stderr), (name, args)
    for args in ([], ["--version"], ["--help"], ["no-such-command"], ["-m", "score"]):
        assert app_for(args) is app
    out = [tmp_path / "one.csv", tmp_path / "all.csv"]
    for runner_app, path in zip((app_for(["score"]), app), out):
        result = runner.invoke(runner_app, ["score", str(FIXTURES / "masks"), str(FIXTURES / "preds.zarr"),
                                            "--method", "softmin", "-q", "-o", str(path)])
        assert result.exit_code == 0, result.stderr
    assert out[0].read_bytes() == out[1].read_bytes()


def test_a_command_run_imports_its_module_alone():
    """main() imports the named command's module only; the full app imports all sixteen."""
    code = (
        "import sys\n"
        "from segaudit.cli import COMMAND_MODULES, app_for\n"
        "loaded = lambda: sorted(n for n in COMMAND_MODULES.values() if 'segaudit.cli.' + n in sys.modules)\n"
        "app_for(['score'])\n"
        "print(*loaded())\n"
        "app_for(['--help'])\n"
        "print(len(loaded()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["score", "16"]
