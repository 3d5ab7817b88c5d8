"""SIGTERM and SIGINT: the real CLI in a subprocess, signalled while it works.

SIGTERM exits 143 and SIGINT 130, and neither leaves a temporary file, directory or
cell cache behind (nor a complete overlay PNG: overlays are moved in only at the end).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import segaudit
from datasets import make_dataset

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROOT = Path(segaudit.__file__).resolve().parent.parent
IMAGES, SIZE = 100, (128, 192)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A dataset large enough that its cell cache lives for a while; its ranking."""
    root = tmp_path_factory.mktemp("big")
    ds = make_dataset(root, ids=[f"c/{i:03d}" for i in range(IMAGES)], n_classes=4, size=SIZE, dtype="float16")
    env = environment(root / "tmp-score")
    subprocess.run([sys.executable, "-m", "segaudit", "score", ds.masks, ds.store, "-o", root / "ranking.csv",
                    "-q"], check=True, env=env, timeout=300)
    return ds, root


def environment(tmpdir: Path) -> dict[str, str]:
    tmpdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmpdir), PYTHONPATH=str(ROOT))
    env.pop("COLUMNS", None)
    return env


def signal_when(command, env, appeared, signum, *, timeout=120.0):
    """Run ``command``; as soon as ``appeared()`` is true, send ``signum``. Returns (rc, stderr).

    Skips (does not fail) if the command ended before the moment came, which only an
    extremely fast machine could make happen.
    """
    process = subprocess.Popen([sys.executable, "-m", "segaudit", *map(str, command)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while not appeared():
            if process.poll() is not None:
                pytest.skip(f"the command ended (rc {process.returncode}) before it could be signalled")
            if time.monotonic() > deadline:
                raise AssertionError("the awaited moment never came")
            time.sleep(0.002)
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode == 0 and signum != signal.SIGKILL:
        # On a loaded machine the signal can land only once the work is done (the command
        # then finishes normally, its outputs complete): nothing to check.
        pytest.skip("the signal landed after the command had finished its work")
    return process.returncode, err.decode()


def caches(tmpdir: Path) -> list[str]:
    return [name for name in os.listdir(tmpdir) if name.startswith("segaudit-cells-")]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("command", ["score", "issues", "summary"])
def test_signal_removes_the_cell_cache(big, tmp_path, command, signum, code):
    ds, _ = big
    tmpdir = tmp_path / "tmp"
    env = environment(tmpdir)
    out = tmp_path / "out"
    out.mkdir()
    args = {"score": ["score", ds.masks, ds.store, "-m", "clc", "--downsample", "1", "-o", out / "r.csv"],
            "issues": ["issues", ds.masks, ds.store, "--downsample", "1", "--out", out / "iss"],
            "summary": ["summary", ds.masks, ds.store, "--downsample", "1", "--csv", out / "c.csv"]}[command]
    rc, err = signal_when(args, env, lambda: bool(caches(tmpdir)), signum)
    assert rc == code, err
    assert "Traceback" not in err
    assert os.listdir(tmpdir) == []
    assert list(out.iterdir()) == []  # issue masks are moved in only at the end


def test_sigterm_during_pack_leaves_no_temporary_store(tmp_path):
    source = tmp_path / "npy"
    source.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        p = rng.random((4, 128, 192)).astype(np.float32)
        np.save(source / f"{i:03d}.npy", p / p.sum(0))
    out = tmp_path / "out"
    out.mkdir()
    rc, err = signal_when(["pack", source, "-o", out / "packed.zarr"], environment(tmp_path / "tmp"),
                          lambda: any(name.endswith(".tmp") for name in os.listdir(out)), signal.SIGTERM)
    assert rc == 143, err
    left = os.listdir(out)
    # On a loaded machine the signal can land during the final rename, which it is held back
    # from: the store is then complete and in place, and still no temporary is left.
    assert left in ([], ["packed.zarr"]), left
    if left:
        import zarr

        assert zarr.open_group(str(out / "packed.zarr"), mode="r").attrs.get("segaudit_complete") is True


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupted_overlay_leaves_no_png(big, tmp_path, signum, code):
    _, root = big
    out = tmp_path / "overlays"
    out.mkdir()

    def drawing():
        staging = [p for p in out.iterdir() if p.name.endswith(".tmp")]
        return any(any(s.iterdir()) for s in staging if s.is_dir())

    rc, err = signal_when(["overlay", "-r", root / "ranking.csv", "--top", str(IMAGES), "--out", out],
                          environment(tmp_path / "tmp"), drawing, signum)
    assert rc == code, err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("command", ["regions", "issues"])
def test_interrupted_proposals_and_issue_masks_leave_nothing(big, tmp_path, command, signum, code):
    ds, _ = big
    out = tmp_path / "out"
    out.mkdir()
    args = {"regions": ["regions", ds.masks, ds.store, "-o", tmp_path / "r.csv", "--propose-dir", out,
                        "--min-score", "0"],
            "issues": ["issues", ds.masks, ds.store, "--method", "threshold", "--top", str(IMAGES), "--out", out]}

    def writing():  # a complete file (in the staging folder, or wherever it is written): others are not yet
        return any(f.suffix == ".png" for f in out.rglob("*"))

    rc, err = signal_when(args[command], environment(tmp_path / "tmp"), writing, signum)
    assert rc == code, err
    assert "Traceback" not in err
    assert list(out.iterdir()) == []
    assert not (tmp_path / "r.csv").exists()


def test_next_run_removes_caches_of_killed_processes(big, tmp_path):
    ds, _ = big
    tmpdir = tmp_path / "tmp"
    env = environment(tmpdir)
    rc, _ = signal_when(["score", ds.masks, ds.store, "-m", "clc", "--downsample", "1", "-o", tmp_path / "r.csv"],
                        env, lambda: bool(caches(tmpdir)), signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert caches(tmpdir)  # SIGKILL leaves it
    alive = tmpdir / f"segaudit-cells-{os.getpid()}-live"  # a live process's cache is kept
    alive.mkdir()
    subprocess.run([sys.executable, "-m", "segaudit", "score", ds.masks, ds.store, "-m", "clc", "-o",
                    tmp_path / "r.csv", "-q"], check=True, env=env, timeout=300)
    assert caches(tmpdir) == [alive.name]
