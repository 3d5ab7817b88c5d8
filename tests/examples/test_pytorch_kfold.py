"""examples/pytorch_kfold.py runs offline, end to end, on a tiny model and tiny data (needs torch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import write_masks

torch = pytest.importorskip("torch", reason="torch is not installed: examples/pytorch_kfold.py is not run")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pytorch_kfold.py"


def test_kfold_example_writes_a_store_that_segaudit_scores(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"scene/{n:02d}" for n in range(6)]
    labels = {}
    for image_id in ids:
        lab = np.zeros((16, 20), np.uint8)
        lab[8:] = 1
        lab[2:6, rng.integers(0, 14):][:, :6] = 2
        labels[image_id] = lab
        photo = np.stack([lab * 100, 255 - lab * 100, np.full_like(lab, 90)], axis=-1).astype(np.uint8)
        (tmp_path / "images" / "scene").mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo).save(tmp_path / "images" / f"{image_id}.png")
    write_masks(tmp_path / "masks", labels)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "NO_PROXY": "*", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}  # offline
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
         "--classes", "3", "--folds", "2", "--epochs", "1", "--batch-size", "2", "--model", "tiny",
         "--workers", "0", "-o", str(tmp_path / "preds.zarr")],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote" in result.stdout and "(6 images)" in result.stdout

    import segaudit

    run = segaudit.score(tmp_path / "masks", tmp_path / "preds.zarr", methods=("softmin",))
    assert sorted(r.image_id for r in run.results) == ids


def test_the_default_model_downloads_no_weights(tmp_path):
    pytest.importorskip("torchvision", reason="torchvision is not installed: the default DeepLabV3 model is not built")
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch-home"), "NO_PROXY": "",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}  # any download fails
    code = ("import runpy; model = runpy.run_path(%r)['make_model'](3); "
            "print(sum(p.numel() for p in model.parameters()) > 0)" % str(EXAMPLE))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr[-3000:]
    assert not (tmp_path / "torch-home").exists()  # nothing was downloaded
