"""Measure packing predictions: throughput, store size and read-back speed per dtype and codec.

    python benchmarks/pack_throughput.py [--images 20 --classes 19 --height 1024 --width 2048]
                                         [--dir /tmp] [--quick]

Generates ``--images`` softmax-like float32 predictions in memory (random logits at
stride 8 upsampled bilinearly, boosted for the class of a blocky scene: most pixels
confident, some not; half the images have a mislabeled rectangle), then for each
configuration:

- **pack**: ``PredictionWriter`` from the in-memory float32 arrays (checks included),
  in MB/s of float32 input and images/s;
- **size**: bytes on disk, and the ratio to the uncompressed stored bytes;
- **read**: every image read back the way ``segaudit score`` reads it (``read_rows`` over
  ``row_blocks``, one thread), in MB/s of stored bytes and images/s;
- **score**: ``segaudit.score(..., methods=("softmin",))`` end to end, seconds.

Also ``segaudit pack`` from a directory of .npy files (end to end, float16), and the cost
of quantisation: softmin of the float16 and uint8 versions against float32 (with
``score_arrays``), as relative shifts and rank changes.

Every store is written to a temporary directory under ``--dir`` (default /tmp) and
deleted after it is measured; the largest (float32, uncompressed) is 3.2 GB for the
default sizes, and the .npy sources another 3.2 GB. Stores are read back from the page
cache, right after writing: a slow disk or network file system favours compression more.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import segaudit.io.writer as writer_module
from segaudit.api import score_arrays
from segaudit.io.pack import directory_bytes, pack
from segaudit.io.predictions import open_predictions
from segaudit.api import score
from segaudit.io.writer import PredictionWriter

MB = 1e6


def upsample(low: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of (K, h, w) to (K, height, width), float32."""
    def axis(n_low, n):
        x = np.linspace(0, n_low - 1, n, dtype=np.float32)
        i0 = np.minimum(x.astype(np.int64), n_low - 2)
        return i0, (x - i0)

    i0, wy = axis(low.shape[1], height)
    rows = low[:, i0] * (1 - wy)[None, :, None] + low[:, i0 + 1] * wy[None, :, None]
    j0, wx = axis(low.shape[2], width)
    return (rows[:, :, j0] * (1 - wx) + rows[:, :, j0 + 1] * wx).astype(np.float32)


def make_image(rng, n_classes, height, width, planted: bool):
    """(labels uint8 (H, W), probs float32 (K, H, W)); ``planted`` mislabels a rectangle."""
    coarse = rng.integers(0, n_classes, size=(height // 128 + 1, width // 128 + 1))
    truth = np.repeat(np.repeat(coarse, 128, axis=0), 128, axis=1)[:height, :width]
    # Logits at stride 8, upsampled bilinearly, as most segmentation networks do.
    logits = upsample(rng.normal(0, 1.5, size=(n_classes, height // 8 + 2, width // 8 + 2)).astype(np.float32),
                      height, width)
    boost = upsample(rng.uniform(4.0, 9.0, size=(1, height // 64 + 2, width // 64 + 2)).astype(np.float32),
                     height, width)[0]
    np.put_along_axis(logits, truth[None], np.take_along_axis(logits, truth[None], 0) + boost, axis=0)
    logits -= logits.max(axis=0)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=0)
    labels = truth.astype(np.uint8)
    if planted:
        h0, w0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
        size = rng.integers(32, 256)
        block = labels[h0:h0 + size, w0:w0 + 2 * size]
        labels[h0:h0 + size, w0:w0 + 2 * size] = (block + 1 + rng.integers(0, n_classes - 1)) % n_classes
    labels[:4] = 255  # an ignored band
    return labels, logits


def with_codec(name: str):
    """codec_arguments that also knows zarr's default codec and blosc variants (benchmark only)."""
    from zarr.codecs import BloscCodec, ZstdCodec

    original = writer_module.codec_arguments
    extra = {
        "zarr-default": lambda dtype: {"compressors": ZstdCodec(level=0)},
        "blosc-lz4-bitshuffle": lambda dtype: {"compressors": BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle",
                                                                         typesize=dtype.itemsize)},
        "blosc-zstd": lambda dtype: {"compressors": BloscCodec(cname="zstd", clevel=3, shuffle="shuffle",
                                                               typesize=dtype.itemsize)},
    }

    def patched(codec, dtype):
        return extra[codec](dtype) if codec in extra else original(codec, dtype)

    return patched


def read_back(path: Path) -> tuple[float, int]:
    store = open_predictions(path)
    nbytes = 0
    start = time.perf_counter()
    for image_id in store.image_ids:
        for a, b in store.row_blocks(image_id):
            block = store.read_rows(image_id, a, b)
            nbytes += block.nbytes
    return time.perf_counter() - start, nbytes


def measure(root: Path, masks: Path, probs: list[np.ndarray], dtype: str, codec: str, *,
            chunk_bytes: int = writer_module.CHUNK_BYTES, channels_last: bool = False, score_it: bool = True) -> dict:
    path = root / "bench.zarr"
    shutil.rmtree(path, ignore_errors=True)
    original = writer_module.codec_arguments
    writer_module.codec_arguments = with_codec(codec)
    try:
        start = time.perf_counter()
        with PredictionWriter(path, dtype=dtype, codec=codec, chunk_bytes=chunk_bytes,
                              channels_last=channels_last, store_channels_last=channels_last) as w:
            for n, p in enumerate(probs):
                w.write(f"img{n:05d}", np.moveaxis(p, 0, -1) if channels_last else p)
        pack_s = time.perf_counter() - start
    finally:
        writer_module.codec_arguments = original
    size = directory_bytes(path)
    read_s, nbytes = read_back(path)
    read_s2, _ = read_back(path)
    read_s = min(read_s, read_s2)
    score_s = None
    if score_it:
        score_s = min(timed(lambda: score(masks, path)) for _ in range(2))
    shutil.rmtree(path)
    input_bytes = sum(p.nbytes for p in probs)
    chunk = probs[0].shape[0] * writer_module.chunk_rows(probs[0].shape[0], probs[0].shape[2],
                                                         np.dtype(dtype).itemsize, chunk_bytes) \
        * probs[0].shape[2] * np.dtype(dtype).itemsize
    return dict(dtype=dtype, codec=codec + (" (H,W,K)" if channels_last else ""), chunk_mb=chunk / MB,
                pack_mb_s=input_bytes / MB / pack_s, pack_img_s=len(probs) / pack_s, size_gb=size / 1e9,
                ratio=nbytes / size, read_mb_s=nbytes / MB / read_s, read_img_s=len(probs) / read_s,
                score_s=score_s)


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def quantisation_cost(labels: list[np.ndarray], probs: list[np.ndarray]) -> list[str]:
    """Softmin (and cil) of the float16 and uint8 versions against float32, per kind of image."""
    lab = np.stack(labels)
    planted = np.arange(len(probs)) % 2 == 1
    results = {}
    for dtype in ("float32", "float16", "uint8"):
        scores = []
        for n, p in enumerate(probs):
            stored = p.astype(dtype) if dtype != "uint8" else np.minimum(np.rint(p * np.float32(255)), 255).astype(np.uint8)
            [r], _ = score_arrays(lab[n][None], stored[None], methods=("softmin", "cil"), ignore_index=(255,))
            scores.append((r.scores["softmin"], r.scores["cil"]))
        results[dtype] = np.array(scores)
    base = results["float32"]
    lines = []
    for dtype in ("float16", "uint8"):
        for m, method in enumerate(("softmin", "cil")):
            rel = np.abs(results[dtype][:, m] - base[:, m]) / base[:, m]
            same = np.array_equal(np.argsort(results[dtype][:, m], kind="stable"), np.argsort(base[:, m], kind="stable"))
            cells = []
            for mask in (~planted, planted):
                cells.append(f"{base[mask, m].min():.3g}–{base[mask, m].max():.3g} | "
                             f"{np.median(rel[mask]):.1e} | {rel[mask].max():.1e}")
            lines.append(f"| {dtype} | {method} | {' | '.join(cells)} | {'same' if same else 'changed'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--quick", action="store_true", help="only the main configurations")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="segaudit-pack-bench-", dir=args.dir))
    try:
        rng = np.random.default_rng(args.seed)
        labels, probs = [], []
        start = time.perf_counter()
        for n in range(args.images):
            lab, p = make_image(rng, args.classes, args.height, args.width, planted=n % 2 == 1)
            labels.append(lab)
            probs.append(p)
        print(f"generated {args.images} images of {probs[0].shape} float32 "
              f"({sum(p.nbytes for p in probs) / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s", flush=True)
        masks = root / "masks"
        masks.mkdir()
        for n, lab in enumerate(labels):
            Image.fromarray(lab, mode="L").save(masks / f"img{n:05d}.png", compress_level=1)

        configs = [
            ("float16", "none", {}), ("float16", "lz4", {}), ("float16", "zstd", {}), ("float16", "zarr-default", {}),
            ("float32", "none", {}), ("float32", "lz4", {}), ("float32", "zstd", {}), ("float32", "zarr-default", {}),
            ("uint8", "none", {}), ("uint8", "lz4", {}), ("uint8", "zstd", {}),
        ]
        if not args.quick:
            configs += [
                ("float16", "blosc-lz4-bitshuffle", {}), ("float16", "blosc-zstd", {}),
                ("float16", "none", {"chunk_bytes": 8 * 2**20}), ("float16", "none", {"chunk_bytes": 16 * 2**20}),
                ("float16", "none", {"chunk_bytes": 64 * 2**20}),
                ("float16", "none", {"channels_last": True}),
            ]
        # Warm Numba's cache and the page cache of the masks.
        measure(root, masks, probs[:2], "float16", "none", score_it=False)
        with PredictionWriter(root / "warm.zarr", dtype="float16") as w:
            for n, p in enumerate(probs):
                w.write(f"img{n:05d}", p)
        score(masks, root / "warm.zarr")
        shutil.rmtree(root / "warm.zarr")

        print("| dtype | codec | chunk MB | pack MB/s (float32 in) | pack img/s | store GB | ratio | "
              "read MB/s (stored) | read img/s | score softmin s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for dtype, codec, options in configs:
            r = measure(root, masks, probs, dtype, codec, **options)
            print(f"| {r['dtype']} | {r['codec']} | {r['chunk_mb']:.1f} | {r['pack_mb_s']:.0f} | {r['pack_img_s']:.2f} | "
                  f"{r['size_gb']:.2f} | {r['ratio']:.2f} | {r['read_mb_s']:.0f} | {r['read_img_s']:.1f} | "
                  f"{r['score_s']:.2f} |", flush=True)

        # segaudit pack from a directory of float32 .npy files, end to end.
        source = root / "npy"
        source.mkdir()
        for n, p in enumerate(probs):
            np.save(source / f"img{n:05d}.npy", p)
        for dtype in ("float16", "float32"):
            seconds = min(timed(lambda dtype=dtype: pack(source, root / "packed.zarr", dtype=dtype, overwrite=True))
                          for _ in range(2))
            total = sum(p.nbytes for p in probs)
            print(f"segaudit pack, directory of float32 .npy -> {dtype}: {seconds:.1f} s, {total / MB / seconds:.0f} MB/s, "
                  f"{len(probs) / seconds:.2f} images/s", flush=True)
            shutil.rmtree(root / "packed.zarr")

        print("\n| stored as | method | clean: float32 score | clean: median shift | clean: max shift | "
              "mislabeled: float32 score | mislabeled: median shift | mislabeled: max shift | ranking of all |")
        print("|---|---|---|---|---|---|---|---|---|")
        print("\n".join(quantisation_cost(labels, probs)))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
