"""A full disk: overlay (and score) fail with one line, exit 2, and leave nothing behind.

The disk is a real one: a tmpfs of 64 KiB mounted for the test. That needs root (or a
mount namespace); elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from datasets import FIXTURES
from segaudit.cli import app

runner = CliRunner()


@pytest.fixture
def full_disk(tmp_path):
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip() or done.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def ranking(tmp_path: Path) -> Path:
    out = tmp_path / "ranking.csv"
    result = runner.invoke(app, ["score", str(FIXTURES / "masks"), str(FIXTURES / "preds.zarr"), "-m", "rsoftmin,clc",
                                 "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out


def test_overlay_onto_a_full_disk_exits_2_and_leaves_no_png(tmp_path, full_disk):
    csv = ranking(tmp_path)
    out = full_disk / "overlays"
    result = runner.invoke(app, ["overlay", "-r", str(csv), "--top", "12", "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    assert not out.exists() or list(out.rglob("*")) == []
    assert os.listdir(full_disk) in ([], ["overlays"])


def test_score_onto_a_full_disk_exits_2_and_leaves_no_file(tmp_path, full_disk):
    filler = full_disk / "filler"
    filler.write_bytes(b"x" * (60 * 1024))  # leave less room than the ranking and its record take
    out = full_disk / "ranking.csv"
    result = runner.invoke(app, ["score", str(FIXTURES / "masks"), str(FIXTURES / "preds.zarr"), "-m", "all",
                                 "-o", str(out), "-q"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(full_disk)) == ["filler"]
