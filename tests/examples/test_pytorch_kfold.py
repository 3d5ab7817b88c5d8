"""examples/pytorch_kfold.py runs offline, end to end, on tiny data (needs torch): CamVid-like
void labels, a label map, a resize, and the folds of ``segaudit folds``, recorded in the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from datasets import write_masks

torch = pytest.importorskip("torch", reason="torch is not installed: examples/pytorch_kfold.py is not run")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pytorch_kfold.py"
OFFLINE = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "NO_PROXY": "*", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}


def scenes(root: Path, n=6, shape=(30, 40), values=(0, 1, 2), void=3) -> list[str]:
    """Photos whose colour follows the label, masks with ``values`` and some ``void`` pixels."""
    rng = np.random.default_rng(0)
    ids, labels = [f"seq{n % 3}/{n:02d}" for n in range(n)], {}
    for image_id in ids:
        lab = np.full(shape, values[0], np.uint8)
        lab[shape[0] // 2:] = values[1]
        top = int(rng.integers(0, shape[1] - 12))
        lab[4:12, top:top + 12] = values[2]
        lab[:2] = void
        labels[image_id] = lab
        index = np.searchsorted(values, np.minimum(lab, values[-1]))
        photo = np.stack([index * 100, 255 - index * 100, np.full_like(index, 90)], axis=-1).astype(np.uint8)
        (root / "images" / image_id).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo).save(root / "images" / f"{image_id}.png")
    write_masks(root / "masks", labels)
    return ids


def example(root: Path, *options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLE), "--images", str(root / "images"), "--masks",
                           str(root / "masks"), *map(str, options), "-o", str(root / "preds.zarr")],
                          capture_output=True, text=True, timeout=600, env=OFFLINE, cwd=root)


def test_camvid_like_masks_with_folds_label_map_and_resize(tmp_path):
    from segaudit.cli import app
    from segaudit.io.folds import read_folds, recorded_folds

    ids = scenes(tmp_path, values=(10, 20, 30), void=99)
    (tmp_path / "map.json").write_text(json.dumps({"10": 0, "20": 1, "30": 2, "99": "ignore"}))
    folds = CliRunner().invoke(app, ["folds", str(tmp_path / "masks"), "-k", "3", "--group-by", "^(seq\\d)/",
                                     "--ignore-index", "99", "-o", str(tmp_path / "folds.csv")])
    assert folds.exit_code == 0, folds.output
    extra = np.full((30, 40), 10, np.uint8)
    write_masks(tmp_path / "extra", {"late/one": extra})  # a mask added after the split: left out, with a note
    (tmp_path / "masks" / "late").mkdir()
    (tmp_path / "extra" / "late" / "one.png").rename(tmp_path / "masks" / "late" / "one.png")
    result = example(tmp_path, "--classes", 3, "--label-map", tmp_path / "map.json", "--ignore-index", 11,
                     "--size", "24x32", "--folds", tmp_path / "folds.csv", "--epochs", 2, "--batch-size", 2,
                     "--threads", 1)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "note: 1 mask(s) not in --folds" in result.stdout
    assert "6 images, 3 folds, K=3" in result.stdout and "(6 images)" in result.stdout
    assert "out-of-fold mIoU against the masks" in result.stdout

    import zarr

    store = zarr.open_group(str(tmp_path / "preds.zarr"), mode="r")
    assert all(store[image_id].shape == (3, 30, 40) for image_id in ids)  # at the masks' size, not 24x32
    assert recorded_folds(tmp_path / "preds.zarr") == read_folds(tmp_path / "folds.csv")
    scored = CliRunner().invoke(app, ["score", str(tmp_path / "masks"), str(tmp_path / "preds.zarr"), "--folds",
                                      str(tmp_path / "folds.csv"), "--label-map", str(tmp_path / "map.json"),
                                      "--allow-missing", "-o", str(tmp_path / "ranking.csv"), "-q"])
    assert scored.exit_code == 0, scored.output


def test_void_above_the_classes_is_ignored_and_k_folds_are_made_here(tmp_path):
    scenes(tmp_path, n=4, values=(0, 1, 2), void=11)  # CamVid: K = 11 classes would have void = 11
    result = example(tmp_path, "--classes", 3, "--ignore-index", 11, "--folds", 2, "--epochs", 1,
                     "--batch-size", 2, "--model", "tiny")
    assert result.returncode == 0, result.stderr[-3000:]
    from segaudit.io.folds import recorded_folds

    assert sorted(set(recorded_folds(tmp_path / "preds.zarr").values())) == [0, 1]


def test_a_mask_without_image_and_a_bad_size_are_one_line_errors(tmp_path):
    scenes(tmp_path, n=2)
    bad = example(tmp_path, "--classes", 3, "--ignore-index", 3, "--size", "big", "--folds", 2)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1] == "error: --size 'big': expected HxW, e.g. 180x240"
    (tmp_path / "images" / "seq0" / "00.png").unlink()
    missing = example(tmp_path, "--classes", 3, "--ignore-index", 3, "--folds", 2)
    assert missing.returncode != 0 and "error: no image for mask" in missing.stderr


def test_images_of_different_sizes_need_size_or_batches_of_one(tmp_path):
    scenes(tmp_path, n=4)
    write_masks(tmp_path / "masks", {"seq0/00": np.zeros((20, 24), np.uint8)})  # one smaller scene
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(tmp_path / "images" / "seq0" / "00.png")
    refused = example(tmp_path, "--classes", 3, "--ignore-index", 3, "--folds", 2, "--epochs", 1)
    assert refused.returncode != 0  # in the main process, before any fold's process (where it would hang)
    assert refused.stderr.strip().splitlines()[-1] == "error: the images differ in size: pass --size HxW (or --batch-size 1)"
    one_by_one = example(tmp_path, "--classes", 3, "--ignore-index", 3, "--folds", 2, "--epochs", 1,
                         "--batch-size", 1, "--model", "tiny")
    assert one_by_one.returncode == 0, one_by_one.stderr[-3000:]
    import zarr

    assert zarr.open_group(str(tmp_path / "preds.zarr"), mode="r")["seq0/00"].shape == (3, 20, 24)


def test_sigterm_stops_the_fold_processes_and_leaves_an_incomplete_store(tmp_path):
    import signal
    import time

    import zarr

    scenes(tmp_path, n=4)
    run = subprocess.Popen([sys.executable, str(EXAMPLE), "--images", str(tmp_path / "images"), "--masks",
                            str(tmp_path / "masks"), "--classes", "3", "--ignore-index", "3", "--folds", "2",
                            "--epochs", "100000", "--jobs", "2", "--threads", "1", "-o", str(tmp_path / "preds.zarr")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=OFFLINE, cwd=tmp_path)
    seen = ""
    while "epoch 1/" not in seen:  # a fold's process is training
        line = run.stdout.readline()
        assert line, run.stderr.read()[-3000:]
        seen += line
    run.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert run.wait(timeout=120) == 143
    assert time.monotonic() - started < 120
    assert zarr.open_group(str(tmp_path / "preds.zarr"), mode="r").attrs["segaudit_complete"] is False


def test_the_deeplabv3_model_downloads_no_weights(tmp_path):
    pytest.importorskip("torchvision", reason="torchvision is not installed: the DeepLabV3 model is not built")
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch-home"), "NO_PROXY": "",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}  # any download fails
    code = ("import runpy; model = runpy.run_path(%r)['make_model'](3, 'deeplabv3'); "
            "print(sum(p.numel() for p in model.parameters()) > 0)" % str(EXAMPLE))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr[-3000:]
    assert not (tmp_path / "torch-home").exists()  # nothing was downloaded


def test_folds_trained_in_parallel_processes_give_the_store_of_folds_trained_in_turn(tmp_path):
    import zarr

    ids = scenes(tmp_path, n=4)
    stores = {}
    for jobs in (1, 2):
        result = example(tmp_path, "--classes", 3, "--ignore-index", 3, "--folds", 2, "--epochs", 2,
                         "--batch-size", 2, "--threads", 1, "--jobs", jobs)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"({jobs} job(s) of 1 thread(s))" in result.stdout
        (tmp_path / "preds.zarr").rename(tmp_path / f"jobs{jobs}.zarr")
        store = zarr.open_group(str(tmp_path / f"jobs{jobs}.zarr"), mode="r")
        stores[jobs] = {image_id: np.asarray(store[image_id][...]) for image_id in ids}
    for image_id in ids:  # same seeds, one thread each: the same weights, whichever process trained them
        np.testing.assert_array_equal(stores[1][image_id], stores[2][image_id])
