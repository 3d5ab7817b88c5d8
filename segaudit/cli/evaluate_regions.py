"""``segaudit evaluate-regions``: how well the error regions find the errors ``segaudit corrupt`` planted."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import dash_is_stdout, exit_on_error, fail, interactive, progress, refuse_overwriting_inputs, require_parent_dirs
from ._options import Band, BandWeight, InputOptions, Margin, Quiet, reads_inputs, region_rule


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@reads_inputs
def command(
    *,
    clean: Annotated[Path, typer.Option("--clean", help="The masks before the errors were planted (the --masks of segaudit corrupt), with the same image ids.")],
    truth: Annotated[Path, typer.Option("--truth", help="CSV image,is_error,kind,classes (segaudit corrupt --truth writes it); the kind of each planted image is what its regions' kind is judged against.")],
    min_score: Annotated[Optional[float], typer.Option(help="The proposed fixes relabel regions scoring at least this (0-1, calibrated score), as segaudit regions --propose-dir does. Default: the calibrated threshold, as there.")] = None,
    calibration_seed: Annotated[int, typer.Option(help="Seed of the errors planted into a sample of the masks to calibrate region scores on, as segaudit regions.")] = 0,
    min_area: Annotated[int, typer.Option(help="Planted regions smaller than this many pixels are not counted in recall.")] = 16,
    margin: Margin = 0.25,
    band: Band = 2,
    band_weight: BandWeight = 1.0,
    output_format: Annotated[Optional[Format], typer.Option("--format", help="table, or csv (metric,value) or json. Default: table on a terminal, csv otherwise.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout ('-' = stdout).")] = None,
    inputs: InputOptions,
    quiet: Quiet = False,
) -> None:
    """Region-level AP and recall at IoU 0.5 and 0.25, kind accuracy per planted type, and how
    many planted pixels the proposed fixes restore (the metrics are in docs/evaluation.md).

    MASKS are the noisy masks (with planted errors), PREDICTIONS the model's probabilities on them.

    Exit codes: 0 evaluated; 2 bad input or options.
    """
    from ..calibration.regions import calibrated_regions
    from ..core.dataset import open_dataset
    from ..core.regions import check_min_score
    from ..evaluation.evaluate import load_truth
    from ..evaluation.regions import evaluate_regions, summarise, summary_rows
    from ..io.tables import render

    if min_area < 1:
        raise fail(f"--min-area must be at least 1, got {min_area}")
    if min_score is not None:
        with exit_on_error():
            check_min_score(min_score)
    rule = region_rule(margin, band, band_weight)
    output = dash_is_stdout(output)
    require_parent_dirs(output)
    refuse_overwriting_inputs({**inputs.reads(), "--clean masks": clean, "--truth file": truth}, {"--output": output})
    with exit_on_error(), progress(interactive(quiet)) as bar:
        truth_rows = load_truth(truth)
        dataset = open_dataset(inputs.spec())
        # The region scores calibrated as segaudit regions calibrates them (one more pass).
        calibration = calibrated_regions(dataset, rule, seed=calibration_seed, progress=bar.on_progress)[0].calibration
        evaluation = evaluate_regions(dataset, clean, truth_rows, rule,
                                      min_score=calibration.threshold if min_score is None else min_score,
                                      min_area=min_area, mask_suffix=inputs.mask_suffix, progress=bar.on_progress,
                                      calibration=calibration)
    summary = summarise(evaluation)
    rows = summary_rows(summary)
    if output_format is None:
        output_format = Format.table if output is None and sys.stdout.isatty() else Format.csv
    if output_format is Format.json:
        text = json.dumps(summary, indent=2, allow_nan=True) + "\n"
    elif output_format is Format.csv:
        text = render(["metric", "value"], rows, "csv")
    else:
        text = "".join(f"{name:<58} {value:.3f}\n" if isinstance(value, float) else f"{name:<58} {value}\n"
                       for name, value in rows)
    with exit_on_error("output"):
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            from ..io.files import atomic_write_all

            atomic_write_all({output: text})
