"""clc's later passes read a temporary cell cache: the same results as re-reading the store,
and the cache is gone afterwards, whatever happened."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
from datasets import FIXTURES, make_dataset, write_masks, write_store

from segaudit.core import cells as cells_module
from segaudit.methods import clc as clc_module
from segaudit.core.dataset import open_dataset
from segaudit.outputs.findings import class_confusions, write_issue_masks
from segaudit.engine import score_dataset

METHODS = ("softmin", "clc", "coco")


def five_images(root, **options):
    return make_dataset(root, ids=("a", "b/c", "b/d", "e", "f"), n_classes=5, size=(13, 11),
                        sizes={"e": (9, 17), "f": (4, 5)}, flip_fraction=0.3, seed=7, **options)


def run_summary(run):
    """Everything a run reports, comparable with ==."""
    rows = [(r.image_id, r.scores, r.pixels, r.flagged_pixels) for r in run.results]
    return rows, run.clc.record().to_dict(), run.clc.flagged.tolist(), run.clc.selection


def score(ds, factor, **options):
    dataset = open_dataset(ds.masks, ds.store)
    return score_dataset(dataset, METHODS, downsample=factor, **options)


@pytest.fixture
def no_cache(monkeypatch):
    """Make every cache 'too big for the disk': the passes re-read the store."""
    def off():
        monkeypatch.setattr(cells_module, "DISK_SHARE", 0.0)
    return off


@pytest.mark.parametrize("factor", [1, 3])
@pytest.mark.parametrize("chunk", [None, 1, 150])  # default, one image per chunk, several per chunk
def test_cache_gives_the_store_passes_results(tmp_path, monkeypatch, no_cache, factor, chunk):
    ds = five_images(tmp_path)
    if chunk:
        monkeypatch.setattr(cells_module, "CHUNK_CELLS", chunk)
    cached = run_summary(score(ds, factor))
    assert cached[1]["issues"] > 0
    no_cache()
    assert run_summary(score(ds, factor)) == cached


def test_cache_with_radix_refinement_and_ties(tmp_path, monkeypatch, no_cache):
    # uint8 storage makes equal s values; no candidate budget forces the extra selecting
    # passes (over the cache) down to one exact value, where dataset order breaks ties.
    ds = five_images(tmp_path, dtype="uint8")
    monkeypatch.setattr(clc_module, "MAX_CANDIDATES", 0)
    monkeypatch.setattr(cells_module, "CHUNK_CELLS", 40)
    cached = run_summary(score(ds, 1))
    assert cached[1]["passes"] > 3 and cached[3].exact
    no_cache()
    assert run_summary(score(ds, 1)) == cached


def test_cache_with_a_baseline(tmp_path, no_cache):
    ds = five_images(tmp_path)
    baseline = score(ds, 2).clc.record()
    dataset = open_dataset(ds.masks, ds.store, only=["b/c", "e"])
    cached = run_summary(score_dataset(dataset, METHODS, baseline=baseline))
    no_cache()
    assert run_summary(score_dataset(dataset, METHODS, baseline=baseline)) == cached


def findings(out):
    written, _ = write_issue_masks(FIXTURES / "masks", FIXTURES / "preds.zarr", out, top=4)
    maps = {image_id: (out / f"{image_id}.png").read_bytes() for image_id, _ in written}
    rows, _ = class_confusions(FIXTURES / "masks", FIXTURES / "preds.zarr")
    return written, maps, rows


def test_issues_and_summary_read_the_pixels_from_the_cache(tmp_path, monkeypatch, no_cache):
    cached = findings(tmp_path / "cached")
    assert cached[0] and cached[2]
    # Cells cached, but no room for the pixels: the flag maps re-read the store.
    real_bytes = cells_module.cache_bytes
    monkeypatch.setattr(cells_module, "cache_bytes",
                        lambda dataset, factor, pixels: 1 << 62 if pixels else real_bytes(dataset, factor, pixels))
    assert findings(tmp_path / "cells only") == cached
    no_cache()
    assert findings(tmp_path / "no cache") == cached


@pytest.fixture
def temp_dir(tmp_path, monkeypatch):
    """Where the cache goes: an empty directory of its own."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def test_cache_exists_during_the_run_and_not_after(tmp_path, temp_dir):
    ds = five_images(tmp_path / "data")
    seen = set()

    def progress(stage, done, total):
        seen.update((stage, p.name.startswith("segaudit-cells-")) for p in temp_dir.iterdir())

    dataset = open_dataset(ds.masks, ds.store)
    score_dataset(dataset, METHODS, on_progress=progress)
    assert ("clc: counting", True) in seen
    assert not list(temp_dir.iterdir())


def nan_in_fourth_image(root):
    ds = five_images(root, dtype="float32")
    ds.probs["e"][:, 2, 2] = np.nan
    ds.labels["e"][2, 2] = 0
    write_masks(ds.masks, ds.labels)
    write_store(ds.store, ds.probs, dtype="float32")
    return ds


def test_cache_is_removed_on_errors_and_interrupts(tmp_path, temp_dir):
    from segaudit.errors import InputError

    ds = nan_in_fourth_image(tmp_path / "data")
    dataset = open_dataset(ds.masks, ds.store)
    with pytest.raises(InputError, match="preds.zarr/e"):
        score_dataset(dataset, METHODS)
    assert not list(temp_dir.iterdir())

    ds = five_images(tmp_path / "good")
    dataset = open_dataset(ds.masks, ds.store)

    def interrupt(stage, done, total):
        if stage == "clc: counting":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score_dataset(dataset, METHODS, on_progress=interrupt)
    assert not list(temp_dir.iterdir())


def test_no_cache_without_clc(tmp_path, temp_dir):
    ds = five_images(tmp_path / "data")
    dataset = open_dataset(ds.masks, ds.store)
    seen = []
    score_dataset(dataset, ("softmin", "coco"), on_progress=lambda *_: seen.extend(temp_dir.iterdir()))
    assert not seen
