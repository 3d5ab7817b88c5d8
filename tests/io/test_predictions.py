"""Prediction stores on disk: both layouts, zarr v2 and v3, every dtype and flag.

Every store-backed result must be identical to scoring the same stored values in memory
with :func:`segaudit.api.score_arrays` (one whole-image kernel call) and agree with the
plain-numpy reference in naive.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from datasets import make_dataset, quantise, random_probs, write_masks, write_store
from naive import image_scores
from segaudit.api import score_arrays
from segaudit.errors import InputError
from segaudit.methods import PER_IMAGE_METHODS as METHODS
from segaudit.io.predictions import open_predictions
from segaudit.api import score


def by_id(run):
    return {r.image_id: r for r in run.results}


def in_memory(dataset, dtype=None, **options):
    """What score_arrays gives for each image's stored values, image by image."""
    expected = {}
    for image_id, probs in dataset.probs.items():
        stored = probs if dtype is None else quantise(probs, dtype)
        [result], _ = score_arrays(dataset.labels[image_id][None], stored[None], methods=METHODS,
                                   ignore_index=(255,), image_ids=[image_id], **options)
        expected[image_id] = result
    return expected


def assert_same_as_in_memory(run, dataset, dtype=None):
    """Store-backed results equal the in-memory ones exactly and the naive reference closely."""
    got = by_id(run)
    assert sorted(got) == sorted(dataset.probs)
    assert got == in_memory(dataset, dtype)
    for image_id, probs in dataset.probs.items():
        stored = probs if dtype is None else quantise(probs, dtype)
        want = image_scores(dataset.labels[image_id], stored, ignore=(255,))
        result = got[image_id]
        assert (result.pixels, result.low_pixels) == (want["pixels"], want["low_pixels"])
        assert (result.suspect_class, result.likely_class) == (want["suspect_class"], want["likely_class"])
        for method in METHODS:
            assert result.scores[method] == pytest.approx(want[method], rel=1e-11), (image_id, method)


def run_all(dataset, **options):
    return score(dataset.masks, dataset.store, methods=METHODS, **options)


# --- layouts and zarr formats ----------------------------------------------


@pytest.mark.parametrize("zarr_format", [3, 2])
@pytest.mark.parametrize("layout", ["per-image", "stacked"])
def test_layouts_and_formats_match_in_memory(tmp_path, layout, zarr_format):
    ds = make_dataset(tmp_path, layout=layout, zarr_format=zarr_format, dtype="float32")
    store = open_predictions(ds.store)
    assert store.layout == layout
    assert store.image_ids == (["city/a", "city/b", "other/c"])
    assert (store.n_classes, store.dtype, store.image_shape("city/b")) == (4, np.float32, (10, 7))
    run = run_all(ds)
    assert run.options["layout"] == layout
    assert_same_as_in_memory(run, ds, "float32")


def test_per_image_nested_ids_are_groups(tmp_path):
    ds = make_dataset(tmp_path, ids=("a", "city/b", "city/deep/c"), dtype="float64")
    assert (ds.store / "city" / "deep" / "c" / "zarr.json").is_file()
    assert open_predictions(ds.store).image_ids == ["a", "city/b", "city/deep/c"]
    assert_same_as_in_memory(run_all(ds), ds)


def test_stacked_ids_follow_attribute_order_not_sorted(tmp_path):
    # Array position n holds the image named image_ids[n], whatever the order.
    ds = make_dataset(tmp_path, ids=("z", "b", "m"), layout="stacked", dtype="float64")
    store = open_predictions(ds.store)
    assert store.image_ids == ["z", "b", "m"]
    np.testing.assert_array_equal(store.read_rows("b", 0, 10), ds.probs["b"])
    assert_same_as_in_memory(run_all(ds), ds)


def test_images_of_different_sizes(tmp_path):
    sizes = {"city/a": (10, 7), "city/b": (3, 15), "other/c": (17, 1)}
    ds = make_dataset(tmp_path, sizes=sizes, dtype="float32")
    store = open_predictions(ds.store)
    assert {i: store.image_shape(i) for i in store.image_ids} == sizes
    assert_same_as_in_memory(run_all(ds), ds, "float32")


# --- dtypes ----------------------------------------------------------------


@pytest.mark.parametrize("layout", ["per-image", "stacked"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "uint8", "uint16"])
def test_dtypes(tmp_path, dtype, layout):
    ds = make_dataset(tmp_path, dtype=dtype, layout=layout)
    assert open_predictions(ds.store).dtype == np.dtype(dtype)
    assert_same_as_in_memory(run_all(ds), ds, dtype)


@pytest.mark.parametrize("layout", ["per-image", "stacked"])
@pytest.mark.parametrize("dtype", [">f2", ">f4", ">f8", ">u2"])
def test_big_endian_zarr_v2_stores(tmp_path, dtype, layout):
    # zarr v2 records the byte order; a big-endian float32 store is still a float32 store.
    ds = make_dataset(tmp_path, dtype=dtype, layout=layout, zarr_format=2)
    native = np.dtype(dtype).newbyteorder("=")
    assert open_predictions(ds.store).dtype == native
    assert_same_as_in_memory(run_all(ds), ds, native)


def test_quantised_values_are_decoded_not_raw(tmp_path):
    # A uint8 255 means probability 1: s must be exactly 1, not 255.
    probs = np.zeros((3, 2, 2))
    probs[1] = 1.0
    labels = np.ones((2, 2), np.uint8)
    write_masks(tmp_path / "masks", {"x": labels})
    write_store(tmp_path / "p.zarr", {"x": probs}, dtype="uint8")
    [result] = score(tmp_path / "masks", tmp_path / "p.zarr", methods=("cil", "softmin")).results
    assert result.scores == {"cil": 1.0, "softmin": 1.0}


def test_unsupported_dtype_is_an_input_error(tmp_path):
    ds = make_dataset(tmp_path, dtype="int32")
    with pytest.raises(InputError, match=r"preds\.zarr/city/a: dtype int32 is not supported"):
        open_predictions(ds.store)


# --- channels-last and logits -----------------------------------------------


@pytest.mark.parametrize("layout", ["per-image", "stacked"])
@pytest.mark.parametrize("how", ["attribute", "option"])
def test_channels_last(tmp_path, layout, how):
    attrs = {"channels_last": True} if how == "attribute" else None
    ds = make_dataset(tmp_path, layout=layout, channels_last=True, attrs=attrs, dtype="float32",
                      row_chunk=3)
    store = open_predictions(ds.store, channels_last=True if how == "option" else None)
    assert store.channels_last and store.n_classes == 4
    assert store.image_shape("city/a") == (10, 7)
    run = run_all(ds, channels_last=True if how == "option" else None)
    assert run.options["channels_last"] is True
    assert_same_as_in_memory(run, ds, "float32")


def test_unpaired_masks_point_at_allow_missing_in_each_surfaces_words(tmp_path):
    ds = make_dataset(tmp_path)
    (ds.masks / "city" / "b.png").unlink()
    with pytest.raises(InputError, match=r"1 prediction\(s\) with no mask: city/b \(allow_missing=True skips them\)$") \
            as caught:
        score(ds.masks, ds.store)
    assert caught.value.cli_message.endswith("(--allow-missing skips them)")


def test_channels_last_without_flag_is_explained(tmp_path):
    # (H, W, K) arrays read as (K, H, W): "K" is each image's height, 10 and 12 here.
    ds = make_dataset(tmp_path, channels_last=True, sizes={"city/b": (12, 7)}, ids=("city/a", "city/b"))
    with pytest.raises(InputError, match=r"pass channels_last=True\)$") as caught:
        open_predictions(ds.store)
    assert caught.value.cli_message.endswith("pass --channels-last)")


def test_option_overrides_channels_last_attribute(tmp_path):
    ds = make_dataset(tmp_path, attrs={"channels_last": True}, dtype="float64")
    assert not open_predictions(ds.store, channels_last=False).channels_last
    assert_same_as_in_memory(run_all(ds, channels_last=False), ds)


def logit_dataset(tmp_path, layout, dtype, attrs):
    """Logits whose softmax is the dataset's probabilities, stored in ``dtype``."""
    ds = make_dataset(tmp_path / "p", layout=layout, dtype="float64")
    rng = np.random.default_rng(1)
    logits = {}
    for image_id, probs in ds.probs.items():
        # log p plus an arbitrary per-pixel constant: softmax(logits) == probs.
        logits[image_id] = (np.log(probs) + rng.normal(0, 5, size=probs.shape[1:])).astype(dtype)
        exact = logits[image_id].astype(np.float64)  # the stored logits, softmaxed in float64
        ds.probs[image_id] = np.exp(exact - exact.max(0)) / np.exp(exact - exact.max(0)).sum(0)
    write_store(tmp_path / "p" / "preds.zarr", ds.probs, layout=layout, dtype="float64")
    write_store(tmp_path / "logits.zarr", logits, layout=layout, attrs=attrs)
    return ds, tmp_path / "logits.zarr"


@pytest.mark.parametrize("layout", ["per-image", "stacked"])
@pytest.mark.parametrize("how", ["attribute", "option"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_logits_equal_their_softmax(tmp_path, layout, how, dtype):
    attrs = {"kind": "logits"} if how == "attribute" else None
    ds, logits_store = logit_dataset(tmp_path, layout, dtype, attrs)
    from_probs = by_id(run_all(ds))
    run = score(ds.masks, logits_store, methods=METHODS, logits=True if how == "option" else None)
    assert run.options["logits"] is True
    for image_id, result in by_id(run).items():
        want = from_probs[image_id]
        assert (result.pixels, result.low_pixels) == (want.pixels, want.low_pixels)
        assert (result.suspect_class, result.likely_class) == (want.suspect_class, want.likely_class)
        for method in METHODS:
            assert result.scores[method] == pytest.approx(want.scores[method], rel=1e-12, abs=1e-12)


def test_logits_without_flag_fail_and_suggest_logits(tmp_path):
    _, logits_store = logit_dataset(tmp_path, "per-image", "float32", None)
    with pytest.raises(InputError, match=r"logits\.zarr/city/a: .*pass logits=True\)$") as caught:
        score(tmp_path / "p" / "masks", logits_store)
    # The CLI prints the same error with its flag (tests/cli/test_cli.py runs it).
    assert caught.value.cli_message.endswith("(if the store holds logits, pass --logits)")
    assert str(caught.value) == caught.value.cli_message.replace("--logits", "logits=True")


def test_probabilities_option_overrides_kind_attribute(tmp_path):
    ds = make_dataset(tmp_path, attrs={"kind": "logits"}, dtype="float64")
    run = run_all(ds, logits=False)
    assert run.options["logits"] is False
    assert_same_as_in_memory(run, ds)


def test_bad_kind_attribute(tmp_path):
    ds = make_dataset(tmp_path, attrs={"kind": "log-probs"})
    with pytest.raises(InputError, match="attribute 'kind' must be 'probabilities' or 'logits'"):
        open_predictions(ds.store)


def test_channels_last_attribute_must_be_a_boolean(tmp_path):
    ds = make_dataset(tmp_path, attrs={"channels_last": "false"})
    with pytest.raises(InputError, match="attribute 'channels_last' must be true or false, not 'false'"):
        open_predictions(ds.store)


def test_quantised_logits_are_refused(tmp_path):
    ds = make_dataset(tmp_path, attrs={"kind": "logits"}, dtype="uint8")
    with pytest.raises(InputError, match="logits cannot be stored as uint8"):
        open_predictions(ds.store)


# --- chunks and row blocks --------------------------------------------------


def small_blocks(monkeypatch, block_bytes):
    """Make the reader use blocks of about ``block_bytes`` (the default is 16 MB)."""
    monkeypatch.setattr("segaudit.io.predictions.BLOCK_BYTES", block_bytes)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("layout", ["per-image", "stacked"])
def test_row_blocks_align_to_chunks(tmp_path, layout, channels_last):
    ds = make_dataset(tmp_path, layout=layout, size=(10, 7), row_chunk=3, dtype="float32",
                      channels_last=channels_last, attrs={"channels_last": channels_last})
    store = open_predictions(ds.store)
    # Whole image in one block: one read of all 4 chunks (3 + 3 + 3 + 1 rows).
    assert store.row_blocks("city/a") == [(0, 10)]
    row_bytes = 4 * 7 * 4
    # Room for 2 chunks (6 rows) per block: blocks span several chunks and stay aligned.
    assert store.row_blocks("city/a", block_bytes=7 * row_bytes) == [(0, 6), (6, 10)]
    # Less than one chunk: one chunk per block, the last one short.
    assert store.row_blocks("city/a", block_bytes=1) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    for start, stop in store.row_blocks("city/a", block_bytes=1):
        np.testing.assert_array_equal(store.read_rows("city/a", start, stop),
                                      ds.probs["city/a"][:, start:stop].astype(np.float32))


@pytest.mark.parametrize("block_bytes", [1, 2 * 3 * 4 * 7 * 2, 10**9])
@pytest.mark.parametrize("dtype", ["float16", "uint8", "float64"])
@pytest.mark.parametrize("layout", ["per-image", "stacked"])
def test_blocks_give_identical_results(tmp_path, monkeypatch, layout, dtype, block_bytes):
    # Chunks of 3 rows on images 10 rows high; blocks of 1 chunk, 2+ chunks, or the whole image.
    small_blocks(monkeypatch, block_bytes)
    ds = make_dataset(tmp_path, layout=layout, size=(10, 7), row_chunk=3, dtype=dtype,
                      sizes={"other/c": (13, 7)} if layout == "per-image" else None)
    assert_same_as_in_memory(run_all(ds, prefetch=2), ds, dtype)


def test_bad_probabilities_name_the_image_row(tmp_path, monkeypatch):
    # The reported row is the image's row, not the block's.
    small_blocks(monkeypatch, 1)
    ds = make_dataset(tmp_path, row_chunk=3, dtype="float32")
    ds.probs["city/b"][:, 7, 2] = np.nan
    ds.labels["city/b"][7, 2] = 1
    write_store(ds.store, ds.probs, row_chunk=3, dtype="float32")
    write_masks(ds.masks, ds.labels)
    with pytest.raises(InputError, match=r"preds\.zarr/city/b: non-finite value nan at row 7, column 2"):
        run_all(ds)


# --- metadata and malformed stores -------------------------------------------


def test_classes_attribute_and_override(tmp_path):
    ds = make_dataset(tmp_path, attrs={"classes": ["a", "b", "c", "d"]})
    assert open_predictions(ds.store).classes == ["a", "b", "c", "d"]
    assert open_predictions(ds.store, classes=["w", "x", "y", "z"]).classes == ["w", "x", "y", "z"]
    with pytest.raises(InputError, match=r"the classes argument names 3 classes but the predictions have K=4") as caught:
        open_predictions(ds.store, classes=["x", "y", "z"])
    assert "--classes names 3 classes but the predictions have K=4" in caught.value.cli_message


def test_classes_attribute_of_wrong_length(tmp_path):
    ds = make_dataset(tmp_path, attrs={"classes": ["a", "b"]})
    with pytest.raises(InputError, match=r"attribute 'classes' names 2 classes but the predictions have K=4"):
        open_predictions(ds.store)


@pytest.mark.parametrize(
    "image_ids, problem",
    [
        ([], "needs a group attribute 'image_ids'"),
        (["a", "b", "a"], "duplicate image ids in 'image_ids': a"),
        (["a", "b"], "'image_ids' lists 2 ids but 'probs' holds 3 images"),
        (["a", 2, "c"], "'image_ids' must be a list of strings"),
    ],
)
@pytest.mark.parametrize("zarr_format", [3, 2])
def test_stacked_image_ids_problems(tmp_path, image_ids, problem, zarr_format):
    probs = {name: random_probs(np.random.default_rng(0), 3, 4, 5) for name in "xyz"}
    path = write_store(tmp_path / "s.zarr", probs, layout="stacked", image_ids=image_ids,
                       zarr_format=zarr_format)
    with pytest.raises(InputError, match=problem) as info:
        open_predictions(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_mixed_class_counts_and_dtypes(tmp_path):
    rng = np.random.default_rng(0)
    write_store(tmp_path / "k.zarr", {"a": random_probs(rng, 3, 4, 4), "b": random_probs(rng, 5, 4, 4)})
    with pytest.raises(InputError, match=r"k\.zarr/b: 5 classes, but a has 3"):
        open_predictions(tmp_path / "k.zarr")
    write_store(tmp_path / "d.zarr", {"a": random_probs(rng, 3, 4, 4).astype(np.float32),
                                      "b": random_probs(rng, 3, 4, 4)})
    with pytest.raises(InputError, match=r"d\.zarr/b: dtype float64, but a has float32"):
        open_predictions(tmp_path / "d.zarr")


def test_wrong_dimensions_and_empty_store(tmp_path):
    import zarr

    group = zarr.open_group(str(tmp_path / "flat.zarr"), mode="w")
    group.create_array(name="a", shape=(4, 4), dtype="float32")
    with pytest.raises(InputError, match=r"flat\.zarr/a: expected a \(K, H, W\) array, got shape \(4, 4\)"):
        open_predictions(tmp_path / "flat.zarr")
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    with pytest.raises(InputError, match=r"empty\.zarr: no prediction arrays found"):
        open_predictions(tmp_path / "empty.zarr")


@pytest.mark.parametrize("what", ["missing", "empty dir", "file", "other dir"])
def test_not_a_store(tmp_path, what):
    path = tmp_path / "preds.zarr"
    if what == "empty dir":
        path.mkdir()
    elif what == "file":
        path.write_text("hello")
    elif what == "other dir":
        path.mkdir()
        (path / "notes.txt").write_text("not zarr")
    with pytest.raises(InputError) as info:
        open_predictions(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert ("not found" if what == "missing" else "not a zarr group") in message


def test_all_ignored_image_has_nan_scores_and_ranks_last(tmp_path):
    ds = make_dataset(tmp_path, ids=("a", "b", "c"), dtype="float64")
    ds.labels["a"][...] = 255
    write_masks(ds.masks, ds.labels)
    run = run_all(ds)
    assert [r.image_id for r in run.results][-1] == "a"
    assert run.empty_images == ["a"]
    last = run.results[-1]
    assert last.pixels == 0 and all(math.isnan(v) for v in last.scores.values())
    assert (last.suspect_class, last.likely_class) == (None, None)


def test_pixel_maps_match_reference_on_the_fixtures():
    from segaudit.core.dataset import open_dataset

    from datasets import FIXTURES

    dataset = open_dataset(FIXTURES / "masks", FIXTURES / "preds.zarr")
    mask, image_id = dataset.pairs[4]
    labels, s, predicted, stats = dataset.pixel_maps(mask, image_id)
    stored = dataset.store.read_rows(image_id, 0, labels.shape[0]).view(np.float16)
    expected = image_scores(labels, stored, ignore=(255,))
    np.testing.assert_array_equal(s, expected["s"])
    np.testing.assert_array_equal(predicted, stored.astype(np.float64).argmax(axis=0))
    assert stats.pixels == expected["pixels"]


def test_corrupt_array_metadata_is_one_line(tmp_path):
    ds = make_dataset(tmp_path)
    (ds.store / "city" / "a" / "zarr.json").write_text("{ not json")
    with pytest.raises(InputError, match="cannot list the store's arrays"):
        open_predictions(ds.store)
    with pytest.raises(InputError, match="city/a: cannot open"):
        open_predictions(ds.store, only_ids=["city/a"])


def test_both_stores_declare_and_implement_the_prediction_store_protocol():
    from segaudit.core.arrays import ArrayStore
    from segaudit.io.predictions import PredictionStore, ZarrStore

    defaults = {"sum_tolerance", "volume_attributes"}  # the protocol's own, shared implementations
    members = [n for n, v in vars(PredictionStore).items() if callable(v) and not n.startswith("_")]
    assert {"image_shape", "volume_shape", "slice_rows", "row_blocks", "read_rows"} <= set(members)
    for store in (ZarrStore, ArrayStore):
        assert PredictionStore in store.__mro__  # declared, not merely alike
        for name in set(members) - defaults:
            assert getattr(store, name) is not getattr(PredictionStore, name), (store.__name__, name)
