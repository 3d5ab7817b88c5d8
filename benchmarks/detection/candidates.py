"""Candidate image scores against the detection grid, in plain numpy (issue 9's exploration).

    python benchmarks/detection/candidates.py [--work benchmarks/detection/work]

Needs a finished ``run.py`` work directory (scenes, noisy masks, predictions, truth). For
every cell of the grid (error type x resolution x model quality) it computes each
candidate score from the stored predictions and prints its AUPRC and AUROC, plus the mean
over cells and the number of cells where it is the worst. Candidates that win here are
then implemented in segaudit's kernel and measured again by ``run.py --rescore``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from segaudit.evaluation.evaluate import auroc, average_precision  # noqa: E402
from segaudit.io.predictions import open_predictions  # noqa: E402


def softmin(s: np.ndarray, tau: float, weights: np.ndarray | None = None) -> float:
    exponent = (1 - s) / tau
    w = np.exp(exponent - exponent.max())
    if weights is not None:
        w = w * weights
    return float(np.sum(s * w) / np.sum(w))


def tiles(values: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``values`` over size x size tiles (edge tiles mean what they have)."""
    h, w = values.shape
    ph, pw = -h % size, -w % size
    padded = np.pad(values, ((0, ph), (0, pw)), constant_values=np.nan)
    blocks = padded.reshape((h + ph) // size, size, (w + pw) // size, size)
    with np.errstate(invalid="ignore"):
        return np.nanmean(blocks, axis=(1, 3)).ravel()


def boundary(labels: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` (Chebyshev) of a pixel with another label."""
    edge = np.zeros(labels.shape, bool)
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:-1] |= labels[1:] != labels[:-1]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    grown = edge.copy()
    for _ in range(width - 1):
        g = grown.copy()
        g[1:] |= grown[:-1]
        g[:-1] |= grown[1:]
        g[:, 1:] |= grown[:, :-1]
        g[:, :-1] |= grown[:, 1:]
        grown = g
    return grown


def load_cell(data: Path, cell: Path):
    store = open_predictions(cell / "preds.zarr")
    truth = {}
    for line in (data / "truth.csv").read_text().splitlines()[1:]:
        image_id, is_error = line.split(",")[:2]
        truth[image_id] = is_error == "1"
    images = []
    for image_id in store.image_ids:
        h, _ = store.image_shape(image_id)
        probs = store.read_rows(image_id, 0, h)
        probs = probs.view(np.float16).astype(np.float64) if probs.dtype == np.uint16 else probs.astype(np.float64)
        labels = np.asarray(Image.open(data / "masks" / f"{image_id}.png")).astype(np.int64)
        images.append((image_id, labels, probs))
    return images, truth


def candidates(images) -> dict[str, np.ndarray]:
    """Every candidate's score per image (lower = more suspicious)."""
    n_classes = images[0][2].shape[0]
    # Dataset-wide per-class mean self-confidence (confident learning's thresholds).
    sums, counts = np.zeros(n_classes), np.zeros(n_classes)
    per_image = []
    for _, labels, probs in images:
        s = np.take_along_axis(probs, labels[None], 0)[0]
        pred = probs.argmax(0)
        np.add.at(sums, labels.ravel(), s.ravel())
        np.add.at(counts, labels.ravel(), 1)
        per_image.append((labels, s, pred, probs))
    t = sums / np.maximum(counts, 1)
    out: dict[str, list] = {}

    def add(name, value):
        out.setdefault(name, []).append(value)

    for labels, s, pred, probs in per_image:
        n = s.size
        flat = s.ravel()
        add("softmin", softmin(flat, 0.1))
        add("cil", flat.mean())
        add("ccp", (pred == labels).mean())
        for tau in (0.2, 0.3, 0.5):
            add(f"softmin tau={tau}", softmin(flat, tau))
        for m in (20, 50, 200):
            add(f"softmin tau=1/ln(n/{m})", softmin(flat, 1 / np.log(n / m)))
        for size in (4, 8, 16):
            tile_s = tiles(s, size)
            add(f"tile{size} softmin", softmin(tile_s, 0.1))
            add(f"tile{size} softmin tau=0.05", softmin(tile_s, 0.05))
            add(f"tile{size} min", tile_s.min())
            add(f"tile{size} ccp softmin", softmin(tiles((pred == labels).astype(float), size), 0.1))
        for grid in (8, 16):
            size = max(1, min(s.shape) // grid)
            add(f"grid{grid} softmin", softmin(tiles(s, size), 0.1))
        # The temperature tied to the image size: 1/tau = 10 + ln(sqrt(n / n0)), n0 = 760 x 1280
        # (segaudit's rsoftmin, anchored at the paper's image size, not fitted here).
        scaled = softmin(flat, 1 / (10 + 0.5 * np.log(n / (760 * 1280))))
        add("rsoftmin: tau tied to sqrt(n), = 0.1 at 760x1280", scaled)
        add("geometric mean of softmin and rsoftmin", np.sqrt(out["softmin"][-1] * scaled))
        add("geometric mean of softmin and tau=1/ln(n/20)", np.sqrt(out["softmin"][-1] * out["softmin tau=1/ln(n/20)"][-1]))
        add("mean of the lowest 1 % of s", np.sort(flat)[:max(1, n // 100)].mean())
        calibrated = np.minimum(1.0, s / t[labels]).ravel()
        add("calibrated softmin", softmin(calibrated, 0.1))
        add("calibrated tile8 softmin", softmin(tiles(np.minimum(1.0, s / t[labels]), 8), 0.1))
        for width in (1, 2):
            inner = ~boundary(labels, width)
            add(f"softmin no-boundary{width}", softmin(flat[inner.ravel()], 0.1) if inner.any() else softmin(flat, 0.1))
            inner_tiles = tiles(np.where(inner, s, np.nan), 8)
            add(f"tile8 softmin no-boundary{width}",
                softmin(inner_tiles[~np.isnan(inner_tiles)], 0.1) if inner.any() else np.nan)
    return {k: np.asarray(v, float) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--out", type=Path, help="write every figure as JSON here")
    args = parser.parse_args()
    meta = json.loads((args.work / "results.json").read_text())["meta"]
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for name, setting in meta["settings"].items():
        for kind in ("drop", "swap", "shift"):
            data = args.work / setting["resolution"] / kind
            images, truth = load_cell(data, data / setting["quality"])
            is_error = np.array([truth[i] for i, _, _ in images])
            for method, scores in candidates(images).items():
                table.setdefault(method, {})[f"{kind}, {name}"] = (average_precision(is_error, scores),
                                                                   auroc(is_error, scores))
            print(f"done {kind}, {name}", file=sys.stderr, flush=True)
    cells = list(next(iter(table.values())))
    print("| candidate | mean AUPRC | worst cell AUPRC | mean AUROC | " + " | ".join(cells) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(cells))
    for method, row in table.items():
        auprc = np.array([row[c][0] for c in cells])
        auroc_ = np.array([row[c][1] for c in cells])
        print(f"| {method} | {auprc.mean():.3f} | {auprc.min():.3f} | {auroc_.mean():.3f} | "
              + " | ".join(f"{v:.3f}" for v in auprc) + " |")
    for metric, index in (("AUPRC", 0), ("AUROC", 1)):
        matrix = np.array([[table[m][c][index] for c in cells] for m in table])
        worst_paper = matrix[:3].min(0)  # softmin, cil, ccp only: the rest come from run.py
        print(f"\n{metric}: mean over {len(cells)} cells, min cell, cells below the worst of softmin/cil/ccp")
        for row, method in enumerate(table):
            print(f"  {method:36s} mean {matrix[row].mean():.3f}  min {matrix[row].min():.3f}  "
                  f"below {int((matrix[row] < worst_paper - 1e-9).sum())}  "
                  + " ".join(f"{v:.3f}" for v in matrix[row]))
        print("  cells: " + " | ".join(cells))
    if args.out:
        args.out.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
