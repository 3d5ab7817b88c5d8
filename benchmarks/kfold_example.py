"""The CPU k-fold example measured on real scenes: time, mIoU, and planted swaps found.

    python benchmarks/kfold_example.py [--data ../shared/data/camvid] [--work DIR] [--images 120]

What a user without a GPU does, end to end, on CamVid (11 classes, void = 11 ignored):

1. ``--images`` scenes of CamVid's train split (every third frame, so that neighbouring
   frames are not all kept), linked (not copied) into ``--work``;
2. ``segaudit corrupt --kind swap --rate 0.2`` plants swaps of two of sky, building, road,
   pavement, tree (the noisy masks are what the user has);
3. ``segaudit folds noisy/ -k 5`` (seed 0);
4. ``examples/pytorch_kfold.py`` on the noisy masks at ``--size`` 180x240, its defaults
   otherwise (the timed step: wall time, CPU time and the load average are recorded);
5. ``segaudit score --folds folds.csv --method all`` and ``segaudit evaluate`` against the
   planted truth (AUPRC of the planted swaps);
6. the mIoU of the store's argmax against the CLEAN masks, at the masks' 360x480.

Writes ``results.json`` in ``--work`` and prints it. Needs torch (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VOID = 11


def sh(*args: str, **kwargs) -> subprocess.CompletedProcess:
    print("$", " ".join(map(str, args)), flush=True)
    return subprocess.run([str(a) for a in args], check=True, text=True, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "camvid")
    parser.add_argument("--work", type=Path, default=Path("kfold-example"))
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--size", default="180x240")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="the example's --threads (default: its own)")
    parser.add_argument("--jobs", type=int, default=None, help="the example's --jobs (default: its own)")
    parser.add_argument("extra", nargs="*", help="more options for the example (after --)")
    args = parser.parse_args()

    benchmark_started = time.perf_counter()
    work = args.work.resolve()
    (work / "masks").mkdir(parents=True, exist_ok=False)
    (work / "images").mkdir()
    ids = (args.data / "train.txt").read_text().split()[::3][:args.images]
    for image_id in ids:  # links: the data stays where it is
        (work / "masks" / f"{image_id}.png").symlink_to(args.data / "labels" / "train" / f"{image_id}.png")
        (work / "images" / f"{image_id}.jpg").symlink_to(args.data / "images" / "train" / f"{image_id}.jpg")
    segaudit = [sys.executable, "-m", "segaudit"]
    sh(*segaudit, "corrupt", work / "masks", "--out", work / "noisy", "--kind", "swap", "--rate", "0.2",
       "--truth", work / "truth.csv", "--classes", "0,1,3,4,5", "--min-pixels", "100", "--ignore-index", VOID,
       "--unlabeled", VOID, "--seed", "0", "-q")
    sh(*segaudit, "folds", work / "noisy", "-k", args.folds, "--ignore-index", VOID, "-o", work / "folds.csv")

    command = [sys.executable, REPO / "examples" / "pytorch_kfold.py", "--images", work / "images",
               "--masks", work / "noisy", "--classes", "11", "--ignore-index", VOID, "--size", args.size,
               "--folds", work / "folds.csv", "-o", work / "preds.zarr", *args.extra]
    if args.threads:
        command += ["--threads", args.threads]
    if args.jobs:
        command += ["--jobs", args.jobs]
    load_before = os.getloadavg()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    example = sh(*command, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_after = os.getloadavg()
    print(example.stdout[-2000:])

    sh(*segaudit, "score", work / "noisy", work / "preds.zarr", "--folds", work / "folds.csv", "--method", "all",
       "--ignore-index", VOID, "-o", work / "ranking.csv", "-q")
    evaluation = sh(*segaudit, "evaluate", work / "ranking.csv", work / "truth.csv", "--format", "json", "-q",
                    capture_output=True)
    metrics = {row["method"]: row for row in json.loads(evaluation.stdout)["rows"]}

    import zarr
    from PIL import Image

    store = zarr.open_group(str(work / "preds.zarr"), mode="r")
    confusion = np.zeros((11, 11), np.int64)
    for image_id in ids:
        truth = np.asarray(Image.open(work / "masks" / f"{image_id}.png")).astype(np.int64).ravel()
        predicted = np.asarray(store[image_id][...]).argmax(0).ravel()
        keep = truth != VOID
        confusion += np.bincount(truth[keep] * 11 + predicted[keep], minlength=121).reshape(11, 11)
    inter = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - inter
    truth_rows = list(csv.DictReader(io.StringIO((work / "truth.csv").read_text())))
    results = {
        "images": len(ids), "size": args.size, "folds": args.folds, "planted_swaps": sum(r["is_error"] == "1"
                                                                                         for r in truth_rows),
        "example_wall_seconds": round(wall, 1),
        "example_cpu_seconds": round((after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime), 1),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "cores": os.cpu_count(),
        "miou_vs_clean_masks": round(float(np.mean(inter[union > 0] / union[union > 0])), 3),
        "pixel_accuracy_vs_clean_masks": round(float(inter.sum() / confusion.sum()), 3),
        "auprc": {method: round(float(row["auprc"]), 3) for method, row in metrics.items()},
        "auroc": {method: round(float(row["auroc"]), 3) for method, row in metrics.items()},
        "example_command": " ".join(map(str, command)),
        "example_summary": [line for line in example.stdout.splitlines()
                            if line.startswith(("out-of-fold", "wrote")) or " images, " in line],
        "torch": version("torch"),
        "benchmark_wall_seconds": round(time.perf_counter() - benchmark_started, 1),
    }
    (work / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
