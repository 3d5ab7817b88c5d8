"""The same numbers and flags as cleanlab where the methods are the same."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

cleanlab_rank = pytest.importorskip("cleanlab.segmentation.rank")

from segaudit import find_label_issues, get_label_quality_scores


def random_dataset(seed, n_images, n_classes, height, width, dtype):
    rng = np.random.default_rng(seed)
    raw = rng.gamma(0.3, size=(n_images, n_classes, height, width))
    pred_probs = (raw / raw.sum(axis=1, keepdims=True)).astype(dtype)
    labels = rng.integers(0, n_classes, size=(n_images, height, width))
    return labels, pred_probs


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(5, 3, 16, 20), (3, 19, 33, 17), (2, 2, 1, 1)])
@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5])
def test_softmin_matches_cleanlab(dtype, shape, temperature):
    labels, pred_probs = random_dataset(11, *shape, dtype)
    theirs, their_pixels = cleanlab_rank.get_label_quality_scores(
        labels, pred_probs, method="softmin", temperature=temperature, verbose=False
    )
    ours, our_pixels = get_label_quality_scores(labels, pred_probs, method="softmin", temperature=temperature)
    assert ours.dtype == theirs.dtype == np.float64
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(our_pixels, their_pixels)


def test_drop_in_keeps_cleanlab_defaults():
    labels, pred_probs = random_dataset(3, 4, 5, 8, 8, "float32")
    theirs, _ = cleanlab_rank.get_label_quality_scores(labels, pred_probs, verbose=False)
    ours, _ = get_label_quality_scores(labels, pred_probs)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


# --- confident learning: find_label_issues and num_pixel_issues ------------------------

cleanlab_filter = pytest.importorskip("cleanlab.segmentation.filter")


def noisy_labels(seed, pred_probs, flip=0.25, cell=1):
    """The argmax, with a share of labels replaced by random classes; constant over
    cell x cell blocks when ``cell`` > 1."""
    rng = np.random.default_rng(seed + 1000)
    n_images, n_classes, height, width = pred_probs.shape
    labels = np.where(rng.random((n_images, height, width)) < flip,
                      rng.integers(0, n_classes, size=(n_images, height, width)), pred_probs.argmax(axis=1))
    if cell > 1:
        labels = np.repeat(np.repeat(labels[:, ::cell, ::cell], cell, axis=1), cell, axis=2)
    return labels


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("downsample", [1, 2, 4])
@pytest.mark.parametrize("seed, shape, cell", [
    (0, (4, 5, 16, 24), 1),  # cells of mixed labels: cleanlab's rounded mean label
    (1, (3, 19, 8, 12), 1),
    (2, (5, 3, 12, 8), 4),
    (3, (2, 7, 20, 16), 2),
])
def test_find_label_issues_matches_cleanlab(dtype, downsample, seed, shape, cell):
    _, pred_probs = random_dataset(seed, *shape, dtype)
    labels = noisy_labels(seed, pred_probs, cell=cell)
    theirs = cleanlab_filter.find_label_issues(labels, pred_probs, downsample=downsample, n_jobs=1, verbose=False)
    ours = find_label_issues(labels, pred_probs, downsample=downsample)
    assert ours.dtype == theirs.dtype == np.bool_ and ours.shape == theirs.shape
    assert theirs.sum() > 0
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("downsample", [1, 4])
def test_find_label_issues_without_room_for_the_cell_cache(downsample, monkeypatch):
    # With no disk for the cache, the passes pool the arrays again: the same flags.
    import contextlib

    import segaudit.methods.clc

    _, pred_probs = random_dataset(0, 4, 5, 16, 24, "float32")
    labels = noisy_labels(0, pred_probs)
    cached = find_label_issues(labels, pred_probs, downsample=downsample)
    monkeypatch.setattr(segaudit.core.cells, "cell_cache", lambda *args, **kwargs: contextlib.nullcontext(None))
    uncached = find_label_issues(labels, pred_probs, downsample=downsample)
    theirs = cleanlab_filter.find_label_issues(labels, pred_probs, downsample=downsample, n_jobs=1, verbose=False)
    assert cached.sum() > 0
    np.testing.assert_array_equal(uncached, cached)
    np.testing.assert_array_equal(cached, theirs)


def test_cells_take_cleanlabs_rounded_mean_label():
    # One 2x2 cell of classes 0 and 4: cleanlab labels the cell 2 (the rounded mean), a
    # class the model gives 0.02, so the cell is an issue and its pixels are flagged
    # wherever their own argmax is not their own label.
    n_classes = 5
    pred_probs = np.full((2, n_classes, 2, 4), 0.02, np.float64)
    pred_probs[:, 0] = 0.92
    labels = np.zeros((2, 2, 4), np.int64)
    labels[0, :, :2] = [[0, 4], [4, 0]]
    theirs = cleanlab_filter.find_label_issues(labels, pred_probs, downsample=2, n_jobs=1, verbose=False)
    ours = find_label_issues(labels, pred_probs, downsample=2)
    np.testing.assert_array_equal(ours, theirs)
    assert ours[0, 1, 0] and ours[0, 0, 1] and not ours[0, 0, 0]


def test_ties_at_the_cut_go_to_the_earlier_pixel():
    import naive

    # Image 1 repeats image 0, and here the n-th lowest s is one of such a pair: the
    # pixel of image 0 is flagged, its twin in image 1 is not (cleanlab's choice between
    # the two depends on numpy's argsort).
    _, pred_probs = random_dataset(4, 3, 4, 10, 12, "float32")
    labels = noisy_labels(4, pred_probs)
    pred_probs[1], labels[1] = pred_probs[0], labels[0]
    ours = find_label_issues(labels, pred_probs)
    assert np.argwhere(ours[0] != ours[1]).tolist() == [[2, 6]] and ours[0, 2, 6]
    np.testing.assert_array_equal(ours, np.stack(naive.clc_flags(list(zip(labels, pred_probs)), 1, ignore=())))
    # float16 input (values repeat often), and dataset order still.
    _, pred_probs = random_dataset(7, 4, 4, 10, 12, "float16")
    labels = noisy_labels(7, pred_probs)
    want = naive.clc_flags(list(zip(labels, pred_probs)), 1, ignore=())
    np.testing.assert_array_equal(find_label_issues(labels, pred_probs), np.stack(want))


def test_find_label_issues_refuses_what_cleanlab_refuses():
    _, pred_probs = random_dataset(0, 2, 3, 6, 10, "float32")
    labels = noisy_labels(0, pred_probs)
    with pytest.raises(ValueError, match="not divisible by downsample value of 4"):
        find_label_issues(labels, pred_probs, downsample=4)
    labels[0, 0, 0] = 3
    with pytest.raises(ValueError, match="class indices 0..2"):
        find_label_issues(labels, pred_probs)


def test_no_issue_gives_an_all_false_mask():
    _, pred_probs = random_dataset(4, 2, 3, 4, 4, "float32")
    issues = find_label_issues(pred_probs.argmax(axis=1), pred_probs)
    assert issues.shape == (2, 4, 4) and not issues.any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("downsample", [1, 4])
def test_num_pixel_issues_matches_cleanlab(dtype, downsample):
    _, pred_probs = random_dataset(5, 3, 6, 16, 12, dtype)
    labels = noisy_labels(5, pred_probs)
    theirs = cleanlab_rank.get_label_quality_scores(labels, pred_probs, method="num_pixel_issues",
                                                     downsample=downsample, n_jobs=1, verbose=False)
    ours = get_label_quality_scores(labels, pred_probs, method="num_pixel_issues", downsample=downsample)
    assert (theirs[0] < 1).any()
    np.testing.assert_array_equal(ours[0], theirs[0])
    assert ours[1].dtype == theirs[1].dtype
    np.testing.assert_array_equal(ours[1], theirs[1])


def test_unknown_method_is_refused_clearly():
    labels, pred_probs = random_dataset(3, 1, 3, 4, 4, "float32")
    with pytest.raises(ValueError, match="num_pixel_issues"):
        get_label_quality_scores(labels, pred_probs, method="normalized_margin")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_images=st.integers(1, 3), n_classes=st.integers(2, 7),
       cell_rows=st.integers(1, 5), cell_cols=st.integers(1, 5), factor=st.sampled_from([1, 2, 3]),
       dtype=st.sampled_from(["float16", "float32", "float64"]), flip=st.sampled_from([0.0, 0.3, 1.0]))
def test_find_label_issues_equals_the_reference(seed, n_images, n_classes, cell_rows, cell_cols, factor, dtype, flip):
    """Against the plain-numpy confident learning (ties in dataset order), with labels
    constant over each cell, where cleanlab's rounded mean is the majority label."""
    import naive

    _, pred_probs = random_dataset(seed % 2**31, n_images, n_classes, cell_rows * factor, cell_cols * factor, dtype)
    labels = noisy_labels(seed % 2**31, pred_probs, flip=flip, cell=factor)
    ours = find_label_issues(labels, pred_probs, downsample=factor)
    want = naive.clc_flags(list(zip(labels, pred_probs)), factor, ignore=())
    np.testing.assert_array_equal(ours, np.stack(want))


@pytest.mark.parametrize("downsample", [1, 2, 4])
def test_find_label_issues_holds_the_cells_in_memory_with_the_flags_of_a_disk_cache(downsample, monkeypatch):
    """In-memory arrays keep their cells in memory (no file round trip); a cache on disk
    (no room in memory) gives the same flags, and so does the store-like array API."""
    import segaudit.core.cells as cells

    _, pred_probs = random_dataset(1, 5, 6, 16, 24, "float32")
    labels = noisy_labels(1, pred_probs)
    kept = []
    real = cells.CellCache.__init__

    def record(self, directory, *args, **kwargs):
        kept.append(directory is None)
        real(self, directory, *args, **kwargs)

    monkeypatch.setattr(cells.CellCache, "__init__", record)
    in_memory = find_label_issues(labels, pred_probs, downsample=downsample)
    assert kept == [True]
    monkeypatch.setattr(cells, "MEMORY_SHARE", 0.0)
    on_disk = find_label_issues(labels, pred_probs, downsample=downsample)
    assert kept == [True, False]
    assert in_memory.sum() > 0
    np.testing.assert_array_equal(in_memory, on_disk)
    theirs = cleanlab_filter.find_label_issues(labels, pred_probs, downsample=downsample, n_jobs=1, verbose=False)
    np.testing.assert_array_equal(in_memory, theirs)


@pytest.mark.parametrize("downsample, same", [(1, True), (4, False)])
def test_issues_at_downsample_1_flags_what_cleanlab_flags_by_default(tmp_path, downsample, same):
    """The README and --help say so: `issues --downsample 1` gives cleanlab's default flags;
    the default 4 does not."""
    from PIL import Image
    from typer.testing import CliRunner

    from datasets import write_masks, write_store
    from segaudit.cli import app

    _, pred_probs = random_dataset(5, 6, 4, 24, 32, "float32")
    labels = noisy_labels(5, pred_probs, cell=1)
    ids = [f"im{i}" for i in range(len(labels))]
    write_masks(tmp_path / "masks", {i: lab.astype(np.uint8) for i, lab in zip(ids, labels)})
    write_store(tmp_path / "preds.zarr", dict(zip(ids, pred_probs)))
    result = CliRunner().invoke(app, ["issues", str(tmp_path / "masks"), str(tmp_path / "preds.zarr"), "--out",
                                      str(tmp_path / "iss"), "--downsample", str(downsample), "--top", str(len(ids)),
                                      "-q"])
    assert result.exit_code == 0, result.output
    ours = np.stack([np.array(Image.open(tmp_path / "iss" / f"{i}.png")) == 255 for i in ids])
    theirs = cleanlab_filter.find_label_issues(labels, pred_probs, n_jobs=1, verbose=False)  # its default downsample
    assert theirs.sum() > 0
    assert np.array_equal(ours, theirs) is same
