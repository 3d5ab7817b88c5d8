"""Calibrated region scores: the isotonic fit and the finder's planted-pixel counts against
tests/naive.py, the threshold rule, determinism, the record, the fixtures end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from datasets import FIXTURES
from segaudit.calibration.regions import (MAX_SCORE, RegionCalibration, TARGET_PRECISION, calibrated_regions,
                                          choose_threshold, fit_region_calibration, isotonic, isotonic_predict,
                                          kind_recall, reliability, set_aside)
from segaudit.core.dataset import open_dataset
from segaudit.core.regions import RAW_THRESHOLD, RegionFinder, RegionRule
from segaudit.errors import InputError


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 1), st.sampled_from([0.2, 0.5, 1.0])),
                min_size=1, max_size=30))
def test_isotonic_is_the_naive_pool_adjacent_violators(points):
    x = np.array([p[0] for p in points], np.float64)
    y = np.array([p[1] for p in points], np.float64)
    w = np.array([p[2] for p in points], np.float64)
    starts, values = isotonic(x, y, w)
    assert np.all(np.diff(starts) > 0) and np.all(np.diff(values) > 0)
    np.testing.assert_allclose(isotonic_predict(starts, values, x), naive.isotonic_fit(x, y, w), atol=1e-12)


def test_isotonic_keeps_the_weighted_mean_and_is_flat_outside():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([1.0, 0.0, 1.0, 1.0])
    w = np.array([1.0, 3.0, 1.0, 1.0])
    starts, values = isotonic(x, y, w)
    np.testing.assert_allclose(values, [0.25, 1.0])
    np.testing.assert_allclose(isotonic_predict(starts, values, np.array([-5.0, 1.5, 2.0, 9.0])),
                               [0.25, 0.25, 1.0, 1.0])


def test_the_finder_counts_each_regions_marked_pixels():
    rng = np.random.default_rng(3)
    labels = np.zeros((30, 40), np.int32)
    labels[5:15, 5:20] = 1
    labels[20:28, 25:38] = 2
    probs = np.full((3, 30, 40), 0.05)
    probs[0] = 0.9
    probs[1, 8:14, 6:30] = 0.9  # partly over the class-1 object and the background
    probs[0, 8:14, 6:30] = 0.05
    probs[2, 20:28, 25:38] = 0.9
    probs[0, 20:28, 25:38] = 0.05
    probs[2, 22:26, 27:31] = 0.05
    probs[1, 22:26, 27:31] = 0.9
    probs /= probs.sum(axis=0)
    marked = rng.random(labels.shape) < 0.4
    finder = RegionFinder(labels, 3, RegionRule(), keep_ids=True, marked=marked)
    for start in range(0, 30, 7):  # blocks of 7 rows: regions cross block edges
        stop = min(30, start + 7)
        likely = probs[:, start:stop].argmax(axis=0).astype(np.int32)
        s = np.take_along_axis(probs[:, start:stop], labels[None, start:stop], 0)[0]
        p = probs[:, start:stop].max(axis=0)
        finder.add_block(start, labels[start:stop], likely, s, p)
    regions = finder.finish("a")
    assert len(regions) >= 2
    assert finder.marked_areas == naive.region_marked_areas(finder.region_map, marked, len(regions))


def test_the_threshold_is_the_lowest_with_the_target_image_precision():
    # Copies (key image * 64 + copy): each has a planted region and clean ones.
    scores = np.array([0.9, 0.1, 0.6, 0.5, 0.3, 0.2, 0.8, 0.7])
    planted = np.array([True, False, True, False, True, False, True, False])
    keys = np.array([0, 0, 64, 64, 128, 128, 192, 192])
    weight = np.ones(8)
    threshold, precision, recall = choose_threshold(scores, planted, weight, keys)
    # At 0.6: planted found in 3 of 4 copies, false alarms (0.7) in 1: 0.2*0.75 / (0.2*0.75 + 0.8*0.25) < 0.5;
    # at 0.8: 2 of 4 found, no alarm left: precision 1.
    assert threshold == 0.8 and precision == 1.0 and recall == 0.5
    for t in (0.3, 0.6):
        found = np.mean([scores[planted][i] >= t for i in range(4)])
        alarms = np.mean([scores[~planted][i] >= t for i in range(4)])
        assert 0.2 * found / (0.2 * found + 0.8 * alarms) < TARGET_PRECISION
    # Nothing reaches it: no region counts.
    assert choose_threshold(np.array([0.1, 0.9]), np.array([True, False]), np.ones(2), np.array([0, 0])) == \
        (1.0, None, None)


def test_a_planted_error_no_region_finds_is_a_miss():
    # Images 0 and 1: one copy each, its planted region found; image 2's copy has no region at all.
    scores = np.array([0.9, 0.1, 0.8, 0.2])
    planted = np.array([True, False, True, False])
    keys = np.array([0, 0, 64, 64])
    assert choose_threshold(scores, planted, np.ones(4), keys) == (0.8, 1.0, 1.0)
    # The copy without a region counts in recall; precision (and so the threshold) is unchanged.
    threshold, precision, recall = choose_threshold(scores, planted, np.ones(4), keys, np.array([0, 64, 128]))
    assert (threshold, precision) == (0.8, 1.0) and recall == pytest.approx(2 / 3)


def test_kind_recall_counts_every_copy_of_each_kind():
    # Image 0: copies 0 (a drop, found at 0.9) and 1 (a swap, planted region at 0.2 only);
    # image 1: copy 0 (a drop) without any region.
    scores = np.array([0.9, 0.3, 0.2, 0.95])
    planted = np.array([True, False, True, False])
    keys = np.array([0, 0, 1, 1])
    every = np.array([0, 1, 64])
    kinds = ["object_drop", "class_swap", "object_drop"]
    assert kind_recall(scores, planted, keys, every, kinds, 0.5) == {"class_swap": (0, 1), "object_drop": (1, 2)}
    # A clean region above the threshold finds nothing.
    assert kind_recall(scores, planted, keys, every, kinds, 0.95) == {"class_swap": (0, 1), "object_drop": (0, 2)}


def test_the_kinds_regions_rarely_find_are_told():
    calibration = RegionCalibration(seed=0, calibrated=True, threshold=0.4, precision=0.6, recall=0.5,
                                    pair_weight=0.0, images=10, copies=23, planted_regions=20, other_regions=30,
                                    kind_recall={"object_drop": (2, 10), "class_swap": (9, 10), "blob": (0, 3)})
    # blob: too few copies to tell; class_swap: found.
    assert calibration.hard_kinds() == [("object_drop", 2, 10)]
    [sentence] = calibration.hard_sentences()
    assert "missed objects (2 of 10)" in sentence and "0.400" in sentence
    assert "blob" not in sentence and "swapped" not in sentence


@pytest.fixture(scope="module")
def fixture_run():
    dataset = open_dataset(FIXTURES / "masks", FIXTURES / "preds.zarr")
    return dataset, *calibrated_regions(dataset)


def test_fixture_regions_are_calibrated_and_the_threshold_finds_the_planted_errors(fixture_run):
    _, run, samples = fixture_run
    calibration = run.calibration
    assert calibration.calibrated and 0.0 < calibration.threshold < 1.0
    assert calibration.precision >= TARGET_PRECISION
    assert all(0.0 <= r.score <= MAX_SCORE < 1.0 for r in run.regions)
    assert all(0.0 <= r.raw_score <= 1.0 and r.annotated_class != r.likely_class for r in run.regions)
    # Calibrated scores are monotone in the evidence, so they rank as it does.
    evidence = calibration.evidence(np.array([math.log(r.strength) for r in run.regions]),
                                    [(r.annotated_class, r.likely_class) for r in run.regions])
    scores = np.array([r.score for r in run.regions])
    order = np.argsort(evidence)
    assert np.all(np.diff(scores[order]) >= 0)
    planted = {"city_a/0003", "city_a/0005", "city_b/0002", "city_b/0004"}
    assert {i for i, n in run.counted().items() if n} == planted
    # The fit is exact on its own samples (isotonic regression is calibrated in-sample) but for
    # the top clipped from 1 to MAX_SCORE.
    assert reliability(calibration, samples)[1] <= 1 - MAX_SCORE


def test_the_same_seed_gives_the_same_scores_and_another_seed_other_copies(fixture_run):
    dataset, run, samples = fixture_run
    again, again_samples = calibrated_regions(dataset)
    assert [(r.image_id, r.region, r.score) for r in again.regions] == [(r.image_id, r.region, r.score)
                                                                       for r in run.regions]
    assert again.calibration == run.calibration
    other = calibrated_regions(dataset, seed=1)[1]
    assert [s.kinds for s in other] != [s.kinds for s in samples]


def test_kind_recall_covers_every_copy_the_fit_used(fixture_run):
    _, run, samples = fixture_run
    calibration = run.calibration
    kept = [image for image, aside in zip(samples, set_aside(samples)) if not aside]
    expected = {}
    for image in kept:
        for kind in image.kinds:
            expected[kind] = expected.get(kind, 0) + 1
    assert {kind: copies for kind, (_, copies) in calibration.kind_recall.items()} == expected
    assert sum(expected.values()) == calibration.copies
    found = sum(found for found, _ in calibration.kind_recall.values())
    assert found / calibration.copies == pytest.approx(calibration.recall, abs=0.2)  # recall weighs images equally


def test_the_record_round_trips_and_refuses_malformed_fits(fixture_run):
    calibration = fixture_run[1].calibration
    data = calibration.to_dict()
    assert calibration.kind_recall and RegionCalibration.from_dict(data) == calibration
    # A record written before the per-kind recall existed still loads.
    older = {k: v for k, v in data.items() if k != "kind_recall"}
    assert RegionCalibration.from_dict(older).kind_recall == {}
    with pytest.raises(InputError, match="'regions.calibration.kind_recall' must be a mapping"):
        RegionCalibration.from_dict({**data, "kind_recall": {"object_drop": [3, 2]}}, "x.run.json")
    for name, value, message in (("starts", [2.0, 1.0], "'regions.calibration.starts' must be increasing"),
                                 ("threshold", 1.5, "'regions.calibration.threshold' must be a number in [0, 1]"),
                                 ("pairs", [[1, 2]], "'regions.calibration.pairs' must be a list of"),
                                 ("calibrated", "yes", "'regions.calibration.calibrated' must be true or false")):
        with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
            RegionCalibration.from_dict({**data, name: value}, "x.run.json")


def test_too_few_planted_regions_leave_the_raw_scores():
    calibration = fit_region_calibration([], seed=0)
    assert not calibration.calibrated and calibration.threshold == RAW_THRESHOLD
    assert "not calibrated" in calibration.describe()
