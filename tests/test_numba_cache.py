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


# Scores in a process, then says whether Numba's registries were loaded (its target context
# refreshed: numba.np.arraymath is imported by the first refresh and by nothing else here).
LOADS = """
import sys
import numpy as np, segaudit
labels = np.zeros((2, 4, 5), int)
probs = np.full((2, 3, 4, 5), 1 / 3)
results, _ = segaudit.score_arrays(labels, probs, methods=("softmin",))
print("scored", len(results), "refreshed" if "numba.np.arraymath" in sys.modules else "not-refreshed")
"""

# Another package's cached function, run after segaudit's kernels in the same process.
MINE = """
import numpy as np
from numba import njit

@njit(cache=True)
def distinct_sorted(values):
    seen = {}
    for v in values:
        seen[v] = True
    out = np.empty(len(seen), values.dtype)
    for i, k in enumerate(seen):
        out[i] = k
    return np.sort(out)
"""

OTHERS = LOADS + """
sys.path.insert(0, sys.argv[1])
from mine import distinct_sorted
print(distinct_sorted(np.array([3, 1, 2, 3, 1])).tolist(), sum(distinct_sorted.stats.cache_hits.values()),
      "refreshed" if "numba.np.arraymath" in sys.modules else "not-refreshed")
"""


def _run_twice(script, env, *args):
    return [subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, capture_output=True, text=True,
                           timeout=600) for _ in range(2)]


def test_cached_kernels_load_without_numbas_registries(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    first, second = _run_twice(LOADS, env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    assert first.stdout.split() == ["scored", "2", "refreshed"]  # compiling refreshes, as Numba does
    assert second.stdout.split() == ["scored", "2", "not-refreshed"]  # loading from the cache does not


def test_other_numba_code_keeps_numbas_own_load(tmp_path):
    (tmp_path / "mine.py").write_text(MINE)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    first, second = _run_twice(OTHERS, env, tmp_path)
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    assert first.stdout.splitlines()[1] == "[1, 2, 3] 0 refreshed"  # compiled
    # Loaded from the cache after segaudit's kernels, through Numba's own load (which refreshes).
    assert second.stdout.splitlines() == ["scored 2 not-refreshed", "[1, 2, 3] 1 refreshed"]
