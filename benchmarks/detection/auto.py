"""``--method auto`` on both detection grids, beside every fixed method, over several seeds.

    python benchmarks/detection/auto.py [--synthetic WORK] [--camvid WORK] [--seeds 0,1,2,3,4]
                                        [--markdown FILE] [--out FILE]

Uses the predictions of ``run.py`` (synthetic) and ``camvid.py`` (CamVid) as they are: per
model, ``segaudit score --method auto,all --calibration-seed S`` once per seed, then the
AUPRC of every column per cell (the same metric as ``segaudit evaluate``), the candidate
auto chose, and the bar of issue 26: auto within 0.05 of the best fixed method in every
cell, its mean above every fixed method's, the same choice in >= 4 of 5 seeds (or an
AUPRC spread <= 0.03). CamVid's ``coarse`` kind is never planted by the calibration: it is
reported apart (held out).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from segaudit.evaluation.evaluate import average_precision  # noqa: E402

FIXED = ("rsoftmin", "softmin", "cil", "ccp", "tccp", "iou", "clc", "coco")
SHOWN = ("rsoftmin", "softmin", "clc", "ccp")
HELD_OUT = {"coarse"}  # kinds of the grids that the calibration never plants


def score(masks: Path, preds: Path, out: Path, seed: int, extra: list[str]) -> tuple[dict, dict]:
    """One ``segaudit score --method auto,all``: each image's scores, and the calibration record."""
    command = [sys.executable, "-m", "segaudit", "score", str(masks), str(preds), "--method", "auto,all",
               "--calibration-seed", str(seed), "-o", str(out), "--quiet", *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"score failed: {done.stderr}")
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    scores = {r["image"]: {m: float(r[m]) if r[m] != "" else float("nan") for m in ("auto", *FIXED)} for r in rows}
    record = json.loads(out.with_suffix(".run.json").read_text())["calibration"]
    return scores, record


def cell_auprc(scores: dict, truth: dict[str, bool], keep: set[str]) -> dict[str, float]:
    ids = sorted(i for i in scores if i in keep)
    is_error = np.array([truth[i] for i in ids])
    return {m: average_precision(is_error, np.array([scores[i][m] for i in ids])) for m in ("auto", *FIXED)}


def read_truth(path: Path) -> dict[str, dict]:
    with open(path) as handle:
        return {r["image"]: r for r in csv.DictReader(handle)}


def synthetic_cells(work: Path, seeds: list[int], scratch: Path):
    saved = json.loads((work / "results.json").read_text())
    for name, setting in saved["meta"]["settings"].items():
        for kind in ("drop", "swap", "shift"):
            data = work / setting["resolution"] / kind
            truth = read_truth(data / "truth.csv")
            runs = [score(data / "masks", data / setting["quality"] / "preds.zarr", scratch / f"s{seed}.csv", seed,
                          ["--allow-missing"]) for seed in seeds]
            keep = set(runs[0][0])
            flags = {i: truth[i]["is_error"] == "1" for i in keep}
            yield f"S {kind}, {name}", kind, [(cell_auprc(s, flags, keep), r) for s, r in runs]


def camvid_cells(work: Path, seeds: list[int], scratch: Path):
    saved = json.loads((work / "results.json").read_text())
    full = read_truth(work / "360x480" / "truth.csv")
    planted_kind = {i: r["kind"] for i, r in full.items()}
    kinds = list(saved["meta"]["planted"])
    for name, setting in saved["meta"]["settings"].items():
        resolution = setting["resolution"]
        truth = read_truth(work / resolution / "truth.csv")
        runs = [score(work / resolution / "noisy", work / resolution / setting["quality"] / "preds.zarr",
                      scratch / f"c{seed}.csv", seed, ["--ignore-index", "11"]) for seed in seeds]
        for kind in kinds:
            keep = {i for i in truth if planted_kind[i] in ("", kind)}
            flags = {i: truth[i]["is_error"] == "1" for i in keep}
            yield f"C {kind}, {name}", kind, [(cell_auprc(s, flags, keep), r) for s, r in runs]


def summarise(label: str, kind: str, runs: list[tuple[dict, dict]]) -> dict:
    first = runs[0][0]
    best = max(FIXED, key=lambda m: first[m])
    autos = [a["auto"] for a, _ in runs]
    chosen = Counter(r["chosen"] for _, r in runs)
    return {"cell": label, "kind": kind, "held_out": kind in HELD_OUT, "auprc": first, "best_fixed": best,
            "auto_seeds": autos, "chosen": [r["chosen"] for _, r in runs],
            "stable": chosen.most_common(1)[0][1] >= max(1, len(runs) - 1) or max(autos) - min(autos) <= 0.03,
            "within": first["auto"] >= first[best] - 0.05}


def markdown(rows: list[dict], seeds: list[int]) -> str:
    lines = [f"| cell | auto | auto over seeds {','.join(map(str, seeds))} (min–max) | chosen (seed {seeds[0]}) | "
             "same choice | " + " | ".join(SHOWN) + " | best fixed | auto − best |",
             "|---|---:|---|---|---:|" + "---:|" * len(SHOWN) + "---|---:|"]
    for row in rows:
        a = row["auprc"]
        choice = Counter(row["chosen"]).most_common(1)[0]
        gap = a["auto"] - a[row["best_fixed"]]
        lines.append(f"| {row['cell']}{' (held out)' if row['held_out'] else ''} | **{a['auto']:.3f}** | "
                     f"{min(row['auto_seeds']):.3f}–{max(row['auto_seeds']):.3f} | {row['chosen'][0]} | "
                     f"{choice[1]}/{len(row['chosen'])} | " + " | ".join(f"{a[m]:.3f}" for m in SHOWN)
                     + f" | {row['best_fixed']} {a[row['best_fixed']]:.3f} | {gap:+.3f} |")
    for group, members in (("all cells", rows), ("planted-like kinds", [r for r in rows if not r["held_out"]]),
                           ("held out (coarse)", [r for r in rows if r["held_out"]])):
        if not members:
            continue
        means = {m: np.mean([r["auprc"][m] for r in members]) for m in ("auto", *FIXED)}
        best = max(FIXED, key=lambda m: means[m])
        lines.append(f"| **mean, {group}** ({len(members)}) | **{means['auto']:.3f}** | | | | "
                     + " | ".join(f"{means[m]:.3f}" for m in SHOWN)
                     + f" | {best} {means[best]:.3f} | {means['auto'] - means[best]:+.3f} |")
    within = sum(r["within"] for r in rows)
    stable = sum(r["stable"] for r in rows)
    lines += ["", f"auto within 0.05 of the best fixed method: {within} of {len(rows)} cells; the same choice in "
              f">= {len(seeds) - 1} of {len(seeds)} seeds or a spread <= 0.03: {stable} of {len(rows)} cells."]
    misses = [r for r in rows if not r["within"]]
    if misses:
        lines.append("Cells missing the 0.05 rule: " + "; ".join(
            f"{r['cell']} by {r['auprc'][r['best_fixed']] - r['auprc']['auto'] - 0.05:.3f}" for r in misses) + ".")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=Path, default=HERE / "work")
    parser.add_argument("--camvid", type=Path, default=HERE / "work-camvid")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--markdown", type=Path, help="write the tables here (default: print them)")
    parser.add_argument("--out", type=Path, help="write every number as JSON here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    scratch = Path(subprocess.check_output(["mktemp", "-d"], text=True).strip())
    started = time.perf_counter()
    tables = {}
    everything = {}
    for grid, work, cells in (("synthetic", args.synthetic, synthetic_cells), ("camvid", args.camvid, camvid_cells)):
        if not (work / "results.json").exists():
            print(f"{grid}: no {work / 'results.json'}; skipped", file=sys.stderr)
            continue
        rows = []
        for label, kind, runs in cells(work, seeds, scratch):
            rows.append(summarise(label, kind, runs))
            print(f"[{time.perf_counter() - started:6.0f} s] {label}: auto {rows[-1]['auprc']['auto']:.3f} "
                  f"({rows[-1]['chosen'][0]}), best fixed {rows[-1]['best_fixed']} "
                  f"{rows[-1]['auprc'][rows[-1]['best_fixed']]:.3f}", file=sys.stderr, flush=True)
        tables[grid] = markdown(rows, seeds)
        everything[grid] = rows
    text = "\n\n".join(f"**{grid}**\n\n{table}" for grid, table in tables.items())
    if args.markdown:
        args.markdown.write_text(text + "\n")
    else:
        print(text)
    if args.out:
        args.out.write_text(json.dumps(everything, indent=1, default=float) + "\n")
    print(f"done in {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
