"""CPU time of the kernel and the cell pooling on one row block (issue 30, item 2).

    python benchmarks/speed/block.py [--dtype float16|float32] [--labels blocky|random] [--repeats 15]

One block of 19 x 256 x 2048 (rows 256-511 of ``benchmarks/make_dataset.py``'s first image:
blocky labels, a noisy model; or per-pixel random labels, the worst case for the cells'
votes), timed with ``time.thread_time`` (one core, minimum and median of the repeats) for
what the scoring pass runs per block: the kernel alone (softmin; every per-image method, as
``--method all``; with auto's temperatures and s per pixel), the pooling alone at F = 4, and
the two in one walk (``pooling.accumulate_and_pool``, what the pass runs when clc or coco
need cells). Nothing is written.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np

from segaudit.core.dataset import make_decoding
from segaudit.core.kernel import accumulate
from segaudit.core.pooling import accumulate_and_pool, pool
from segaudit.engine import Settings, image_stats, kernel_config
from segaudit.io.predictions import sum_tolerance
from segaudit.methods import METHODS, resolve

MAKE_DATASET = Path(__file__).resolve().parents[1] / "make_dataset.py"
CLASSES, ROWS, WIDTH, IMAGE_ROWS, FACTOR = 19, 256, 2048, 1024, 4


def block(labels_kind: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels int32 (rows, width), stored values (K, rows, width)) of one block."""
    rng = np.random.default_rng(0)
    if labels_kind == "blocky":
        spec = importlib.util.spec_from_file_location("make_dataset", MAKE_DATASET)
        make = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(make)
        labels, probs = make.make_image(rng, CLASSES, IMAGE_ROWS, WIDTH)
        labels = labels[ROWS:2 * ROWS].astype(np.int32)
        return labels, np.ascontiguousarray(probs[:, ROWS:2 * ROWS]).astype(dtype)
    raw = rng.gamma(0.3, size=(CLASSES, ROWS, WIDTH)) + 1e-9
    probs = (raw / raw.sum(axis=0)).astype(dtype)
    labels = probs.argmax(axis=0).astype(np.int32)
    flip = rng.random(labels.shape) < 0.1
    labels[flip] = rng.integers(0, CLASSES, size=int(flip.sum()))
    labels[rng.random(labels.shape) < 0.05] = 255
    return labels, probs


def cpu_ms(function, repeats: int) -> tuple[float, float]:
    function()  # Numba's cache loaded (or the kernel compiled) outside the timing
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        function()
        times.append((time.thread_time() - start) * 1e3)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="Stored dtype.")
    parser.add_argument("--labels", choices=["blocky", "random"], default="blocky",
                        help="make_dataset.py's blocky labels, or per-pixel random ones.")
    parser.add_argument("--repeats", type=int, default=15, help="Timed calls of each part.")
    args = parser.parse_args()
    labels, stored = block(args.labels, args.dtype)
    probs = stored.view(np.uint16) if stored.dtype == np.float16 else stored
    decoding = make_decoding(stored.dtype, CLASSES, (255,), False, sum_tolerance(stored.dtype, CLASSES))
    settings = Settings(temperature=0.1, pixel_threshold=0.5)
    print(f"one block of {CLASSES}x{ROWS}x{WIDTH} {args.dtype}, {args.labels} labels, CPU ms (min, median "
          f"of {args.repeats})")
    for case, names, calibrating in (("softmin", ("softmin",), False), ("all", tuple(METHODS), False),
                                     ("auto", tuple(METHODS), True)):
        methods = resolve(names)
        config = kernel_config(decoding, methods, settings.pixel_threshold)
        s_out = np.empty(labels.shape) if calibrating else None  # auto's copies read each pixel's s

        def stats():
            return image_stats(CLASSES, IMAGE_ROWS * WIDTH, methods, settings, calibrating)

        parts = {"kernel": lambda: accumulate(stats(), probs, labels, config, s_out=s_out)}
        if case != "softmin":
            parts["pool"] = lambda: pool(probs, labels, decoding, FACTOR, pixel_dtype=None)
            parts["kernel + pool in one walk"] = lambda: accumulate_and_pool(
                stats(), probs, labels, config, FACTOR, s_out=s_out, pixel_dtype=None)
        for part, function in parts.items():
            low, middle = cpu_ms(function, args.repeats)
            print(f"  {case:8s} {part:26s} {low:6.1f} {middle:6.1f}", flush=True)


if __name__ == "__main__":
    main()
