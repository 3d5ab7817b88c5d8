"""--label-map: mask values translated to class indices as masks are read (io/label_maps.py),
through the dataset, the API, the CLI and the run record."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from datasets import make_dataset, random_probs, write_masks, write_store
from segaudit.api import score
from segaudit.cli import app
from segaudit.core.dataset import open_dataset
from segaudit.errors import InputError
from segaudit.io.label_maps import BUILTIN, COCO_STUFF_UNUSED, load_label_map
from segaudit.io.masks import MaskFile, read_mask
from segaudit.io.rankings import read_run_record

#: The keys of a run record written without --label-map, exactly as before label maps existed.
RECORD_KEYS = ["segaudit_version", "command", "ranking", "masks", "predictions", "layout", "ignore_index",
               "mask_suffix", "palette", "classes", "n_classes", "logits", "channels_last", "allow_missing",
               "only", "only_deleted", "methods", "temperature", "pixel_threshold", "downsample", "images_scored",
               "images_without_scored_pixels", "skipped_masks_without_prediction",
               "skipped_predictions_without_mask", "clc"]


def table(spec, n_classes=200, ignore=(255,)):
    return load_label_map(spec).lookup(n_classes, ignore)


def mapped(spec, values, **kwargs):
    return table(spec, **kwargs).apply(np.asarray(values, np.int32), "m.png").tolist()


# --- the built-in maps ------------------------------------------------------------------


def test_cityscapes_label_ids_become_the_19_train_ids():
    ids = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    assert mapped("cityscapes", ids) == list(range(19))
    others = [value for value in range(34) if value not in ids]
    assert mapped("cityscapes", others) == [255] * len(others)  # unlabeled, ego vehicle, parking, ...
    with pytest.raises(InputError, match=r"m.png: mask values not in label map cityscapes: 34 \(2 px\)"):
        mapped("cityscapes", [34, 34, 7])


def test_ade20k_shifts_by_one_and_ignores_other_for_any_k():
    assert mapped("ade20k", [0, 1, 2, 150], n_classes=150) == [255, 0, 1, 149]
    assert mapped("ade20k", [0, 1, 6], n_classes=6) == [255, 0, 5]
    with pytest.raises(InputError, match=r"not in label map ade20k: 7 \(1 px\)"):
        mapped("ade20k", [7], n_classes=6)


def test_coco_stuff_makes_the_171_used_ids_contiguous():
    assert COCO_STUFF_UNUSED == (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
    used = [value for value in range(182) if value not in COCO_STUFF_UNUSED]
    assert len(used) == 171
    assert mapped("coco-stuff", used + [255], n_classes=171) == list(range(171)) + [255]
    assert mapped("coco-stuff", [10, 12, 181], n_classes=171) == [10, 11, 170]
    with pytest.raises(InputError, match=r"not in label map coco-stuff: 11 \(1 px\)"):
        mapped("coco-stuff", [11], n_classes=171)


def test_a_built_in_map_needs_its_classes_in_the_predictions():
    with pytest.raises(InputError, match="label map cityscapes maps value .* to class 10 .*up to 18.*K=10"):
        table("cityscapes", n_classes=10)


# --- files ---------------------------------------------------------------------------------


def test_json_and_csv_files(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"0": None, "1": "ignore", "5": 0, "9": 2}))
    assert mapped(tmp_path / "m.json", [5, 9, 0, 1], n_classes=3) == [0, 2, 255, 255]
    (tmp_path / "m.csv").write_text("value,class\n5,0\n9,2\n0,ignore\n1,\n")
    assert mapped(tmp_path / "m.csv", [5, 9, 0, 1], n_classes=3) == [0, 2, 255, 255]
    (tmp_path / "bare.txt").write_text("5,0\n9,null\n")
    assert mapped(tmp_path / "bare.txt", [5, 9], n_classes=3) == [0, 255]


def test_mapped_to_ignore_uses_the_lowest_ignore_index():
    assert mapped({3: None, 4: 1}, [3, 4], n_classes=2, ignore=(7, 9)) == [7, 1]
    with pytest.raises(InputError, match="maps 1 value.*to ignore.*--no-ignore.*--ignore-index"):
        table({3: None}, n_classes=2, ignore=())


@pytest.mark.parametrize("content, problem", [
    ("[1, 2]", "must be an object"),
    ('{"a": 1}', "mask value 'a' must be a whole number"),
    ('{"-1": 1}', "mask value '-1' must be a whole number"),
    ('{"1": -2}', "class for mask value 1 must be a class index"),
    ('{"1": true}', "class for mask value 1 must be a class index"),
    ("{}", "the label map is empty"),
    ("{", "cannot read label map JSON"),
])
def test_malformed_json_maps_are_one_line_errors(tmp_path, content, problem):
    (tmp_path / "m.json").write_text(content)
    with pytest.raises(InputError, match=problem) as error:
        load_label_map(tmp_path / "m.json")
    assert "\n" not in str(error.value)


def test_malformed_csv_maps_and_unknown_names(tmp_path):
    (tmp_path / "m.csv").write_text("1,2,3\n")
    with pytest.raises(InputError, match="row 1 must have 2 columns"):
        load_label_map(tmp_path / "m.csv")
    (tmp_path / "twice.csv").write_text("1,2\n1,3\n")
    with pytest.raises(InputError, match="mask value 1 is mapped twice"):
        load_label_map(tmp_path / "twice.csv")
    with pytest.raises(InputError, match="neither a file nor a built-in map .*cityscapes, ade20k, coco-stuff"):
        load_label_map("citiscapes")
    assert set(BUILTIN) == {"cityscapes", "ade20k", "coco-stuff"}


def test_values_above_the_map_and_large_16_bit_values_are_uncovered(tmp_path):
    with pytest.raises(InputError, match=r"not in the label map: 60000 \(2 px\), 3 \(1 px\)"):
        mapped({0: 0, 1: 1}, [0, 60000, 60000, 3], n_classes=2)


def test_read_mask_applies_the_map_to_the_decoded_values(tmp_path):
    write_masks(tmp_path, {"a": np.array([[7, 8], [0, 33]], np.uint8)}, "L")
    labels = read_mask(MaskFile("a", tmp_path / "a.png"), label_map=table("cityscapes", n_classes=19))
    assert labels.dtype == np.int32 and labels.tolist() == [[0, 1], [255, 18]]


# --- through the dataset, the API, the CLI and the record ---------------------------------


@pytest.fixture
def shifted(tmp_path):
    """ADE20K-style masks: value k is the model's class k - 1, 0 is "other"; K = 4."""
    rng = np.random.default_rng(3)
    probs = {i: random_probs(rng, 4, 6, 5) for i in ("a", "b")}
    labels = {i: (p.argmax(axis=0) + 1).astype(np.uint8) for i, p in probs.items()}
    labels["a"][0, :] = 0
    write_masks(tmp_path / "masks", labels, "L")
    write_store(tmp_path / "preds.zarr", probs)
    return tmp_path, labels


def test_the_dataset_reads_mapped_labels(shifted):
    root, labels = shifted
    dataset = open_dataset(root / "masks", root / "preds.zarr", label_map="ade20k")
    mask = dict((i, m) for m, i in dataset.pairs)["a"]
    expected = labels["a"].astype(np.int32) - 1
    expected[expected < 0] = 255
    assert dataset.read_labels(mask).tolist() == expected.tolist()
    assert dataset.options["label_map"] == "ade20k"


def test_the_api_scores_mapped_labels_as_masks_already_in_classes(shifted):
    root, labels = shifted
    run = score(root / "masks", root / "preds.zarr", label_map="ade20k", methods=("cil",))
    assert sum(r.pixels for r in run.results) == 2 * 30 - 5  # row 0 of "a" (other) is ignored
    write_masks(root / "classes", {i: np.where(lab == 0, 255, lab.astype(int) - 1) for i, lab in labels.items()},
                "L")
    plain = score(root / "classes", root / "preds.zarr", methods=("cil",))
    assert [(r.image_id, r.scores, r.pixels) for r in run.results] == [
        (r.image_id, r.scores, r.pixels) for r in plain.results]
    inline = score(root / "masks", root / "preds.zarr", label_map={0: None, 1: 0, 2: 1, 3: 2, 4: 3},
                   methods=("cil",))
    assert [r.scores for r in inline.results] == [r.scores for r in run.results]
    assert inline.options["label_map"] == {"0": None, "1": 0, "2": 1, "3": 2, "4": 3}


def test_cli_label_map_is_recorded_and_read_back(shifted, tmp_path):
    root, _ = shifted
    result = CliRunner().invoke(app, ["score", str(root / "masks"), str(root / "preds.zarr"), "--label-map", "ade20k",
                                      "-m", "cil", "-o", str(tmp_path / "r.csv"), "-q"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "r.run.json").read_text()
    data = json.loads(text)
    assert list(data)[list(data).index("palette") + 1] == "label_map" and data["label_map"] == "ade20k"
    record = read_run_record(tmp_path / "r.run.json")
    assert record.label_map == "ade20k" and record.to_json() == text


def test_cli_label_map_file_is_recorded_as_its_absolute_path(shifted, tmp_path, monkeypatch):
    root, _ = shifted
    (root / "m.csv").write_text("0,ignore\n1,0\n2,1\n3,2\n4,3\n")
    monkeypatch.chdir(root)
    result = CliRunner().invoke(app, ["score", "masks", "preds.zarr", "--label-map", "m.csv", "-m", "cil",
                                      "-o", str(tmp_path / "r.csv"), "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.run.json").read_text())["label_map"] == str(root / "m.csv")


def test_a_record_without_a_label_map_keeps_its_keys(tmp_path):
    ds = make_dataset(tmp_path / "data")
    result = CliRunner().invoke(app, ["score", str(ds.masks), str(ds.store), "-m", "clc", "-o",
                                      str(tmp_path / "r.csv"), "-q"])
    assert result.exit_code == 0, result.output
    assert list(json.loads((tmp_path / "r.run.json").read_text())) == RECORD_KEYS


def test_an_uncovered_value_is_a_one_line_error_naming_file_value_and_pixels(shifted):
    root, _ = shifted
    result = CliRunner().invoke(app, ["score", str(root / "masks"), str(root / "preds.zarr"),
                                      "--label-map", "cityscapes", "-o", str(root / "r.csv")])
    assert result.exit_code == 2
    # K = 4 is too few for Cityscapes' 19 train ids: refused before any mask is read.
    assert result.stderr.startswith("error: label map cityscapes maps value") and "K=4" in result.stderr
    result = CliRunner().invoke(app, ["check", str(root / "masks"), str(root / "preds.zarr"),
                                      "--label-map", '{"1": 0}'])
    assert result.exit_code == 2 and "neither a file nor a built-in map" in result.stderr
    (root / "m.json").write_text(json.dumps({"0": None, "1": 0, "2": 1, "3": 2}))
    result = CliRunner().invoke(app, ["score", str(root / "masks"), str(root / "preds.zarr"),
                                      "--label-map", str(root / "m.json"), "-o", str(root / "r.csv")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and ".png: mask values not in label map" in lines[0] and " 4 (" in lines[0]


def test_every_command_reading_masks_has_the_option(shifted, tmp_path):
    root, _ = shifted
    for command in (["check"], ["summary"], ["issues", "--out", str(tmp_path / "issues")]):
        result = CliRunner().invoke(app, [command[0], str(root / "masks"), str(root / "preds.zarr"),
                                          "--label-map", "ade20k", *command[1:]])
        assert result.exit_code == 0, (command, result.output)


def test_values_not_below_k_hint_at_label_maps(shifted):
    root, _ = shifted
    with pytest.raises(InputError, match=r"not below K=4.*\(masks numbered in another convention\? label_map= "
                                         "translates them") as caught:
        score(root / "masks", root / "preds.zarr")
    assert "--" not in str(caught.value)
    assert "(masks numbered in another convention? --label-map translates them" in caught.value.cli_message


def test_pack_masks_applies_a_label_map(tmp_path):
    labels = np.array([[[7, 26], [0, 33]], [[8, 8], [23, 3]]], np.uint8)
    np.save(tmp_path / "labels.npy", labels)
    result = CliRunner().invoke(app, ["pack-masks", str(tmp_path / "labels.npy"), "-o", str(tmp_path / "masks"),
                                      "--label-map", "cityscapes", "-q"])
    assert result.exit_code == 0, result.output
    written = [read_mask(MaskFile(n, tmp_path / "masks" / f"{n}.png")).tolist() for n in ("0", "1")]
    assert written == [[[0, 13], [255, 18]], [[1, 1], [10, 255]]]
    np.save(tmp_path / "bad.npy", labels + 40)
    result = CliRunner().invoke(app, ["pack-masks", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "bad"),
                                      "--label-map", "cityscapes"])
    assert result.exit_code == 2 and "bad.npy[0]: mask values not in label map cityscapes" in result.stderr
    assert not (tmp_path / "bad").exists()


def test_overlay_reads_the_masks_with_the_recorded_label_map(shifted, tmp_path):
    root, _ = shifted
    runner = CliRunner()
    result = runner.invoke(app, ["score", str(root / "masks"), str(root / "preds.zarr"), "--label-map", "ade20k",
                                 "-o", str(tmp_path / "r.csv"), "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["overlay", "-r", str(tmp_path / "r.csv"), "-o", str(tmp_path / "overlays"), "-q"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 2

