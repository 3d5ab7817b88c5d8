"""``segaudit export``: every format read back by its tool's own library, pixel for pixel.

- COCO: pycocotools (``pycocotools.mask.encode`` / ``decode``);
- Label Studio: label-studio-converter's brush RLE decoder (``brush.decode_rle``);
- CVAT "Segmentation mask 1.1": Datumaro's ``voc_segmentation`` importer.

The libraries come with the ``export-test`` extra (``.ci/run`` installs it); without one,
its tests are skipped with the reason.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import segaudit
from datasets import FIXTURES
from segaudit.cli import app
from segaudit.cli.export import FORMATS
from segaudit.core.dataset import open_dataset
from segaudit.core.regions import find_regions
from segaudit.io.decisions import file_sha256
from segaudit.io.masks import MaskFile, find_masks, read_mask
from segaudit.outputs.exports import EXPORTERS
from segaudit.outputs.exports.coco import encode as coco_encode
from segaudit.outputs.exports.cvat import SUSPECT_LABEL
from segaudit.outputs.exports.label_studio import brush_rle

MASKS, PREDS = FIXTURES / "masks", FIXTURES / "preds.zarr"
PLANTED = {r["image"] for r in csv.DictReader(open(FIXTURES / "truth.csv")) if r["is_error"] == "1"}


def run(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """The fixtures scored, their region table and proposals (the calibrated min score)."""
    root = tmp_path_factory.mktemp("export")
    ok(run("score", MASKS, PREDS, "-o", root / "ranking.csv", "-q"))
    ok(run("regions", MASKS, PREDS, "-o", root / "regions.csv", "--propose-dir", root / "fixes", "-q"))
    return root


@pytest.fixture(scope="module")
def found():
    """The fixtures' regions and region maps, found afresh with calibrated scores (what the
    exports must carry)."""
    from segaudit.calibration.regions import calibrated_regions

    dataset = open_dataset(MASKS, PREDS)
    calibration = calibrated_regions(dataset)[0].calibration
    assert calibration.threshold == THRESHOLD
    maps = {}

    def keep(index, image_id, labels, regions, finder):
        maps[image_id] = (labels.copy(), regions, finder.region_map.copy())

    find_regions(dataset, keep_maps=lambda image_id: True, on_image=keep, calibration=calibration)
    return maps


#: The fixtures' calibrated region threshold (export's default --min-score), measured once.
THRESHOLD = segaudit.regions(MASKS, PREDS).threshold


def labels_of(image_id: str) -> np.ndarray:
    return read_mask(MaskFile(image_id, MASKS / f"{image_id}.png"))


def classes() -> list[str]:
    return list(open_dataset(MASKS, PREDS).store.classes)


# --- the registry and the CLI ---------------------------------------------------------


def test_the_cli_names_every_registered_format():
    assert set(FORMATS) == set(EXPORTERS) == {"label-studio", "cvat", "coco"}


def test_an_unknown_format_is_one_line_and_writes_nothing(scored, tmp_path):
    result = run("export", "--to", "yolo", "-r", scored / "ranking.csv", "-o", tmp_path / "x.json")
    assert result.exit_code == 2
    assert "--to must be one of label-studio, cvat, coco" in result.output
    assert not list(tmp_path.iterdir())


def test_refuses_to_write_inside_an_input(scored, tmp_path):
    target = scored / "fixes" / "out.json"
    result = run("export", "--to", "coco", "-r", scored / "ranking.csv", "--proposals", scored / "fixes", "-o", target)
    assert result.exit_code == 2
    assert "refusing to write over an input" in result.output
    assert not target.exists()


# --- COCO: pycocotools ----------------------------------------------------------------


def test_coco_rle_is_what_pycocotools_encodes():
    mask_api = pytest.importorskip("pycocotools.mask", reason="pycocotools is not installed (pip install '.[export-test]')")
    rng = np.random.default_rng(0)
    cases = [np.zeros((5, 7), bool), np.ones((5, 7), bool), rng.random((37, 53)) < 0.3,
             np.pad(np.ones((30, 40), bool), ((100, 3), (5, 200)))]
    for mask in cases:
        ours = coco_encode(mask)
        theirs = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert ours["counts"] == theirs["counts"].decode("ascii")
        assert ours["size"] == list(theirs["size"])
        back = mask_api.decode({"size": ours["size"], "counts": ours["counts"].encode("ascii")})
        assert np.array_equal(back.astype(bool), mask)


def test_coco_export_reads_back_in_pycocotools_pixel_for_pixel(scored, found, tmp_path):
    mask_api = pytest.importorskip("pycocotools.mask", reason="pycocotools is not installed (pip install '.[export-test]')")
    out = tmp_path / "regions.coco.json"
    ok(run("export", "--to", "coco", "-r", scored / "ranking.csv", "-o", out, "-q"))
    document = json.loads(out.read_text())
    names = {c["id"]: c["name"] for c in document["categories"]}
    assert list(names.values()) == classes()
    images = {i["id"]: i for i in document["images"]}
    assert {i["segaudit"]["image"] for i in images.values()} == PLANTED
    expected = {(image_id, r.region) for image_id, (_, regions, _) in found.items() for r in regions if r.score >= THRESHOLD}
    seen = set()
    for annotation in document["annotations"]:
        image = images[annotation["image_id"]]
        image_id = image["segaudit"]["image"]
        number = annotation["segaudit"]["region"]
        labels, regions, region_map = found[image_id]
        region = regions[number - 1]
        rle = dict(annotation["segmentation"], counts=annotation["segmentation"]["counts"].encode("ascii"))
        pixels = mask_api.decode(rle).astype(bool)
        assert pixels.shape == (image["height"], image["width"]) == labels.shape
        assert np.array_equal(pixels, region_map == number - 1)
        assert int(mask_api.area(rle)) == annotation["area"] == region.area
        assert [int(v) for v in mask_api.toBbox(rle)] == annotation["bbox"]
        assert annotation["bbox"] == [region.x0, region.y0, region.x1 - region.x0, region.y1 - region.y0]
        assert names[annotation["category_id"]] == classes()[region.likely_class]
        assert annotation["score"] == region.score
        seen.add((image_id, number))
    assert seen == expected


# --- Label Studio: label-studio-converter ---------------------------------------------


def _brush():
    return pytest.importorskip("label_studio_converter.brush",
                               reason="label-studio-converter is not installed (pip install '.[export-test]')")


def test_brush_rle_is_what_label_studio_converter_decodes():
    brush = _brush()
    rng = np.random.default_rng(1)
    cases = [np.zeros((3, 4), bool), np.ones((3, 4), bool), rng.random((41, 29)) < 0.5,
             np.ones((300, 250), bool),  # runs longer than 2**16 values: split
             np.pad(np.ones((2, 3), bool), ((70, 1), (1, 90)))]
    for mask in cases:
        decoded = brush.decode_rle(brush_rle(mask))
        image = np.reshape(decoded, [mask.shape[0], mask.shape[1], 4])
        assert np.array_equal(image[:, :, 3] == 255, mask)
        assert set(np.unique(image).tolist()) <= {0, 255}
        # The converter's own encoder gives the same image back.
        ours = brush.decode_rle(brush.mask2rle(mask.astype(np.uint8) * 255))
        assert np.array_equal(ours, decoded)


def _layers(result_list, height, width, brush) -> dict[str, np.ndarray]:
    layers = {}
    for result in result_list:
        assert result["type"] == "brushlabels" and result["value"]["format"] == "rle"
        assert (result["original_height"], result["original_width"]) == (height, width)
        (name,) = result["value"]["brushlabels"]
        image = np.reshape(brush.decode_rle(result["value"]["rle"]), [height, width, 4])[:, :, 3]
        assert name not in layers
        layers[name] = image == 255
    return layers


def test_label_studio_export_reads_back_in_the_converter_pixel_for_pixel(scored, tmp_path):
    brush = _brush()
    out = tmp_path / "tasks.json"
    ok(run("export", "--to", "label-studio", "-r", scored / "ranking.csv", "-o", out,
           "--image-url", "/data/local-files/?d=photos/{id}.jpg", "-q"))
    tasks = json.loads(out.read_text())
    names = classes()
    assert [t["data"]["segaudit"]["image"] for t in tasks] == [r["image"] for r in csv.DictReader(
        open(scored / "ranking.csv"))][: len(PLANTED)]
    for task in tasks:
        image_id = task["data"]["segaudit"]["image"]
        assert task["data"]["image"] == f"/data/local-files/?d=photos/{image_id}.jpg"
        current, fix = task["predictions"]
        assert current["model_version"] == "segaudit current mask"
        assert fix["model_version"] == "segaudit proposed fix"
        labels = labels_of(image_id)
        proposal = read_mask(MaskFile(image_id, scored / "fixes" / f"{image_id}.png"))
        assert not np.array_equal(proposal, labels)  # the fix changes something
        for prediction, expected in ((current, labels), (fix, proposal)):
            layers = _layers(prediction["result"], *labels.shape, brush)
            assert set(layers) == {names[k] for k in np.unique(expected) if k < len(names)}
            for name, pixels in layers.items():
                assert np.array_equal(pixels, expected == names.index(name)), (image_id, name)
            # Brushes cover every annotated pixel once.
            assert sum(p.astype(int) for p in layers.values()).max() == 1
    # Importing the tasks into the converter's decoder as an annotation works too.
    flat = [dict(r, rle=r["value"]["rle"], brushlabels=r["value"]["brushlabels"])
            for r in tasks[0]["predictions"][0]["result"]]
    assert len(brush.decode_from_annotation("label", flat)) == len(flat)
    config = (tmp_path / "tasks.label_config.xml").read_text()
    assert config.count("<Label ") == len(names) and '<BrushLabels name="label" toName="image">' in config


# --- CVAT: Datumaro -------------------------------------------------------------------


def test_cvat_export_reads_back_in_datumaro_pixel_for_pixel(scored, found, tmp_path):
    dm = pytest.importorskip("datumaro", reason="datumaro is not installed (pip install '.[export-test]')")
    out = tmp_path / "cvat.zip"
    ok(run("export", "--to", "cvat", "-r", scored / "ranking.csv", "-o", out, "-q"))
    with zipfile.ZipFile(out) as archive:
        archive.extractall(tmp_path / "unzipped")
        assert {"labelmap.txt", "ImageSets/Segmentation/default.txt"} <= set(archive.namelist())
    dataset = dm.Dataset.import_from(str(tmp_path / "unzipped"), "voc_segmentation")
    label_names = [label.name for label in dataset.categories()[dm.AnnotationType.label].items]
    assert label_names == ["background", *classes(), SUSPECT_LABEL]
    items = {item.id: item for item in dataset}
    assert set(items) == PLANTED
    for image_id, item in items.items():
        labels, regions, region_map = found[image_id]
        suspect = np.isin(region_map, [r.region - 1 for r in regions if r.score >= THRESHOLD])
        expected = np.where(suspect, label_names.index(SUSPECT_LABEL), np.where(labels < len(classes()), labels + 1, 0))
        rebuilt = np.full(labels.shape, -1)
        for annotation in item.annotations:
            assert annotation.type == dm.AnnotationType.mask
            pixels = annotation.image.astype(bool)
            assert not (rebuilt[pixels] >= 0).any()
            rebuilt[pixels] = annotation.label
        rebuilt[rebuilt < 0] = 0  # datumaro leaves the background out
        assert np.array_equal(rebuilt, expected), image_id


def test_cvat_export_of_the_same_input_is_the_same_bytes(scored, tmp_path):
    for name in ("a.zip", "b.zip"):
        ok(run("export", "--to", "cvat", "-r", scored / "ranking.csv", "-o", tmp_path / name, "-q"))
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


# --- choosing images and regions ------------------------------------------------------


def _coco(scored, tmp_path, *args) -> dict:
    out = tmp_path / "c.json"
    ok(run("export", "--to", "coco", "-r", scored / "ranking.csv", "-o", out, "-q", *args))
    document = json.loads(out.read_text())
    return {"images": [i["segaudit"]["image"] for i in document["images"]],
            "regions": {(document["images"][a["image_id"] - 1]["segaudit"]["image"], a["segaudit"]["region"])
                        for a in document["annotations"]}}


def test_decisions_choose_fix_images_and_drop_ok_regions(scored, found, tmp_path):
    clean = next(i for i in sorted(found) if i not in PLANTED and found[i][1])
    decisions = tmp_path / "decisions.csv"
    decisions.write_text("image,region,decision,note,mask_sha256\n"
                         f"{clean},,fix,looks off,\n"
                         f"city_b/0002,1,ok,,\n"
                         f"city_b/0002,,fix,,\n")
    got = _coco(scored, tmp_path, "--decisions", decisions)
    assert set(got["images"]) == {clean, "city_b/0002"}
    assert ("city_b/0002", 1) not in got["regions"]
    assert {n for i, n in got["regions"] if i == "city_b/0002"} == {
        r.region for r in found["city_b/0002"][1] if r.score >= THRESHOLD and r.region != 1}
    # A region marked fix is exported whatever its score.
    weak = next((i, r.region) for i in sorted(found) for r in found[i][1] if r.score < THRESHOLD)
    decisions.write_text(f"image,region,decision\n{weak[0]},{weak[1]},fix\n")
    assert _coco(scored, tmp_path, "--decisions", decisions)["regions"] == {weak}


def test_top_leaves_out_images_marked_ok(scored, tmp_path):
    ranked = [r["image"] for r in csv.DictReader(open(scored / "ranking.csv"))]
    assert _coco(scored, tmp_path, "--top", "6")["images"] == ranked[:6]
    decisions = tmp_path / "d.csv"
    sha = file_sha256(MASKS / f"{ranked[0]}.png")
    decisions.write_text(f"image,region,decision,note,mask_sha256\n{ranked[0]},,ok,,{sha}\n")
    assert _coco(scored, tmp_path, "--top", "6", "--decisions", decisions)["images"] == ranked[1:6]
    # A stale ok (the mask changed since) does not leave the image out.
    decisions.write_text(f"image,region,decision,note,mask_sha256\n{ranked[0]},,ok,,{'0' * 64}\n")
    assert _coco(scored, tmp_path, "--top", "6", "--decisions", decisions)["images"] == ranked[:6]


def test_a_region_table_limits_the_regions_and_must_match(scored, tmp_path):
    rows = list(csv.DictReader(open(scored / "regions.csv")))
    kept = [r for r in rows if r["image"] == "city_a/0005"][:1]
    table = tmp_path / "regions.csv"
    with open(table, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    got = _coco(scored, tmp_path, "--regions", table)
    assert got["regions"] == {("city_a/0005", int(kept[0]["region"]))}
    kept[0]["area"] = str(int(kept[0]["area"]) + 1)
    with open(table, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    result = run("export", "--to", "coco", "-r", scored / "ranking.csv", "--regions", table, "-o", tmp_path / "x.json")
    assert result.exit_code == 2 and "another rule or other inputs" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


def test_a_region_table_is_checked_as_the_report_checks_it(scored, tmp_path):
    """export --regions reads region tables with the report's reader (io.regions.load_regions)."""
    rows = list(csv.DictReader(open(scored / "regions.csv")))
    for column, value, message in (("x0", None, "missing column(s) x0"),
                                   ("score", "1.5", "score must be between 0 and 1")):
        table = tmp_path / "regions.csv"
        fields = [f for f in rows[0] if f != column] if value is None else list(rows[0])
        with open(table, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows({**row, **({column: value} if value else {})} for row in rows[:2])
        result = run("export", "--to", "coco", "-r", scored / "ranking.csv", "--regions", table,
                     "-o", tmp_path / "x.json")
        assert result.exit_code == 2 and message in result.output and "regions.csv" in result.output
        assert len(result.output.strip().splitlines()) == 1
        assert not (tmp_path / "x.json").exists()


def test_proposals_directory_is_the_fix(scored, tmp_path):
    brush = _brush()
    out = tmp_path / "t.json"
    ok(run("export", "--to", "label-studio", "-r", scored / "ranking.csv", "--proposals", scored / "fixes",
           "-o", out, "-q"))
    names = classes()
    for task in json.loads(out.read_text()):
        image_id = task["data"]["segaudit"]["image"]
        proposal = read_mask(MaskFile(image_id, scored / "fixes" / f"{image_id}.png"))
        layers = _layers(task["predictions"][1]["result"], *proposal.shape, brush)
        for name, pixels in layers.items():
            assert np.array_equal(pixels, proposal == names.index(name))


def test_malformed_decisions_name_the_file_and_row(scored, tmp_path):
    decisions = tmp_path / "d.csv"
    decisions.write_text("image,region,decision\ncity_a/0001,,ok\n")
    result = run("export", "--to", "coco", "-r", scored / "ranking.csv", "--decisions", decisions,
                 "-o", tmp_path / "x.json")
    assert result.exit_code == 2
    assert f"{decisions} line 2: an ok decision about the whole image needs the mask's mask_sha256" in " ".join(result.output.split())
    assert not (tmp_path / "x.json").exists()


def test_every_mask_of_the_fixtures_is_found():
    assert {m.image_id for m in find_masks(MASKS)} >= PLANTED


def test_cvat_and_label_studio_on_a_dataset_with_ignored_pixels_and_a_background_class(tmp_path):
    """A class named background takes the ignored pixels' black in CVAT; ignored pixels get
    no brush in Label Studio. Random data: regions of every score, all exported."""
    from datasets import make_dataset

    dm = pytest.importorskip("datumaro", reason="datumaro is not installed (pip install '.[export-test]')")
    brush = _brush()
    names = ["background", "road", "car"]
    data = make_dataset(tmp_path / "data", n_classes=3, size=(23, 31), flip_fraction=0.3,
                        attrs={"classes": names})
    ok(run("score", data.masks, data.store, "-o", tmp_path / "r.csv", "-q"))
    ok(run("export", "--to", "cvat", "-r", tmp_path / "r.csv", "--top", 3, "--min-score", 0, "-o",
           tmp_path / "c.zip", "-q"))
    ok(run("export", "--to", "label-studio", "-r", tmp_path / "r.csv", "--top", 3, "--min-score", 0, "-o",
           tmp_path / "t.json", "-q"))
    with zipfile.ZipFile(tmp_path / "c.zip") as archive:
        archive.extractall(tmp_path / "c")
    dataset = dm.Dataset.import_from(str(tmp_path / "c"), "voc_segmentation")
    label_names = [label.name for label in dataset.categories()[dm.AnnotationType.label].items]
    assert label_names == [*names, SUSPECT_LABEL]
    regions = {}
    find_regions(open_dataset(data.masks, data.store), keep_maps=lambda i: True,
                 on_image=lambda index, i, labels, found, finder: regions.__setitem__(i, finder.region_map >= 0))
    items = {item.id: item for item in dataset}
    assert set(items) == set(data.labels)
    for image_id, item in items.items():
        labels = data.labels[image_id].astype(int)
        assert (labels == 255).any() and regions[image_id].any()
        expected = np.where(regions[image_id], 3, np.where(labels == 255, 0, labels))
        rebuilt = np.zeros(labels.shape, int)
        for annotation in item.annotations:
            rebuilt[annotation.image.astype(bool)] = annotation.label
        assert np.array_equal(rebuilt, expected), image_id
    for task in json.loads((tmp_path / "t.json").read_text()):
        image_id = task["data"]["segaudit"]["image"]
        labels = data.labels[image_id]
        layers = _layers(task["predictions"][0]["result"], *labels.shape, brush)
        assert not any(layer[labels == 255].any() for layer in layers.values())
        for name, layer in layers.items():
            assert np.array_equal(layer, labels == names.index(name))


def test_a_ranking_without_paths_or_a_missing_output_directory_is_one_line(scored, tmp_path):
    record = json.loads((scored / "ranking.run.json").read_text())
    del record["masks"]
    (tmp_path / "r.csv").write_text((scored / "ranking.csv").read_text())
    (tmp_path / "r.run.json").write_text(json.dumps(record))
    result = run("export", "--to", "coco", "-r", tmp_path / "r.csv", "-o", tmp_path / "x.json")
    assert result.exit_code == 2 and "no 'masks' path in the run record" in result.output
    result = run("export", "--to", "coco", "-r", scored / "ranking.csv", "-o", tmp_path / "nowhere" / "x.json")
    assert result.exit_code == 2 and "output directory not found" in result.output
    result = run("export", "--to", "coco", "-r", scored / "ranking.csv", "--top", 0, "-o", tmp_path / "x.json")
    assert result.exit_code == 2 and "no image to export" in result.output
    decisions = tmp_path / "d.csv"
    decisions.write_text("image,decision\nnowhere/1,fix\n")
    result = run("export", "--to", "coco", "-r", scored / "ranking.csv", "--decisions", decisions,
                 "-o", tmp_path / "x.json")
    assert result.exit_code == 2 and "'nowhere/1' (marked fix) is not in the ranking" in result.output
    assert not (tmp_path / "x.json").exists()


def test_volumes_are_refused_in_one_line(tmp_path):
    from datasets import random_probs, write_store

    rng = np.random.default_rng(3)
    (tmp_path / "masks").mkdir()
    probs = {}
    for image_id in ("v1", "v2"):
        volume = np.stack([random_probs(rng, 3, 9, 11) for _ in range(4)], axis=1)  # (K, Z, Y, X)
        probs[image_id] = volume
        np.save(tmp_path / "masks" / f"{image_id}.npy", volume.argmax(axis=0).astype(np.uint8))
    write_store(tmp_path / "p.zarr", probs)
    ok(run("score", tmp_path / "masks", tmp_path / "p.zarr", "-o", tmp_path / "r.csv", "-q"))
    result = run("export", "--to", "coco", "-r", tmp_path / "r.csv", "--top", 1, "-o", tmp_path / "x.json")
    assert result.exit_code == 2, result.output
    assert "v1 is a volume" in result.output and "2-D masks only" in " ".join(result.output.split())
    assert not (tmp_path / "x.json").exists()
