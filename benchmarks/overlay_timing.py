"""Time ``segaudit overlay --top N`` on generated Cityscapes-sized data (after ``score``).

    python benchmarks/overlay_timing.py [WORK_DIR] [--images 50] [--top 50] [--repeat 3] [--delete]

Generates WORK_DIR (default /tmp/segaudit-overlay-bench) with ``make_dataset.py`` unless it
already holds a dataset of that many images: 19 classes, 1024x2048, float16, ~80 MB of
predictions per image (50 images: ~4 GB). Then runs ``segaudit score`` once (ranking.csv,
also a warm-up of the page cache and Numba's compile cache) and ``segaudit overlay`` REPEAT
times, printing each run's wall time and peak RSS. ``--delete`` removes WORK_DIR afterwards.
Not run in CI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def segaudit() -> str:
    beside = Path(sys.executable).parent / "segaudit"
    return str(beside) if beside.is_file() else (shutil.which("segaudit") or "segaudit")


def timed(command: list[str], cwd: Path) -> tuple[float, float, float]:
    """Run a command; return (wall seconds, peak RSS in MB, CPU seconds) of that child alone."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path, nargs="?", default=Path("/tmp/segaudit-overlay-bench"))
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--top", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-width", type=int, default=None, help="passed to overlay (default: its own)")
    parser.add_argument("--delete", action="store_true", help="remove WORK afterwards")
    args = parser.parse_args()

    work = args.work
    masks, store = work / "masks", work / "preds.zarr"
    have = len(list(masks.glob("*.png"))) if masks.is_dir() else 0
    if have != args.images or not store.is_dir():
        print(f"generating {args.images} images in {work} ...", flush=True)
        subprocess.run([sys.executable, str(HERE / "make_dataset.py"), str(work), "--images", str(args.images)],
                       check=True, stdout=subprocess.DEVNULL)
    try:
        wall, rss, cpu = timed([segaudit(), "score", str(masks), str(store), "-q", "-o", "ranking.csv"], work)
        print(f"score: {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss:.0f} MB")
        overlay = [segaudit(), "overlay", "--top", str(args.top), "-q", "--out", "overlays"]
        if args.max_width is not None:
            overlay += ["--max-width", str(args.max_width)]
        walls = []
        for n in range(args.repeat):
            wall, rss, cpu = timed(overlay, work)
            walls.append(wall)
            size = sum(p.stat().st_size for p in (work / "overlays").glob("*.png")) / 2**20
            print(f"overlay --top {args.top} run {n + 1}: {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss:.0f} MB, "
                  f"{len(list((work / 'overlays').glob('*.png')))} PNGs, {size:.1f} MB", flush=True)
        print(f"best of {args.repeat}: {min(walls):.1f} s ({min(walls) / max(1, args.top):.2f} s per image), "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    finally:
        if args.delete:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
