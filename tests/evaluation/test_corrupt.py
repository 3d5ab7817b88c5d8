"""``segaudit corrupt``: the four kinds of error, the copy, determinism and bad input."""

from __future__ import annotations

import csv
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from datasets import FIXTURES, write_mask
from segaudit.cli import app
from segaudit.core.outlines import boundary_displacement, boundary_pixels, components, nearest_outside, periodic_cubic
from segaudit.evaluation.corrupt import (
    Sigma, corrupt_masks, drop, move_boundary, parse_sigma, resolve_classes, shift, swap,
)
from segaudit.errors import InputError
from segaudit.io.masks import MaskFile, find_masks, read_mask

CLASSES = ["unlabeled", "sky", "building", "road", "car"]  # the fixtures' classes
UNLABELED, SKY, BUILDING, ROAD, CAR = range(5)


def invoke(*args):
    return CliRunner().invoke(app, ["corrupt", *map(str, args)])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def truth_rows(path: Path) -> dict[str, dict[str, str]]:
    return {row["image"]: row for row in csv.DictReader(open(path))}


@pytest.fixture
def classes_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return path


def fixture_labels() -> dict[str, np.ndarray]:
    return {m.image_id: read_mask(m) for m in find_masks(FIXTURES / "masks")}


def blocky_labels(rng, height=40, width=56, n_classes=5) -> np.ndarray:
    coarse = rng.integers(0, n_classes, size=(height // 8, width // 8))
    return np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1).astype(np.int32)


# --- the periodic spline and the three kinds on arrays -----------------------------------


def test_periodic_cubic_interpolates_its_samples_and_is_smooth_and_periodic():
    samples = np.array([1.0, -2.0, 0.5, 3.0, -1.0])
    knots = 2 * math.pi * np.arange(5) / 5
    np.testing.assert_allclose(periodic_cubic(samples, knots), samples, atol=1e-12)
    np.testing.assert_allclose(periodic_cubic(samples, knots + 2 * math.pi), samples, atol=1e-12)
    np.testing.assert_allclose(periodic_cubic(samples, knots - 2 * math.pi), samples, atol=1e-12)
    # C1 and C2 across every knot, including the wrap-around at 0 = 2 pi.
    for knot in knots:
        eps = 1e-6
        left = periodic_cubic(samples, knot - np.array([eps, 0.0]))
        right = periodic_cubic(samples, knot + np.array([0.0, eps]))
        assert (left[1] - left[0]) / eps == pytest.approx((right[1] - right[0]) / eps, abs=1e-3)
        eps = 1e-3
        left = periodic_cubic(samples, knot - np.array([2 * eps, eps, 0.0]))
        right = periodic_cubic(samples, knot + np.array([0.0, eps, 2 * eps]))
        assert (left[2] - 2 * left[1] + left[0]) / eps**2 == pytest.approx(
            (right[2] - 2 * right[1] + right[0]) / eps**2, abs=0.2)
    np.testing.assert_allclose(periodic_cubic(np.full(5, 2.5), np.linspace(0, 7, 50)), 2.5)


def test_drop_and_swap():
    labels = np.array([[1, 2, 3], [3, 2, 1], [255, 4, 4]], np.int32)
    np.testing.assert_array_equal(drop(labels, 2, 0), [[1, 0, 3], [3, 0, 1], [255, 4, 4]])
    np.testing.assert_array_equal(swap(labels, 1, 4), [[4, 2, 3], [3, 2, 4], [255, 1, 1]])


def test_components_are_8_connected():
    mask = np.array([[1, 0, 0, 1],
                     [0, 1, 0, 1],
                     [0, 0, 0, 0],
                     [1, 1, 0, 1]], bool)
    regions, n = components(mask)
    assert n == 4
    assert regions[0, 0] == regions[1, 1] != regions[0, 3]
    assert regions[0, 3] == regions[1, 3]
    assert regions[3, 0] == regions[3, 1] != regions[3, 3]
    assert (regions[~mask] == 0).all() and (regions[mask] > 0).all()


def disc(radius, size=64) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    labels = np.zeros((size, size), np.int32)
    labels[(yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius**2] = CAR
    return labels


class Constant:
    """A stand-in generator whose 'normal' samples are all ``value``: f(angle) = value."""

    def __init__(self, value):
        self.value = value

    def normal(self, mean, sigma, size):
        return np.full(size, self.value)


@pytest.mark.parametrize("move", [3.0, -3.0])
def test_shift_moves_the_outline_radially_by_f(move):
    labels = disc(10)
    new = shift(labels, CAR, UNLABELED, Constant(move), Sigma(1.0, False))
    area = (new == CAR).sum()
    assert area == pytest.approx(math.pi * (10 + move) ** 2, rel=0.08)
    if move > 0:
        assert ((new == CAR) >= (labels == CAR)).all()  # only grows
    else:
        assert ((new == CAR) <= (labels == CAR)).all()  # only shrinks
        assert ((new == UNLABELED) == ((labels == CAR) & (new != CAR)) | (labels == UNLABELED)).all()


def test_shift_loses_pixels_to_unlabeled_and_takes_gains_from_other_classes():
    rng = np.random.default_rng(5)
    for trial in range(20):
        labels = blocky_labels(rng)
        labels[:, :3] = 255  # ignored band
        ignored = labels == 255
        cls = int(rng.integers(1, 5))
        new = shift(labels, cls, UNLABELED, np.random.default_rng(trial), Sigma(0.3, True), ignored)
        changed = new != labels
        lost = changed & (labels == cls)
        gained = changed & (labels != cls)
        assert (new[lost] == UNLABELED).all()
        assert (new[gained] == cls).all()
        assert not changed[ignored].any()
        # Same generator state, same result.
        again = shift(labels, cls, UNLABELED, np.random.default_rng(trial), Sigma(0.3, True), ignored)
        np.testing.assert_array_equal(new, again)


def test_shift_keeps_a_region_touching_the_border_on_the_border():
    labels = np.full((48, 64), ROAD, np.int32)
    labels[:12] = SKY
    for seed in range(10):
        new = shift(labels, SKY, UNLABELED, np.random.default_rng(seed), Sigma(0.2, True))
        assert (new[0] == SKY).all()


# --- boundary: a one-sided random walk of the class boundaries ---------------------------------


def naive_edge(mask: np.ndarray) -> np.ndarray:
    """Plain numpy: pixels of the mask with a 4-neighbour (inside the image) outside it."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    for i, j in zip(*np.nonzero(mask)):
        out[i, j] = any(0 <= i + di < h and 0 <= j + dj < w and not mask[i + di, j + dj]
                        for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)))
    return out


def naive_manhattan_fill(mask: np.ndarray, labels: np.ndarray):
    """Plain numpy: per mask pixel, the set of labels of the outside pixels at the least |di| + |dj|."""
    outside = np.argwhere(~mask)
    result = {}
    for i, j in zip(*np.nonzero(mask)):
        d = np.abs(outside - (i, j)).sum(1)
        result[(i, j)] = set(labels[tuple(outside[d == d.min()].T)].tolist())
    return result


class Walk:
    """A stand-in generator: side from ``random`` (< 0.5 = outward), walk noise all ``noise``."""

    def __init__(self, outward: bool, noise: float = 0.0):
        self.outward, self.noise = outward, noise

    def random(self):
        return 0.25 if self.outward else 0.75

    def standard_normal(self, size):
        return np.full(size, self.noise)


def test_boundary_pixels_and_nearest_outside_match_plain_numpy():
    rng = np.random.default_rng(4)
    for _ in range(10):
        labels = blocky_labels(rng, 24, 32)
        labels[rng.random(labels.shape) < 0.05] = 4
        mask = labels == 2
        np.testing.assert_array_equal(boundary_pixels(mask), naive_edge(mask))
        filled = nearest_outside(mask, labels)
        np.testing.assert_array_equal(filled[~mask], labels[~mask])
        for (i, j), allowed in naive_manhattan_fill(mask, labels).items():
            assert filled[i, j] in allowed


@pytest.mark.parametrize("outward", [True, False])
def test_boundary_with_a_constant_walk_is_a_dilation_or_erosion_by_sigma(outward):
    """Zero walk noise: every boundary pixel moves by sigma; compare with a plain-numpy disc dilation/erosion."""
    labels = np.full((40, 48), ROAD, np.int32)
    labels[10:28, 12:36] = CAR
    labels[18:22, 20:24] = SKY  # a hole
    labels[:, :4] = 255
    mask = labels == CAR
    new = move_boundary(labels, CAR, Walk(outward), Sigma(3.0, False), ignored=labels == 255)
    edge = np.argwhere(naive_edge(mask))
    yy, xx = np.mgrid[0:40, 0:48]
    dist2 = ((yy[..., None] - edge[:, 0]) ** 2 + (xx[..., None] - edge[:, 1]) ** 2).min(-1)
    expected = labels.copy()
    if outward:
        expected[~mask & (dist2 <= 9) & (labels != 255)] = CAR
    else:
        lost = mask & (dist2 < 9)
        for (i, j), allowed in naive_manhattan_fill(mask, labels).items():
            if lost[i, j]:
                assert new[i, j] in allowed
        expected[lost] = new[lost]
        assert set(np.unique(new[lost])) == {ROAD, SKY}  # the classes across the boundary
    np.testing.assert_array_equal(new, expected)


def test_boundary_walk_is_one_sided_and_correlated_along_the_boundary():
    yy, xx = np.mgrid[0:400, 0:400]
    mask = (yy - 200) ** 2 + (xx - 200) ** 2 <= 150 ** 2
    sides, same = [], []
    for seed in range(8):
        value = boundary_displacement(mask, np.random.default_rng(seed), 4.0, correlation=20.0)
        edge = boundary_pixels(mask)
        assert np.isnan(value[~edge]).all() and not np.isnan(value[edge]).any()
        d = value[edge]
        side = np.sign(np.median(d))
        sides.append(side)
        same.append((np.sign(d) == side).mean())
        assert abs(np.abs(d).mean() - 4.0) < 1.5
        # 8-neighbouring boundary pixels move together: their differences are far below the spread.
        right = edge[:, :-1] & edge[:, 1:]
        steps = np.abs(value[:, :-1][right] - value[:, 1:][right])
        assert np.median(steps) < 0.5 * d.std()
    assert set(sides) == {-1.0, 1.0}  # both sides occur
    assert min(same) > 0.8 and np.mean(same) > 0.93  # mostly one-sided (2.3 % other-sided in theory)


def test_boundary_lost_pixels_take_the_class_across_and_ignored_pixels_never_change():
    rng = np.random.default_rng(9)
    for trial in range(20):
        labels = blocky_labels(rng)
        labels[:, :3] = 255
        ignored = labels == 255
        cls = int(rng.integers(1, 5))
        new = move_boundary(labels, cls, np.random.default_rng(trial), Sigma(3.0, False), ignored=ignored)
        changed = new != labels
        assert not changed[ignored].any()
        gained = changed & (labels != cls)
        lost = changed & (labels == cls)
        assert (new[gained] == cls).all()
        assert (new[lost] != cls).all()
        # Lost pixels take labels that border the class; nothing outside a band of the old boundary changes.
        assert set(np.unique(new[lost])) <= set(np.unique(labels[labels != cls]))
        edge = np.argwhere(naive_edge(labels == cls))
        if changed.any():
            where = np.argwhere(changed)
            near = np.abs(where[:, None] - edge[None]).max(-1).min(1)
            assert near.max() <= 3 * 3.0 + 2
        again = move_boundary(labels, cls, np.random.default_rng(trial), Sigma(3.0, False), ignored=ignored)
        np.testing.assert_array_equal(new, again)


def test_drop_and_shift_fill_nearest():
    labels = np.array([[1, 1, 2, 2, 3],
                       [1, 4, 4, 2, 3],
                       [1, 4, 4, 4, 3]], np.int32)
    new = drop(labels, 4, 0, fill="nearest")
    assert not (new == 4).any()
    for (i, j), allowed in naive_manhattan_fill(labels == 4, labels).items():
        assert new[i, j] in allowed
    rng = np.random.default_rng(1)
    for trial in range(10):
        lab = blocky_labels(rng)
        plain = shift(lab, 2, UNLABELED, np.random.default_rng(trial), Sigma(0.3, True))
        near = shift(lab, 2, UNLABELED, np.random.default_rng(trial), Sigma(0.3, True), fill="nearest")
        lost = (lab == 2) & (plain != 2)
        np.testing.assert_array_equal((near == 2), (plain == 2))  # the same new outline
        assert (near[lost] != 2).all()
        np.testing.assert_array_equal(near[~lost], plain[~lost])


def test_unlabeled_may_be_the_ignore_value_when_nothing_becomes_it(tmp_path):
    labels = {f"i{n}": blocky_labels(np.random.default_rng(n)) for n in range(4)}
    for image_id, lab in labels.items():
        lab[:2] = 4  # 4 plays the void: unlabeled and ignored, as CamVid's 11
        write_mask(tmp_path / "m" / f"{image_id}.png", lab, "L")
    for kind, extra in (("boundary", []), ("drop", ["--fill", "nearest"]), ("swap", [])):
        ok(invoke(tmp_path / "m", "--out", tmp_path / kind, "--kind", kind, "--rate", 1, "--unlabeled", 4,
                  "--ignore-index", 4, "--truth", tmp_path / f"{kind}.csv", *extra))
        for image_id, lab in labels.items():
            new = np.asarray(Image.open(tmp_path / kind / f"{image_id}.png"))
            assert (new[lab == 4] == 4).all()
    result = invoke(tmp_path / "m", "--out", tmp_path / "x", "--kind", "drop", "--rate", 1, "--unlabeled", 4,
                    "--ignore-index", 4, "--truth", tmp_path / "x.csv")
    assert result.exit_code == 2 and "also an ignored value" in result.stderr


def test_boundary_on_the_fixtures(tmp_path, classes_file):
    def run(name, seed, *extra):
        ok(invoke(FIXTURES / "masks", "--out", tmp_path / name, "--kind", "boundary", "--rate", 0.5,
                  "--seed", seed, "--truth", tmp_path / f"{name}.csv", "--classes-file", classes_file, *extra))
        return {p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*.png")}

    first, again = run("a", 5), run("b", 5)
    assert first == again
    rows = truth_rows(tmp_path / "a.csv")
    changed = {i for i, row in rows.items() if row["is_error"] == "1"}
    assert len(changed) == 6
    originals = fixture_labels()
    for image, row in rows.items():
        assert row["kind"] in ("boundary", "")
        new = read_mask(MaskFile(image, tmp_path / "a" / f"{image}.png"))
        assert (image in changed) == (not np.array_equal(new, originals[image]))
        if image in changed:
            cls = CLASSES.index(row["classes"])
            moved = new != originals[image]
            assert ((new == cls) | (originals[image] == cls))[moved].all()  # only the chosen class's boundary moves
    assert run("c", 5, "--sigma", "2", "--correlation", "5") != first


@pytest.mark.parametrize("args, message", [
    (["--correlation", "0"], "--correlation must be > 0"),
    (["--fill", "bogus"], "bogus"),
])
def test_boundary_bad_options(tmp_path, args, message):
    result = invoke(FIXTURES / "masks", "--out", tmp_path / "n", "--kind", "boundary", "--rate", "0.5",
                    "--truth", tmp_path / "t.csv", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr or message in result.output


def test_parse_sigma():
    assert parse_sigma("3") == Sigma(3.0, False)
    assert parse_sigma("10%") == Sigma(0.1, True)
    assert parse_sigma("10%").pixels(20, 40) == pytest.approx(3.0)
    for bad in ("0", "-1", "x", "%", "nan"):
        with pytest.raises(InputError, match="--sigma"):
            parse_sigma(bad)


def test_resolve_classes():
    assert resolve_classes(["car", "1", "car"], CLASSES) == [CAR, SKY]
    assert resolve_classes(["2", "4"], None) == [2, 4]
    with pytest.raises(InputError, match="unknown class 'bus'.*unlabeled, sky"):
        resolve_classes(["bus"], CLASSES)
    with pytest.raises(InputError, match="needs --classes-file"):
        resolve_classes(["car"], None)
    with pytest.raises(InputError, match="class 7 is out of range"):
        resolve_classes(["7"], CLASSES)


# --- the command: copies, truth, determinism -----------------------------------------------


def test_drop_on_the_fixtures(tmp_path, classes_file):
    out, truth = tmp_path / "noisy", tmp_path / "truth.csv"
    result = ok(invoke(FIXTURES / "masks", "--out", out, "--kind", "drop", "--rate", 0.25, "--classes", "car",
                       "--classes-file", classes_file, "--seed", 3, "--truth", truth))
    assert "changed 3 of 12 image(s)" in result.stderr
    rows = truth_rows(truth)
    assert list(rows) == sorted(rows) and len(rows) == 12
    assert list(csv.reader(open(truth)))[0] == ["image", "is_error", "kind", "classes"]
    changed = {image for image, row in rows.items() if row["is_error"] == "1"}
    assert len(changed) == 3
    assert all(rows[i]["kind"] == "drop" and rows[i]["classes"] == "car" for i in changed)
    assert all(rows[i]["kind"] == rows[i]["classes"] == "" for i in set(rows) - changed)
    originals = fixture_labels()
    for mask in find_masks(FIXTURES / "masks"):
        copy = out / mask.path.relative_to(FIXTURES / "masks")
        if mask.image_id in changed:
            new = read_mask(MaskFile(mask.image_id, copy))
            np.testing.assert_array_equal(new, drop(originals[mask.image_id], CAR, UNLABELED))
            with Image.open(mask.path) as a, Image.open(copy) as b:
                assert b.mode == a.mode == "P"
                assert b.getpalette() == a.getpalette()
        else:
            assert copy.read_bytes() == mask.path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.txt", "noisy", "truth.csv"]  # no temporaries


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    def run(name, seed):
        ok(invoke(FIXTURES / "masks", "--out", tmp_path / name, "--kind", "shift", "--rate", 0.5,
                  "--seed", seed, "--truth", tmp_path / f"{name}.csv", "--sigma", "20%"))
        files = {p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*.png")}
        return files, (tmp_path / f"{name}.csv").read_bytes()

    first, again, other = run("a", 7), run("b", 7), run("c", 8)
    assert first == again
    assert first[1] != other[1]
    rows = truth_rows(tmp_path / "a.csv")
    assert sum(row["is_error"] == "1" for row in rows.values()) == 6
    for row in rows.values():
        assert row["kind"] in ("shift", "") and row["classes"] in ("", "1", "2", "3", "4")


def test_swap_only_where_both_classes_occur(tmp_path, classes_file):
    originals = fixture_labels()
    both = {i for i, lab in originals.items() if (lab == SKY).any() and (lab == CAR).any()}
    result = ok(invoke(FIXTURES / "masks", "--out", tmp_path / "n", "--kind", "swap", "--rate", 1.0,
                       "--classes", "car,sky", "--classes-file", classes_file, "--truth", tmp_path / "t.csv"))
    rows = truth_rows(tmp_path / "t.csv")
    changed = {i for i, row in rows.items() if row["is_error"] == "1"}
    assert changed == both
    assert all(rows[i]["classes"] == "car;sky" for i in changed)  # in the order of --classes
    for image in changed:
        new = read_mask(MaskFile(image, tmp_path / "n" / f"{image}.png"))
        np.testing.assert_array_equal(new, swap(originals[image], SKY, CAR))
    if len(both) < 12:
        assert f"only {len(both)} of 12 image(s) can take a swap error" in result.stderr


def test_ignored_pixels_never_change(tmp_path):
    labels = {f"img{n}": blocky_labels(np.random.default_rng(n)) for n in range(6)}
    for lab in labels.values():
        lab[:2] = 255
        lab[:, -2:] = 255
    for image_id, lab in labels.items():
        write_mask(tmp_path / "m" / f"{image_id}.png", lab, "L")
    for kind in ("drop", "shift", "boundary"):
        sigma = "3" if kind == "boundary" else "40%"
        ok(invoke(tmp_path / "m", "--out", tmp_path / kind, "--kind", kind, "--rate", 1, "--sigma", sigma,
                  "--truth", tmp_path / f"{kind}.csv"))
        for image_id, lab in labels.items():
            new = np.asarray(Image.open(tmp_path / kind / f"{image_id}.png"))
            assert (new[lab == 255] == 255).all()
            if kind == "boundary":  # a boundary with the ignored pixels that moves inward hands pixels to them
                became = np.argwhere((new == 255) & (lab != 255))
                keep = np.argwhere(lab == 255)
                assert all(np.abs(keep - p).max(1).min() <= 3 * 3 + 2 for p in became)
            else:
                assert not ((new == 255) & (lab != 255)).any()


@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_changed_masks_keep_their_mode(tmp_path, mode):
    lab = blocky_labels(np.random.default_rng(0))
    lab[lab == 4] = 300 if mode == "I;16" else 4
    write_mask(tmp_path / "m" / "a.png", lab, mode)
    ok(invoke(tmp_path / "m", "--out", tmp_path / "n", "--kind", "drop", "--rate", 1, "--classes", "3",
              "--truth", tmp_path / "t.csv"))
    with Image.open(tmp_path / "n" / "a.png") as img:
        assert img.mode == mode
        np.testing.assert_array_equal(np.asarray(img), drop(lab, 3, 0))


def test_rgb_masks_recolour_only_changed_pixels(tmp_path):
    import json

    colours = [[0, 0, 0], [70, 130, 180], [70, 70, 70], [128, 64, 128], [0, 0, 142]]
    palette = tmp_path / "palette.json"
    palette.write_text(json.dumps(colours))
    lab = blocky_labels(np.random.default_rng(1))
    rgba = np.zeros(lab.shape + (4,), np.uint8)
    rgba[..., :3] = np.array(colours, np.uint8)[lab]
    rgba[..., 3] = 200
    (tmp_path / "m").mkdir()
    Image.fromarray(rgba).save(tmp_path / "m" / "a.png")
    ok(invoke(tmp_path / "m", "--out", tmp_path / "n", "--kind", "swap", "--rate", 1, "--classes", "1,2",
              "--palette", palette, "--truth", tmp_path / "t.csv"))
    with Image.open(tmp_path / "n" / "a.png") as img:
        assert img.mode == "RGBA"
        new = np.asarray(img)
    assert (new[..., 3] == 200).all()
    np.testing.assert_array_equal(new[..., :3], np.array(colours, np.uint8)[swap(lab, 1, 2)])


def test_nested_ids_and_mask_suffix_keep_file_names(tmp_path):
    rng = np.random.default_rng(2)
    for name in ("city/a_gtFine_labelIds", "city/b_gtFine_labelIds", "other/c_gtFine_labelIds"):
        write_mask(tmp_path / "m" / f"{name}.png", blocky_labels(rng), "P")
    write_mask(tmp_path / "m" / "city" / "a_gtFine_color.png", blocky_labels(rng), "P")  # not a mask
    ok(invoke(tmp_path / "m", "--out", tmp_path / "n", "--kind", "drop", "--rate", 1, "--mask-suffix",
              "_gtFine_labelIds", "--truth", tmp_path / "t.csv"))
    written = sorted(p.relative_to(tmp_path / "n").as_posix() for p in (tmp_path / "n").rglob("*.png"))
    assert written == ["city/a_gtFine_labelIds.png", "city/b_gtFine_labelIds.png", "other/c_gtFine_labelIds.png"]
    assert sorted(truth_rows(tmp_path / "t.csv")) == ["city/a", "city/b", "other/c"]


def test_rate_counts_all_images_and_min_pixels_limits_eligibility(tmp_path):
    masks = {}
    for n in range(10):
        lab = np.full((16, 16), ROAD, np.int32)
        lab[: n + 1, :1] = CAR  # image n has n + 1 car pixels
        masks[f"i{n}"] = lab
        write_mask(tmp_path / "m" / f"i{n}.png", lab, "L")
    run = corrupt_masks(tmp_path / "m", tmp_path / "n", kind="drop", rate=0.3, classes=[CAR], min_pixels=9,
                        truth=tmp_path / "t.csv")
    assert (run.images, run.eligible, run.target) == (10, 2, 3)
    assert sorted(run.changed) == ["i8", "i9"]
    run = corrupt_masks(tmp_path / "m", tmp_path / "n2", kind="drop", rate=0.3, classes=[CAR])
    assert len(run.changed) == 3 and run.eligible == 10
    assert not (tmp_path / "n2").joinpath("truth.csv").exists()


# --- bad input: exit 2, nothing written --------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--classes", "bus", "--classes-file", FIXTURES / "classes.txt"], "unknown class 'bus'"),
    (["--classes", "car"], "needs --classes-file"),
    (["--rate", "1.5"], "--rate must be between 0 and 1"),
    (["--classes", "0"], "class 0 cannot be corrupted: it is the unlabeled class"),
    (["--sigma", "-2"], "--sigma must be > 0"),
    (["--unlabeled", "255"], "also an ignored value"),
])
def test_bad_options_exit_2(tmp_path, args, message, classes_file):
    args = [classes_file if a == FIXTURES / "classes.txt" else a for a in args]
    base = ["--kind", "drop", "--rate", "0.5", "--truth", tmp_path / "t.csv"]
    if "--rate" in args:
        base = base[:2] + base[4:]
    result = invoke(FIXTURES / "masks", "--out", tmp_path / "n", *base, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["classes.txt"]


def test_swap_needs_two_classes(tmp_path, classes_file):
    result = invoke(FIXTURES / "masks", "--out", tmp_path / "n", "--kind", "swap", "--rate", 1, "--classes", "car",
                    "--classes-file", classes_file, "--truth", tmp_path / "t.csv")
    assert result.exit_code == 2 and "swap needs at least two classes" in result.stderr


def test_existing_output_is_refused(tmp_path):
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "keep.png").write_bytes(b"x")
    result = invoke(FIXTURES / "masks", "--out", tmp_path / "n", "--kind", "drop", "--rate", 1,
                    "--truth", tmp_path / "t.csv")
    assert result.exit_code == 2 and "already exists and is not empty" in result.stderr
    assert os.listdir(tmp_path / "n") == ["keep.png"] and not (tmp_path / "t.csv").exists()
    # An empty directory is fine.
    (tmp_path / "n" / "keep.png").unlink()
    ok(invoke(FIXTURES / "masks", "--out", tmp_path / "n", "--kind", "drop", "--rate", 1, "--truth", tmp_path / "t.csv"))
    assert len(list((tmp_path / "n").rglob("*.png"))) == 12


def test_output_inside_the_masks_is_refused(tmp_path):
    shutil.copytree(FIXTURES / "masks", tmp_path / "m")
    result = invoke(tmp_path / "m", "--out", tmp_path / "m" / "noisy", "--kind", "drop", "--rate", 1,
                    "--truth", tmp_path / "t.csv")
    assert result.exit_code == 2 and "inside the masks directory" in result.stderr


def test_a_class_that_does_not_fit_the_png_mode_leaves_nothing(tmp_path):
    write_mask(tmp_path / "m" / "a.png", blocky_labels(np.random.default_rng(3)), "L")
    result = invoke(tmp_path / "m", "--out", tmp_path / "n", "--kind", "drop", "--rate", 1, "--classes", "2",
                    "--unlabeled", 300, "--truth", tmp_path / "t.csv")
    assert result.exit_code == 2
    assert "class 300 does not fit a mode L PNG" in result.stderr and "a.png" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no output directory, no temporary, no truth


def test_coarse_redraws_a_class_on_square_blocks():
    from segaudit.evaluation.corrupt import coarsen

    labels = np.zeros((40, 40), np.int32)
    labels[5:23, 7:30] = 3  # a rectangle off the block grid
    labels[0, 0] = 255
    out = coarsen(labels, 3, Sigma(8, relative=False), labels == 255)
    inside = out == 3
    # Every 8x8 block is all class 3 or none of it; ignored pixels never change.
    blocks = inside.reshape(5, 8, 5, 8)
    assert np.all(blocks.all(axis=(1, 3)) | ~blocks.any(axis=(1, 3)))
    assert out[0, 0] == 255
    # A block takes the class where it covered at least half of it.
    covered = (labels == 3).reshape(5, 8, 5, 8).mean(axis=(1, 3)) >= 0.5
    assert np.array_equal(blocks.all(axis=(1, 3)), covered)
    assert set(np.unique(out[(labels == 3) & ~inside])) <= {0}


@pytest.mark.parametrize("kind", ["coarse", "object_drop", "object_class", "object_outline", "blob"])
def test_new_kinds_plant_errors_through_the_command(tmp_path, kind):
    truth = tmp_path / "truth.csv"
    ok(invoke(FIXTURES / "masks", "--out", tmp_path / "out", "--kind", kind, "--rate", "0.5", "--truth", truth,
              *(["--classes", "2,4"] if kind == "coarse" else [])))
    rows = truth_rows(truth)
    changed = [image for image, row in rows.items() if row["is_error"] == "1"]
    assert changed and all(rows[i]["kind"] == kind for i in changed)
    for image in changed:
        before = np.asarray(Image.open(FIXTURES / "masks" / f"{image}.png"))
        after = np.asarray(Image.open(tmp_path / "out" / f"{image}.png"))
        assert (before != after).any()


def test_object_kinds_refuse_classes(tmp_path):
    result = invoke(FIXTURES / "masks", "--out", tmp_path / "out", "--kind", "object_drop", "--rate", "0.5",
                    "--truth", tmp_path / "t.csv", "--classes", "1")
    assert result.exit_code == 2 and "--classes does not apply to object_drop" in result.output
    assert not (tmp_path / "out").exists()
