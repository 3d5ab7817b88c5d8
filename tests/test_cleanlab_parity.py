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


# --- every documented cleanlab argument: cleanlab's numbers, or cleanlab's exception ----

def _outcome(function, labels, pred_probs, **kwargs):
    """(result, exception, whether a UserWarning was issued) of one call."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result, error = function(labels, pred_probs, **kwargs), None
        except Exception as exc:  # noqa: BLE001 (what is raised is what the test compares)
            result, error = None, exc
    return result, error, any(issubclass(w.category, UserWarning) for w in caught)


def assert_parity(ours_function, theirs_function, labels, pred_probs, **kwargs):
    """segaudit's drop-in and cleanlab's function on the same arguments: both return the
    same numbers (and both warn, or neither), or both raise and segaudit's exception is an
    instance of cleanlab's type. Returns segaudit's exception, if any."""
    their_kwargs = {"verbose": False, "n_jobs": 1, **kwargs}  # n_jobs=None would start a process pool
    theirs, their_error, they_warn = _outcome(theirs_function, labels, pred_probs, **their_kwargs)
    ours, our_error, we_warn = _outcome(ours_function, labels, pred_probs, **kwargs)
    if their_error is not None:
        assert our_error is not None, f"cleanlab raises {their_error!r}, segaudit returns"
        assert isinstance(our_error, type(their_error)), f"cleanlab raises {their_error!r}, segaudit {our_error!r}"
        assert isinstance(our_error, (ValueError, TypeError)), f"not a deliberate refusal: {our_error!r}"
        return our_error
    assert our_error is None, f"cleanlab returns, segaudit raises {our_error!r}"
    assert we_warn == they_warn
    if isinstance(theirs, tuple):  # get_label_quality_scores: (image scores, pixel scores)
        np.testing.assert_allclose(ours[0], theirs[0], rtol=0, atol=1e-9)
        assert ours[1].dtype == theirs[1].dtype
        np.testing.assert_array_equal(ours[1], theirs[1])
    else:
        assert ours.dtype == theirs.dtype == np.bool_
        np.testing.assert_array_equal(ours, theirs)
    return None


def parity_dataset(dtype="float32"):
    """Three 8x8 images, K = 4: every downsample in 1, 2, 4, 8 divides them."""
    _, pred_probs = random_dataset(21, 3, 4, 8, 8, dtype)
    return noisy_labels(21, pred_probs, flip=0.3), pred_probs


SOFTMIN = (get_label_quality_scores, cleanlab_rank.get_label_quality_scores, {"method": "softmin"})
NUM_PIXEL_ISSUES = (get_label_quality_scores, cleanlab_rank.get_label_quality_scores, {"method": "num_pixel_issues"})
FIND = (find_label_issues, cleanlab_filter.find_label_issues, {})
CALLS = {"softmin": SOFTMIN, "num_pixel_issues": NUM_PIXEL_ISSUES, "find_label_issues": FIND}

# (argument, value, the calls it is given to, True where cleanlab accepts it).
ARGUMENT_GROUPS = [
    # method (get_label_quality_scores): cleanlab's two; anything else is an Exception.
    ("method", ("softmin", "num_pixel_issues"), ("softmin",), True),
    ("method", ("invalid_method", None, "SOFTMIN"), ("softmin",), False),
    # temperature: softmin's; num_pixel_issues ignores it whatever it is.
    ("temperature", (0.01, 0.1, 0.7, 3, True), ("softmin",), True),
    ("temperature", (0, 0.0, None, "0.1", [0.1]), ("softmin",), False),
    ("temperature", (0, None, "a", -1.0, float("nan")), ("num_pixel_issues",), True),
    # batch_size: None or > 0 everywhere; a whole number where cleanlab batches images.
    ("batch_size", (None, 1, 7, 10**9, True, np.int64(64)), tuple(CALLS), True),
    ("batch_size", (0, -1, -5, False, -2.5, "10", [4]), tuple(CALLS), False),
    ("batch_size", (2.5, float("nan"), float("inf")), ("softmin",), True),
    ("batch_size", (2.5, 64.0, float("nan"), float("inf")), ("num_pixel_issues", "find_label_issues"), False),
    # n_jobs: checked by cleanlab's process pool where it has one; softmin ignores it.
    ("n_jobs", (1, 1.0, True, np.int64(1)), tuple(CALLS), True),
    ("n_jobs", (0, -1, 2.5, "a", None), ("softmin",), True),
    ("n_jobs", (0, -1, False, 0.5, 2.5, float("nan"), "a", "2"), ("num_pixel_issues", "find_label_issues"), False),
    # verbose: anything (segaudit prints nothing).
    ("verbose", (False, True, None, "yes"), tuple(CALLS), True),
    # downsample: cleanlab's cells for confident learning; softmin warns and ignores it.
    ("downsample", (1, 2, 4, 8, 1.0, True, np.int64(2)), ("num_pixel_issues", "find_label_issues"), True),
    ("downsample", (0, 0.0, -2, -3, 3, 5, 16, 2.0, -2.0, 1.5, float("nan"), float("inf"), None, "2", False),
     ("num_pixel_issues", "find_label_issues"), False),
    ("downsample", (1, 2, 0, -2, 3, 2.0, None, "2", True), ("softmin",), True),
]
ARGUMENT_CASES = [pytest.param(call, argument, value, accepted, id=f"{call}-{argument}={value!r}")
                  for argument, values, calls, accepted in ARGUMENT_GROUPS for call in calls for value in values]


@pytest.mark.parametrize("call, argument, value, accepted", ARGUMENT_CASES)
def test_every_argument_is_checked_as_cleanlab_checks_it(call, argument, value, accepted):
    ours, theirs, fixed = CALLS[call]
    labels, pred_probs = parity_dataset()
    refused = assert_parity(ours, theirs, labels, pred_probs, **{**fixed, argument: value})
    assert (refused is None) == accepted
    if refused is not None and argument != "method":  # the message names what is wrong
        assert argument in str(refused) or "Batch size" in str(refused) or "Height 8 and width 8" in str(refused)


def test_the_messages_of_cleanlabs_own_tests():
    # cleanlab's tests/test_segmentation.py matches these texts.
    labels, pred_probs = random_dataset(0, 3, 2, 10, 10, "float64")
    with pytest.raises(ValueError, match="Height 10 and width 10 not divisible by downsample value of 4. Set kwarg"):
        get_label_quality_scores(labels, pred_probs, method="num_pixel_issues", downsample=4)
    for batch_size in (-1, 0):
        with pytest.raises(ValueError, match=f"Batch size must be greater than 0, got {batch_size}"):
            get_label_quality_scores(labels, pred_probs, method="num_pixel_issues", downsample=1, batch_size=batch_size)
    with pytest.raises(Exception, match="'invalid_method' is not available; use one of .*softmin"):
        get_label_quality_scores(labels, pred_probs, method="invalid_method")


def test_a_process_count_above_one_is_valid():
    # cleanlab starts a pool of 2 processes; segaudit takes threads= instead and gives its flags.
    labels, pred_probs = parity_dataset()
    assert_parity(find_label_issues, cleanlab_filter.find_label_issues, labels, pred_probs, n_jobs=2)


def _bad_labels(kind):
    labels, pred_probs = parity_dataset()
    if kind == "class K":
        labels[1, 2, 3] = 4
    elif kind == "float":
        labels = labels.astype(np.float64)
    elif kind == "2-D":
        labels = labels[0]
    elif kind == "3-D pred_probs":
        pred_probs = pred_probs[0]
    elif kind == "other height":
        labels = labels[:, :4]
    elif kind == "other N":
        labels = labels[:2]
    return labels, pred_probs


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("kind", ["class K", "float", "2-D", "3-D pred_probs", "other height", "other N"])
def test_labels_and_pred_probs_are_checked_as_cleanlab_checks_them(call, kind):
    ours, theirs, fixed = CALLS[call]
    labels, pred_probs = _bad_labels(kind)
    if kind == "float" and call != "softmin":
        # cleanlab's confident learning casts float labels with astype(int); segaudit
        # refuses them everywhere, with softmin's IndexError (and a ValueError).
        assert theirs(labels, pred_probs, n_jobs=1, verbose=False, **fixed) is not None
        with pytest.raises(IndexError, match="integer class indices, not float64") as caught:
            ours(labels, pred_probs, **fixed)
        assert isinstance(caught.value, ValueError)
        return
    error = assert_parity(ours, theirs, labels, pred_probs, **fixed)
    assert error is not None
    assert "labels" in str(error) or "pred_probs" in str(error)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argument=st.sampled_from(["batch_size", "n_jobs", "downsample", "temperature"]),
       call=st.sampled_from(list(CALLS)),
       value=st.one_of(st.none(), st.booleans(), st.integers(-3, 9), st.text(max_size=2),
                       st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 4.0, -2.0, float("nan"), float("inf"), -float("inf")]),
                       st.floats(1e-2, 1e2)))
def test_any_value_of_an_argument_gives_cleanlabs_numbers_or_its_exception(argument, call, value):
    """Property over odd values: cleanlab's result, or cleanlab's exception type. The only
    values cleanlab accepts and segaudit refuses are the temperatures it cannot use."""
    if argument == "n_jobs" and call != "softmin" and isinstance(value, int) and value >= 2:
        value = 1  # a real process pool per example is too slow here (see the test above)
    if argument == "temperature" and call == "find_label_issues":
        argument = "n_jobs"  # find_label_issues has no temperature (a TypeError, unlike cleanlab: see docs)
    ours, theirs, fixed = CALLS[call]
    labels, pred_probs = parity_dataset("float64")
    kwargs = {**fixed, argument: value}
    try:
        assert_parity(ours, theirs, labels, pred_probs, **kwargs)
    except AssertionError as failure:
        if not (argument == "temperature" and call == "softmin" and "segaudit raises" in str(failure)):
            raise
        # cleanlab computes with a negative, infinite or NaN temperature; segaudit refuses.
        assert not (value > 0 and np.isfinite(value)), failure
        with pytest.raises(ValueError, match="temperature must be a positive number"):
            ours(labels, pred_probs, **kwargs)


# --- what segaudit refuses that cleanlab scores, and how it says so ----------------------

@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("kind, message", [
    ("scaled", "probabilities summing to 1.5, not 1"),
    ("logits", "negative probability -1.3"),  # log-probabilities: the first pixel fails on a negative value
    ("nan", "non-finite value nan"),
    ("negative", "negative probability"),
])
def test_unnormalised_pred_probs_are_refused_in_the_apis_words(call, kind, message):
    ours, theirs, fixed = CALLS[call]
    labels, pred_probs = parity_dataset("float64")
    if kind == "scaled":
        pred_probs = pred_probs * 1.5
    elif kind == "logits":
        pred_probs = np.log(pred_probs + 1e-3) + 2.0
    elif kind == "nan":
        pred_probs = pred_probs.copy()
        pred_probs[1, :, 0, 0] = np.nan
    else:
        pred_probs = pred_probs - 0.05
    theirs(labels, pred_probs, n_jobs=1, verbose=False, **fixed)  # cleanlab scores them as given
    with pytest.raises(ValueError, match=message) as caught:
        ours(labels, pred_probs, **fixed)
    text = str(caught.value)
    assert text.startswith("pred_probs/") and " at row " in text  # the image and the pixel
    assert "normalise each pixel's K values to sum to 1" in text and "score_arrays(labels, logits, logits=True)" in text
    assert "--" not in text and "--" not in caught.value.cli_message


def test_channels_last_pred_probs_are_refused_with_the_numpy_fix():
    # (N, H, W, K) probabilities read as (N, K, H, W): K = 16, H = 24, W = 5 (labels that
    # match that reading are contrived, but the advice must be the drop-ins' own).
    pred_probs = np.random.default_rng(0).dirichlet(np.ones(5), size=(2, 16, 24)).astype(np.float32)
    labels = np.zeros((2, 24, 5), int)
    with pytest.raises(ValueError, match=r"channels-last, \(H, W, K\): move the class axis first: "
                                         r"np\.moveaxis\(pred_probs, -1, 1\)\)$"):
        get_label_quality_scores(labels, pred_probs)


@pytest.mark.parametrize("call", list(CALLS))
def test_negative_labels_are_refused_where_cleanlab_reads_them_from_the_end(call):
    ours, theirs, fixed = CALLS[call]
    labels, pred_probs = parity_dataset()
    labels[0, 0, 0] = -1
    theirs(labels, pred_probs, n_jobs=1, verbose=False, **fixed)
    with pytest.raises(IndexError, match=r"class indices 0\.\.3 \(K=4\); got -1") as caught:
        ours(labels, pred_probs, **fixed)
    assert isinstance(caught.value, ValueError)
