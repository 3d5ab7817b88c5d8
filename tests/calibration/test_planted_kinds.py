"""The calibration's planted kinds against the plain-numpy references of tests/naive.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from segaudit.calibration.kinds import PLANTED_KINDS, kind_rng, plant
from segaudit.calibration.kinds.base import MAX_OBJECT_SHARE, MIN_CHANGED, MIN_OBJECT_PIXELS, MIN_OBJECT_SHARE

IGNORED = 9


def blocky_labels(seed: int, height: int, width: int, n_classes: int, ignore_share: float) -> np.ndarray:
    """Labels made of rectangles (objects) on a background, some pixels ignored."""
    rng = np.random.default_rng(seed)
    labels = np.full((height, width), rng.integers(n_classes), np.int32)
    for _ in range(rng.integers(1, 7)):
        y, x = rng.integers(0, height), rng.integers(0, width)
        h, w = rng.integers(2, max(3, height // 2)), rng.integers(2, max(3, width // 2))
        labels[y:y + h, x:x + w] = rng.integers(n_classes)
    labels[rng.random((height, width)) < ignore_share] = IGNORED
    return labels


masks = st.builds(blocky_labels, st.integers(0, 10_000), st.integers(8, 28), st.integers(8, 28),
                  st.integers(1, 4), st.sampled_from([0.0, 0.0, 0.05, 0.3]))


def copy_of(kind: str, labels: np.ndarray, seed: int = 0, image_id: str = "a/b"):
    return plant(PLANTED_KINDS[kind], labels, labels == IGNORED, 5, seed, image_id)


@pytest.mark.parametrize("kind", list(PLANTED_KINDS))
@settings(max_examples=40, deadline=None)
@given(labels=masks, seed=st.integers(0, 3))
def test_every_kind_keeps_ignored_pixels_and_is_deterministic(kind, labels, seed):
    copy = copy_of(kind, labels, seed)
    again = copy_of(kind, labels, seed)
    if copy is None:
        assert again is None
        return
    assert np.array_equal(copy, again)
    ignored = labels == IGNORED
    assert np.array_equal(copy[ignored], labels[ignored])  # ignored pixels never change
    assert not (copy[~ignored] == IGNORED).any()  # and no pixel becomes ignored
    assert copy[~ignored].min() >= 0 and copy[~ignored].max() < 5
    assert (copy != labels).sum() >= MIN_CHANGED
    assert copy.dtype == np.int32


def eligible(labels):
    scored = labels != IGNORED
    n = int(scored.sum())
    low = max(MIN_OBJECT_PIXELS, MIN_OBJECT_SHARE * n)
    return [(members, cls) for members, cls in naive.objects(labels, scored)
            if low <= len(members) <= MAX_OBJECT_SHARE * n]


@settings(max_examples=60, deadline=None)
@given(labels=masks, seed=st.integers(0, 3))
def test_object_drop_paints_one_object_over_with_its_surroundings(labels, seed):
    copy = copy_of("object_drop", labels, seed)
    objects = eligible(labels)
    if copy is None:
        return
    # The object chosen is the one the kind's generator picks among the naive objects.
    members, _ = objects[int(kind_rng(seed, PLANTED_KINDS["object_drop"], "a/b").integers(len(objects)))]
    changed = set(zip(*np.nonzero(copy != labels)))
    assert changed <= members
    inside = np.zeros(labels.shape, bool)
    inside[tuple(np.array(sorted(members)).T)] = True
    choices = naive.nearest_labels(inside | (labels == IGNORED), labels)
    for pixel in members:
        assert int(copy[pixel]) in choices[pixel]


@settings(max_examples=60, deadline=None)
@given(labels=masks, seed=st.integers(0, 3))
def test_object_class_relabels_one_whole_object(labels, seed):
    copy = copy_of("object_class", labels, seed)
    if copy is None:
        return
    members, cls = eligible(labels)[int(kind_rng(seed, PLANTED_KINDS["object_class"], "a/b").integers(
        len(eligible(labels))))]
    changed = set(zip(*np.nonzero(copy != labels)))
    assert changed == members
    assert len({int(copy[p]) for p in members}) == 1 and int(copy[next(iter(members))]) != cls


@pytest.mark.parametrize("kind", ["boundary", "object_outline"])
@settings(max_examples=60, deadline=None)
@given(labels=masks, seed=st.integers(0, 3))
def test_outline_kinds_move_one_class_only(kind, labels, seed):
    """Every changed pixel either gained the class or lost it (to a class that was there)."""
    copy = copy_of(kind, labels, seed)
    if copy is None:
        return
    changed = copy != labels
    new, old = copy[changed], labels[changed]
    # One class c moved: every changed pixel became c or was c.
    assert any(np.all((new == c) | (old == c)) for c in np.unique(np.r_[new, old]))
    present = set(np.unique(labels[labels != IGNORED]).tolist())
    assert set(np.unique(new).tolist()) <= present


@settings(max_examples=60, deadline=None)
@given(labels=masks, seed=st.integers(0, 3))
def test_blob_paints_one_class_in_one_ellipse(labels, seed):
    copy = copy_of("blob", labels, seed)
    if copy is None:
        return
    changed = np.nonzero(copy != labels)
    assert len(np.unique(copy[changed])) == 1
    # The blob is compact: its bounding box is at most the largest ellipse's.
    side = (labels.shape[0] + labels.shape[1]) / 2
    reach = 2 * (0.04 * side + 1) + 1
    assert changed[0].max() - changed[0].min() <= reach and changed[1].max() - changed[1].min() <= reach


def test_a_mask_without_objects_gets_no_object_copy():
    labels = np.full((20, 20), 2, np.int32)  # one class everywhere: one component, the whole image
    for kind in ("object_drop", "object_class", "object_outline", "boundary"):
        assert copy_of(kind, labels) is None
    all_ignored = np.full((20, 20), IGNORED, np.int32)
    for kind in PLANTED_KINDS:
        assert copy_of(kind, all_ignored) is None


def test_kinds_differ_by_seed_and_image():
    labels = blocky_labels(3, 160, 160, 4, 0.0)
    copies = {(seed, image): copy_of("blob", labels, seed, image) for seed in (0, 1) for image in ("x", "y")}
    assert len({c.tobytes() for c in copies.values() if c is not None}) > 1


@settings(max_examples=40, deadline=None)
@given(labels=masks, seed=st.integers(0, 3))
def test_missed_objects_become_the_unlabeled_class_when_it_is_scored(labels, seed):
    """With an unlabeled class, object_drop annotates one whole object as it (class_drop a
    whole class); without one, the object keeps its surroundings."""
    unlabeled = 4
    copy = plant(PLANTED_KINDS["object_drop"], labels, labels == IGNORED, 5, seed, "a/b", unlabeled)
    if copy is not None:
        changed = copy != labels
        assert set(np.unique(copy[changed]).tolist()) == {unlabeled}
        members, _ = eligible(labels)[int(kind_rng(seed, PLANTED_KINDS["object_drop"], "a/b").integers(
            len(eligible(labels))))]
        assert set(zip(*np.nonzero(changed))) <= members
    whole = plant(PLANTED_KINDS["class_drop"], labels, labels == IGNORED, 5, seed, "a/b", unlabeled)
    if whole is not None:
        changed = whole != labels
        assert set(np.unique(whole[changed]).tolist()) == {unlabeled}
        assert len(np.unique(labels[changed])) == 1  # one class, all of it
        assert not (whole == np.unique(labels[changed])[0]).any()
