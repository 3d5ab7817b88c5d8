"""PredictionWriter: streaming writes, checks as it goes, and stores marked incomplete.

Every store it writes must read back through ``open_predictions`` to exactly the values a
user would get by converting the arrays themselves, and score exactly as ``score_arrays``
does on those values.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from datasets import quantise, random_labels, random_probs, write_masks
from segaudit import PredictionWriter
from segaudit.api import score_arrays
from segaudit.cli import app
from segaudit.errors import InputError
from segaudit.methods import PER_IMAGE_METHODS as METHODS
from segaudit.io.predictions import open_predictions, sum_tolerance
from segaudit.api import score
from segaudit.io.writer import CHUNK_BYTES, chunk_rows, input_sum_tolerance

K = 4


def probs_for(seed: int, n: int = 3, height: int = 10, width: int = 7, dtype="float32") -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([random_probs(rng, K, height, width) for _ in range(n)]).astype(dtype)


def stored(path, image_id) -> np.ndarray:
    return zarr.open_group(str(path), mode="r")[image_id][...]


class FakeTensor:
    """Just enough of a torch tensor: __array__ works only after detach().cpu()."""

    def __init__(self, values, on_gpu=True):
        self.values, self.on_gpu, self.calls = values, on_gpu, []

    def detach(self):
        self.calls.append("detach")
        return FakeTensor(self.values, self.on_gpu)

    def cpu(self):
        self.calls.append("cpu")
        return FakeTensor(self.values, on_gpu=False)

    def __array__(self, dtype=None, copy=None):
        if self.on_gpu:
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu()")
        return np.asarray(self.values, dtype=dtype)


class ArrayLike:
    """Only __array__ (no detach/cpu), like many array libraries."""

    def __init__(self, values):
        self.values = values

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.values, dtype=dtype)


# --- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "uint8", "uint16"])
def test_stored_values_are_the_converted_arrays(tmp_path, dtype):
    probs = probs_for(0, dtype="float64")
    with PredictionWriter(tmp_path / "p.zarr", dtype=dtype) as writer:
        writer.write_batch(["a", "b", "c"], probs)
    for n, image_id in enumerate("abc"):
        got = stored(tmp_path / "p.zarr", image_id)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, quantise(probs[n], dtype))  # uint8 = round(p * 255)
    store = open_predictions(tmp_path / "p.zarr")
    assert (store.layout, store.image_ids, store.n_classes, store.dtype) == ("per-image", ["a", "b", "c"], K, dtype)
    assert store.classes is None and not store.logits and not store.channels_last


@pytest.mark.parametrize("dtype", ["float16", "float32", "uint8"])
def test_scores_equal_score_arrays_on_the_stored_values(tmp_path, dtype):
    rng = np.random.default_rng(1)
    ids = ["city/a", "city/b", "other/c"]
    probs = probs_for(2)
    labels = {i: random_labels(rng, K, 10, 7) for i in ids}
    write_masks(tmp_path / "masks", labels)
    with PredictionWriter(tmp_path / "p.zarr", classes=["w", "x", "y", "z"], dtype=dtype) as writer:
        for image_id, p in zip(ids, probs):
            writer.write(image_id, p)
    run = score(tmp_path / "masks", tmp_path / "p.zarr", methods=METHODS)
    assert run.classes == ["w", "x", "y", "z"]
    expected, _ = score_arrays(np.stack([labels[i] for i in ids]), quantise(probs.astype(np.float64), dtype)
                               if dtype == "uint8" else probs.astype(dtype),
                               methods=METHODS, ignore_index=(255,), image_ids=ids)
    assert {r.image_id: r for r in run.results} == {r.image_id: r for r in expected}


def test_torch_like_tensors_are_detached_and_moved_to_the_cpu(tmp_path):
    probs = probs_for(3)
    batch = FakeTensor(probs)
    with PredictionWriter(tmp_path / "p.zarr", dtype="float32") as writer:
        writer.write_batch(["a", "b", "c"], batch)
        writer.write("d", FakeTensor(probs[0]))
        writer.write("e", ArrayLike(probs[1]))
    assert batch.calls == ["detach"]  # then cpu() on the detached copy
    np.testing.assert_array_equal(stored(tmp_path / "p.zarr", "b"), probs[1])
    np.testing.assert_array_equal(stored(tmp_path / "p.zarr", "d"), probs[0])
    np.testing.assert_array_equal(stored(tmp_path / "p.zarr", "e"), probs[1])


def test_unconvertible_objects_are_refused(tmp_path):
    class Broken:
        def __array__(self, dtype=None, copy=None):
            raise TypeError("Got unsupported ScalarType BFloat16")

    with PredictionWriter(tmp_path / "p.zarr") as writer:
        with pytest.raises(InputError, match="cannot convert Broken to a numpy array.*BFloat16"):
            writer.write("a", Broken())
        with pytest.raises(InputError, match="dtype int64 is not probabilities"):
            writer.write("a", np.zeros((K, 2, 2), dtype=np.int64))
        writer.write("a", probs_for(0)[0])


def test_channels_last_input_is_stored_channels_first(tmp_path):
    probs = probs_for(4)
    with PredictionWriter(tmp_path / "p.zarr", dtype="float32", channels_last=True) as writer:
        writer.write_batch(["a", "b", "c"], np.moveaxis(probs, 1, -1))
    np.testing.assert_array_equal(stored(tmp_path / "p.zarr", "c"), probs[2])
    assert open_predictions(tmp_path / "p.zarr").channels_last is False


def test_store_channels_last_keeps_h_w_k(tmp_path):
    probs = probs_for(4)
    with PredictionWriter(tmp_path / "p.zarr", dtype="float32", channels_last=True,
                          store_channels_last=True, chunk_bytes=3 * 7 * K * 4) as writer:
        writer.write_batch(["a", "b", "c"], np.moveaxis(probs, 1, -1))
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    assert group["a"].shape == (10, 7, K) and group["a"].chunks == (2, 7, K)
    np.testing.assert_array_equal(group["a"][...], np.moveaxis(probs[0], 0, -1))
    store = open_predictions(tmp_path / "p.zarr")
    assert store.channels_last and store.image_shape("a") == (10, 7)


def test_logits(tmp_path):
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 3, size=(2, K, 6, 5)).astype(np.float32)
    with PredictionWriter(tmp_path / "p.zarr", logits=True) as writer:
        writer.write_batch(["a", "b"], logits)
    store = open_predictions(tmp_path / "p.zarr")
    assert store.logits and store.dtype == np.float16
    np.testing.assert_array_equal(stored(tmp_path / "p.zarr", "a"), logits[0].astype(np.float16))


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_compressed_stores_read_back_exactly(tmp_path, codec):
    probs = probs_for(6, height=33, width=17)
    with PredictionWriter(tmp_path / "p.zarr", codec=codec, chunk_bytes=K * 8 * 17 * 2) as writer:
        writer.write_batch(["a", "b", "c"], probs)
    array = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")["b"]
    assert array.chunks == (K, 8, 17) and len(array.compressors) == 1
    np.testing.assert_array_equal(array[...], probs[1].astype(np.float16))


def test_chunks_hold_all_classes_all_columns_and_power_of_two_rows(tmp_path):
    # Cityscapes-sized: 256 rows of float16 (19.9 MB), 128 of float32, 512 of uint8.
    assert chunk_rows(19, 2048, 2) == 256
    assert chunk_rows(19, 2048, 4) == 128
    assert chunk_rows(19, 2048, 1) == 512
    for k, w, itemsize in [(19, 2048, 2), (150, 512, 4), (2, 100_000, 8), (2048, 4096, 4)]:
        rows = chunk_rows(k, w, itemsize)
        assert rows >= 1 and (rows == 1 or k * rows * w * itemsize <= CHUNK_BYTES)
        assert k * 2 * rows * w * itemsize > CHUNK_BYTES
    # Rows that do not divide the height: the last chunk is partial, the values exact.
    probs = probs_for(7, n=1, height=23, width=5)
    with PredictionWriter(tmp_path / "p.zarr", dtype="float32", chunk_bytes=K * 4 * 5 * 4) as writer:
        writer.write("a", probs[0])
    array = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")["a"]
    assert array.chunks == (K, 4, 5)
    np.testing.assert_array_equal(array[...], probs[0])


def test_quantising_clips_at_the_top(tmp_path):
    probs = np.zeros((2, 1, 1))
    probs[0] = 1.0004  # within the tolerance
    with PredictionWriter(tmp_path / "p.zarr", dtype="uint8") as writer:
        writer.write("a", probs)
    assert stored(tmp_path / "p.zarr", "a").ravel().tolist() == [255, 0]


def test_quantised_input_is_taken_as_quantised(tmp_path):
    probs = quantise(probs_for(8, dtype="float64")[0], "uint8")
    with PredictionWriter(tmp_path / "p.zarr", dtype="uint8") as writer:
        writer.write("same", probs)
    with PredictionWriter(tmp_path / "q.zarr", dtype="float32") as writer:
        writer.write("decoded", quantise(probs_for(8, dtype="float64")[0], "uint16"))
    np.testing.assert_array_equal(stored(tmp_path / "p.zarr", "same"), probs)
    assert open_predictions(tmp_path / "q.zarr").dtype == np.float32


FINER_OR_EQUAL = [("float16", "float16"), ("float32", "float16"), ("float64", "float16"), ("float32", "float32"),
                  ("float64", "float32"), ("float16", "uint8"), ("float32", "uint8"), ("float64", "uint8"),
                  ("uint8", "uint8"), ("uint16", "uint8"), ("float32", "uint16"), ("uint16", "uint16")]


@pytest.mark.parametrize("given, dtype", FINER_OR_EQUAL)
def test_accepted_sums_always_pass_the_reader(tmp_path, given, dtype):
    """Pixels that only just pass the writer's check are accepted when scored."""
    rng = np.random.default_rng(9)
    n_classes = 19
    probs = random_probs(rng, n_classes, 16, 16)
    allowed = input_sum_tolerance(np.dtype(given), np.dtype(dtype), n_classes)
    assert 0 < allowed <= sum_tolerance(np.dtype(dtype), n_classes)
    if np.dtype(given).kind == "u":
        values = quantise(probs, given)
        sums = values.sum(axis=0, dtype=np.float64) / np.iinfo(given).max
    else:
        # Sums spread up to just past the limit either way; pixels past it are put back to 1.
        values = (probs * (1 + rng.uniform(-1.05, 1.05, size=(16, 16)) * allowed)).astype(given)
        sums = values.sum(axis=0, dtype=np.float64)
        values[:, np.abs(sums - 1) > allowed * 0.999] = probs[:, np.abs(sums - 1) > allowed * 0.999].astype(given)
        assert (np.abs(sums - 1) > 0.9 * allowed).sum() > 10  # the limit is exercised
    labels = rng.integers(0, n_classes, size=(16, 16)).astype(np.uint8)
    write_masks(tmp_path / "masks", {"a": labels})
    with PredictionWriter(tmp_path / "p.zarr", dtype=dtype) as writer:
        writer.write("a", values)
    score(tmp_path / "masks", tmp_path / "p.zarr")  # no BadProbabilities


def test_quantised_input_stored_finer_must_sum_as_the_finer_dtype(tmp_path):
    # round(p * 255) per class is up to 19/510 off 1: too far for a float16 store.
    values = quantise(random_probs(np.random.default_rng(9), 19, 16, 16), "uint8")
    with PredictionWriter(tmp_path / "p.zarr") as writer:
        with pytest.raises(InputError, match="summing to .* \\(uint8 values: store them as uint8\\)"):
            writer.write("a", values)
        writer.write("a", values.astype(np.float64) / 255 / (values.sum(axis=0) / 255))


# --- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize("value, message", [
    (np.nan, "non-finite value nan at row 3, column 4 (class 0)"),
    (np.inf, "non-finite value inf at row 3, column 4 (class 0)"),
    (-0.25, "negative probability -0.25 at row 3, column 4 (class 0)"),
    (0.9, "summing to"),
])
def test_bad_values_are_refused_with_the_image_and_pixel(tmp_path, value, message):
    probs = probs_for(10, height=12)
    probs[1, 0, 3, 4] = value
    with PredictionWriter(tmp_path / "p.zarr", chunk_bytes=K * 2 * 7 * 2) as writer:  # several chunks
        writer.write("a", probs[0])
        with pytest.raises(InputError) as error:
            writer.write("b", probs[1])
        # The failed image leaves nothing behind, and the writer carries on.
        writer.write("b", probs[2])
    text = str(error.value)
    assert text.startswith(f"{tmp_path / 'p.zarr'}/b: ") and message in text and "\n" not in text
    np.testing.assert_array_equal(stored(tmp_path / "p.zarr", "b"), probs[2].astype(np.float16))


def test_sums_are_checked_on_every_chunk(tmp_path):
    probs = probs_for(11, height=40)
    probs[0, :, 37, 2] = 0  # a pixel whose probabilities are all 0, in the last chunk
    with PredictionWriter(tmp_path / "p.zarr", chunk_bytes=K * 8 * 7 * 2) as writer:
        with pytest.raises(InputError, match="all probabilities 0 at row 37, column 2"):
            writer.write("a", probs[0])
        writer.write("b", probs[1])


def test_logits_are_checked_for_finiteness_and_range(tmp_path):
    logits = np.zeros((K, 3, 3), np.float32)
    with PredictionWriter(tmp_path / "p.zarr", logits=True) as writer:
        logits[2, 1, 1] = np.nan
        with pytest.raises(InputError, match="non-finite value nan at row 1, column 1"):
            writer.write("a", logits)
        logits[2, 1, 1] = 70000.0
        with pytest.raises(InputError, match="logit 70000.0 .* does not fit in float16"):
            writer.write("a", logits)
        logits[2, 1, 1] = 50.0  # logits need not sum to anything
        writer.write("a", logits)


def test_duplicate_ids_are_refused(tmp_path):
    probs = probs_for(12)
    with PredictionWriter(tmp_path / "p.zarr") as writer:
        writer.write("a", probs[0])
        with pytest.raises(InputError, match="duplicate image id 'a' \\(already written\\)"):
            writer.write("a", probs[1])
        with pytest.raises(InputError, match="duplicate image id 'a'"):
            writer.write_batch(["b", "a"], probs[:2])
        with pytest.raises(InputError, match="duplicate image id 'c' in the batch"):
            writer.write_batch(["c", "c"], probs[:2])
        assert writer.image_ids == ["a"]  # a refused batch writes none of its images
    np.testing.assert_array_equal(stored(tmp_path / "p.zarr", "a"), probs[0].astype(np.float16))


@pytest.mark.parametrize("image_id", ["../x", "a/../../x", "/etc/x", "a//b", "./a", "a\\b", "", "zarr.json",
                                      "a/zarr.json", "__x", 7, None])
def test_unsafe_ids_are_refused(tmp_path, image_id):
    with PredictionWriter(tmp_path / "p.zarr") as writer:
        with pytest.raises(InputError, match="image id"):
            writer.write(image_id, probs_for(0)[0])
        writer.write("fine", probs_for(0)[0])
    assert not (tmp_path / "x").exists()


def test_an_id_cannot_also_be_a_folder(tmp_path):
    probs = probs_for(13)
    with PredictionWriter(tmp_path / "p.zarr") as writer:
        writer.write("a/b", probs[0])
        with pytest.raises(InputError, match="'a' is also a folder"):
            writer.write("a", probs[1])
        writer.write("c", probs[1])
        with pytest.raises(InputError, match="would be inside image 'c'"):
            writer.write("c/d", probs[2])


@pytest.mark.parametrize("shape, message", [
    ((10, 7), "expected a (K, H, W) array, got shape (10, 7)"),
    ((1, K, 10, 7), "got shape (1, 4, 10, 7) (for a batch use write_batch)"),
    ((5, 10, 7), "5 classes (shape (5, 10, 7), (K, H, W)), but earlier images have K=4"),
    ((K, 0, 7), "empty image"),
])
def test_bad_shapes_are_refused(tmp_path, shape, message):
    with PredictionWriter(tmp_path / "p.zarr") as writer:
        writer.write("first", probs_for(0)[0])
        with pytest.raises(InputError) as error:
            writer.write("b", np.full(shape, 1 / shape[-3] if len(shape) >= 3 and shape[-3] else 0.5))
    assert message in str(error.value)


def test_class_count_is_checked_against_classes_and_batches(tmp_path):
    with PredictionWriter(tmp_path / "p.zarr", classes=["a", "b", "c"]) as writer:
        with pytest.raises(InputError, match="4 classes .* but the class names give K=3"):
            writer.write("x", probs_for(0)[0])
        with pytest.raises(InputError, match="write_batch expects \\(B, K, H, W\\)"):
            writer.write_batch(["x"], probs_for(0)[0])
        with pytest.raises(InputError, match="2 image ids for a batch of 3 images"):
            writer.write_batch(["x", "y"], np.full((3, 3, 2, 2), 1 / 3))
        with pytest.raises(InputError, match="not one string"):
            writer.write_batch("xyz", np.full((3, 3, 2, 2), 1 / 3))
        writer.write_batch(["x", "y", "z"], np.full((3, 3, 2, 2), 1 / 3))
    with pytest.raises(InputError, match="1 class\\(es\\)"):
        with PredictionWriter(tmp_path / "q.zarr") as writer:
            writer.write("x", np.ones((1, 2, 2)))


@pytest.mark.parametrize("options, message", [
    ({"dtype": "int8"}, "dtype 'int8' is not supported"),
    ({"dtype": "uint8", "logits": True}, "logits cannot be stored as uint8"),
    ({"codec": "gzip"}, "unknown codec 'gzip'"),
    ({"classes": ["only"]}, "predictions need K >= 2"),
    ({"classes": "abc"}, "classes must be a list"),
    ({"store_channels_last": True}, "store_channels_last needs channels_last"),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, options, message):
    with pytest.raises(InputError, match=message):
        PredictionWriter(tmp_path / "p.zarr", **options)
    assert not (tmp_path / "p.zarr").exists()


def test_existing_paths(tmp_path):
    probs = probs_for(14)
    with PredictionWriter(tmp_path / "p.zarr") as writer:
        writer.write("a", probs[0])
    with pytest.raises(InputError, match="already exists \\(pass overwrite=True"):
        PredictionWriter(tmp_path / "p.zarr")
    with PredictionWriter(tmp_path / "p.zarr", overwrite=True) as writer:
        writer.write("b", probs[1])
    assert open_predictions(tmp_path / "p.zarr").image_ids == ["b"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="refusing to replace .*notes: it is not a zarr store"):
        PredictionWriter(tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    with PredictionWriter(tmp_path / "empty") as writer:  # an empty directory is fine
        writer.write("a", probs[0])
    with pytest.raises(InputError, match="output directory does not exist"):
        PredictionWriter(tmp_path / "missing" / "p.zarr")


# --- completeness --------------------------------------------------------------------


def test_a_clean_close_marks_the_store_complete(tmp_path):
    writer = PredictionWriter(tmp_path / "p.zarr")
    writer.write("a", probs_for(0)[0])
    with pytest.raises(InputError, match="incomplete store: its writer never finished"):
        open_predictions(tmp_path / "p.zarr")  # not yet
    writer.close()
    writer.close()  # twice is fine
    assert zarr.open_group(str(tmp_path / "p.zarr"), mode="r").attrs["segaudit_complete"] is True
    open_predictions(tmp_path / "p.zarr")
    with pytest.raises(InputError, match="the writer is closed"):
        writer.write("b", probs_for(0)[0])


def test_an_exception_in_the_with_block_leaves_the_store_marked_incomplete(tmp_path):
    probs = probs_for(15)
    with pytest.raises(RuntimeError):
        with PredictionWriter(tmp_path / "p.zarr") as writer:
            writer.write("a", probs[0])
            writer.write("b", probs[1])
            raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")
    attrs = zarr.open_group(str(tmp_path / "p.zarr"), mode="r").attrs
    assert attrs["segaudit_complete"] is False
    with pytest.raises(InputError) as error:
        open_predictions(tmp_path / "p.zarr")
    assert str(error.value) == (f"{tmp_path / 'p.zarr'}: incomplete store: writing stopped after 2 image(s): "
                                "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB; write it again")


def test_score_refuses_an_incomplete_store_in_one_line(tmp_path):
    rng = np.random.default_rng(16)
    write_masks(tmp_path / "masks", {"a": random_labels(rng, K, 10, 7)})
    with pytest.raises(KeyboardInterrupt):
        with PredictionWriter(tmp_path / "p.zarr") as writer:
            writer.write("a", probs_for(0)[0])
            raise KeyboardInterrupt
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(app, ["score", str(tmp_path / "masks"), str(tmp_path / "p.zarr"),
                                      "-o", str(out / "r.csv")])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        (f"error: {tmp_path / 'p.zarr'}: incomplete store: writing stopped after 1 image(s): KeyboardInterrupt; "
         "write it again")]
    assert list(out.iterdir()) == []


def test_a_killed_writer_leaves_the_store_marked_incomplete(tmp_path):
    code = (
        "import os, numpy as np\n"
        "from segaudit import PredictionWriter\n"
        f"w = PredictionWriter({str(tmp_path / 'p.zarr')!r})\n"
        "w.write('a', np.full((2, 3, 3), 0.5))\n"
        "os._exit(9)  # no close(), no __exit__: as if killed\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    with pytest.raises(InputError, match="incomplete store: its writer never finished \\(the process stopped "
                                         "before close\\(\\)\\); write it again"):
        open_predictions(tmp_path / "p.zarr")


def test_closing_without_images_is_an_error(tmp_path):
    with pytest.raises(InputError, match="no image was written"):
        with PredictionWriter(tmp_path / "p.zarr"):
            pass
    with pytest.raises(InputError, match="incomplete store: no image was written"):
        open_predictions(tmp_path / "p.zarr")


def test_a_failed_write_inside_the_with_block_is_recorded(tmp_path):
    probs = probs_for(17)
    probs[1, 0, 0, 0] = np.nan
    with pytest.raises(InputError):
        with PredictionWriter(tmp_path / "p.zarr") as writer:
            writer.write_batch(["a", "b", "c"], probs)
    with pytest.raises(InputError, match="writing stopped after 1 image\\(s\\): InputError: .*/b: non-finite"):
        open_predictions(tmp_path / "p.zarr")


def test_importing_the_writer_is_lazy():
    code = ("import sys, segaudit\n"
            "assert 'segaudit.io.writer' not in sys.modules\n"
            "segaudit.PredictionWriter\n"
            "print('segaudit.io.writer' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True"], done.stderr
