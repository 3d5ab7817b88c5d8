"""Candidate image scores against the detection grid, in plain numpy (issue 9's exploration).

    python benchmarks/detection/candidates.py [--work benchmarks/detection/work]

Needs a finished ``run.py`` work directory (scenes, noisy masks, predictions, truth). For
every cell of the grid (error type x resolution x model quality) it computes each
candidate score from the stored predictions and prints its AUPRC and AUROC, plus the mean
over cells and the number of cells where it is the worst. Candidates that win here are
then implemented in segaudit's kernel and measured again by ``run.py --rescore``.

Issue 15 (a default that also works on real data) runs it over both grids at once:

    python benchmarks/detection/candidates.py --synthetic WORK_OF_RUN_PY --camvid WORK_OF_CAMVID_PY \
        [--cache DIR] [--out candidates.json]

It reads the predictions of the 12 synthetic cells (ignore index 255) and of the 4 CamVid
models (ignore index 11; each model's 701 images are one scoring run, evaluated per kind as
``camvid.py`` does), computes the streaming-computable candidates of ``new_candidates`` and
prints, per candidate, the mean AUPRC over the 28 cells, the worst-cell shortfall against the
best of the paper's seven methods (read from segaudit's own evaluation of each cell), the
number of cells more than 0.01 below it, and every cell's AUPRC.
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
    parser.add_argument("--synthetic", type=Path, help="issue 15: a finished run.py work directory (the synthetic grid)")
    parser.add_argument("--camvid", type=Path, help="issue 15: a camvid.py work directory (the CamVid grid)")
    parser.add_argument("--markdown", type=Path, help="issue 15: write the candidate table (top 25 + segaudit's methods) here")
    parser.add_argument("--cache", type=Path, help="issue 15: keep each model's per-image arrays here (pickles)")
    args = parser.parse_args()
    if args.synthetic or args.camvid:
        explore(args.synthetic, args.camvid, args.out, args.cache, args.markdown)
        return
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



# --- issue 15: a new default from BOTH grids (synthetic + CamVid), streaming-computable candidates ---
#
#     python benchmarks/detection/candidates.py --synthetic /work/runs/synthetic --camvid /work/runs/camvid
#
# Every candidate is built from what one fused pass over the pixels can accumulate per image
# (sums, a histogram of s, per-class counts and sums), plus at most a cheap second pass over
# per-image summaries or over the 4x4 cell grid (majority label, renormalised mean
# probabilities), and dataset-wide quantities (the confident-learning thresholds t_k, the
# median fraction of low pixels). The paper's seven methods are read from segaudit's own
# evaluation of each cell, not recomputed.

PAPER_METHODS = ("ccp", "tccp", "cil", "clc", "iou", "coco", "softmin")
CELL = 4


def _cells(labels: np.ndarray, probs: np.ndarray, valid: np.ndarray, n_classes: int):
    """The 4x4 cell grid: majority label (-1 = no labelled pixel), renormalised mean probabilities."""
    k, h, w = probs.shape
    ph, pw = -h % CELL, -w % CELL
    lab = np.pad(np.where(valid, labels, n_classes), ((0, ph), (0, pw)), constant_values=n_classes)
    p = np.pad(probs * valid[None], ((0, 0), (0, ph), (0, pw)))
    gh, gw = lab.shape[0] // CELL, lab.shape[1] // CELL
    counts = np.zeros((n_classes + 1, gh, gw))
    for c in range(n_classes + 1):
        counts[c] = (lab == c).reshape(gh, CELL, gw, CELL).sum(axis=(1, 3))
    majority = counts[:n_classes].argmax(0)
    labelled = counts[:n_classes].sum(0)
    majority[labelled == 0] = -1
    mean = p.reshape(k, gh, CELL, gw, CELL).sum(axis=(2, 4))
    total = mean.sum(0)
    mean = np.divide(mean, total, out=np.full_like(mean, 1.0 / k), where=total > 0)
    purity = np.divide(counts[:n_classes].max(0), labelled, out=np.zeros_like(labelled), where=labelled > 0)
    return majority, mean, purity


def _largest_component(mask: np.ndarray) -> int:
    from segaudit.core.outlines import components

    regions, n = components(mask)
    return int(np.bincount(regions.ravel())[1:].max()) if n else 0


BINS = 512  # per-image histogram of s: counts and sums per bin (softmin at any tau from it)
LEVELS = 4  # Chebyshev distance to the nearest annotation boundary: 0, 1, 2, >= 3


def _levels(labels: np.ndarray) -> np.ndarray:
    """0 on annotation-boundary pixels (a 4-neighbour with another value, void included), then 1, 2, 3+."""
    level = np.full(labels.shape, LEVELS - 1, np.int8)
    for width in range(LEVELS - 1, 0, -1):
        level[boundary(labels, width)] = width - 1
    return level


def image_features(image_ids, read, n_classes: int, ignore: int) -> dict:
    """Per-image accumulators every candidate is computed from: one fused pass over each image's pixels.

    Per image: counts and sums of s per (boundary level, annotated class, bin of s) and
    mismatch counts per (level, class), which is what a streaming kernel can accumulate; and
    the 4x4 cell grid (majority label, renormalised mean probabilities), as clc/coco use.
    """
    K = n_classes
    feats = {"N": [], "S": [], "M": [], "cell_s": [], "cell_match": [], "cell_label": [], "cell_pure": []}
    cell_sum, cell_count = np.zeros(K), np.zeros(K)
    for image_id in image_ids:
        labels, probs = read(image_id)
        valid = labels != ignore
        lab = np.where(valid, labels, 0)
        s = np.take_along_axis(probs, lab[None], 0)[0].astype(np.float64)
        pred = probs.argmax(0)
        level = _levels(np.where(valid, labels, -1))
        b = np.minimum((s * BINS).astype(np.int64), BINS - 1)
        group = (level.astype(np.int64) * K + lab)[valid]
        index = group * BINS + b[valid]
        size = LEVELS * K * BINS
        feats["N"].append(np.bincount(index, minlength=size).astype(np.float32).reshape(LEVELS, K, BINS))
        feats["S"].append(np.bincount(index, weights=s[valid], minlength=size).astype(np.float32)
                          .reshape(LEVELS, K, BINS))
        feats["M"].append(np.bincount(group, weights=(pred != lab)[valid], minlength=LEVELS * K)
                          .reshape(LEVELS, K))
        majority, mean, purity = _cells(labels, probs, valid, K)
        has = majority >= 0
        cs = np.where(has, np.take_along_axis(mean, np.maximum(majority, 0)[None], 0)[0], np.nan)
        feats["cell_s"].append(cs.astype(np.float32))
        feats["cell_match"].append((mean.argmax(0) == majority) | ~has)
        feats["cell_label"].append(majority.astype(np.int8))
        feats["cell_pure"].append(purity >= 1.0)
        cell_sum += np.bincount(majority[has], weights=cs[has], minlength=K)
        cell_count += np.bincount(majority[has], minlength=K)
    N = np.stack(feats["N"])
    S = np.stack(feats["S"])
    feats["N"], feats["S"], feats["M"] = N, S, np.stack(feats["M"])
    feats["t"] = S.sum((0, 1, 3)) / np.maximum(N.sum((0, 1, 3)), 1)  # confident learning's t_k over pixels
    feats["t_cell"] = cell_sum / np.maximum(cell_count, 1)
    feats["pixels"] = N.sum((1, 2, 3))
    return feats


def dataset_tau(fractions: np.ndarray, quantile: float = 0.5, floor: float = 1e-6) -> float:
    """tau = 1 / ln(1 / f~): f~ the quantile of the per-image fraction of low pixels (s < 0.5).

    Softmin at tau gives the pixels at s ~ 0 a weight e^(1/tau) times that of pixels at s ~ 1,
    so it saturates (score ~ 0) once an image's fraction of such pixels exceeds ~e^(-1/tau).
    Tying e^(-1/tau) to the dataset's typical fraction keeps the typical clean image on the
    steep part of the curve instead of at 0.
    """
    f = min(max(float(np.quantile(fractions, quantile)), floor), 0.5)
    return 1.0 / np.log(1.0 / f)


def hist_softmin(N: np.ndarray, S: np.ndarray, tau: float) -> float:
    """Softmin at ``tau`` from counts and sums of s per bin (each bin at its mean s)."""
    keep = N > 0
    if not keep.any():
        return 1.0
    n, total = N[keep].astype(np.float64), S[keep].astype(np.float64)
    mean = total / n
    w = np.exp(-(mean - mean.min()) / tau)
    return float(np.sum(total * w) / np.sum(n * w))


def _cells_softmin(values: np.ndarray, tau: float) -> float:
    v = values[np.isfinite(values)].astype(np.float64)
    return softmin(v, tau) if v.size else 1.0


def new_candidates(feats: dict) -> dict[str, np.ndarray]:
    """Every candidate's score per image (lower = more suspicious), from the accumulators only."""
    N, S, M, t, t_cell = feats["N"], feats["S"], feats["M"], feats["t"], feats["t_cell"]
    n_images, _, K, B = N.shape
    centre = (np.arange(B) + 0.5) / B
    pixels = np.maximum(N.sum((1, 2, 3)), 1)
    low = N[..., : B // 2].sum((1, 2, 3)) / pixels  # fraction of pixels with s < 0.5
    wrong = M.sum((1, 2)) / pixels
    taus = {q: dataset_tau(low, q) for q in (0.5, 0.75, 0.9)}
    # Class-calibrated s' = min(1, s / t_k): each (class, bin) at min(1, mean s of the bin / t_k).
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_mean = np.where(N > 0, S / np.maximum(N, 1), centre)
    calibrated = np.minimum(1.0, bin_mean / np.maximum(t, 1e-6)[None, None, :, None]) * N
    out: dict[str, list] = {}

    def add(name, value):
        out.setdefault(name, []).append(float(value))

    for i in range(n_images):
        n_all, s_all = N[i].sum((0, 1)), S[i].sum((0, 1))
        add("cil (recomputed)", s_all.sum() / max(n_all.sum(), 1))
        add("ccp (recomputed)", 1 - wrong[i])
        for tau in (0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5):
            add(f"softmin tau={tau}", hist_softmin(n_all, s_all, tau))
        rs_tau = 1 / (10 + 0.5 * np.log(pixels[i] / (760 * 1280)))
        add("rsoftmin (recomputed)", hist_softmin(n_all, s_all, rs_tau))
        for slope in (0.25, 0.75, 1.0):  # rsoftmin's sensitivity to its slope 1/2 in 1/tau = 10 + slope ln(n / n0)
            add(f"rsoftmin slope {slope}", hist_softmin(n_all, s_all, 1 / (10 + slope * np.log(pixels[i] / (760 * 1280)))))
        for q, tau in taus.items():
            add(f"softmin tau=1/ln(1/q{int(q * 100)}(low fraction))", hist_softmin(n_all, s_all, tau))
        cal_n, cal_s = N[i].reshape(-1), calibrated[i].reshape(-1)
        for tau in (0.05, 0.1, 0.15, 0.2):
            add(f"calibrated softmin tau={tau}", hist_softmin(cal_n, cal_s, tau))
        add("calibrated rsoftmin", hist_softmin(cal_n, cal_s, rs_tau))
        add("calibrated cil", cal_s.sum() / max(cal_n.sum(), 1))
        for width in (1, 2, 3):
            n_in, s_in = N[i, width:].sum((0, 1)), S[i, width:].sum((0, 1))
            add(f"no-band{width} softmin tau=0.1", hist_softmin(n_in, s_in, 0.1))
            add(f"no-band{width} cil", s_in.sum() / max(n_in.sum(), 1))
            add(f"no-band{width} ccp", 1 - M[i, width:].sum() / max(n_in.sum(), 1))
            add(f"no-band{width} calibrated softmin tau=0.1",
                hist_softmin(N[i, width:].reshape(-1), calibrated[i, width:].reshape(-1), 0.1))
        cs = feats["cell_s"][i]
        has = np.isfinite(cs)
        for tau in (0.05, 0.1, 0.2):
            add(f"cell softmin tau={tau}", _cells_softmin(cs, tau))
        cal_cells = np.where(has, np.minimum(1.0, cs / np.maximum(t_cell[np.maximum(feats["cell_label"][i], 0)], 1e-6)),
                             np.nan)
        add("calibrated cell softmin tau=0.1", _cells_softmin(cal_cells, 0.1))
        add("cell rsoftmin (tau of the image's pixel count)", _cells_softmin(cs, rs_tau))
        mismatch = ~feats["cell_match"][i] & has
        flagged = (cal_cells < 1.0) & mismatch
        n_cells = max(int(has.sum()), 1)
        add("cell mismatch fraction", 1 - mismatch.sum() / n_cells)
        add("cell largest mismatch component", 1 - _largest_component(mismatch) / n_cells)
        add("cell largest flagged component", 1 - _largest_component(flagged) / n_cells)
        pure = feats["cell_pure"][i] & has
        add("pure-cell mismatch fraction", 1 - (mismatch & pure).sum() / n_cells)
        add("pure-cell softmin tau=0.1", _cells_softmin(np.where(pure, cs, np.nan), 0.1))
    scores = {k: np.asarray(v, float) for k, v in out.items()}
    scores["_tau_median"] = np.full(n_images, taus[0.5])
    return scores


def _rank(values: np.ndarray) -> np.ndarray:
    """Average ranks in [0, 1], lowest value = 0 (ties share)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    # ties: average
    uniq, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse] / max(len(values) - 1, 1)


def combos(scores: dict[str, np.ndarray], segaudit_scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rank means of complementary methods (a cheap pass over per-image summaries)."""
    both = {**segaudit_scores, **scores}
    pairs = [("cil", "clc"), ("softmin", "cil"), ("ccp", "clc"), ("softmin", "clc"), ("rsoftmin", "clc"),
             ("calibrated softmin tau=0.1", "clc"), ("softmin", "coco"), ("calibrated softmin tau=0.1", "cil"),
             ("cell softmin tau=0.1", "clc")]
    out = {}
    for a, b in pairs:
        if a in both and b in both:
            out[f"rank mean ({a}, {b})"] = (_rank(both[a]) + _rank(both[b])) / 2
    return out


def _ranking_scores(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    import csv

    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    ids = [r["image"] for r in rows]
    skip = {"rank", "image", "pixels", "low_pixels", "suspect_class", "likely_class", "score"}
    columns = [c for c in rows[0] if c not in skip]
    return ids, {c: np.array([float(r[c]) if r[c] not in ("", None) else np.inf for r in rows]) for c in columns}


def _reader(masks: Path, store):
    def read(image_id):
        h, _ = store.image_shape(image_id)
        probs = store.read_rows(image_id, 0, h)
        probs = probs.view(np.float16).astype(np.float32) if probs.dtype == np.uint16 else probs.astype(np.float32)
        labels = np.asarray(Image.open(masks / f"{image_id}.png")).astype(np.int64)
        return labels, probs
    return read


def _shadow_score(cell: Path, masks: Path, truth: Path, shadow: Path) -> tuple[Path, Path]:
    """A synthetic cell's ranking and evaluation: the run's own, or (while the grid is still
    running) ``segaudit score``/``evaluate`` with run.py's options, written under ``shadow``."""
    import subprocess

    if (cell / "evaluation.json").exists() and (cell / "ranking.csv").exists():
        return cell / "ranking.csv", cell / "evaluation.json"
    target = shadow / cell.relative_to(cell.parents[2])
    target.mkdir(parents=True, exist_ok=True)
    if not (target / "evaluation.json").exists():
        run = [sys.executable, "-m", "segaudit"]
        subprocess.run(run + ["score", str(masks), str(cell / "preds.zarr"), "--method", "all", "--allow-missing",
                              "-o", str(target / "ranking.csv"), "--quiet"], check=True)
        subprocess.run(run + ["evaluate", str(target / "ranking.csv"), str(truth), "--format", "json", "-o",
                              str(target / "evaluation.json"), "--quiet"], check=True)
    return target / "ranking.csv", target / "evaluation.json"


def _complete(store: Path) -> bool:
    try:
        return json.loads((store / "zarr.json").read_text()).get("attributes", {}).get("segaudit_complete", False)
    except (OSError, ValueError):
        return False


def grid_models(synthetic: Path | None, camvid: Path | None, shadow: Path | None = None):
    """(name, masks, cell, ignore, whole-model ranking, [(cell name, ranking, truth, evaluation)]).

    Cells whose predictions are not (yet) complete are skipped.
    """
    if synthetic is not None:
        settings = {f"{r} {q}": {"resolution": r, "quality": q} for r in ("96x128", "48x64") for q in ("strong", "weak")}
        if (synthetic / "results.json").exists():
            settings = json.loads((synthetic / "results.json").read_text())["meta"]["settings"]
        for name, setting in settings.items():
            for kind in ("drop", "swap", "shift"):
                data = synthetic / setting["resolution"] / kind
                cell = data / setting["quality"]
                if not _complete(cell / "preds.zarr"):
                    print(f"skipped synthetic {kind}, {name}: no complete predictions yet", file=sys.stderr)
                    continue
                ranking, evaluation = _shadow_score(cell, data / "masks", data / "truth.csv",
                                                    shadow or synthetic.parent / "synthetic-shadow")
                yield (f"synthetic {kind}, {name}", data / "masks", cell, 255, ranking,
                       [(f"synthetic {kind}, {name}", ranking, data / "truth.csv", evaluation)])
    if camvid is not None:
        meta = json.loads((camvid / "results.json").read_text())["meta"]
        for name, setting in meta["settings"].items():
            cell = camvid / setting["resolution"] / setting["quality"]
            if not (cell / "drop" / "evaluation.json").exists():
                continue
            masks = camvid / setting["resolution"] / "noisy"
            yield (f"camvid {name}", masks, cell, 11, cell / "ranking.csv",
                   [(f"camvid {kind}, {name}", cell / kind / "ranking.csv", cell / kind / "truth.csv",
                     cell / kind / "evaluation.json") for kind in ("drop", "swap", "shift", "boundary")])


def explore(synthetic: Path | None, camvid: Path | None, out: Path | None, cache: Path | None = None,
            markdown: Path | None = None) -> None:
    import hashlib
    import pickle

    from segaudit.io.predictions import open_predictions

    table: dict[str, dict[str, float]] = {}
    auroc_table: dict[str, dict[str, float]] = {}
    extra: dict[str, dict] = {}
    for model, masks, cell, ignore, whole, cells in grid_models(synthetic, camvid):
        store = open_predictions(cell / "preds.zarr")
        ids = list(store.image_ids)
        key = cache / (hashlib.sha1(str(cell.resolve()).encode()).hexdigest()[:16] + ".pkl") if cache else None
        if key is not None and key.exists() and key.stat().st_mtime > (cell / "preds.zarr").stat().st_mtime:
            feats = pickle.loads(key.read_bytes())
        else:
            feats = image_features(ids, _reader(masks, store), len(store.classes), ignore)
            if key is not None:
                key.parent.mkdir(parents=True, exist_ok=True)
                key.write_bytes(pickle.dumps(feats, protocol=5))
        scores = new_candidates(feats)
        tau = float(scores.pop("_tau_median")[0])
        # segaudit's own methods, for the rank combinations (whole-model ranking)
        rank_ids, seg = _ranking_scores(whole)
        position = {i: n for n, i in enumerate(rank_ids)}
        seg = {m: v[[position[i] for i in ids]] for m, v in seg.items()}
        scores.update(combos(scores, seg))
        index = {i: n for n, i in enumerate(ids)}
        for name, ranking, truth, evaluation in cells:
            truth_rows = {}
            for line in truth.read_text().splitlines()[1:]:
                image_id, is_error = line.split(",")[:2]
                truth_rows[image_id] = is_error == "1"
            subset = [i for i in _ranking_scores(ranking)[0]]
            is_error = np.array([truth_rows[i] for i in subset])
            rows = [index[i] for i in subset]
            document = json.loads(evaluation.read_text())
            for row in document["rows"]:
                table.setdefault(f"[segaudit] {row['method']}", {})[name] = row["auprc"]
                auroc_table.setdefault(f"[segaudit] {row['method']}", {})[name] = row["auroc"]
            for method, values in scores.items():
                table.setdefault(method, {})[name] = average_precision(is_error, values[rows])
                auroc_table.setdefault(method, {})[name] = auroc(is_error, values[rows])
            # Bootstrap standard error (200 resamples of the cell's images) of the best paper method's AUPRC.
            best = max(PAPER_METHODS, key=lambda m: table[f"[segaudit] {m}"][name])
            values = seg[best][rows]
            rng = np.random.default_rng(0)
            boots = []
            for _ in range(200):
                pick = rng.integers(0, len(rows), len(rows))
                if is_error[pick].any() and not is_error[pick].all():
                    boots.append(average_precision(is_error[pick], values[pick]))
            extra[name] = {"tau_median": tau, "errors": int(is_error.sum()), "images": len(subset),
                           "best_paper": best, "best_paper_se": float(np.std(boots))}
        print(f"done {model} (dataset tau {tau:.3f})", file=sys.stderr, flush=True)
    report(table, auroc_table, extra, markdown)
    if out:
        out.write_text(json.dumps({"auprc": table, "auroc": auroc_table, "cells": extra}, indent=1))


def report(table, auroc_table, extra, markdown: Path | None = None, top: int = 25) -> None:
    """The selection rule over every cell: per-cell shortfall against the best of the paper's methods."""
    cells = list(table["[segaudit] softmin"])
    paper = np.array([[table[f"[segaudit] {m}"][c] for c in cells] for m in PAPER_METHODS])
    best_cell = paper.max(0)
    best_mean = paper.mean(1).max()
    best_method = PAPER_METHODS[int(paper.mean(1).argmax())]
    groups = {g: [n for n, c in enumerate(cells) if c.startswith(g)] for g in ("synthetic", "camvid")}
    groups = {g: idx for g, idx in groups.items() if idx}
    rows = []
    for method, row in table.items():
        values = np.array([row[c] for c in cells])
        shortfall = best_cell - values
        se = np.array([max(0.01, extra[c]["best_paper_se"]) for c in cells])
        rows.append({"method": method, "mean": values.mean(), "worst": shortfall.max(),
                     "failing": int((shortfall > 0.01).sum()), "beyond_se": int((shortfall > se).sum()), "auroc": np.mean([auroc_table[method][c] for c in cells]),
                     "values": values, **{g: values[idx].mean() for g, idx in groups.items()}})
    rows.sort(key=lambda r: (r["failing"] > 0, r["worst"]))
    short = [c.replace("synthetic ", "S ").replace("camvid ", "C ") for c in cells]
    head = ("| candidate | mean AUPRC | " + " | ".join(f"mean {g}" for g in groups) + " | worst-cell shortfall | "
            "cells failing (> 0.01 below best paper) | cells > 1 SE below | mean AUROC | " + " | ".join(short) + " |")
    rule = "|---|---:|" + "---:|" * len(groups) + "---:|---:|---:|---:|" + "---:|" * len(cells)

    def line(r):
        return (f"| {r['method']} | {r['mean']:.3f} | " + " | ".join(f"{r[g]:.3f}" for g in groups)
                + f" | {r['worst']:+.3f} | {r['failing']} | {r['beyond_se']} | {r['auroc']:.3f} | "
                + " | ".join(f"{v:.3f}" for v in r["values"]) + " |")

    best_line = ("| (best paper method per cell) | " + f"{best_cell.mean():.3f} | "
                 + " | ".join(f"{best_cell[idx].mean():.3f}" for idx in groups.values()) + " | | | | | "
                 + " | ".join(f"{v:.3f}" for v in best_cell) + " |")
    text = [f"{len(cells)} cells; best paper method by mean AUPRC: {best_method} ({best_mean:.3f}); "
            f"the rule asks for a mean >= {best_mean + 0.05:.3f} and every cell within 0.01 of the best paper method.",
            "", head, rule, *map(line, rows), best_line, "",
            "best paper method per cell (bootstrap SE of its AUPRC): " + "; ".join(
                f"{c}: {extra[c]['best_paper']} ({extra[c]['best_paper_se']:.3f})" for c in cells)]
    print("\n".join(text))
    if markdown is not None:
        chosen = rows[:top] + [r for r in rows[top:] if r["method"].startswith("[segaudit]")]
        markdown.write_text("\n".join(text[:4] + [line(r) for r in chosen] + [best_line, "", text[-1]]) + "\n")


if __name__ == "__main__":
    main()
