"""Direct reads of uncompressed chunk files (io/chunks.py) give exactly what zarr gives.

The reader bypasses zarr's event loop for speed, so every read is compared with zarr's own
``array[selection]`` on random shapes, chunk grids, dtypes, selections, both zarr formats,
missing chunks and fill values; and the cases it must leave to zarr are checked to fall back.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings, strategies as st

from segaudit.io.chunks import ChunkFiles
from segaudit.io.predictions import open_predictions

DTYPES = ["uint8", "uint16", "float16", "float32", "float64"]


@st.composite
def cases(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 9)) for _ in range(ndim))
    chunks = tuple(draw(st.integers(1, n + 2)) for n in shape)
    dtype = draw(st.sampled_from(DTYPES))
    zarr_format = draw(st.sampled_from([2, 3]))
    fill = draw(st.sampled_from([0, 3]))
    # Some chunks hold only the fill value (not written), others random values.
    empty = draw(st.booleans())
    selection = []
    for n in shape:
        start = draw(st.integers(0, n))
        stop = draw(st.integers(start, n + 2))
        selection.append(slice(start, stop))
    seed = draw(st.integers(0, 2**16))
    return shape, chunks, dtype, zarr_format, fill, empty, tuple(selection), seed


def make_array(path, shape, chunks, dtype, zarr_format, fill, values):
    array = zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=dtype, zarr_format=zarr_format,
                              compressors=None, fill_value=fill, overwrite=True)
    array[...] = values
    return array


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_direct_read_equals_zarr(tmp_path, case):
    shape, chunks, dtype, zarr_format, fill, empty, selection, seed = case
    rng = np.random.default_rng(seed)
    values = (rng.random(shape) * 50).astype(dtype)
    if empty:  # the first half of the array is the fill value: zarr writes no chunk there
        values[: shape[0] // 2 + 1] = fill
    array = make_array(tmp_path / f"a{seed}.zarr", shape, chunks, dtype, zarr_format, fill, values)
    direct = ChunkFiles.of(array)
    assert direct is not None
    got = direct.read(selection)
    expected = array[selection]
    assert got is not None
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_missing_chunk_is_the_fill_value(tmp_path):
    array = make_array(tmp_path / "a.zarr", (4, 6), (2, 3), "float32", 3, 7.5, np.full((4, 6), 7.5, "f4"))
    array[0:2, 0:3] = 1.0
    # Only one chunk was written; the other three hold the fill value.
    files = [f for f in (tmp_path / "a.zarr").rglob("*") if f.is_file() and f.name != "zarr.json"]
    assert len(files) == 1
    expected = np.full((4, 6), 7.5, "f4")
    expected[0:2, 0:3] = 1.0
    np.testing.assert_array_equal(ChunkFiles.of(array).read((slice(None), slice(None))), expected)


def test_compressed_sharded_and_big_endian_arrays_are_left_to_zarr(tmp_path):
    values = np.arange(24, dtype="f4").reshape(4, 6)
    compressed = zarr.create_array(str(tmp_path / "c.zarr"), shape=(4, 6), chunks=(2, 3), dtype="f4")
    compressed[...] = values
    sharded = zarr.create_array(str(tmp_path / "s.zarr"), shape=(4, 6), chunks=(2, 3), shards=(4, 6),
                                dtype="f4", compressors=None)
    sharded[...] = values
    big = zarr.create_array(str(tmp_path / "b.zarr"), shape=(4, 6), chunks=(2, 3), dtype=">f4",
                            zarr_format=2, compressors=None)
    big[...] = values
    assert ChunkFiles.of(compressed) is None
    assert ChunkFiles.of(sharded) is None
    assert ChunkFiles.of(big) is None


def test_a_chunk_file_of_the_wrong_size_is_left_to_zarr(tmp_path):
    array = make_array(tmp_path / "a.zarr", (4, 6), (2, 3), "float32", 3, 0, np.ones((4, 6), "f4"))
    chunk = tmp_path / "a.zarr" / "c" / "1" / "1"
    chunk.write_bytes(chunk.read_bytes()[:-4])
    direct = ChunkFiles.of(array)
    assert direct.read((slice(0, 2), slice(0, 3))) is not None  # an intact chunk still reads directly
    assert direct.read((slice(None), slice(None))) is None


def test_prediction_store_reads_uncompressed_blocks_directly(tmp_path):
    """Both layouts read row blocks through ChunkFiles and get zarr's values."""
    rng = np.random.default_rng(0)
    probs = rng.random((3, 2, 5, 7)).astype("f4")
    probs /= probs.sum(axis=1, keepdims=True)
    per_image = zarr.open_group(str(tmp_path / "p.zarr"), mode="w")
    for n in range(3):
        per_image.create_array(f"img{n}", shape=(2, 5, 7), chunks=(2, 2, 7), dtype="f4", compressors=None)[...] = probs[n]
    stacked = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    stacked.attrs["image_ids"] = ["img0", "img1", "img2"]
    stacked.create_array("probs", shape=probs.shape, chunks=(1, 2, 2, 7), dtype="f4", compressors=None)[...] = probs
    for path in ("p.zarr", "s.zarr"):
        store = open_predictions(tmp_path / path)
        for n in range(3):
            np.testing.assert_array_equal(store.read_rows(f"img{n}", 1, 4), probs[n][:, 1:4])
        assert store._direct and all(reader is not None for reader in store._direct.values())


def test_prediction_store_falls_back_to_zarr_for_compressed_stores(tmp_path):
    probs = np.full((2, 4, 4), 0.5, "f4")
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="w")
    group.create_array("img0", shape=probs.shape, chunks=(2, 2, 4), dtype="f4")[...] = probs
    store = open_predictions(tmp_path / "p.zarr")
    np.testing.assert_array_equal(store.read_rows("img0", 0, 4), probs)
    assert list(store._direct.values()) == [None]


@pytest.mark.skipif(not hasattr(os, "preadv"), reason="os.preadv is not available on this platform")
def test_reads_are_straight_into_the_block(tmp_path, monkeypatch):
    """A block of whole chunks is read with one preadv per chunk into the block itself."""
    array = make_array(tmp_path / "a.zarr", (3, 8, 5), (3, 4, 5), "float16", 3, 0,
                       np.arange(120, dtype="f2").reshape(3, 8, 5))
    calls = []
    real = os.preadv

    def spy(fd, buffers, offset):
        calls.append([len(b) for b in buffers])
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", spy)
    got = ChunkFiles.of(array).read((slice(None), slice(0, 8), slice(None)))
    np.testing.assert_array_equal(got, array[...])
    # Two chunks; each lands in the block as 3 class rows of 4 x 5 float16 values.
    assert calls == [[40, 40, 40], [40, 40, 40]]
