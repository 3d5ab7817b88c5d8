"""coco and clc against the plain-numpy references, and clc against cleanlab."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from datasets import make_dataset, quantise
from segaudit.methods import clc as clc_module
from segaudit.methods.coco import coco_score
from segaudit.core.dataset import open_dataset
from segaudit.outputs.findings import class_confusions, write_issue_masks


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 14), cols=st.integers(1, 14),
       kinds=st.integers(1, 3), empty=st.sampled_from([0.0, 0.2, 1.0]))
def test_coco_matches_flood_fill(seed, rows, cols, kinds, empty):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, kinds, size=(rows, cols)).astype(np.int32)
    pred = rng.integers(0, kinds, size=(rows, cols)).astype(np.int32)
    label[rng.random((rows, cols)) < empty] = -1
    s = rng.random((rows, cols))
    got, want = coco_score(label, pred, s), naive.coco(label, pred, s)
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-12)


def test_coco_joins_diagonal_neighbours():
    label = np.array([[0, 1], [1, 0]], np.int32)
    pred = np.zeros((2, 2), np.int32)
    s = np.array([[0.2, 0.6], [0.8, 0.4]])
    # (0,0)-(1,1) are one component (mean 0.3), (0,1)-(1,0) the other (mean 0.7).
    assert coco_score(label, pred, s) == pytest.approx(0.5)


def dataset_flags(ds, factor, **options):
    """Our clc flag maps (full resolution) and scores for an on-disk test dataset."""
    dataset = open_dataset(ds.masks, ds.store, **options)
    from segaudit.engine import score_dataset

    run = score_dataset(dataset, ("clc",), downsample=factor)
    maps = {}
    if run.clc.selection is not None:
        clc_module.flag_pass(dataset, factor, run.clc.selection,
                             on_image=lambda i, image_id, m, c: maps.__setitem__(image_id, m.copy()))
    return run, maps


def reference(ds, factor, ignore=(255,), dtype=None):
    images = [(ds.labels[i], ds.probs[i] if dtype is None else quantise(ds.probs[i], dtype)) for i in ds.labels]
    return dict(zip(ds.labels, naive.clc_flags(images, factor, ignore=ignore)))


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [None, "uint8"])
def test_clc_matches_reference(tmp_path, factor, dtype):
    ds = make_dataset(tmp_path, ids=("a", "b/c", "b/d", "e"), n_classes=5, size=(13, 11),
                      sizes={"e": (9, 17)}, flip_fraction=0.3, seed=factor, dtype=dtype)
    run, maps = dataset_flags(ds, factor)
    want = reference(ds, factor, dtype=dtype)
    by_id = {r.image_id: r for r in run.results}
    assert run.clc.issues > 0
    for image_id, flags in want.items():
        np.testing.assert_array_equal(maps.get(image_id, np.zeros_like(flags, np.uint8)), flags.astype(np.uint8))
        result = by_id[image_id]
        assert result.scores["clc"] == pytest.approx(1 - flags.sum() / result.pixels)


def test_clc_radix_refinement_and_ties(tmp_path, monkeypatch):
    # uint8 storage makes many equal s values; a tiny candidate budget forces the extra
    # selection passes down to one exact value, where dataset order breaks the ties.
    ds = make_dataset(tmp_path, ids=tuple(f"i{n}" for n in range(6)), n_classes=3, size=(8, 8),
                      flip_fraction=0.4, dtype="uint8", seed=5)
    monkeypatch.setattr(clc_module, "MAX_CANDIDATES", 0)
    run, maps = dataset_flags(ds, 1)
    assert run.clc.passes == 5  # per-image, count, two refinements, flag
    want = reference(ds, 1, dtype="uint8")
    for image_id, flags in want.items():
        np.testing.assert_array_equal(maps.get(image_id, np.zeros_like(flags, np.uint8)), flags.astype(np.uint8))


def test_clc_when_nothing_is_an_issue(tmp_path):
    ds = make_dataset(tmp_path, ids=("a", "b"), flip_fraction=0.0, seed=2)  # labels = argmax
    run, maps = dataset_flags(ds, 1)
    assert run.clc.issues == 0 and not maps
    assert all(r.scores["clc"] == 1.0 for r in run.results)


def test_clc_when_every_label_is_wrong(tmp_path):
    ds = make_dataset(tmp_path, ids=("a", "b"), flip_fraction=1.0, seed=3)
    run, maps = dataset_flags(ds, 1)
    want = reference(ds, 1)
    for image_id, flags in want.items():
        np.testing.assert_array_equal(maps[image_id], flags.astype(np.uint8))
    assert all(r.scores["clc"] < 0.5 for r in run.results)


def test_clc_single_class_images(tmp_path):
    ds = make_dataset(tmp_path, ids=("a", "b"), n_classes=3, seed=4)
    for image_id in ds.labels:
        ds.labels[image_id][:] = 1
    from datasets import write_masks

    write_masks(ds.masks, ds.labels)
    run, maps = dataset_flags(ds, 2)
    want = reference(ds, 2)
    for image_id, flags in want.items():
        np.testing.assert_array_equal(maps.get(image_id, np.zeros_like(flags, np.uint8)), flags.astype(np.uint8))


cleanlab_filter = pytest.importorskip("cleanlab.segmentation.filter")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clc_flags_match_cleanlab_at_full_resolution(tmp_path, seed):
    from datasets import write_masks, write_store

    rng = np.random.default_rng(seed)
    n, k, h, w = 4, 5, 12, 10
    raw = rng.gamma(0.4, size=(n, k, h, w))
    pred_probs = raw / raw.sum(axis=1, keepdims=True)
    labels = np.where(rng.random((n, h, w)) < 0.25, rng.integers(0, k, size=(n, h, w)), pred_probs.argmax(axis=1))
    ids = [f"img{i}" for i in range(n)]
    write_masks(tmp_path / "masks", {i: labels[j].astype(np.uint8) for j, i in enumerate(ids)})
    write_store(tmp_path / "preds.zarr", {i: pred_probs[j] for j, i in enumerate(ids)})
    theirs = cleanlab_filter.find_label_issues(labels, pred_probs, downsample=1, n_jobs=1, verbose=False)

    class DS:
        masks, store = tmp_path / "masks", tmp_path / "preds.zarr"

    run, maps = dataset_flags(DS, 1, ignore_index=())
    ours = np.stack([maps.get(i, np.zeros((h, w), np.uint8)) for i in ids]).astype(bool)
    assert theirs.sum() > 0
    np.testing.assert_array_equal(ours, theirs)


def test_issue_masks_and_confusions_on_the_fixtures(tmp_path):
    from datasets import FIXTURES

    truth = {line.split(",")[0] for line in (FIXTURES / "truth.csv").read_text().splitlines()[1:]
             if line.split(",")[1] == "1"}
    written, run = write_issue_masks(FIXTURES / "masks", FIXTURES / "preds.zarr", tmp_path / "issues", top=4)
    assert {image_id for image_id, _ in written} == truth
    for image_id, pixels in written:
        assert (tmp_path / "issues" / f"{image_id}.png").is_file() and pixels > 0
    rows, run = class_confusions(FIXTURES / "masks", FIXTURES / "preds.zarr")
    pairs = {(run.class_name(r.annotated), run.class_name(r.predicted)) for r in rows[:3]}
    assert ("unlabeled", "car") in pairs  # the dropped cars
    assert ("sky", "building") in pairs or ("building", "sky") in pairs  # the swap


def test_issues_and_summary_commands(tmp_path):
    from typer.testing import CliRunner

    from datasets import FIXTURES
    from segaudit.cli import app

    runner = CliRunner()
    out = tmp_path / "issues"
    result = runner.invoke(app, ["issues", str(FIXTURES / "masks"), str(FIXTURES / "preds.zarr"),
                                 "--out", str(out), "--method", "threshold", "--top", "2"])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["city_a/0005.png", "city_b/0002.png"]
    result = runner.invoke(app, ["summary", str(FIXTURES / "masks"), str(FIXTURES / "preds.zarr"),
                                 "--csv", str(tmp_path / "confusions.csv")])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "confusions.csv").read_text().splitlines()
    assert lines[0] == "annotated,predicted,pixels,images,share"
    assert lines[1].startswith("sky,building,")
    result = runner.invoke(app, ["issues", str(FIXTURES / "masks"), str(tmp_path / "missing.zarr")])
    assert result.exit_code == 2 and "prediction store not found" in result.output


def test_score_all_has_seven_columns_and_records_clc(tmp_path):
    import json

    from typer.testing import CliRunner

    from datasets import FIXTURES
    from segaudit.cli import app

    result = CliRunner().invoke(app, ["score", str(FIXTURES / "masks"), str(FIXTURES / "preds_stacked.zarr"),
                                      "--method", "all", "-o", str(tmp_path / "r.csv")])
    assert result.exit_code == 0, result.output
    header = (tmp_path / "r.csv").read_text().splitlines()[0].split(",")
    assert header[3:11] == ["rsoftmin", "softmin", "cil", "ccp", "tccp", "iou", "clc", "coco"]
    record = json.loads((tmp_path / "r.run.json").read_text())
    assert record["downsample"] == 4 and record["clc"]["passes"] == 3 and record["clc"]["issues"] > 0


def test_summary_calibrate_adds_autos_calibration_and_changes_no_confusion(tmp_path):
    """summary --calibrate: the same confusions, and the calibration that score's auto
    prints (the same record for the same seed), on stderr."""
    import json

    from typer.testing import CliRunner

    from datasets import FIXTURES
    from segaudit.cli import app

    plain, run = class_confusions(FIXTURES / "masks", FIXTURES / "preds.zarr")
    assert run.calibration is None
    calibrated, run = class_confusions(FIXTURES / "masks", FIXTURES / "preds.zarr", calibrate=True, calibration_seed=3)
    assert calibrated == plain
    CliRunner().invoke(app, ["score", str(FIXTURES / "masks"), str(FIXTURES / "preds.zarr"), "-q",
                             "--calibration-seed", "3", "-o", str(tmp_path / "r.csv")])
    record = json.loads((tmp_path / "r.run.json").read_text())["calibration"]
    assert run.calibration.to_dict() == record and record["seed"] == 3
    result = CliRunner().invoke(app, ["summary", str(FIXTURES / "masks"), str(FIXTURES / "preds.zarr"),
                                      "--calibrate", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "annotated,predicted,pixels,images,share"  # stdout: the data only
    assert "AUPRC on planted errors:" in result.stderr and "(chosen)" in result.stderr
    result = CliRunner().invoke(app, ["summary", str(FIXTURES / "masks"), str(FIXTURES / "preds.zarr"),
                                      "--calibrate", "--calibration-seed", "-2"])
    assert result.exit_code == 2 and "--calibration-seed must be a whole number >= 0" in result.stderr
