"""The streaming region finder against the flood-fill reference (tests/naive.py)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segaudit.core.regions import KINDS, RegionFinder, RegionRule, edge_band, propose, region_score

import naive


def _feed(labels, s, likely, p, n_classes, rule, cuts, keep_ids=False, background=frozenset()):
    finder = RegionFinder(labels, n_classes, rule, keep_ids=keep_ids)
    scored = (labels >= 0) & (labels < n_classes)
    label = np.where(scored, labels, -1).astype(np.int32)
    bounds = [0, *cuts, labels.shape[0]]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        finder.add_block(start, label[start:stop], likely[start:stop].astype(np.int32), s[start:stop], p[start:stop])
    return finder, finder.finish("img", background)


def _random_image(seed, rows, cols, n_classes):
    rng = np.random.default_rng(seed)
    # Blocky labels (so objects and edges exist), a few ignored pixels.
    coarse = rng.integers(0, n_classes, (rows // 3 + 1, cols // 3 + 1))
    labels = np.kron(coarse, np.ones((3, 3), int))[:rows, :cols].astype(np.int32)
    labels[rng.random((rows, cols)) < 0.05] = 255
    probs = rng.dirichlet(np.full(n_classes, 0.3), (rows, cols))
    likely = probs.argmax(axis=2).astype(np.int32)
    p = probs.max(axis=2)
    s = np.take_along_axis(probs, np.clip(labels, 0, n_classes - 1)[..., None], axis=2)[..., 0]
    s = np.where(labels < n_classes, s, np.nan)
    return labels, s, likely, p


def _key(region):
    return (region["area"], region["x0"], region["y0"], region["x1"], region["y1"], region["annotated_class"],
            region["likely_class"], region["core_area"], region["object_pixels"], region["touching"], region["kind"])


def _as_dict(r):
    return {"area": r.area, "x0": r.x0, "y0": r.y0, "x1": r.x1, "y1": r.y1, "annotated_class": r.annotated_class,
            "likely_class": r.likely_class, "core_area": r.core_area, "object_pixels": r.object_pixels,
            "touching": r.touching, "kind": r.kind}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), rows=st.integers(1, 14), cols=st.integers(1, 14), n_classes=st.integers(2, 4),
       margin=st.sampled_from([0.0, 0.2, 0.5]), band=st.integers(0, 3), reach=st.integers(1, 3), data=st.data())
def test_streamed_regions_match_the_flood_fill(seed, rows, cols, n_classes, margin, band, reach, data):
    labels, s, likely, p = _random_image(seed, rows, cols, n_classes)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, rows - 1)), max_size=4)))) if rows > 1 else []
    rule = RegionRule(margin=margin, band=band, band_weight=0.25, thin=0.05, reach=reach)
    background = frozenset({0})
    finder, found = _feed(labels, s, likely, p, n_classes, rule, cuts, keep_ids=True, background=background)
    expected = naive.regions(labels, s, likely, p, n_classes, margin=margin, band=band, band_weight=0.25,
                             thin=0.05, reach=reach, background=background)
    assert sorted(_key(_as_dict(r)) for r in found) == sorted(_key(e) for e in expected)
    by_key = {_key(e): e for e in expected}
    for index, region in enumerate(found):
        reference = by_key[_key(_as_dict(region))]
        assert region.mean_s == pytest.approx(reference["mean_s"], rel=1e-9, abs=1e-12)
        assert region.mean_p_likely == pytest.approx(reference["mean_p_likely"], rel=1e-9)
        assert region.mass == pytest.approx(reference["mass"], rel=1e-9, abs=1e-12)
        assert region.score == pytest.approx(reference["score"], rel=1e-9, abs=1e-12)
        assert region.kind in KINDS
        # The region map holds exactly the region's pixels.
        assert set(zip(*np.nonzero(finder.region_map == index))) == set(reference["pixels"])
    # Worst first within the image, numbered 1..n.
    assert [r.region for r in found] == list(range(1, len(found) + 1))
    assert all(a.score >= b.score for a, b in zip(found, found[1:]))


def test_a_region_crossing_block_edges_is_one_region():
    # A U joined only at its bottom: the two arms meet three blocks after they start.
    labels = np.zeros((9, 7), np.int32)
    likely = np.zeros((9, 7), np.int32)
    likely[0:8, 1] = 1
    likely[0:8, 5] = 1
    likely[7, 1:6] = 1
    s = np.where(likely == 1, 0.05, 0.9)
    p = np.where(likely == 1, 0.95, 0.9)
    rule = RegionRule(margin=0.5, band=0)
    for cuts in ([], [1, 2, 3, 4, 5, 6, 7, 8], [4], [7], [8]):
        finder, found = _feed(labels, s, likely, p, 2, rule, cuts, keep_ids=True)
        assert len(found) == 1, cuts
        region = found[0]
        assert (region.area, region.x0, region.y0, region.x1, region.y1) == (8 + 8 + 3, 1, 0, 6, 8)
        assert region.mean_s == pytest.approx(0.05)
        assert (finder.region_map == 0).sum() == region.area


def test_regions_with_other_classes_stay_apart():
    labels = np.zeros((4, 6), np.int32)
    likely = np.zeros((4, 6), np.int32)
    likely[:, :3] = 1
    likely[:, 3:] = 2  # touching, but another likely class: another region
    s = np.full(labels.shape, 0.0)
    p = np.full(labels.shape, 1.0)
    _, found = _feed(labels, s, likely, p, 3, RegionRule(band=0), [2])
    assert sorted((r.likely_class, r.area) for r in found) == [(1, 12), (2, 12)]


def test_blocks_must_come_in_order():
    labels = np.zeros((4, 4), np.int32)
    finder = RegionFinder(labels, 2, RegionRule())
    with pytest.raises(ValueError, match="in order"):
        finder.add_block(2, labels[2:], labels[2:], np.ones((2, 4)), np.ones((2, 4)))
    finder.add_block(0, labels[:2], labels[:2], np.ones((2, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="never added"):
        finder.finish("x")


def test_edge_band_is_the_chebyshev_neighbourhood_of_label_changes():
    labels = np.zeros((7, 7), np.int32)
    labels[:, 4:] = 1
    assert not edge_band(labels, 0).any()
    assert edge_band(labels, 1)[0].tolist() == [False, False, False, True, True, False, False]
    assert edge_band(labels, 2)[3].tolist() == [False, False, True, True, True, True, False]


def test_score_grows_with_mass_and_saturates_below_one():
    rule = RegionRule(scale=0.01)
    scores = [region_score(m, 1.0, 10_000, rule) for m in (0.0, 10.0, 100.0, 1000.0)]
    assert scores[0] == 0.0
    assert all(a < b for a, b in zip(scores, scores[1:]))
    assert scores[1] == pytest.approx(1 - math.exp(-0.1))
    assert scores[-1] < 1.0
    # Part of an object scores less than the whole object with the same mass.
    assert region_score(10.0, 0.25, 10_000, rule) == pytest.approx(1 - math.exp(-0.1 * 0.25 ** 0.25))


@pytest.mark.parametrize("bad", [dict(margin=1.0), dict(margin=-0.1), dict(band=-1), dict(band=1.5),
                                 dict(band_weight=2.0), dict(scale=0.0), dict(reach=0),
                                 dict(coverage_power=-1.0)])
def test_rule_checks_its_parameters(bad):
    with pytest.raises(ValueError):
        RegionRule(**bad)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), rows=st.integers(2, 12), cols=st.integers(2, 12),
       min_score=st.sampled_from([0.0, 0.3, 0.9]))
def test_proposals_match_the_reference_and_change_only_region_pixels(seed, rows, cols, min_score):
    labels, s, likely, p = _random_image(seed, rows, cols, 3)
    rule = RegionRule(margin=0.2, band=1, scale=0.05)
    finder, found = _feed(labels, s, likely, p, 3, rule, [rows // 2], keep_ids=True)
    new = propose(labels, finder.region_map, finder.likely_map, found, min_score)
    pixels = [set(zip(*np.nonzero(finder.region_map == i))) for i in range(len(found))]
    np.testing.assert_array_equal(new, naive.propose(labels, pixels, found, likely, min_score))
    changed = new != labels
    # Only pixels of a proposed region, or grown from a missing one into its own class, change.
    chosen = [r for r in found if r.score >= min_score]
    assert not changed[labels >= 3].any()
    for y, x in zip(*np.nonzero(changed)):
        assert any(labels[y, x] == r.annotated_class and new[y, x] == r.likely_class for r in chosen)


def _region(**fields):
    from segaudit.core.regions import Region

    base = dict(image_id="x", region=1, score=0.9, area=100, x0=0, y0=0, x1=10, y1=10, annotated_class=1,
                likely_class=2, mean_s=0.1, mean_p_likely=0.9, kind="", core_area=100, object_pixels=100,
                mass=80.0, touching=0)
    base.update(fields)
    return Region(**base)


@pytest.mark.parametrize("fields, background, kind", [
    (dict(object_pixels=120), frozenset(), "wrong_class"),  # most of an object: swapped
    (dict(object_pixels=120, annotated_class=0), frozenset({0}), "missing"),  # an object left as background
    (dict(object_pixels=120, likely_class=0), frozenset({0}), "spurious"),  # an object that is not there
    (dict(object_pixels=10_000, touching=50), frozenset(), "boundary"),  # 2 px thick along the likely class
    (dict(object_pixels=10_000, touching=5), frozenset(), "missing"),  # compact: painted over
    (dict(object_pixels=10_000, touching=0), frozenset(), "missing"),
    (dict(object_pixels=10_000, likely_class=0), frozenset({0}), "spurious"),
])
def test_kind_rules(fields, background, kind):
    from segaudit.core.regions import classify

    assert classify(_region(**fields), background, RegionRule(), 100 * 100) == kind


def test_background_classes_by_name():
    from segaudit.core.regions import background_classes

    assert background_classes(["Background", "car", "void", "road"]) == {0, 2}
    assert background_classes(None) == frozenset()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), depth=st.integers(1, 4), rows=st.integers(1, 6), cols=st.integers(1, 6),
       data=st.data())
def test_volume_regions_are_26_connected_across_slices(seed, depth, rows, cols, data):
    labels2, s2, likely2, p2 = _random_image(seed, depth * rows, cols, 3)
    shape = (depth, rows, cols)
    labels, s, likely, p = (a.reshape(shape) for a in (labels2, s2, likely2, p2))
    # Blocks anywhere in the tall image (the store's are whole slabs; the finder allows any).
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, depth * rows - 1)), max_size=5)))) \
        if depth * rows > 1 else []
    rule = RegionRule(margin=0.2, band=1, reach=2)
    finder = RegionFinder(labels2, 3, rule, keep_ids=True, slice_rows=rows)
    scored = labels2 < 3
    label = np.where(scored, labels2, -1).astype(np.int32)
    bounds = [0, *cuts, depth * rows]
    for a, b in zip(bounds[:-1], bounds[1:]):
        finder.add_block(a, label[a:b], likely2[a:b].astype(np.int32), s2[a:b], p2[a:b])
    found = finder.finish("vol", frozenset({0}))
    expected = naive.regions_3d(labels, s, likely, p, 3, margin=0.2, band=1, reach=2, background=frozenset({0}))
    key = lambda r: (r["area"], r["x0"], r["y0"], r["z0"], r["x1"], r["y1"], r["z1"], r["annotated_class"],  # noqa: E731
                     r["likely_class"], r["object_pixels"], r["touching"], r["kind"])
    got = [{"area": r.area, "x0": r.x0, "y0": r.y0, "z0": r.z0, "x1": r.x1, "y1": r.y1, "z1": r.z1,
            "annotated_class": r.annotated_class, "likely_class": r.likely_class, "object_pixels": r.object_pixels,
            "touching": r.touching, "kind": r.kind} for r in found]
    assert sorted(map(key, got)) == sorted(map(key, expected))
    by_key = {key(e): e for e in expected}
    for index, region in enumerate(found):
        reference = by_key[key(got[index])]
        assert region.score == pytest.approx(reference["score"], rel=1e-9, abs=1e-12)
        tall = {(z * rows + y, x) for z, y, x in reference["pixels"]}
        assert set(zip(*np.nonzero(finder.region_map == index))) == tall
