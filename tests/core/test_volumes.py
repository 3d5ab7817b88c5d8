"""Volumes scored as one image each: every method against the plain-numpy references
(26-connected components, F×F×F pooling, the worst slice), in bounded slabs."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import naive
from segaudit.core.components import component_roots, component_roots_3d
from segaudit.core.dataset import make_decoding, open_dataset
from segaudit.core.pooling import cell_row, grid_shape, pool
from segaudit.core.slices import SliceTally
from segaudit.engine import score_dataset
from segaudit.io.predictions import sum_tolerance
from segaudit.io.writer import PredictionWriter
from segaudit.methods import METHODS
from segaudit.methods import clc as clc_module
from segaudit.methods.coco import coco_score


def random_volume(rng, n_classes, depth, height, width, *, ignore_fraction=0.2, flip=0.3):
    """(labels (Z, Y, X) int32, probs (K, Z, Y, X) float64): labels mostly the argmax."""
    raw = rng.gamma(rng.uniform(0.1, 1.5), size=(n_classes, depth, height, width))
    probs = raw / raw.sum(axis=0)
    labels = probs.argmax(axis=0)
    flipped = rng.random(labels.shape) < flip
    labels[flipped] = rng.integers(0, n_classes, size=int(flipped.sum()))
    labels[rng.random(labels.shape) < ignore_fraction] = 255
    return labels.astype(np.int32), probs


def tall(array):
    """A (..., Z, Y, X) array as its tall image (..., Z * Y, X)."""
    return array.reshape(*array.shape[:-3], -1, array.shape[-1])


def write_volumes(root: Path, volumes: dict, dtype="float64", chunk_bytes=None):
    (root / "masks").mkdir(parents=True)
    options = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
    with PredictionWriter(root / "preds.zarr", dtype=dtype, **options) as writer:
        for image_id, (labels, probs) in volumes.items():
            np.save(root / "masks" / f"{image_id}.npy", labels)
            writer.write_volume(image_id, probs)
    return root / "masks", root / "preds.zarr"


# --- components -------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), depth=st.integers(1, 5), height=st.integers(1, 5), width=st.integers(1, 5),
       values=st.integers(1, 3))
def test_components_3d_match_flood_fill(seed, depth, height, width, values):
    rng = np.random.default_rng(seed)
    label = rng.integers(-1, values, size=(depth, height, width)).astype(np.int32)
    pred = rng.integers(0, values, size=label.shape).astype(np.int32)
    roots = component_roots_3d(tall(label), tall(pred), height)
    want = {frozenset((z, y, x) for z, y, x in members) for members in naive.components_3d(label, pred)}
    groups = {}
    for index, root in enumerate(roots):
        if root >= 0:
            r, x = divmod(index, width)
            groups.setdefault(int(root), set()).add((r // height, r % height, x))
            assert root <= index  # the root is the component's first cell, row-major
    got = {frozenset(g) for g in groups.values()}
    assert got == want


def test_components_3d_with_one_slice_are_the_8_connected_ones():
    rng = np.random.default_rng(3)
    label = rng.integers(-1, 2, size=(7, 9)).astype(np.int32)
    pred = np.zeros_like(label)
    np.testing.assert_array_equal(component_roots_3d(label, pred, 7), component_roots(label, pred))


def test_components_3d_do_not_join_rows_across_a_slice_boundary_in_plane():
    # Slice 0's last row and slice 1's first row are stacked in the tall grid but are
    # neighbours only through the slice axis: (z=0, y=1, x=0) and (z=1, y=0, x=2) are not.
    label = np.full((2, 2, 3), -1, np.int32)
    label[0, 1, 0] = 0
    label[1, 0, 2] = 0
    roots = component_roots_3d(tall(label), tall(np.zeros_like(label)), 2)
    assert len({r for r in roots if r >= 0}) == 2


# --- pooling ----------------------------------------------------------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_classes=st.integers(2, 5), depth=st.integers(1, 7),
       height=st.integers(1, 7), width=st.integers(1, 7), factor=st.integers(1, 3), slabs=st.integers(1, 2),
       logits=st.booleans())
def test_pooling_3d_matches_reference(seed, n_classes, depth, height, width, factor, slabs, logits):
    rng = np.random.default_rng(seed)
    labels, probs = random_volume(rng, n_classes, depth, height, width)
    if logits:
        probs = rng.normal(0, 3, size=probs.shape)
    decoding = make_decoding(probs.dtype, n_classes, (255,), logits, sum_tolerance(probs.dtype, n_classes))
    step = factor * slabs  # blocks of whole slabs of F slices, as the reader aligns them
    parts = []
    for z in range(0, depth, step):
        block = pool(tall(probs[:, z:z + step]), tall(labels[z:z + step]), decoding, factor, slice_rows=height)
        assert cell_row(z * height, factor, height) == sum(p.label.shape[0] for p in parts)
        parts.append(block)
    got = [np.concatenate([getattr(p, name) for p in parts]) for name in ("label", "pred", "s", "p_pred")]
    assert got[0].shape == grid_shape(depth * height, width, factor, height)
    want = [tall(w) for w in naive.downsample_3d(labels, probs, factor, logits=logits)]
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1][got[0] >= 0], want[1][want[0] >= 0])
    np.testing.assert_allclose(got[2], want[2], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(got[3], want[3], rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(np.concatenate([p.pixel_pred for p in parts]),
                                  tall(naive.decode(probs).argmax(axis=0)))


# --- the worst slice ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), depth=st.integers(1, 6), height=st.integers(1, 5), blocks=st.integers(1, 4))
def test_slice_tally_matches_reference(seed, depth, height, blocks):
    rng = np.random.default_rng(seed)
    labels, probs = random_volume(rng, 3, depth, height, 4, ignore_fraction=0.5)
    s = naive.image_scores(tall(labels), tall(probs), ignore=(255,))["s"]
    tally = SliceTally(depth, height, 0.5)
    rows = max(1, (depth * height) // blocks)  # any row blocks, not only whole slices
    for start in range(0, depth * height, rows):
        tally.add(start, s[start:start + rows])
    assert tally.worst() == naive.worst_slice(labels, probs)


# --- whole runs ------------------------------------------------------------------------


def volumes_dataset(rng, n_volumes, n_classes, shapes):
    return {f"case_{n:05d}": random_volume(rng, n_classes, *shapes[n % len(shapes)]) for n in range(n_volumes)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_classes=st.integers(2, 4), factor=st.integers(1, 3),
       chunk_bytes=st.sampled_from([None, 64]), dtype=st.sampled_from(["float64", "float16", "uint8"]))
def test_volumes_score_like_the_references(seed, n_classes, factor, chunk_bytes, dtype):
    import zarr

    rng = np.random.default_rng(seed)
    shapes = [(int(rng.integers(1, 6)), int(rng.integers(1, 7)), int(rng.integers(1, 7))) for _ in range(3)]
    volumes = volumes_dataset(rng, 3, n_classes, shapes)
    with tempfile.TemporaryDirectory() as tmp:
        masks, store = write_volumes(Path(tmp), volumes, dtype=dtype, chunk_bytes=chunk_bytes)
        # The references read the stored (quantised) values, as the kernel does.
        volumes = {image_id: (labels, np.asarray(zarr.open_array(str(store / image_id))))
                   for image_id, (labels, _) in volumes.items()}
        dataset = open_dataset(masks, store)
        run = score_dataset(dataset, METHODS, downsample=factor, prefetch=2)
        maps = {}
        if run.clc.selection is not None:
            clc_module.flag_pass(dataset, factor, run.clc.selection,
                                 on_image=lambda i, image_id, m, c: maps.__setitem__(image_id, m.copy()))
    assert run.volumes
    by_id = {r.image_id: r for r in run.results}
    flags = dict(zip(volumes, naive.clc_flags_3d(list(volumes.values()), factor)))
    for image_id, (labels, probs) in volumes.items():
        result = by_id[image_id]
        want = naive.image_scores(tall(labels), tall(probs), ignore=(255,))
        assert result.pixels == want["pixels"] and result.low_pixels == want["low_pixels"]
        assert result.suspect_class == want["suspect_class"] and result.likely_class == want["likely_class"]
        for method in ("softmin", "rsoftmin", "cil", "ccp", "tccp", "iou"):
            assert result.scores[method] == pytest.approx(want[method], rel=1e-9, nan_ok=True), method
        label, pred, s, _ = naive.downsample_3d(labels, probs, factor)
        got_coco, want_coco = result.scores["coco"], naive.coco_3d(label, pred, s)
        assert (math.isnan(got_coco) and math.isnan(want_coco)) or got_coco == pytest.approx(want_coco, rel=1e-9)
        flagged = flags[image_id]
        np.testing.assert_array_equal(maps.get(image_id, np.zeros(tall(labels).shape, np.uint8)),
                                      tall(flagged).astype(np.uint8))
        assert result.flagged_pixels == int(flagged.sum())
        assert result.slices == labels.shape[0]
        assert result.worst_slice == naive.worst_slice(labels, probs)


def test_a_volume_is_read_slab_by_slab(tmp_path):
    # Blocks hold whole slices, a multiple of the factor, and never the whole volume when
    # it is larger than a block.
    rng = np.random.default_rng(0)
    masks, store = write_volumes(tmp_path, {"case_0": random_volume(rng, 3, 9, 8, 8)}, chunk_bytes=64)
    dataset = open_dataset(masks, store)
    blocks = dataset.store.row_blocks("case_0", block_bytes=3 * 8 * 8 * 8 * 2, align=2)
    assert blocks[0] == (0, 16) and blocks[-1] == (64, 72)
    assert all(start % 16 == 0 for start, _ in blocks)
    assert dataset.store.image_shape("case_0") == (72, 8)
    assert dataset.store.volume_shape("case_0") == (9, 8, 8)
    np.testing.assert_array_equal(dataset.read_block("case_0", 12, 20),
                                  tall(np.asarray(__import__("zarr").open_array(store / "case_0")))[:, 12:20])
