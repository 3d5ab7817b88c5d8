"""The detection benchmark on real data: CamVid (701 street scenes, human annotations).

    pip install -e '.[bench]'
    python benchmarks/detection/camvid.py [--data ../shared/data/camvid] [--work DIR]

The synthetic grid (``run.py``) plants errors in perfect procedural masks; here they are
planted on top of real human masks, whose boundaries are already coarse, and the model is a
real one trained from scratch on the noisy labels, as a user would, so it is confidently
wrong along boundaries and in hard regions of every clean image.

1. **Errors.** The 701 ids are split at random (seed 0) into five disjoint groups of about
   140, one per kind; ``segaudit corrupt`` runs once per group with rate 0.5 (about 70
   images, 10 % of the dataset per kind), all at 480x360:
   - drop: one of pole, sign_symbol, fence, car, pedestrian, bicyclist (>= 100 pixels) is
     painted over by its surroundings (``--fill nearest``: CamVid's void is an ignore value,
     so a drop into void would be invisible to every score);
   - swap: two of sky, building, road, pavement, tree exchange their pixels;
   - shift: the regions of one of building, pavement, tree, car, pedestrian get a perturbed
     outline (sigma 10 %, lost pixels to the nearest other class);
   - boundary: every boundary of one class (any of the 11, >= 100 pixels) moves by a
     one-sided random walk, mean 1 % of the image's mean side (4.2 pixels), correlation
     length 20 boundary pixels (Yao et al. 2023's spatially correlated, biased noise);
   - coarse (held out: ``--method auto`` never plants it): one of building, pavement, tree,
     fence, car, pedestrian redrawn on a grid of blocks of 2 % of the image's mean side.
   Void (11) is the ignore index throughout: it never becomes a class; a class may become
   void only where its boundary with void moves inward. The five noisy groups make ONE noisy
   mask set and one ``truth.csv``.
2. **Half resolution** (240x180): photos 2x2-averaged, masks sampled ([::2, ::2]), the same
   planted errors halved (``run.downsample_truth``: an image is an error only if its halved
   noisy mask still differs from the halved clean one).
3. **Models** (``train.StemUNet``): the U-Net of ``train.py`` behind a stride-4 stem (two
   stride-2 convolutions), its logits upsampled bilinearly to the full size (a DeepLab-style
   output stride, with its boundary blur); the same architecture at both resolutions.
   At 480x360 every batch is a random 240x180 crop, so a training step costs the same at both
   resolutions (prediction is on the whole image). Measured on 2 idle cores a 480x360 image
   costs 0.4 s per epoch in the plain U-Net, 0.06-0.09 s in the stride-4 one and 0.018 s as
   a 240x180 crop; on the shared machine 3-5x more.
   Strong: channels 16-128, 20 epochs; weak: channels 8-64, 5 epochs. Cross-entropy with
   class weights (mean frequency / frequency) ** 0.5 and ``ignore_index=11``, AdamW, one-cycle,
   flips; no pretrained weights. 2-fold: each image's probabilities come from the model
   trained on the other fold (the two folds train in parallel, one torch thread each).
   Predictions (softmax averaged with the flipped image) are written with
   ``PredictionWriter`` as float16; mIoU is measured against the CLEAN masks.
4. **Scoring.** ``segaudit score --method all --ignore-index 11`` once per model on all 701
   images (the dataset-wide thresholds of tccp/clc come from the whole set, as a user's
   run would); per kind, ``segaudit evaluate`` on that kind's planted images plus every clean
   image (the images of the other kinds left out of both the ranking and the truth).

5 kinds x 2 resolutions x 2 model qualities = 20 cells from 8 trainings. Measured timings
are in ``results.json`` and ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import run  # noqa: E402
from run import METRICS, _bold_best, cli, grid_methods, log  # noqa: E402

CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car", "pedestrian",
           "bicyclist"]
VOID = 11
#: coarse is held out: the calibration of --method auto never plants it (docs/benchmarks.md reports it apart).
KINDS = ("drop", "swap", "shift", "boundary", "coarse")
#: kind -> (classes, extra segaudit corrupt options)
CORRUPTIONS = {
    "drop": ("pole,sign_symbol,fence,car,pedestrian,bicyclist", ["--min-pixels", "100", "--fill", "nearest"]),
    "swap": ("sky,building,road,pavement,tree", ["--min-pixels", "100"]),
    "shift": ("building,pavement,tree,car,pedestrian",
              ["--sigma", "10%", "--min-pixels", "100", "--fill", "nearest"]),
    "boundary": (",".join(CLASSES), ["--sigma", "1%", "--correlation", "20", "--min-pixels", "100"]),
    "coarse": ("building,pavement,tree,fence,car,pedestrian", ["--sigma", "2%", "--min-pixels", "100"]),
}
BEGIN = "<!-- BEGIN GENERATED by benchmarks/detection/camvid.py -->"
END = "<!-- END GENERATED by benchmarks/detection/camvid.py -->"
FULL, HALF = "360x480", "180x240"


def camvid_ids(data: Path) -> list[str]:
    return sorted(p.relative_to(data / "labels").with_suffix("").as_posix() for p in (data / "labels").rglob("*.png"))


def write_l(labels: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(path)


def plant(data: Path, work: Path, ids: list[str], rate: float, seed: int) -> dict:
    """Four disjoint groups, one kind each; merged into WORK/360x480/noisy and truth.csv."""
    from PIL import Image

    order = np.random.default_rng(seed).permutation(len(ids))
    groups = {kind: sorted(ids[i] for i in order[k::len(KINDS)]) for k, kind in enumerate(KINDS)}
    names = work / "classes.txt"
    names.write_text("\n".join(CLASSES + ["void"]) + "\n")
    noisy = work / FULL / "noisy"
    rows = []
    planted = {}
    for k, kind in enumerate(KINDS):
        group = work / "groups" / kind
        for image_id in groups[kind]:  # the group's masks, as links to the real ones
            link = group / "source" / f"{image_id}.png"
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink((data / "labels" / f"{image_id}.png").resolve(), link)
        classes, extra = CORRUPTIONS[kind]
        cli("corrupt", group / "source", "--out", group / "noisy", "--kind", kind, "--rate", rate,
            "--classes", classes, "--classes-file", names, "--seed", seed + 1 + k, "--unlabeled", VOID,
            "--ignore-index", VOID, "--truth", group / "truth.csv", "--quiet", *extra)
        with open(group / "truth.csv") as handle:
            group_rows = list(csv.DictReader(handle))
        rows += group_rows
        for image_id in groups[kind]:
            target = noisy / f"{image_id}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(group / "noisy" / f"{image_id}.png", target)
        planted[kind] = {"group": len(groups[kind]), "rate": rate, "classes": classes, "options": extra,
                         "seed": seed + 1 + k, "changed": sum(r["is_error"] == "1" for r in group_rows)}
    with open(work / FULL / "truth.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["image", "is_error", "kind", "classes"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["image"]))
    # Pixels changed per planted image (how big each kind's errors are).
    for kind in KINDS:
        changed = [int((np.asarray(Image.open(noisy / f"{r['image']}.png"))
                        != np.asarray(Image.open(data / "labels" / f"{r['image']}.png"))).sum())
                   for r in rows if r["kind"] == kind]
        planted[kind]["median_pixels_changed"] = float(np.median(changed)) if changed else 0.0
    return planted


def halve(data: Path, work: Path, ids: list[str]) -> None:
    """240x180 copies: photos 2x2-averaged (PNG), clean and noisy masks sampled, truth re-derived."""
    from PIL import Image

    half = work / HALF
    for image_id in ids:
        rgb = np.asarray(Image.open(data / "images" / f"{image_id}.jpg").convert("RGB"), dtype=np.float64)
        h, w = rgb.shape[0] // 2, rgb.shape[1] // 2
        small = rgb[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).mean(axis=(1, 3))
        path = half / "photos" / f"{image_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(small).astype(np.uint8)).save(path)
        write_l(np.asarray(Image.open(data / "labels" / f"{image_id}.png"))[::2, ::2], half / "clean" / f"{image_id}.png")
        write_l(np.asarray(Image.open(work / FULL / "noisy" / f"{image_id}.png"))[::2, ::2],
                half / "noisy" / f"{image_id}.png")
    run.downsample_truth(half / "clean", half / "noisy", work / FULL / "truth.csv", half / "truth.csv")


def settings(args) -> dict[str, dict]:
    models = {"strong": (args.epochs, args.widths), "weak": (args.weak_epochs, args.weak_widths)}
    grid = {}
    for resolution, crop in ((HALF, None), (FULL, (180, 240))):  # half first: its cells are ready early
        for quality, (epochs, widths) in models.items():
            grid[f"{resolution} {quality}"] = {"resolution": resolution, "quality": quality, "epochs": epochs,
                                               "widths": widths, "stride": 4, "crop": crop}
    return grid


def paths(data: Path, work: Path, resolution: str) -> dict[str, Path]:
    if resolution == FULL:
        return {"photos": data / "images", "suffix": ".jpg", "clean": data / "labels", "noisy": work / FULL / "noisy",
                "truth": work / FULL / "truth.csv"}
    return {"photos": work / HALF / "photos", "suffix": ".png", "clean": work / HALF / "clean",
            "noisy": work / HALF / "noisy", "truth": work / HALF / "truth.csv"}


def score_model(cell: Path, masks: Path, truth: Path, planted_kind: dict[str, str]) -> dict[str, dict]:
    """One ``segaudit score`` on all images; per kind, ``evaluate`` on its planted images + the clean ones.

    ``planted_kind``: image -> the kind planted in it at 480x360 ("" = clean). An image of
    another kind is left out of a cell even when its halved mask lost the error.
    """
    t = time.perf_counter()
    cli("score", masks, cell / "preds.zarr", "--method", "all", "--ignore-index", VOID, "-o", cell / "ranking.csv",
        "--quiet")
    seconds = time.perf_counter() - t
    with open(truth) as handle:
        rows = list(csv.DictReader(handle))
    with open(cell / "ranking.csv") as handle:
        ranking = list(csv.reader(handle))
    out = {}
    for kind in KINDS:
        keep = {r["image"] for r in rows if planted_kind[r["image"]] in ("", kind)}
        target = cell / kind
        target.mkdir(exist_ok=True)
        with open(target / "ranking.csv", "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(ranking[0])
            writer.writerows(row for row in ranking[1:] if row[ranking[0].index("image")] in keep)
        with open(target / "truth.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["image", "is_error", "kind", "classes"], lineterminator="\n")
            writer.writeheader()
            writer.writerows(r for r in rows if r["image"] in keep)
        cli("evaluate", target / "ranking.csv", target / "truth.csv", "--format", "json", "-o",
            target / "evaluation.json", "--quiet")
        document = json.loads((target / "evaluation.json").read_text())
        table = {row["method"]: row for row in document["rows"]}
        first = document["rows"][0]
        out[kind] = {"evaluation": {m: {x: table[m][x] for x in METRICS} for m in table},
                     "evaluation_counts": {x: first[x] for x in ("images", "errors", "top")}}
    out["score_seconds"] = seconds
    return out


def kind_of_rows(truth: Path) -> dict[str, str]:
    with open(truth) as handle:
        return {r["image"]: r["kind"] for r in csv.DictReader(handle)}


def render(saved: dict) -> str:
    meta, results = saved["meta"], saved["results"]
    grid = {name: {k: results[name]["cells"][k] for k in KINDS} for name in meta["settings"] if name in results}
    methods = grid_methods(grid)
    stages = meta["stage_seconds"]
    lines = [
        f"Measured {meta['date']} with `{meta['command']}` on {meta['threads']} CPU threads, torch {meta['torch']}, "
        f"segaudit {meta['segaudit']}: CamVid's {meta['images']} images, 11 classes + void (ignore index 11), "
        f"{meta['folds']}-fold out-of-sample predictions. Total wall time **{meta['wall_seconds'] / 60:.1f} min** "
        f"(corrupt {stages['corrupt']:.0f} s, halving {stages['halve']:.0f} s, training and prediction "
        f"{stages['models']:.0f} s, score and evaluate {stages['score']:.0f} s).", "",
        "| kind | group | planted at 480x360 | classes | options | median pixels changed |",
        "|---|---:|---:|---|---|---:|",
    ]
    for kind in KINDS:
        p = meta["planted"][kind]
        lines.append(f"| {kind} | {p['group']} | {p['changed']} | {p['classes'].replace(',', ', ')} | "
                     f"`{' '.join(p['options'])}` | {p['median_pixels_changed']:.0f} |")
    lines += ["", "| setting | model | parameters | mIoU vs clean (11 classes) | pixel accuracy | weakest classes (IoU) "
              "| training (2 folds in parallel) | prediction | " + " | ".join(f"errors / images {k}" for k in KINDS) + " |",
              "|---|---|---:|---:|---:|---|---:|---:|" + "---:|" * len(KINDS)]
    for name, setting in meta["settings"].items():
        model = results[name]["model"]
        weakest = ", ".join(f"{c} {v:.2f}" for c, v in sorted(model["iou_per_class"].items(), key=lambda i: i[1])[:3])
        crop = f", {setting['crop'][1]}x{setting['crop'][0]} crops" if setting.get("crop") else ""
        lines.append(f"| {name} | stride {setting['stride']}, channels {setting['widths']}, {setting['epochs']} epochs{crop} | "
                     f"{model['parameters'] / 1000:.0f}k | {model['miou']:.3f} | {model['pixel_accuracy']:.3f} | {weakest} | "
                     f"{model['train_seconds'] / 60:.1f} min | {model['predict_seconds']:.0f} s | "
                     + " | ".join(f"{grid[name][k]['evaluation_counts']['errors']} / {grid[name][k]['evaluation_counts']['images']}"
                                  for k in KINDS) + " |")
    lines.append("")
    for number, metric in ((7, "auprc"), (8, "auroc")):
        lines += [f"**Table {number}. CamVid: {METRICS[metric]} per cell** (best per cell in bold, worst in italics; "
                  "the fixed methods; auto is in Table 10)", "",
                  "| cell | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
        matrix = []
        for name in meta["settings"]:
            for kind in KINDS:
                values = [grid[name][kind]["evaluation"][m][metric] for m in methods]
                matrix.append(values)
                texts = _bold_best(values)
                worst = min(f"{v:.3f}" for v in values)
                lines.append(f"| {kind}, {name} | " + " | ".join(f"*{t}*" if t == worst else t for t in texts) + " |")
        matrix = np.array(matrix)
        lines.append("| **mean** | " + " | ".join(_bold_best(list(matrix.mean(0)))) + " |")
        shown = np.round(matrix, 3)
        lines.append("| cells where worst | " + " | ".join(
            str(int((shown[:, j] == shown.min(1)).sum())) for j in range(len(methods))) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "camvid",
                        help="CamVid folder (images/, labels/, README.md)")
    parser.add_argument("--work", type=Path, default=HERE / "work-camvid", help="work directory (rebuilt)")
    parser.add_argument("--images", type=int, default=0, help="a seeded random subset of this many images "
                        "(0 = all 701; for smoke tests)")
    parser.add_argument("--rate", type=float, default=0.5, help="rate of segaudit corrupt inside each kind's group")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of the strong model")
    parser.add_argument("--widths", default="16,32,64,128", help="U-Net channels per level of the strong model")
    parser.add_argument("--weak-epochs", type=int, default=5, help="training epochs of the weak model")
    parser.add_argument("--weak-widths", default="8,16,32,64", help="U-Net channels per level of the weak model")
    parser.add_argument("--balance", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (split between the folds' workers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--from-results", action="store_true", help="only re-render the tables from WORK/results.json")
    parser.add_argument("--rescore", action="store_true",
                        help="keep WORK's masks and predictions; rerun only score and evaluate")
    args = parser.parse_args()
    work = args.work.resolve()
    if args.from_results or args.rescore:
        saved = json.loads((work / "results.json").read_text())
        if args.rescore:
            started = time.perf_counter()
            for name, setting in saved["meta"]["settings"].items():
                where = paths(args.data, work, setting["resolution"])
                saved["results"][name]["cells"] = score_model(work / setting["resolution"] / setting["quality"],
                                                              where["noisy"], where["truth"],
                                                              kind_of_rows(work / FULL / "truth.csv"))
            saved["meta"]["stage_seconds"]["score"] = time.perf_counter() - started
            (work / "results.json").write_text(json.dumps(saved, indent=2) + "\n")
        run.publish(render(saved), work, docs=not args.no_docs, begin=BEGIN, end=END)
        return

    import torch

    import segaudit
    import train

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    stages = {}
    shutil.rmtree(work, ignore_errors=True)
    (work / FULL).mkdir(parents=True)
    ids = camvid_ids(args.data)
    if args.images:
        ids = sorted(np.random.default_rng([args.seed, 7]).choice(ids, args.images, replace=False).tolist())
    log(f"CamVid: {len(ids)} images from {args.data}")

    t = time.perf_counter()
    planted = plant(args.data, work, ids, args.rate, args.seed)
    stages["corrupt"] = time.perf_counter() - t
    log("planted: " + ", ".join(f"{k} {v['changed']}/{v['group']}" for k, v in planted.items()))
    t = time.perf_counter()
    halve(args.data, work, ids)
    stages["halve"] = time.perf_counter() - t

    order = np.random.default_rng([args.seed, 99]).permutation(len(ids))
    folds = [sorted(ids[i] for i in order[k::args.folds]) for k in range(args.folds)]
    grid = settings(args)
    results: dict[str, dict] = {}
    stages["models"] = stages["score"] = 0.0
    meta = {
        "date": time.strftime("%Y-%m-%d"), "command": "python benchmarks/detection/camvid.py",
        "images": len(ids), "folds": args.folds, "rate": args.rate, "balance": args.balance, "settings": grid,
        "planted": planted, "threads": args.threads, "torch": torch.__version__, "segaudit": segaudit.__version__,
        "python": platform.python_version(), "stage_seconds": stages, "ignore_index": VOID,
    }
    for name, setting in grid.items():
        where = paths(args.data, work, setting["resolution"])
        cell = work / setting["resolution"] / setting["quality"]
        cell.mkdir(parents=True, exist_ok=True)
        log(f"{name}: {args.folds}-fold training on the noisy masks ({setting['epochs']} epochs, "
            f"channels {setting['widths']}, stride {setting['stride']})")
        t = time.perf_counter()
        model = train.train_kfold_and_predict(
            where["photos"], where["noisy"], where["clean"], folds, cell / "preds.zarr", CLASSES,
            epochs=setting["epochs"], widths=tuple(int(w) for w in setting["widths"].split(",")),
            stride=setting["stride"], balance=args.balance, seed=args.seed, ignore_index=VOID,
            photo_suffix=where["suffix"], crop=setting["crop"], log=log)
        stages["models"] += time.perf_counter() - t
        log(f"  mIoU vs clean masks {model['miou']:.3f} (training {model['train_seconds']:.0f} s, "
            f"prediction {model['predict_seconds']:.0f} s)")
        t = time.perf_counter()
        results[name] = {"model": model, "cells": score_model(cell, where["noisy"], where["truth"],
                                                              kind_of_rows(work / FULL / "truth.csv"))}
        stages["score"] += time.perf_counter() - t
        log("  AUPRC " + "; ".join(f"{k}: " + ", ".join(f"{m} {v['auprc']:.3f}" for m, v in
                                                        results[name]["cells"][k]["evaluation"].items())
                                   for k in KINDS))
        meta["wall_seconds"] = time.perf_counter() - started
        (work / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    meta["wall_seconds"] = time.perf_counter() - started
    saved = {"meta": meta, "results": results}
    (work / "results.json").write_text(json.dumps(saved, indent=2) + "\n")
    run.publish(render(saved), work, docs=not args.no_docs, begin=BEGIN, end=END)
    log(f"done in {meta['wall_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
