"""fixtures/make_fixtures.py: --help does not touch the fixtures; --out writes elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SCRIPT = FIXTURES / "make_fixtures.py"


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(directory.rglob("*")) if p.is_file() and p.suffix != ".py"}


def test_help_prints_usage_and_rebuilds_nothing():
    before = snapshot(FIXTURES)
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and "--out" in result.stdout
    assert snapshot(FIXTURES) == before
    result = subprocess.run([sys.executable, str(SCRIPT), "--bogus"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unrecognized arguments: --bogus" in result.stderr
    assert snapshot(FIXTURES) == before


def test_out_writes_the_same_fixtures_elsewhere(tmp_path):
    before = snapshot(FIXTURES)
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert snapshot(FIXTURES) == before
    assert (tmp_path / "truth.csv").read_bytes() == (FIXTURES / "truth.csv").read_bytes()
    for mask in sorted((FIXTURES / "masks").rglob("*.png")):
        assert (tmp_path / "masks" / mask.relative_to(FIXTURES / "masks")).read_bytes() == mask.read_bytes()
