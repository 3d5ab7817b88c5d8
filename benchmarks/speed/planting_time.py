"""CPU time of auto's planting over a directory of masks, with the plan of a run over them.

``python benchmarks/speed/planting_time.py MASKS N_CLASSES [--repeats 3]``: the masks are
read first (not timed); then ``calibration.planted_copies`` runs for every image with the
plan of a run over them (seed 0), on this thread; prints the CPU time of each repeat, their
median, and the time per kind.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("masks", type=Path)
    parser.add_argument("n_classes", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from segaudit.calibration import CalibrationPlan, planted_copies
    from segaudit.calibration.kinds import PLANTED_KINDS, plant_kinds

    files = sorted(args.masks.glob("*.png"))
    masks = [(f.stem, np.asarray(Image.open(f))) for f in files]
    plan = CalibrationPlan(seed=0, n_images=len(masks))
    ignore = np.zeros(args.n_classes, np.bool_)
    planted_copies(plan, masks[0][0], masks[0][1], ignore, args.n_classes)  # compile
    totals, per_kind = [], defaultdict(list)
    for _ in range(args.repeats):
        start = time.process_time()
        n = 0
        for image_id, labels in masks:
            n += len(planted_copies(plan, image_id, labels, ignore, args.n_classes))
        totals.append(time.process_time() - start)
    # Per kind: each kind alone (its shared memo computed inside it), one repeat.
    for image_id, labels in masks:
        ignored = labels >= args.n_classes
        for kind in plan.kinds_for(image_id):
            start = time.process_time()
            plant_kinds((kind,), labels, ignored, args.n_classes, plan.seed, image_id)
            per_kind[kind.name].append(time.process_time() - start)
    print(f"{len(masks)} masks, {n} copies; planted_copies CPU s: "
          f"{', '.join(f'{t:.2f}' for t in totals)}; median {statistics.median(totals):.2f}")
    for name in PLANTED_KINDS:
        if per_kind[name]:
            print(f"  {name:15s} alone: {len(per_kind[name]):3d} calls, {sum(per_kind[name]):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
