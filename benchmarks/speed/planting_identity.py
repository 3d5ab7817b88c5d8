"""Do the planted kinds give the same copies as another version of segaudit?

Records a digest of every kind's copy (its int32 bytes, or None) for many masks, seeds,
``unlabeled`` settings and ignored-pixel patterns, with whatever ``segaudit`` is on the path;
``compare`` then checks two records copy by copy. To check a change against the version
before it::

    git archive <before> segaudit | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before python benchmarks/speed/planting_identity.py record before.json
    PYTHONPATH=$PWD python benchmarks/speed/planting_identity.py record after.json
    python benchmarks/speed/planting_identity.py compare before.json after.json

The masks: CamVid 360x480 (real), the synthetic benchmark's masks and the speed store's
1024x2048 masks (read only). ``--quick`` takes every 10th mask of each set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

#: (name, mask root, n_classes, ignored values, seeds, the unlabeled class of one variant)
SETS = {
    "camvid": (Path("/work/bench/camvid/360x480/noisy"), 11, (11, 255), (0, 1), 0),
    "synthetic": (Path("/work/bench/synthetic"), 10, (255,), (0, 1, 2), 0),
    "f16": (Path("/work/scratch30/f16-50/masks"), 19, (255,), (0, 1, 2), 0),
}


def digest(copy) -> str | None:
    if copy is None:
        return None
    copy = np.ascontiguousarray(copy)
    return f"{copy.dtype}{copy.shape}:" + hashlib.sha1(copy.tobytes()).hexdigest()


def mask_files(root: Path, quick: bool) -> list[Path]:
    files = sorted(root.rglob("*.png"))
    if root.name == "synthetic":  # the masks, not the photos
        files = [f for f in files if "/masks/" in str(f)]
    return files[::10] if quick else files


def rectangle(shape, image_id: str) -> np.ndarray:
    """A seeded rectangle of ignored pixels (a hole of unscored pixels inside classes)."""
    rng = np.random.default_rng(list(image_id.encode()))
    h, w = shape
    y0, x0 = int(rng.integers(h)), int(rng.integers(w))
    out = np.zeros(shape, np.bool_)
    out[y0:y0 + max(2, h // 6), x0:x0 + max(2, w // 5)] = True
    return out


def record(out: Path, names: list[str], quick: bool) -> None:
    import segaudit
    from segaudit.calibration.kinds import PLANTED_KINDS, plant_kinds

    kinds = tuple(PLANTED_KINDS.values())
    print(f"segaudit from {Path(segaudit.__file__).parent}", file=sys.stderr)
    result = {}
    for name in names:
        root, n_classes, ignored_values, seeds, unlabeled = SETS[name]
        files = mask_files(root, quick)
        start = time.process_time()
        for path in files:
            image_id = str(path.relative_to(root).with_suffix(""))
            labels = np.asarray(Image.open(path)).astype(np.int32)
            ignored = np.isin(labels, ignored_values) | (labels >= n_classes)
            variants = [(f"s{seed}", seed, ignored, None, kinds) for seed in seeds]
            variants.append(("unlabeled", 0, ignored, unlabeled, kinds))
            variants.append(("hole", 0, ignored | rectangle(labels.shape, image_id), None, kinds))
            variants.append(("reversed", 1, ignored, None, kinds[::-1]))  # the memo filled in another order
            for variant, seed, ign, unl, order in variants:
                copies = plant_kinds(order, labels, ign, n_classes, seed, image_id, unl)
                for kind, copy in zip(order, copies):
                    result[f"{name}/{image_id}/{variant}/{kind.name}"] = digest(copy)
        print(f"{name}: {len(files)} masks, {time.process_time() - start:.1f} s CPU", file=sys.stderr)
    out.write_text(json.dumps(result, sort_keys=True, indent=0))
    print(f"{len(result)} copies recorded in {out}", file=sys.stderr)


def compare(first: Path, second: Path) -> int:
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    common = sorted(a.keys() & b.keys())
    mismatched = [k for k in common if a[k] != b[k]]
    made = sum(a[k] is not None for k in common)
    print(f"{len(common)} copies compared ({made} planted, {len(common) - made} None), "
          f"{len(mismatched)} mismatches; only in one record: {len(a.keys() ^ b.keys())}")
    for k in mismatched[:20]:
        print("  mismatch:", k, a[k], b[k])
    # A --quick record is a subset of a full one: only the copies in both are compared.
    return 1 if mismatched or not common else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record the digests of every copy")
    rec.add_argument("out", type=Path)
    rec.add_argument("--sets", default=",".join(SETS), help=f"comma list of {', '.join(SETS)}")
    rec.add_argument("--quick", action="store_true", help="every 10th mask of each set")
    cmp_ = sub.add_parser("compare", help="compare two records")
    cmp_.add_argument("first", type=Path)
    cmp_.add_argument("second", type=Path)
    args = parser.parse_args()
    if args.command == "record":
        record(args.out, args.sets.split(","), args.quick)
        return 0
    return compare(args.first, args.second)


if __name__ == "__main__":
    sys.exit(main())
