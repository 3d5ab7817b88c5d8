"""Without a writable package __pycache__ or HOME, Numba still has a cache (a temporary one)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datasets import FIXTURES

PACKAGE = Path(__file__).resolve().parents[1] / "segaudit"

SCORE = """
import numpy as np, segaudit
labels = np.zeros((2, 4, 5), int)
probs = np.full((2, 3, 4, 5), 1 / 3)
results, _ = segaudit.score_arrays(labels, probs, methods=("softmin", "clc"))
print("scored", len(results))
"""


@pytest.fixture
def unwritable(tmp_path):
    """A copy of the package whose __pycache__ directories cannot be made (a file stands where
    each would be: this holds for root too, unlike permissions), and a HOME that is a file."""
    copy = tmp_path / "site"
    shutil.copytree(PACKAGE, copy / "segaudit", ignore=shutil.ignore_patterns("__pycache__"))
    for directory in [copy / "segaudit", *(p for p in (copy / "segaudit").rglob("*") if p.is_dir())]:
        (directory / "__pycache__").write_text("not a directory")
    home = tmp_path / "home"
    home.write_text("not a directory")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONPATH=str(copy), TMPDIR=str(temporary), PYTHONDONTWRITEBYTECODE="1")
    return env, copy, temporary


def test_the_library_falls_back_to_a_temporary_numba_cache(unwritable):
    env, copy, temporary = unwritable
    result = subprocess.run([sys.executable, "-c", SCORE], env=env, capture_output=True, text=True, timeout=600,
                            cwd=temporary)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "scored 2" in result.stdout and "cannot cache" not in result.stderr
    (cache,) = temporary.glob("segaudit-numba-*")
    assert any(cache.rglob("*.nbi"))  # the kernels were cached there


def test_the_cli_says_where_it_caches(unwritable):
    env, copy, temporary = unwritable
    result = subprocess.run([sys.executable, "-m", "segaudit", "score", str(FIXTURES / "masks"),
                             str(FIXTURES / "preds.zarr"), "-o", str(temporary / "r.csv")],
                            env=env, capture_output=True, text=True, timeout=600, cwd=temporary)
    assert result.returncode == 0, result.stderr[-2000:]
    notes = [l for l in result.stderr.splitlines() if "Numba cache" in l]
    assert len(notes) == 1 and str(temporary / "segaudit-numba-") in notes[0]


def test_a_numba_cache_dir_the_user_set_is_left_alone(unwritable, tmp_path):
    env, copy, temporary = unwritable
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    result = subprocess.run([sys.executable, "-c", SCORE], env=env, capture_output=True, text=True, timeout=600,
                            cwd=temporary)
    assert result.returncode == 0, result.stderr[-2000:]
    assert any((tmp_path / "mine").rglob("*.nbi")) and not list(temporary.glob("segaudit-numba-*"))


def test_an_unwritable_numba_cache_dir_falls_back_too(unwritable, tmp_path):
    env, copy, temporary = unwritable
    blocked = tmp_path / "blocked"
    blocked.write_text("a file: no directory can be made here")
    env = dict(env, NUMBA_CACHE_DIR=str(blocked / "cache"))  # and HOME is a file, as above
    result = subprocess.run([sys.executable, "-m", "segaudit", "score", str(FIXTURES / "masks"),
                             str(FIXTURES / "preds.zarr"), "-o", str(temporary / "r.csv")],
                            env=env, capture_output=True, text=True, timeout=600, cwd=temporary)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cannot cache" not in result.stderr and "Traceback" not in result.stderr
    notes = [l for l in result.stderr.splitlines() if "Numba cache" in l]
    assert len(notes) == 1 and str(temporary / "segaudit-numba-") in notes[0]
