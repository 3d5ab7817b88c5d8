"""Generate a Cityscapes-sized synthetic dataset for timing ``segaudit score``.

    python benchmarks/make_dataset.py OUT_DIR --images 20 [--classes 19 --height 1024 --width 2048]
        [--dtype float16|float32] [--codec none|default]

Writes OUT_DIR/masks/*.png (8-bit, a few 255 ignore pixels) and OUT_DIR/preds.zarr
(per-image layout; by default float16, uncompressed, chunks of 256 rows: ~20 MB each; row
chunks as segaudit's writer chooses them, at most 32 MB). The scenes are
blocky random layouts and the "model" is a noisy softmax around the labels; only the
sizes matter here, not realism.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import zarr
from PIL import Image


def make_image(rng, n_classes, height, width):
    coarse = rng.integers(0, n_classes, size=(height // 64, width // 64))
    labels = np.repeat(np.repeat(coarse, 64, axis=0), 64, axis=1).astype(np.uint8)
    labels[:4] = 255  # an ignored band, like Cityscapes' ego-vehicle border
    noise = rng.normal(0, 1.0, size=(n_classes, height // 16, width // 16))
    logits = np.repeat(np.repeat(noise, 16, axis=1), 16, axis=2).astype(np.float32)
    truth = np.minimum(labels, n_classes - 1)
    np.put_along_axis(logits, truth[None].astype(np.int64), 4.0, axis=0)
    logits -= logits.max(axis=0)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=0)
    return labels, logits.astype(np.float16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    parser.add_argument("--codec", choices=("none", "default"), default="none",
                        help="none: uncompressed; default: zarr's default codec")
    args = parser.parse_args()
    from segaudit.io.writer import chunk_rows

    masks = args.out / "masks"
    store_path = args.out / "preds.zarr"
    shutil.rmtree(masks, ignore_errors=True)
    shutil.rmtree(store_path, ignore_errors=True)
    masks.mkdir(parents=True)
    group = zarr.open_group(str(store_path), mode="w", zarr_format=3)
    group.attrs["classes"] = [f"class{k}" for k in range(args.classes)]
    rng = np.random.default_rng(args.seed)
    shape = (args.classes, args.height, args.width)
    dtype = np.dtype(args.dtype)
    rows = min(args.height, chunk_rows(args.classes, args.width, dtype.itemsize))
    codec = {"compressors": None} if args.codec == "none" else {}  # {}: zarr's default codec
    for n in range(args.images):
        labels, probs = make_image(rng, args.classes, args.height, args.width)
        image_id = f"img{n:05d}"
        Image.fromarray(labels, mode="L").save(masks / f"{image_id}.png", compress_level=1)
        array = group.create_array(image_id, shape=shape, chunks=(args.classes, rows, args.width),
                                   dtype=dtype, **codec)
        array[:] = probs.astype(dtype)
        print(f"\r{n + 1}/{args.images}", end="", flush=True)
    print(f"\nwrote {masks} and {store_path}")


if __name__ == "__main__":
    main()
