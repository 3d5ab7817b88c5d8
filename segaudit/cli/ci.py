"""``segaudit check`` and ``segaudit diff``: the commands a dataset's CI pipeline runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import EXIT_FINDINGS, EXIT_INPUT, app, fail, stderr
from ._options import (
    AllowMissing, ChannelsLast, Classes, IgnoreIndex, Logits, Masks, MaskSuffix, NoIgnore, Palette,
    Predictions, Quiet, input_options, with_progress,
)


@app.command()
def check(
    masks: Masks,
    predictions: Predictions,
    sample: Annotated[int, typer.Option(help="Prediction blocks to read and check for probability sanity, spread over the images (0 = none).")] = 32,
    ignore_index: IgnoreIndex = None,
    no_ignore: NoIgnore = False,
    mask_suffix: MaskSuffix = "",
    palette: Palette = None,
    classes: Classes = None,
    logits: Logits = None,
    channels_last: ChannelsLast = None,
    allow_missing: AllowMissing = False,
    quiet: Quiet = False,
) -> None:
    """Validate a dataset without scoring it: pairing, sizes, every mask's label values, and
    a sample of prediction blocks. Lists every problem found.

    Exit codes: 0 valid; 2 problems found (one line each on stderr).
    """
    from ..ci.check import check as check_dataset
    from ..errors import InputError

    inputs = input_options(ignore_index, no_ignore, mask_suffix, palette, classes, logits, channels_last,
                           allow_missing)
    try:
        report = with_progress(not quiet and stderr.is_terminal, check_dataset, masks, predictions,
                               sample_blocks=sample, **inputs)
    except InputError as exc:
        raise fail(str(exc))
    for problem in report.problems:
        stderr.print(f"error: {problem}", soft_wrap=True)
    if report.problems:
        raise typer.Exit(EXIT_INPUT)
    if not quiet:
        stderr.print(f"ok: {report.images} images paired, {report.n_classes} classes, labels valid, "
                     f"{report.blocks_checked} prediction block(s) sane", soft_wrap=True)


@app.command()
def diff(
    base: Annotated[Path, typer.Argument(help="Ranking of the base (e.g. main).")],
    head: Annotated[Path, typer.Argument(help="Ranking of the change (e.g. the pull request).")],
    tolerance: Annotated[float, typer.Option(help="An image regressed if its score fell by more than this.")] = 0.05,
    fail_under: Annotated[Optional[float], typer.Option(help="New images scoring below this also fail.")] = None,
    output_format: Annotated[Optional[str], typer.Option("--format", help="Write the changes to stdout as csv, jsonl or json instead of a table.")] = None,
    quiet: Quiet = False,
) -> None:
    """Compare two rankings: images whose score fell by more than --tolerance, new images
    under --fail-under, added and removed images.

    Exit codes: 0 nothing regressed; 1 something regressed; 2 bad input.
    """
    from ..ci.diff import DIFF_COLUMNS, diff_rankings, read_ranking
    from ..errors import InputError
    from ..io.tables import FORMATS, render

    if output_format is not None and output_format not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}, not {output_format!r}")
    try:
        changes = diff_rankings(read_ranking(base), read_ranking(head), tolerance=tolerance, fail_under=fail_under)
    except InputError as exc:
        raise fail(str(exc))
    if output_format:
        sys.stdout.write(render(DIFF_COLUMNS, changes.rows(), output_format))
    elif not quiet:
        from ..outputs.terminal import diff_table

        stderr.print(diff_table(changes, tolerance))
    if changes.failed:
        raise typer.Exit(EXIT_FINDINGS)
