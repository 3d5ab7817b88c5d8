"""The region-level benchmark: which suspect pixels and which region score find planted errors.

    python benchmarks/detection/regions.py [--camvid-work DIR] [--synthetic-work DIR]

It reuses the work directories of ``camvid.py`` and ``run.py`` (their noisy masks, clean
masks, truth files and out-of-sample predictions; nothing is retrained) and runs
``segaudit.evaluation.regions`` (the metrics of ``segaudit evaluate-regions``) on every
cell for each candidate suspect rule (the margin p[likely] - p[label] a pixel needs), then
ranks the same regions by each candidate region score. Per cell, AP is computed like the
image benchmark: that kind's planted images plus every clean image. Results go to
``regions.json`` in the CamVid work directory and the generated section of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from segaudit.core.dataset import open_dataset  # noqa: E402
from segaudit.core.regions import RegionRule, region_score  # noqa: E402
from segaudit.evaluation.evaluate import load_truth  # noqa: E402
from segaudit.evaluation.regions import EXPECTED_KIND, evaluate_regions, region_average_precision  # noqa: E402

MARGINS = (0.0, 0.25, 0.5)
BAND_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
CAMVID_KINDS = ("drop", "swap", "shift", "boundary")
SYNTHETIC_KINDS = ("drop", "swap", "shift")
BEGIN = "<!-- regions:begin -->"
END = "<!-- regions:end -->"


def cells(camvid: Path | None, synthetic: Path | None, data: Path) -> list[dict]:
    """Every (grid, resolution, model) with its dataset inputs; CamVid's kinds share one dataset."""
    out = []
    if camvid is not None:
        for res in ("180x240", "360x480"):
            clean = camvid / res / "clean" if res == "180x240" else data / "labels"
            for quality in ("strong", "weak"):
                out.append({"grid": "camvid", "name": f"{res} {quality}", "masks": camvid / res / "noisy",
                            "preds": camvid / res / quality / "preds.zarr", "clean": clean,
                            "truth": camvid / res / "truth.csv", "planted": camvid / "360x480" / "truth.csv",
                            "ignore": [11], "kinds": CAMVID_KINDS})
    if synthetic is not None:
        for res in ("48x64", "96x128"):
            for kind in SYNTHETIC_KINDS:
                for quality in ("strong", "weak"):
                    out.append({"grid": "synthetic", "name": f"{kind}, {res} {quality}",
                                "masks": synthetic / res / kind / "masks" / "val",
                                "preds": synthetic / res / kind / quality / "preds.zarr",
                                "clean": synthetic / res / "clean" / "masks" / "val",
                                "truth": synthetic / res / kind / "truth.csv", "planted": None,
                                "ignore": None, "kinds": (kind,)})
    return out


def collect(cell: dict, margin: float) -> dict:
    """Per reported region its features and match; per planted region its kind and image."""
    dataset = open_dataset(cell["masks"], cell["preds"], ignore_index=cell["ignore"])
    truth = load_truth(cell["truth"])
    if cell["planted"] is not None:  # an image keeps its full-resolution kind (halving may erase the error)
        full = load_truth(cell["planted"])
        kind_of = {image: (full[image][1] if full[image][0] else "") for image in truth}
    else:
        kind_of = {image: (kind if is_error else "") for image, (is_error, kind) in truth.items()}
    rule = RegionRule(margin=margin, band_weight=0.0)
    t = time.perf_counter()
    evaluation = evaluate_regions(dataset, cell["clean"], truth, rule)
    seconds = time.perf_counter() - t
    reported = evaluation.reported
    pixels = {image_id: 0 for _, image_id in dataset.pairs}
    return {
        "seconds": seconds,
        "image_kind": [kind_of[r.region.image_id] for r in reported],
        "planted": [r.planted for r in reported],
        "iou": [r.iou for r in reported],
        "area": [r.region.area for r in reported],
        "core": [r.region.core_area for r in reported],
        "mass_core": [r.region.mass for r in reported],
        "gap": [r.region.area * (r.region.mean_p_likely - r.region.mean_s) for r in reported],
        "mean_p": [r.region.mean_p_likely for r in reported],
        "coverage": [r.region.coverage for r in reported],
        "kind": [r.region.kind for r in reported],
        "planted_kind": [kind_of[i] for i in evaluation.planted_image],
        "restored": evaluation.restored_pixels / max(1, evaluation.planted_pixels),
        "damaged_per_restored": evaluation.damaged_pixels / max(1, evaluation.restored_pixels),
        "images": len(pixels),
    }


def candidate_scores(found: dict) -> dict[str, np.ndarray]:
    """Region scores to choose from (higher = more suspect)."""
    core = np.array(found["mass_core"])
    band = np.array(found["gap"]) - core
    out = {f"mass, band x{w:g}": core + w * band for w in BAND_WEIGHTS}
    out["mean p[likely]"] = np.array(found["mean_p"])
    out["area"] = np.array(found["area"], np.float64)
    out["mass x mean p"] = (core + 0.25 * band) * np.array(found["mean_p"])
    return out


def cell_metrics(found: dict, kind: str, scores: np.ndarray) -> dict:
    """AP@0.5/0.25 and kind accuracy of one kind's subset (its planted images + the clean ones)."""
    keep = np.isin(np.array(found["image_kind"]), ["", kind])
    planted_kind = np.array(found["planted_kind"])
    planted_ids = np.flatnonzero(planted_kind == kind)
    renumber = np.full(planted_kind.size + 1, -1, np.int64)  # the last entry: "no match" (-1)
    renumber[planted_ids] = np.arange(planted_ids.size)
    planted = np.array(found["planted"], np.int64)
    iou = np.array(found["iou"])
    mapped = renumber[planted]  # planted == -1 picks the last entry
    out = {}
    for threshold in (0.5, 0.25):
        matches = np.where(iou >= threshold, mapped, -1)
        ap, recall = region_average_precision(scores[keep], matches[keep], int(planted_ids.size))
        out[f"ap@{int(threshold * 100)}"] = ap
        out[f"recall@{int(threshold * 100)}"] = recall
    # Kind accuracy: each planted region found at IoU >= 0.25, by its best-scored region.
    candidates = np.flatnonzero((mapped >= 0) & (iou >= 0.25))
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    _, first = np.unique(mapped[order], return_index=True)
    kinds = np.array(found["kind"])[order[first]]
    out["kind_accuracy"] = float(np.mean(kinds == EXPECTED_KIND[kind])) if kinds.size else math.nan
    out["planted"] = int(planted_ids.size)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--camvid-work", type=Path, default=HERE / "work-camvid")
    parser.add_argument("--synthetic-work", type=Path, default=HERE / "work")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "camvid")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default: <camvid-work>/regions.json)")
    parser.add_argument("--from-results", action="store_true", help="only re-tabulate an earlier regions.json")
    args = parser.parse_args(argv)
    out = args.out or args.camvid_work / "regions.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    if not args.from_results:
        camvid = args.camvid_work if args.camvid_work.is_dir() else None
        synthetic = args.synthetic_work if args.synthetic_work.is_dir() else None
        for cell in cells(camvid, synthetic, args.data):
            for margin in MARGINS:
                key = f"{cell['grid']}|{cell['name']}|{margin}"
                if key in results:  # resumed: computed by an earlier run
                    continue
                found = collect(cell, margin)
                scores = candidate_scores(found)
                results[key] = {"grid": cell["grid"], "cell": cell["name"], "margin": margin,
                                "seconds": found["seconds"], "regions": len(found["area"]),
                                "restored": found["restored"], "damaged_per_restored": found["damaged_per_restored"],
                                "kinds": {kind: {name: cell_metrics(found, kind, s) for name, s in scores.items()}
                                          for kind in cell["kinds"]}}
                print(f"{key}: {len(found['area'])} regions in {found['seconds']:.1f} s", flush=True)
                out.write_text(json.dumps(results, indent=1))
    print(tabulate(results))
    return 0


def tabulate(results: dict) -> str:
    """Mean AP@0.5 per (margin, score) and grid, then the chosen configuration's cells."""
    lines = []
    configs: dict[tuple, dict[str, list[float]]] = {}
    for entry in results.values():
        for kind, by_score in entry["kinds"].items():
            for name, metrics in by_score.items():
                config = configs.setdefault((entry["margin"], name), {})
                config.setdefault(entry["grid"], []).append(metrics["ap@50"])
                config.setdefault(entry["grid"] + "25", []).append(metrics["ap@25"])
    lines.append("| margin | region score | CamVid AP@0.5 | CamVid AP@0.25 | synthetic AP@0.5 | synthetic AP@0.25 |")
    lines.append("|---:|---|---:|---:|---:|---:|")
    for (margin, name), grids in sorted(configs.items()):
        cols = [np.nanmean(grids.get(g, [math.nan])) for g in ("camvid", "camvid25", "synthetic", "synthetic25")]
        lines.append(f"| {margin:g} | {name} | " + " | ".join(f"{c:.3f}" for c in cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
