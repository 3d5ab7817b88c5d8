"""Where the kernel's time goes in memory, against the machine's limit (issue 30, item 1).

    python benchmarks/speed/kernel_parts.py [--classes 19] [--rows 512] [--width 2048] [--repeats 15]

One image of K x rows x width (softmax of Gaussian logits, per-pixel random labels), float32
and float16, timed on one core with ``time.thread_time`` (minimum of the repeats, in
nanoseconds per pixel):

- the memory limit: numpy summing the classes (``probs.sum(axis=0)``; float16 as its 16-bit
  patterns, numpy has no fast float16 add), which reads every stored value once and does one
  add each;
- the kernel as ``get_label_quality_scores`` runs it (softmin, one temperature);
- reference loops written like the kernel's, one part at a time (row by row, each class's
  row in turn, 32-bit selects): the argmax over the classes alone; the argmax with the
  label's value and the row sums (the kernel's scan of the stored values); the label's value
  alone (a gather, the least any score needs);
- what is left of the kernel beyond its scan (validation, softmin's exp and sums, the
  tallies): the kernel minus the scan loop.

Nothing is written; the table is printed as Markdown.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from segaudit.core.dataset import make_decoding
from segaudit.core.kernel import ImageStats, KernelConfig, accumulate
from segaudit.io.predictions import sum_tolerance


@njit(cache=False, nogil=True)
def argmax_only(probs):
    n_classes, rows, width = probs.shape
    key = np.empty(width, probs.dtype)
    best = np.empty(width, np.int32)
    check = 0
    for r in range(rows):
        row = probs[0, r]
        for c in range(width):
            key[c] = row[c]
            best[c] = 0
        for k in range(1, n_classes):
            row = probs[k, r]
            k32 = np.int32(k)
            for c in range(width):
                v = row[c]
                greater = v > key[c]
                key[c] = v if greater else key[c]
                best[c] = k32 if greater else best[c]
        check += best[r % width]
    return check


@njit(cache=False, nogil=True)
def scan(probs, labels):
    """The kernel's scan of float32 values: argmax, the label's value, the row sums."""
    n_classes, rows, width = probs.shape
    key = np.empty(width, probs.dtype)
    best = np.empty(width, np.int32)
    s_key = np.empty(width, probs.dtype)
    total = np.empty(width)
    check = 0.0
    for r in range(rows):
        lab = labels[r]
        row = probs[0, r]
        for c in range(width):
            key[c] = row[c]
            best[c] = 0
            s_key[c] = row[c]
            total[c] = np.float64(row[c])
        for k in range(1, n_classes):
            row = probs[k, r]
            k32 = np.int32(k)
            for c in range(width):
                v = row[c]
                greater = v > key[c]
                key[c] = v if greater else key[c]
                best[c] = k32 if greater else best[c]
                s_key[c] = v if lab[c] == k32 else s_key[c]
                total[c] += np.float64(v)
        check += s_key[r % width] + total[r % width] + best[r % width]
    return check


@njit(cache=False, nogil=True)
def gather(probs, labels):
    n_classes, rows, width = probs.shape
    check = 0.0
    for r in range(rows):
        for c in range(width):
            check += np.float64(probs[labels[r, c], r, c])
    return check


def best_time(function, repeats: int) -> float:
    function()  # compiled, caches warm
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        function()
        times.append(time.thread_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    k, rows, width = args.classes, args.rows, args.width
    logits = rng.standard_normal((k, rows, width), dtype=np.float32) * 2
    probs = np.exp(logits)
    probs /= probs.sum(axis=0, keepdims=True)
    labels = rng.integers(0, k, (rows, width)).astype(np.int32)
    pixels = rows * width
    print(f"{k} classes x {rows} x {width}, one core (time.thread_time, minimum of {args.repeats}); ns per pixel\n")
    print("| part | float32 | float16 |")
    print("|---|---:|---:|")
    lines = {}
    for dtype in (np.float32, np.float16):
        stored = probs.astype(dtype)
        kernel_values = stored.view(np.uint16) if dtype == np.float16 else stored
        decoding = make_decoding(np.dtype(dtype), k, (), False, sum_tol=sum_tolerance(np.dtype(dtype), k))
        config = KernelConfig(decoding)

        def kernel():
            accumulate(ImageStats(k, pixels, (0.1,)), kernel_values, labels, config)

        found = {
            "memory limit: numpy sums the classes (reads each value once)": best_time(
                (lambda: stored.sum(axis=0)) if dtype == np.float32
                else (lambda: kernel_values.sum(axis=0, dtype=np.uint32)), args.repeats),
            "the kernel (softmin, one temperature)": best_time(kernel, args.repeats),
            "its scan alone: argmax, the label's value, row sums (reference loop)":
                best_time(lambda: scan(kernel_values, labels), args.repeats) if dtype == np.float32 else None,
            "the argmax alone (reference loop)": best_time(lambda: argmax_only(kernel_values), args.repeats),
            "the label's value alone, a gather (reference loop)": best_time(lambda: gather(kernel_values, labels), args.repeats),
        }
        for name, seconds in found.items():
            lines.setdefault(name, []).append("–" if seconds is None else f"{seconds / pixels * 1e9:.2f}")
    for name, cells in lines.items():
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
