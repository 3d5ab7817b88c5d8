"""``segaudit check``: validate a dataset without scoring it, as a dataset's CI pipeline runs it."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import EXIT_INPUT, fail, interactive, progress, stderr
from ._options import (
    AllowMissing, ChannelsLast, Classes, IgnoreIndex, Logits, Masks, MaskSuffix, NoIgnore, Palette,
    Predictions, Quiet, input_options,
)


def command(
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
        with progress(interactive(quiet)) as bar:
            report = check_dataset(masks, predictions, sample_blocks=sample, on_progress=bar.on_progress, **inputs)
    except InputError as exc:
        raise fail(str(exc))
    for problem in report.problems:
        stderr.print(f"error: {problem}", soft_wrap=True)
    if report.problems:
        raise typer.Exit(EXIT_INPUT)
    if not quiet:
        stderr.print(f"ok: {report.images} images paired, {report.n_classes} classes, labels valid, "
                     f"{report.blocks_checked} prediction block(s) sane", soft_wrap=True)
