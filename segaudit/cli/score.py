"""``segaudit score``: rank every image of a dataset, worst label quality first."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ._app import app, fail, stderr
from ._options import (
    AllowMissing, ChannelsLast, Classes, Downsample, IgnoreIndex, Logits, Masks, MaskSuffix, NoIgnore,
    Palette, PixelThreshold, Predictions, Quiet, input_options, with_progress,
)


@app.command()
def score(
    masks: Masks,
    predictions: Predictions,
    output: Annotated[str, typer.Option("--output", "-o", help="CSV to write, worst image first; '-' writes to stdout. A run record <stem>.run.json is written beside a file.")] = "ranking.csv",
    method: Annotated[str, typer.Option("--method", "-m", help="Scoring method, a comma list, or 'all' (softmin, cil, ccp, tccp, iou, clc, coco). The first ranks the images and fills the 'score' column. clc reads the store 3 times.")] = "softmin",
    temperature: Annotated[float, typer.Option(help="Softmin temperature (> 0): lower focuses on the worst pixels, higher approaches the mean.")] = 0.1,
    pixel_threshold: PixelThreshold = 0.5,
    downsample: Downsample = 4,
    ignore_index: IgnoreIndex = None,
    no_ignore: NoIgnore = False,
    mask_suffix: MaskSuffix = "",
    palette: Palette = None,
    classes: Classes = None,
    logits: Logits = None,
    channels_last: ChannelsLast = None,
    allow_missing: AllowMissing = False,
    top: Annotated[int, typer.Option(help="Rows of the summary table shown on a terminal.")] = 10,
    quiet: Quiet = False,
) -> None:
    """Score every image and write a CSV ranking, most likely mislabeled first.

    Exit codes: 0 scored; 2 bad input or options (nothing written).
    """
    from ..errors import InputError
    from ..methods import parse_methods

    if output != "-" and not Path(output).parent.is_dir():
        raise fail(f"output directory does not exist: {Path(output).parent}")
    try:
        methods = parse_methods(method)
    except InputError as exc:
        raise fail(str(exc))
    inputs = input_options(ignore_index, no_ignore, mask_suffix, palette, classes, logits, channels_last,
                           allow_missing)
    show = not quiet and stderr.is_terminal
    from ..scoring import score as score_images

    try:
        run = with_progress(show, score_images, masks, predictions, methods=methods, temperature=temperature,
                            pixel_threshold=pixel_threshold, downsample=downsample, **inputs)
    except InputError as exc:
        raise fail(str(exc))

    from ..output import ranking_csv, write_ranking

    if output == "-":
        sys.stdout.write(ranking_csv(run))
        sys.stdout.flush()
    else:
        try:
            write_ranking(run, output)
        except OSError as exc:
            raise fail(f"cannot write {output}: {exc.strerror or exc}")
    if not quiet:
        _notes(run, output)
    if show:
        from ..tables import worst_table

        stderr.print(worst_table(run, top))


def _notes(run, output: str) -> None:
    skipped = len(run.skipped_masks) + len(run.skipped_predictions)
    if skipped:
        stderr.print(
            f"note: skipped {len(run.skipped_masks)} mask(s) without prediction and "
            f"{len(run.skipped_predictions)} prediction(s) without mask",
            soft_wrap=True,
        )
    empty = run.empty_images
    if empty:
        stderr.print(
            f"warning: {len(empty)} image(s) have no scored pixel (all ignored) and are ranked last "
            f"with an empty score: {', '.join(empty[:3])}" + (" ..." if len(empty) > 3 else ""),
            soft_wrap=True,
        )
    if output != "-":
        stderr.print(f"wrote {output} ({len(run.results)} images, ranked by {run.methods[0]})", soft_wrap=True)
