"""The in-memory API: score_arrays and the drop-in get_label_quality_scores."""

from __future__ import annotations

import numpy as np
import pytest
from naive import image_scores

from segaudit import InputError, get_label_quality_scores, score_arrays
from segaudit.methods import PER_IMAGE_METHODS as METHODS


def dataset(seed=0, n=4, k=6, h=9, w=11, dtype="float32"):
    rng = np.random.default_rng(seed)
    raw = rng.gamma(0.5, size=(n, k, h, w))
    probs = (raw / raw.sum(axis=1, keepdims=True)).astype(dtype)
    labels = rng.integers(0, k, size=(n, h, w))
    return labels, probs


@pytest.mark.parametrize("channels_last", [False, True])
def test_score_arrays_matches_reference(channels_last):
    labels, probs = dataset()
    labels[0, :2] = 255
    given = np.moveaxis(probs, 1, -1) if channels_last else probs
    results, pixels = score_arrays(labels, given, methods=METHODS, ignore_index=(255,),
                                   channels_last=channels_last, return_pixel_scores=True)
    for n, result in enumerate(results):
        expected = image_scores(labels[n], probs[n], ignore=(255,))
        assert result.image_id == str(n)
        for method in METHODS:
            assert result.scores[method] == pytest.approx(expected[method], rel=1e-12)
        np.testing.assert_array_equal(pixels[n], expected["s"])


def test_float16_input_is_scored_without_upcasting_by_the_caller():
    labels, probs = dataset(dtype="float16")
    ours, _ = get_label_quality_scores(labels, probs)
    reference = [image_scores(labels[n], probs[n])["softmin"] for n in range(len(labels))]
    np.testing.assert_allclose(ours, reference, rtol=1e-12)


@pytest.mark.parametrize(
    "labels_shape, probs_shape, message",
    [((2, 4, 4), (2, 3, 4, 5), "do not match"), ((4, 4), (1, 3, 4, 4), "must be")],
)
def test_shape_errors(labels_shape, probs_shape, message):
    with pytest.raises(InputError, match=message):
        score_arrays(np.zeros(labels_shape, int), np.full(probs_shape, 1 / 3))


def test_label_out_of_range_is_named():
    labels, probs = dataset(k=3)
    labels[1, 2, 3] = 7
    with pytest.raises(InputError, match=r"image 1: label values .*7 \(1 px\)"):
        score_arrays(labels, probs)


# --- every method, the dataset-wide clc and coco included ------------------------------


def blocky_dataset(seed, n=4, k=5, h=12, w=10, dtype="float32", ignore_value=None):
    """Labels mostly agreeing with the argmax, some flipped, optionally some ignored."""
    rng = np.random.default_rng(seed)
    raw = rng.gamma(0.4, size=(n, k, h, w))
    probs = (raw / raw.sum(axis=1, keepdims=True)).astype(dtype)
    labels = np.where(rng.random((n, h, w)) < 0.25, rng.integers(0, k, size=(n, h, w)), probs.argmax(axis=1))
    if ignore_value is not None:
        labels[rng.random((n, h, w)) < 0.1] = ignore_value
    return labels, probs


@pytest.mark.parametrize("factor", [1, 3])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_all_methods_equal_scoring_the_same_data_as_a_store(tmp_path, factor, dtype):
    from datasets import write_masks, write_store

    from segaudit import score
    from segaudit.methods import METHODS as ALL

    labels, probs = blocky_dataset(5, dtype=dtype, ignore_value=255)
    ids = [f"img{n}" for n in range(len(labels))]
    write_masks(tmp_path / "masks", {i: labels[n].astype(np.uint8) for n, i in enumerate(ids)})
    write_store(tmp_path / "preds.zarr", {i: probs[n] for n, i in enumerate(ids)}, row_chunk=3)
    want = {r.image_id: r for r in score(tmp_path / "masks", tmp_path / "preds.zarr", methods=ALL,
                                         downsample=factor).results}
    got, _ = score_arrays(labels, probs, methods=ALL, ignore_index=(255,), image_ids=ids, downsample=factor)
    assert [r.image_id for r in got] == ids  # input order, not ranked
    for result in got:
        expected = want[result.image_id]
        assert result.flagged_pixels == expected.flagged_pixels
        assert (result.pixels, result.low_pixels) == (expected.pixels, expected.low_pixels)
        for method in ALL:
            assert result.scores[method] == pytest.approx(expected.scores[method], rel=1e-12, nan_ok=True)


@pytest.mark.parametrize("factor", [1, 2, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_clc_flags_equal_the_reference(seed, factor):
    import naive

    labels, probs = blocky_dataset(seed, n=3, h=9, w=13, dtype="float16", ignore_value=255)
    results, _ = score_arrays(labels, probs, methods=("clc",), ignore_index=(255,), downsample=factor)
    flags = naive.clc_flags(list(zip(labels, probs)), factor)
    assert sum(f.sum() for f in flags) > 0
    for result, flag in zip(results, flags):
        assert result.flagged_pixels == int(flag.sum())
        assert result.scores["clc"] == pytest.approx(1 - flag.sum() / result.pixels, rel=1e-12)


def test_pixel_scores_with_dataset_methods_are_the_per_image_ones():
    labels, probs = blocky_dataset(2)
    _, alone = score_arrays(labels, probs, return_pixel_scores=True)
    results, pixels = score_arrays(labels, probs, methods=("coco", "clc", "softmin"), return_pixel_scores=True)
    np.testing.assert_array_equal(pixels, alone)
    assert all(r.flagged_pixels is not None and not np.isnan(r.scores["coco"]) for r in results)


def test_array_dataset_checks_ids_and_downsample():
    labels, probs = blocky_dataset(0, n=2)
    with pytest.raises(InputError, match="unique"):
        score_arrays(labels, probs, image_ids=["a", "a"])
    with pytest.raises(InputError, match="1 image ids for 2"):
        score_arrays(labels, probs, image_ids=["a"])
    with pytest.raises(InputError, match="downsample"):
        score_arrays(labels, probs, methods=("clc",), downsample=0)


@pytest.mark.parametrize("option, value, api, cli", [
    ("temperature", 0, "temperature must be a positive number, got 0", "--temperature must be"),
    ("temperature", None, "temperature must be a positive number, got None", "--temperature must be"),
    ("pixel_threshold", 1.5, "pixel_threshold must be between 0 and 1, got 1.5", "--pixel-threshold must be"),
    ("threads", 0, "threads must be a whole number >= 1, got 0", "--threads must be"),
    ("downsample", 0, "downsample must be a whole number >= 1, got 0", "--downsample must be"),
])
def test_option_errors_name_the_api_argument_in_python_and_the_flag_in_the_cli(option, value, api, cli):
    # One check for both surfaces: the message names the keyword argument, and its
    # command-line wording (which the CLI prints) the flag.
    labels, probs = blocky_dataset(0, n=2)
    with pytest.raises(InputError) as caught:
        score_arrays(labels, probs, methods=("softmin", "clc"), **{option: value})
    assert str(caught.value) == api
    assert caught.value.cli_message.startswith(cli) and caught.value.cli_message[2:] == api.replace("_", "-")


def test_input_errors_keep_their_command_line_wording_through_pickling():
    # Errors raised on Dask workers travel pickled to the client, which prints them.
    import pickle

    from segaudit.errors import option_error

    error = pickle.loads(pickle.dumps(option_error("pixel_threshold", "must be between 0 and 1, got 2")))
    assert (str(error), error.cli_message) == ("pixel_threshold must be between 0 and 1, got 2",
                                               "--pixel-threshold must be between 0 and 1, got 2")
    assert InputError("plain").cli_message == "plain"


def test_bad_label_in_a_dataset_method_names_the_image():
    labels, probs = blocky_dataset(0, k=3)
    labels[2, 0, 0] = 9
    with pytest.raises(InputError, match=r"labels of image 2: label values .*9 \(1 px\)"):
        score_arrays(labels, probs, methods=("clc",))


def test_the_lazy_exports_are_all_listed():
    import segaudit

    assert set(segaudit.__all__) == {"__version__", *segaudit._LAZY}
    assert segaudit.find_label_issues.__module__ == "segaudit.compat"


@pytest.mark.parametrize("ignore", [255, np.uint8(255), [255], (255,), {255}, range(255, 256)])
def test_score_arrays_takes_ignore_index_as_an_int_or_an_iterable(ignore):
    labels, probs = dataset()
    labels[1, :3] = 255
    results, _ = score_arrays(labels, probs, ignore_index=ignore)
    expected = [image_scores(labels[n], probs[n], ignore=(255,))["rsoftmin"] for n in range(len(labels))]
    assert [r.scores["rsoftmin"] for r in results] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(InputError, match="ignore_index must be an int or an iterable of ints"):
        score_arrays(labels, probs, ignore_index="255")


def test_an_in_memory_run_reaches_the_ranking_the_report_and_a_clear_overlay_refusal(tmp_path):
    from typer.testing import CliRunner

    import segaudit
    from segaudit.cli import app
    from segaudit.io.rankings import load_ranking

    labels, probs = dataset(n=5)
    run = segaudit.score_arrays_run(labels, probs, methods=("softmin", "cil"), image_ids=list("abcde"),
                                    classes=[f"c{k}" for k in range(6)])
    assert isinstance(run, segaudit.ScoreRun)
    scores = [r.scores["softmin"] for r in run.results]
    assert scores == sorted(scores)  # ranked worst first, as segaudit.score ranks
    worst = run.results[0].image_id
    csv = tmp_path / "r.csv"
    segaudit.write_ranking(run, csv)
    ranking = load_ranking(csv)
    assert [row.image_id for row in ranking.rows] == [r.image_id for r in run.results]
    assert ranking.record.masks is None and ranking.record.predictions is None
    assert ranking.record.classes == tuple(f"c{k}" for k in range(6))
    result = CliRunner().invoke(app, ["report", "-r", str(csv), "--overlays", str(tmp_path / "none"), "-o", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.stderr
    assert f"<code>{worst}</code>" in (tmp_path / "report.html").read_text()
    result = CliRunner().invoke(app, ["overlay", "-r", str(csv), "--out", str(tmp_path / "ov")])
    assert result.exit_code == 2
    assert "overlays need masks and a prediction store on disk" in result.stderr
    assert "Traceback" not in result.stderr


def test_get_label_quality_scores_takes_ignore_index_and_refuses_unknown_keywords():
    labels, probs = dataset()
    labels[0, :2] = 255
    scores, pixels = get_label_quality_scores(labels, probs, ignore_index=255)
    expected = [image_scores(labels[n], probs[n], ignore=(255,))["softmin"] for n in range(len(labels))]
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    assert np.isnan(pixels[0, :2]).all() and not np.isnan(pixels[1:]).any()
    # cleanlab's own keywords are still accepted (temperature and downsample through its **kwargs).
    get_label_quality_scores(labels % 6, probs, temperature=0.2, downsample=1, batch_size=2, n_jobs=1, verbose=True)
    get_label_quality_scores(labels % 6, probs, method="num_pixel_issues", downsample=1)
    with pytest.raises(TypeError, match="unexpected keyword argument.*'ignore_label', 'temprature'"):
        get_label_quality_scores(labels, probs, temprature=0.2, ignore_label=255)
    with pytest.raises(ValueError, match="ignore_index is not available"):
        get_label_quality_scores(labels, probs, method="num_pixel_issues", ignore_index=255)
    # find_label_issues too: cleanlab's keywords accepted, a misspelt one refused by name.
    from segaudit.compat import find_label_issues

    clean = labels % 6
    flags = find_label_issues(clean, probs, downsample=1, batch_size=2, n_jobs=1, verbose=False)
    assert flags.shape == clean.shape and flags.dtype == bool
    with pytest.raises(TypeError, match="find_label_issues.*unexpected keyword argument.*'downsampel'"):
        find_label_issues(clean, probs, downsampel=4)


@pytest.mark.parametrize("downsample, problem", [(0, ">= 1"), (True, ">= 1"), (2.0, ">= 1"), (65537, "from 1 to 65536")])
def test_the_api_checks_downsample_as_the_cli_does(downsample, problem):
    import segaudit

    labels, probs = dataset(n=2)
    with pytest.raises(InputError, match=rf"^downsample must be a whole number {problem}, got {downsample}$") as caught:
        segaudit.score_arrays_run(labels, probs, methods=("clc",), downsample=downsample)
    assert caught.value.cli_message == "--" + str(caught.value)  # the CLI's wording, from the same check
