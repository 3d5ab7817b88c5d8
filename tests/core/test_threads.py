"""Threaded scoring (core.passes.map_images, --threads): the same bytes as one thread.

Every output of a threaded run (the ranking CSV, its run record, issue masks, the
confusion summary, the in-memory API's arrays) must be byte-identical to the
single-threaded run's, for every method, on a dataset of mixed image sizes whose images
span several row blocks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datasets import make_dataset, random_labels, random_probs, write_masks, write_store
from segaudit.api import score, score_arrays, score_arrays_run
from segaudit.cli import app
from segaudit.compat import find_label_issues, get_label_quality_scores
from segaudit.core.passes import check_threads, default_threads
from segaudit.errors import InputError
from segaudit.methods import METHODS

IDS = [f"img{n:02d}" for n in range(9)]
SIZES = {"img00": (37, 23), "img02": (8, 64), "img03": (64, 8), "img05": (1, 5), "img07": (50, 41)}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Nine images of mixed sizes, 4-row chunks (so several blocks per image), float16."""
    root = tmp_path_factory.mktemp("mixed")
    return make_dataset(root, IDS, n_classes=5, size=(20, 30), sizes=SIZES, seed=3, dtype=np.float16,
                        row_chunk=4)


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def outputs(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory``, by relative path."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("method", [*METHODS, "all"])
@pytest.mark.parametrize("downsample", [1, 4])
def test_score_outputs_are_byte_identical_for_any_thread_count(mixed, tmp_path, method, downsample):
    runs = {}
    for threads in (1, 2, 3):
        out = tmp_path / f"t{threads}"
        out.mkdir()
        invoke("score", mixed.masks, mixed.store, "--method", method, "--downsample", downsample,
               "--threads", threads, "-q", "-o", out / "ranking.csv")
        runs[threads] = outputs(out)
    assert set(runs[1]) == {"ranking.csv", "ranking.run.json"}
    assert runs[2] == runs[1]
    assert runs[3] == runs[1]
    assert b"threads" not in runs[1]["ranking.run.json"]  # it changes nothing, so it is not recorded


@pytest.mark.parametrize("method", ["clc", "threshold"])
def test_issue_masks_and_summary_are_byte_identical_for_any_thread_count(mixed, tmp_path, method):
    runs = {}
    for threads in (1, 3):
        out = tmp_path / f"t{threads}"
        invoke("issues", mixed.masks, mixed.store, "--out", out / "issues", "--method", method, "--top", 9,
               "--threads", threads, "-q")
        invoke("summary", mixed.masks, mixed.store, "--csv", out / "summary.csv", "--threads", threads, "-q")
        runs[threads] = outputs(out)
    assert len([name for name in runs[1] if name.startswith("issues")]) == len(IDS)
    assert runs[3] == runs[1]


def test_api_and_drop_ins_are_identical_for_any_thread_count():
    rng = np.random.default_rng(5)
    n, k, h, w = 7, 6, 24, 16
    probs = np.stack([random_probs(rng, k, h, w) for _ in range(n)]).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.stack([random_labels(rng, k, h, w, ignore_fraction=0.0) for _ in range(n)]).astype(np.int64)
    one, pixels_one = score_arrays(labels, probs, methods=METHODS, return_pixel_scores=True, threads=1)
    two, pixels_two = score_arrays(labels, probs, methods=METHODS, return_pixel_scores=True, threads=2)
    assert [repr(r) for r in one] == [repr(r) for r in two]  # repr: exact floats, NaN included
    assert pixels_one.tobytes() == pixels_two.tobytes()
    ranked = [score_arrays_run(labels, probs, methods=METHODS, threads=t).results for t in (1, 3)]
    assert [r.image_id for r in ranked[0]] == [r.image_id for r in ranked[1]]
    for method in ("softmin", "num_pixel_issues"):
        a = get_label_quality_scores(labels, probs, method=method, threads=1)
        b = get_label_quality_scores(labels, probs, method=method, threads=2)
        assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    for factor in (1, 2, 4):
        a = find_label_issues(labels, probs, downsample=factor, threads=1)
        b = find_label_issues(labels, probs, downsample=factor, threads=2)
        assert np.array_equal(a, b)


def test_the_first_bad_image_in_dataset_order_is_reported(tmp_path):
    """Several bad images: every thread count names the first one, as one thread does."""
    rng = np.random.default_rng(1)
    ids = [f"i{n}" for n in range(8)]
    probs = {i: random_probs(rng, 3, 12, 9) for i in ids}
    for bad in ("i3", "i6"):
        probs[bad][:, 7, 2] = np.nan
    write_masks(tmp_path / "masks", {i: random_labels(rng, 3, 12, 9) for i in ids})
    write_store(tmp_path / "preds.zarr", probs, row_chunk=2)
    for threads in (1, 2, 4):
        with pytest.raises(InputError, match=r"\bi3\b.*row 7, column 2"):
            score(tmp_path / "masks", tmp_path / "preds.zarr", methods=("softmin",), threads=threads)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_one_line_errors(bad, mixed):
    with pytest.raises(InputError, match=r"^threads must be a whole number >= 1, got") as caught:
        check_threads(bad)
    assert caught.value.cli_message.startswith("--threads must be a whole number >= 1, got")
    with pytest.raises(InputError, match="^threads must"):
        score(mixed.masks, mixed.store, threads=bad)


def test_cli_refuses_zero_threads(mixed, tmp_path):
    result = CliRunner().invoke(app, ["score", str(mixed.masks), str(mixed.store), "--threads", "0",
                                      "-o", str(tmp_path / "r.csv")])
    assert result.exit_code == 2
    assert "--threads must be a whole number >= 1, got 0" in result.output
    assert not (tmp_path / "r.csv").exists()


def test_default_is_the_usable_cores():
    assert check_threads(None) == default_threads() >= 1


@pytest.mark.parametrize("downsample", [1, 2])
def test_volumes_score_byte_identically_for_any_thread_count(tmp_path, downsample):
    """Volumes (tall images scored slab by slab, with slice tallies and 3-D cells) too."""
    from core.test_volumes import volumes_dataset, write_volumes

    rng = np.random.default_rng(11)
    volumes = volumes_dataset(rng, 5, 3, [(3, 5, 4), (2, 6, 6), (4, 3, 5)])
    masks, store = write_volumes(tmp_path / "data", volumes, dtype="float16", chunk_bytes=64)
    runs = {}
    for threads in (1, 3):
        out = tmp_path / f"t{threads}"
        out.mkdir()
        invoke("score", masks, store, "--method", "all", "--downsample", downsample, "--threads", threads,
               "-q", "-o", out / "ranking.csv")
        runs[threads] = outputs(out)
    assert b"worst_slice" in runs[1]["ranking.csv"]
    assert runs[3] == runs[1]
