"""``segaudit check``: validate a dataset without scoring it, as a dataset's CI pipeline runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import EXIT_FINDINGS, EXIT_INPUT, exit_on_error, fail, interactive, progress, stderr
from ._options import InputOptions, Quiet, reads_inputs


#: How many problems are listed one per line; the rest are counted.
MAX_LISTED = 20


@reads_inputs
def command(
    *,
    sample: Annotated[int, typer.Option(help="Prediction blocks to read and check for probability sanity, spread over the images (0 = none).")] = 32,
    fail_on_warning: Annotated[bool, typer.Option("--fail-on-warning", help="Gate: exit 1 if the class-space check on the sampled blocks warns (as score's --fail-on-warning).")] = False,
    reviewed: Annotated[Optional[Path], typer.Option("--reviewed", help="A reviewer's decisions.csv (image,region,decision,note,mask_sha256): say how many images its ok decisions exempt from score's gates (their masks unchanged), and list the stale ones (the mask changed since: judged again). A malformed file is a problem (exit 2).")] = None,
    inputs: InputOptions,
    quiet: Quiet = False,
) -> None:
    """Validate a dataset without scoring it: pairing, sizes, every mask's label values, and
    a sample of prediction blocks. Lists every problem found.

    On the sampled blocks it also runs score's class-space check (masks needing
    --label-map, predictions for other images) and prints its warnings. With --reviewed
    it says which images a reviewer's ok decisions exempt from score's gates.

    Exit codes: 0 valid; 1 a warning with --fail-on-warning; 2 problems found (one line each
    on stderr).
    """
    from ..ci.check import check as check_dataset

    if sample < 0:
        raise fail(f"--sample must be >= 0, got {sample}")
    spec = inputs.spec()
    with exit_on_error(), progress(interactive(quiet)) as bar:
        report = check_dataset(spec=spec, sample_blocks=sample, on_progress=bar.on_progress, reviewed=reviewed)
    for problem in report.problems[:MAX_LISTED]:
        stderr.print(f"error: {problem}", soft_wrap=True)
    if len(report.problems) > MAX_LISTED:
        stderr.print(f"error: ... and {len(report.problems) - MAX_LISTED} more problem(s)", soft_wrap=True)
    if report.problems:
        stderr.print(f"{len(report.problems)} problem(s) in {report.images} image(s)", soft_wrap=True)
        raise typer.Exit(EXIT_INPUT)
    for warning in report.warnings:
        if fail_on_warning:
            stderr.print(f"gate failed: --fail-on-warning: {warning}", soft_wrap=True)
        elif not quiet:
            stderr.print(f"warning: {warning}", soft_wrap=True)
    if not quiet:
        for line in report.review.notes() if report.review else ():
            stderr.print(f"note: {line}", soft_wrap=True)
        stderr.print(f"ok: {report.images} images paired, {report.n_classes} classes, labels valid, "
                     f"{report.blocks_checked} prediction block(s) sane", soft_wrap=True)
    if fail_on_warning and report.warnings:
        raise typer.Exit(EXIT_FINDINGS)
