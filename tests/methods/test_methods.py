"""Downsampling, coco and clc against the plain-numpy references, and clc against cleanlab."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import naive
from datasets import make_dataset, quantise
from segaudit.methods import clc as clc_module
from segaudit.methods.coco import coco_score
from segaudit.core.dataset import make_decoding, open_dataset
from segaudit.core.pooling import pool
from segaudit.outputs.findings import class_confusions, write_issue_masks
from segaudit.io.predictions import sum_tolerance
from test_kernel import DTYPES, random_image


def config_for(stored, ignore=(255,), logits=False):
    return make_decoding(stored.dtype, stored.shape[0], tuple(ignore), logits,
                         sum_tolerance(stored.dtype, stored.shape[0]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_classes=st.integers(2, 12),
    height=st.integers(1, 19),
    width=st.integers(1, 19),
    factor=st.integers(1, 5),
    dtype=st.sampled_from(DTYPES),
    logits=st.booleans(),
    ignore_fraction=st.sampled_from([0.0, 0.3, 1.0]),
    blocks=st.integers(1, 3),
)
def test_pooling_matches_reference(seed, n_classes, height, width, factor, dtype, logits, ignore_fraction, blocks):
    if logits and dtype.startswith("uint"):
        dtype = "float64"
    rng = np.random.default_rng(seed)
    labels, stored = random_image(rng, n_classes, height, width, dtype, logits=logits,
                                  ignore_fraction=ignore_fraction)
    view = stored.view(np.uint16) if stored.dtype == np.float16 else stored
    config = config_for(stored, logits=logits)
    # Blocks of whole cell rows, as the reader aligns them.
    step = factor * blocks
    parts = [pool(view[:, r:r + step], labels[r:r + step], config, factor) for r in range(0, height, step)]
    got = [np.concatenate([getattr(p, name) for p in parts]) for name in ("label", "pred", "s", "p_pred")]
    want = naive.downsample(labels, stored, factor, logits=logits)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1][got[0] >= 0], want[1][want[0] >= 0])
    rtol = 1e-13 if logits else 1e-15
    np.testing.assert_allclose(got[2], want[2], rtol=rtol, equal_nan=True)
    np.testing.assert_allclose(got[3], want[3], rtol=rtol, equal_nan=True)
    pixel_pred = np.concatenate([p.pixel_pred for p in parts])
    np.testing.assert_array_equal(pixel_pred, naive.decode(stored).argmax(axis=0))


def with_edge_values(rng, labels, stored, logits):
    """Sprinkle -0.0 and subnormals over every pixel, and inf, NaN and negative values
    over the ignored ones (which may hold anything)."""
    stored = stored.copy()
    tiny = np.finfo(stored.dtype).smallest_subnormal if stored.dtype.kind == "f" else 0
    anywhere = rng.random(stored.shape) < 0.1
    stored[anywhere] = rng.choice(np.array([-0.0, tiny, 3 * tiny], stored.dtype), size=anywhere.sum())
    ignored = (labels == 255)[None] & (rng.random(stored.shape) < 0.3)
    garbage = [np.inf, -np.inf, np.nan, -1.0] if stored.dtype.kind == "f" else [0, 1]
    stored[ignored] = rng.choice(np.array(garbage, stored.dtype), size=ignored.sum())
    return stored


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_classes=st.integers(1, 7),
    height=st.integers(1, 13),
    width=st.integers(1, 21),
    factor=st.integers(1, 5),
    dtype=st.sampled_from(DTYPES),
    logits=st.booleans(),
    edge_values=st.booleans(),
    channels_last=st.booleans(),
)
def test_pooling_is_bit_identical_to_a_pixel_loop(seed, n_classes, height, width, factor, dtype, logits,
                                                  edge_values, channels_last):
    # The class-major kernel must add the same values in the same order as a pixel-major
    # loop: constant strides (F = 1, 2, 4) and the generic one, edge cells, every dtype.
    if logits and dtype.startswith("uint"):
        dtype = "float16"
    rng = np.random.default_rng(seed)
    labels, stored = random_image(rng, n_classes, height, width, dtype, logits=logits, ignore_fraction=0.3)
    if edge_values:
        stored = with_edge_values(rng, labels, stored, logits)
    view = stored.view(np.uint16) if stored.dtype == np.float16 else stored
    if channels_last:  # [class, row, column] with the class axis last in memory, as the store reads it
        view = np.moveaxis(np.ascontiguousarray(np.moveaxis(view, 0, -1)), -1, 0)
    config = config_for(stored, logits=logits)
    parts = [pool(view[:, r:r + factor * 2], labels[r:r + factor * 2], config, factor, pixel_dtype=np.uint8)
             for r in range(0, height, factor * 2)]
    got = [np.concatenate([getattr(p, name) for p in parts])
           for name in ("label", "pred", "s", "p_pred", "mismatched", "pixel_pred")]
    want = naive.downsample_in_order(labels, stored, factor, logits=logits)
    for name, g, w in zip(("label", "pred", "s", "p_pred", "mismatched", "pixel_pred"), got, want):
        if name in ("s", "p_pred") and logits:  # libm's exp in both, unless Numba vectorises it
            np.testing.assert_allclose(g, w, rtol=1e-14, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)  # NaN == NaN; floats bit for bit
    assert got[5].dtype == np.uint8


def test_pooling_without_pixels():
    labels = np.array([[1, 1, 255], [1, 1, 0]], np.int32)
    stored = np.array([[[0.9, 0.2, 0.5], [0.3, 0.4, 0.6]], [[0.1, 0.8, 0.5], [0.7, 0.6, 0.4]]])
    cells = pool(stored, labels, config_for(stored), 2, pixel_dtype=None)
    assert cells.pixel_pred is None
    np.testing.assert_array_equal(cells.label, [[1, 0]])
    np.testing.assert_array_equal(cells.mismatched, [[1, 0]])  # pixel (0, 0): argmax 0, label 1


def test_majority_vote_does_not_average_labels():
    # Classes 0 and 4 in one 2x2 cell: cleanlab's mean would invent class 2.
    labels = np.array([[0, 4], [4, 0]], np.int32)
    stored = np.full((5, 2, 2), 0.2)
    cells = pool(stored, labels, config_for(stored), 2)
    assert cells.label[0, 0] == 0  # tie between 0 and 4 goes to the lower class


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
