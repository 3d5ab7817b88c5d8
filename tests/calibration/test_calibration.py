"""The calibration of --method auto: per-copy accumulators against tests/naive.py, the
average precision and the choice against their references, determinism, the record."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from datasets import random_probs
from segaudit.api import score_arrays_run
from segaudit.calibration import (CANDIDATES, PLANTED_KINDS, CalibrationPlan, _bootstrap_wins, average_precision,
                                  calibrate, planted_copies)
from segaudit.calibration.candidates import LADDER, softmin_name
from segaudit.core.arrays import array_dataset
from segaudit.engine import score_images
from segaudit.methods import Settings, resolve
from segaudit.outputs.ranking import ranking_text
from segaudit.results import CalibrationRecord, RunRecord

IGNORE = 7


def blocky(rng, n_classes, height, width):
    labels = np.full((height, width), rng.integers(n_classes), np.int64)
    for _ in range(5):
        y, x = rng.integers(0, height), rng.integers(0, width)
        labels[y:y + rng.integers(3, height // 2), x:x + rng.integers(3, width // 2)] = rng.integers(n_classes)
    labels[rng.random((height, width)) < 0.05] = IGNORE
    return labels


def dataset_arrays(seed, n=4, n_classes=4, height=24, width=20):
    rng = np.random.default_rng(seed)
    labels = np.stack([blocky(rng, n_classes, height, width) for _ in range(n)])
    probs = np.stack([random_probs(rng, n_classes, height, width) for _ in range(n)])
    return labels, probs


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), factor=st.sampled_from([1, 2, 4]))
def test_every_copy_scores_as_its_labels_would(seed, factor):
    """Each planted copy's candidates, from the kernel's per-copy accumulators and cells,
    equal the naive scores of the copy's labels against the image's prediction."""
    labels, probs = dataset_arrays(seed)
    dataset = array_dataset(labels, probs, ignore_index=(IGNORE,))
    plan = CalibrationPlan(seed=seed % 7, n_images=len(labels), per_kind=10**6)  # every kind in every image
    cfg = Settings()
    checked = 0
    for index, piece, _ in score_images(dataset, resolve(["auto"]), cfg, factor, 2, plan=plan):
        image_id = dataset.pairs[index][1]
        copies = planted_copies(plan, image_id, labels[index].astype(np.int32), dataset.decoding.ignore,
                                probs.shape[1])
        assert [c.kind for c in piece.calibration.copies] == [kind for kind, _ in copies]
        for (kind, copy_labels), copy in zip(copies, piece.calibration.copies):
            reference = naive.image_scores(copy_labels, probs[index], ignore=(IGNORE,))
            values = dict(zip(CANDIDATES, copy.values))
            for name in ("cil", "ccp", "tccp", "iou", "rsoftmin"):
                assert values[name] == pytest.approx(reference[name], rel=1e-9, abs=1e-12), (kind, name)
            for t in LADDER:
                expected = naive.image_scores(copy_labels, probs[index], ignore=(IGNORE,), temperature=t)["softmin"]
                assert values[softmin_name(t)] == pytest.approx(expected, rel=1e-9, abs=1e-12), (kind, t)
            label, pred, s, _ = naive.downsample(copy_labels, probs[index], factor, ignore=(IGNORE,))
            assert values["coco"] == pytest.approx(naive.coco(label, pred, s), rel=1e-9)
            # clc's change: the copy's mismatched pixels minus the real mask's, over all cells.
            mismatched = lambda lab: int(((probs[index].argmax(0) != lab) & (lab != IGNORE)).sum())  # noqa: E731
            assert int(copy.clc_weight.sum()) == mismatched(copy_labels) - mismatched(labels[index])
            checked += 1
    assert checked > 0


@pytest.mark.parametrize("factor", [1, 4])
def test_copies_from_a_store_of_small_row_chunks_score_as_their_labels_would(tmp_path, factor):
    """Many blocks per image: each copy is cut at its band's edges, the real labels'
    segments merged in; every candidate still equals the naive score of the copy."""
    from datasets import make_dataset
    from segaudit.core.dataset import open_dataset

    made = make_dataset(tmp_path, [f"i{n}" for n in range(5)], n_classes=4, size=(37, 23), seed=2,
                        dtype=np.float64, row_chunk=3)
    dataset = open_dataset(made.masks, made.store)
    plan = CalibrationPlan(seed=1, n_images=5, per_kind=10**6)
    checked = 0
    for index, piece, _ in score_images(dataset, resolve(["auto"]), Settings(), factor, 2, plan=plan):
        image_id = dataset.pairs[index][1]
        labels = made.labels[image_id].astype(np.int32)
        copies = planted_copies(plan, image_id, labels, dataset.decoding.ignore, 4)
        for (kind, copy_labels), copy in zip(copies, piece.calibration.copies):
            reference = naive.image_scores(copy_labels, made.probs[image_id], ignore=(255,))
            values = dict(zip(CANDIDATES, copy.values))
            for name in ("cil", "ccp", "tccp", "iou", "rsoftmin"):
                assert values[name] == pytest.approx(reference[name], rel=1e-9, abs=1e-12), (kind, name)
            for t in LADDER:
                expected = naive.image_scores(copy_labels, made.probs[image_id], ignore=(255,), temperature=t)
                assert values[softmin_name(t)] == pytest.approx(expected["softmin"], rel=1e-9, abs=1e-12)
            label, pred, s, _ = naive.downsample(copy_labels, made.probs[image_id], factor, ignore=(255,))
            assert values["coco"] == pytest.approx(naive.coco(label, pred, s), rel=1e-9)
            checked += 1
    assert checked >= 10


@settings(max_examples=200, deadline=None)
@given(negatives=st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.9, math.nan]), min_size=1, max_size=12),
       positives=st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.9]), min_size=1, max_size=12),
       prevalence=st.sampled_from([0.1, 0.2, 0.5]))
def test_average_precision_matches_the_reference(negatives, positives, prevalence):
    got = average_precision(np.array(negatives), np.array(positives), prevalence)
    assert got == pytest.approx(naive.average_precision(negatives, positives, prevalence), abs=1e-12)


def test_average_precision_of_perfect_and_reversed_rankings():
    assert average_precision(np.array([0.5, 0.6, 0.7]), np.array([0.1, 0.2])) == pytest.approx(1.0)
    worst = average_precision(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.9]))
    assert worst == pytest.approx(0.2 / (0.2 + 0.8))  # found last: precision = the prevalence


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 12), kinds=st.lists(st.integers(1, 6), min_size=1, max_size=3),
       levels=st.sampled_from([3, 6, 50]))
def test_bootstrap_wins_match_the_reference(seed, n, kinds, levels):
    rng = np.random.default_rng(seed)
    negatives = rng.integers(0, levels, (n, 3)).astype(float)
    negatives[rng.random((n, 3)) < 0.1] = math.nan
    positives = [rng.integers(0, levels, (m, 3)).astype(float) - rng.integers(0, 2) for m in kinds]
    for kind in positives:
        kind[rng.random(kind.shape) < 0.1] = math.nan
    got = _bootstrap_wins(negatives, positives, 2, 0, seed)
    assert got == naive.bootstrap_wins(negatives, positives, 2, 0, seed)


def _pieces(real_best, copies_best, real_prior, copies_prior):
    """Calibration inputs of 40 clean-looking images with eight copies of each kind, where only
    the chosen candidate's column ("cil") and rsoftmin's differ between real images and copies."""
    from segaudit.calibration import ImageCalibration, PlantedCopy

    column = CANDIDATES.index("cil")
    pieces = []
    for i in range(40):
        values = np.full(len(CANDIDATES), 0.5)
        values[column], values[0] = real_best[i], real_prior[i]
        copies = []
        if i < 8:
            for kind in PLANTED_KINDS:
                copy = np.full(len(CANDIDATES), 0.5)
                copy[column], copy[0] = copies_best[i], copies_prior[i]
                copies.append(PlantedCopy(kind, copy, np.zeros(0), np.zeros(0, np.int64)))
        pieces.append(ImageCalibration(values, copies))
    return pieces


def test_auto_leaves_rsoftmin_only_for_a_candidate_surely_better():
    rng = np.random.default_rng(0)
    real = 0.5 + 0.5 * rng.random(40)
    # Real images' scores put the first 8 (which get the copies) last, so the consensus keeps
    # them among the clean-looking ones; the copies score lower than every real image by cil.
    real[:8] = 0.99
    plan = CalibrationPlan(0, 40)
    surely = calibrate(plan, _pieces(real, np.full(8, 0.1), real, 0.5 + 0.5 * rng.random(8)), [0] * 40, [100] * 40,
                       -math.inf).record
    assert surely.best == surely.chosen == "cil" and surely.confidence >= 0.9
    # cil a little better than rsoftmin on the copies, within what resampling can undo: rsoftmin.
    close = 0.5 + 0.5 * rng.random(8)
    unsure = calibrate(plan, _pieces(real, close, real, close + 0.01), [0] * 40, [100] * 40, -math.inf).record
    assert unsure.best == "cil" and unsure.chosen == "rsoftmin" and unsure.confidence < 0.9
    from segaudit.outputs.calibration import summary_sentence

    assert "cil found the" in summary_sentence(unsure) and "not surely" in summary_sentence(unsure)


def test_the_choice_is_the_reference_choice():
    labels, probs = dataset_arrays(5, n=12, height=40, width=40)
    run = score_arrays_run(labels, probs, methods=("auto",), ignore_index=IGNORE)
    record = run.calibration
    table = [[math.nan if v is None else v for v in row] for row in record.auprc]
    usable = [j for j, n in enumerate(record.copies) if n >= 4]
    # The best candidate on the planted copies; it ranks if surely better than rsoftmin, else rsoftmin does.
    assert record.candidates[naive.calibration_choice(table, usable)] == record.best
    if record.best == "rsoftmin":
        assert record.chosen == "rsoftmin" and record.confidence is None
    else:
        assert record.chosen == (record.best if record.confidence >= 0.9 else "rsoftmin")
    # The ranking is by the chosen candidate (a single one: its own values).
    if record.chosen in ("cil", "ccp", "tccp", "iou", "rsoftmin", "coco", "clc"):
        for result in run.results:
            assert result.scores["auto"] == result.scores[record.chosen] or (
                math.isnan(result.scores["auto"]) and math.isnan(result.scores[record.chosen]))


def test_same_seed_same_run_any_threads_other_seed_other_copies():
    labels, probs = dataset_arrays(9, n=10, height=32, width=32)
    runs = [score_arrays_run(labels, probs, methods=("auto",), ignore_index=IGNORE, threads=t) for t in (1, 2, 3)]
    texts = {ranking_text(run) for run in runs}
    records = {json.dumps(run.calibration.to_dict()) for run in runs}
    assert len(texts) == 1 and len(records) == 1
    plan_a, plan_b = CalibrationPlan(0, 1000), CalibrationPlan(1, 1000)
    ids = [f"img{i}" for i in range(200)]
    assert [plan_a.kinds_for(i) for i in ids] != [plan_b.kinds_for(i) for i in ids]


def test_a_tiny_dataset_falls_back_to_rsoftmin_and_says_so():
    labels, probs = dataset_arrays(3, n=2)
    run = score_arrays_run(labels, probs, methods=("auto",), ignore_index=IGNORE)
    assert not run.calibration.calibrated and run.calibration.chosen == "rsoftmin"
    assert [r.scores["auto"] for r in run.results] == [r.scores["rsoftmin"] for r in run.results]


def test_the_record_round_trips_and_refuses_a_broken_table():
    labels, probs = dataset_arrays(4, n=8, height=32, width=32)
    run = score_arrays_run(labels, probs, methods=("auto", "clc"), ignore_index=IGNORE)
    record = RunRecord.from_run(run, "ranking.csv")
    again = RunRecord.from_dict(json.loads(record.to_json()))
    assert again.calibration == run.calibration
    broken = json.loads(record.to_json())
    broken["calibration"]["auprc"] = broken["calibration"]["auprc"][:-1]
    with pytest.raises(Exception, match="calibration"):
        RunRecord.from_dict(broken)


def test_kinds_poorly_found_are_named():
    record = CalibrationRecord(seed=0, chosen="cil", calibrated=True, images=40, set_aside=5,
                               kinds=("object_drop", "blob"), copies=(40, 40), candidates=("cil",),
                               auprc=((0.21, 0.8),), mean_auprc=(0.505,), mean_log_odds=(0.03,),
                               hard_kinds=("object_drop",))
    from segaudit.outputs.calibration import calibration_lines, calibration_markdown

    lines = calibration_lines(record)
    assert any("missed objects are hard to detect (AUPRC 0.21" in line for line in lines)
    assert any("a stronger model would help" in line for line in calibration_markdown(record))


def test_calibrate_with_no_clc_cut_and_no_copies():
    pieces = []
    from segaudit.calibration import ImageCalibration

    for i in range(6):
        values = np.full(len(CANDIDATES), 0.5 + i / 100)
        pieces.append(ImageCalibration(values))
    outcome = calibrate(CalibrationPlan(0, 6), pieces, [0] * 6, [100] * 6, -math.inf)
    assert not outcome.record.calibrated and len(outcome.scores) == 6


def test_auto_leaves_every_other_method_unchanged(tmp_path):
    """The calibration's copies and extra temperatures change no other column, bit for bit."""
    from datasets import make_dataset
    from segaudit.api import score
    from segaudit.methods import METHODS

    made = make_dataset(tmp_path, [f"i{n}" for n in range(8)], n_classes=4, size=(29, 31), seed=4,
                        dtype=np.float16, row_chunk=5)
    plain = score(made.masks, made.store, methods=tuple(METHODS))
    with_auto = score(made.masks, made.store, methods=("auto", *METHODS))
    by_id = {r.image_id: r for r in with_auto.results}
    for result in plain.results:
        other = by_id[result.image_id]
        assert all(np.float64(result.scores[m]).tobytes() == np.float64(other.scores[m]).tobytes() for m in METHODS)
        assert (result.flagged_pixels, result.low_pixels) == (other.flagged_pixels, other.low_pixels)


def test_unlabeled_is_checked_and_recorded(tmp_path):
    from datasets import make_dataset
    from segaudit.api import score
    from segaudit.errors import InputError

    made = make_dataset(tmp_path, [f"i{n}" for n in range(6)], n_classes=4, size=(24, 24), seed=1)
    run = score(made.masks, made.store, methods=("auto",), unlabeled=0)
    assert run.calibration.unlabeled == 0
    with pytest.raises(InputError, match="--unlabeled must be a class index from 0 to 3"):
        score(made.masks, made.store, methods=("auto",), unlabeled=4)
    with pytest.raises(InputError, match="add auto to --method"):
        score(made.masks, made.store, methods=("rsoftmin",), unlabeled=0)
    with pytest.raises(InputError, match="is an ignored value"):
        score(made.masks, made.store, methods=("auto",), unlabeled=1, ignore_index=(1, 255))


#: The candidates computed from counts alone (exact on the shared path too); the others
#: read the patched floating-point sums.
COUNTED = [CANDIDATES.index(name) for name in ("ccp", "tccp", "iou", "coco", "worst region")]


def _assert_same_copies(shared, full):
    for a, b in zip(shared, full):
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1][COUNTED], b[1][COUNTED], err_msg=a[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-9, atol=1e-15, err_msg=a[0])
        np.testing.assert_array_equal(a[2], b[2], err_msg=a[0])  # clc's change
        np.testing.assert_array_equal(a[3], b[3], err_msg=a[0])


def _copies(dataset, factor, plan, shared, monkeypatch):
    """Every image's planted copies (kind, values, clc_s, clc_weight), scored either way."""
    import functools

    import segaudit.engine as engine
    from segaudit.calibration.copies import CopyScorer

    monkeypatch.setattr(engine, "CopyScorer", functools.partial(CopyScorer, shared=shared))
    found = []
    for _, piece, _ in score_images(dataset, resolve(["auto"]), Settings(), factor, 2, plan=plan):
        found += [(c.kind, c.values, c.clc_s, c.clc_weight) for c in piece.calibration.copies]
    return found


@pytest.mark.parametrize("dtype,factor", [(np.float16, 4), (np.uint8, 3), (np.float32, 1), (np.float64, 2)])
def test_copies_from_the_shared_pass_equal_a_full_rescoring(tmp_path, monkeypatch, dtype, factor):
    """Mixed sizes, small row chunks: scoring only the changed pixels on top of the image's
    own pass gives every copy's candidates as the kernel over the copy's band does (the
    counts' exactly, the patched sums' to rounding) and its clc change exactly."""
    from datasets import make_dataset
    from segaudit.core.dataset import open_dataset

    ids = [f"i{n}" for n in range(6)]
    sizes = {"i1": (19, 31), "i3": (8, 45), "i4": (40, 9)}
    made = make_dataset(tmp_path, ids, n_classes=5, size=(37, 23), sizes=sizes, seed=3, flip_fraction=0.05,
                        dtype=dtype, row_chunk=6)
    dataset = open_dataset(made.masks, made.store)
    plan = CalibrationPlan(seed=2, n_images=len(ids), per_kind=10**6)
    shared = _copies(dataset, factor, plan, True, monkeypatch)
    full = _copies(dataset, factor, plan, False, monkeypatch)
    assert len(shared) == len(full) >= 10
    _assert_same_copies(shared, full)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.uint8, np.float64])
def test_copies_whose_patch_is_not_trusted_are_summed_afresh(tmp_path, monkeypatch, dtype):
    """With no rounding trusted, every copy's sums come from the image's kept s with its
    changed pixels' patched in: still the full rescoring's values."""
    from datasets import make_dataset
    from segaudit.calibration.copies import CopyScorer
    from segaudit.core import changes
    from segaudit.core.dataset import open_dataset

    ids = [f"i{n}" for n in range(5)]
    made = make_dataset(tmp_path, ids, n_classes=4, size=(21, 17), sizes={"i2": (9, 30)}, seed=8,
                        flip_fraction=0.05, dtype=dtype, row_chunk=4)
    dataset = open_dataset(made.masks, made.store)
    plan = CalibrationPlan(seed=1, n_images=len(ids), per_kind=10**6)
    full = _copies(dataset, 2, plan, False, monkeypatch)
    calls = []
    original = CopyScorer._sum_afresh
    monkeypatch.setattr(CopyScorer, "_sum_afresh", lambda self, n, stats: (calls.append(n), original(self, n, stats)))
    monkeypatch.setattr(changes, "PATCH_TOLERANCE", 0.0)
    shared = _copies(dataset, 2, plan, True, monkeypatch)
    assert len(shared) == len(full) == len(calls) >= 5
    _assert_same_copies(shared, full)


@pytest.mark.parametrize("factor", [1, 2])
def test_volume_copies_from_the_shared_pass_equal_a_full_rescoring(tmp_path, monkeypatch, factor):
    from core.test_volumes import volumes_dataset, write_volumes
    from segaudit.core.dataset import open_dataset

    rng = np.random.default_rng(5)
    volumes = volumes_dataset(rng, 5, 3, [(4, 9, 8), (3, 7, 11), (6, 5, 6)])
    masks, store = write_volumes(tmp_path / "data", volumes, dtype="float16", chunk_bytes=64)
    dataset = open_dataset(masks, store)
    plan = CalibrationPlan(seed=0, n_images=5, per_kind=10**6)
    shared = _copies(dataset, factor, plan, True, monkeypatch)
    full = _copies(dataset, factor, plan, False, monkeypatch)
    assert len(shared) == len(full) >= 5
    _assert_same_copies(shared, full)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 9), cols=st.integers(1, 9), slices=st.sampled_from([None, 1, 2, 3]),
       classes=st.integers(1, 4))
def test_the_worst_region_candidate_matches_the_reference(seed, rows, cols, slices, classes):
    from segaudit.calibration.candidates import worst_region

    rng = np.random.default_rng(seed)
    height = rows * (slices or 1)
    label = rng.integers(-1, classes, (height, cols)).astype(np.int32)
    if rng.random() < 0.5:  # blocky labels: objects bigger than one cell
        label = np.repeat(np.repeat(label[: -(-height // 2), : -(-cols // 2)], 2, 0), 2, 1)[:height, :cols].copy()
    pred = np.where(rng.random((height, cols)) < 0.6, label, rng.integers(0, classes, (height, cols))).astype(np.int32)
    pred = np.maximum(pred, 0)
    s = rng.random((height, cols))
    p_pred = np.where(pred == label, s, np.minimum(1.0, s + rng.random((height, cols))))
    got = worst_region(label, pred, s, p_pred, None if slices is None else rows)
    want = naive.worst_region(label, pred, s, p_pred, slice_rows=None if slices is None else rows)
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-9, abs=1e-300)
