"""``segaudit diff``: compare two rankings, as a dataset's CI pipeline runs it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import EXIT_FINDINGS, exit_on_error, stderr
from ._options import DEFAULT_TIMEOUT, OutputFormat, Quiet, StorageOptions, Timeout, parse_storage_options


def command(
    base: Annotated[Path, typer.Argument(help="Ranking of the base (e.g. main).")],
    head: Annotated[Path, typer.Argument(help="Ranking of the change (e.g. the pull request).")],
    tolerance: Annotated[Optional[float], typer.Option(show_default="0.1 on the percentile scale, 0.05 on the score scale", help="An image regressed if it fell by more than this on --scale (improved if it rose by more).")] = None,
    scale: Annotated[str, typer.Option("--scale", metavar="[percentile|score]", help="What --tolerance measures: percentile, the image's rank percentile among the base ranking's other images (0 = below all, 1 = above all; fits any spread of scores); or score, the score itself.")] = "percentile",
    fail_under: Annotated[Optional[float], typer.Option(help="New images scoring below this also fail.")] = None,
    reviewed: Annotated[Optional[Path], typer.Option("--reviewed", help="A reviewer's decisions.csv: images marked ok whose mask (found through the head ranking's run record) still has the recorded sha256 do not fail the diff.")] = None,
    output_format: Annotated[Optional[OutputFormat], typer.Option("--format", help="Write the changes to stdout as csv, jsonl or json instead of a table.")] = None,
    storage_options: StorageOptions = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    quiet: Quiet = False,
) -> None:
    """Compare two rankings: what got worse, new, added or removed.

    Images that fell by more than --tolerance (on --scale: by default, their rank
    percentile among the base's other images), images that rose by more (improved; they
    do not fail), new images under --fail-under, added and removed images. A subset ranking (scored with --only, as a pull request's
    run is) is compared on its own images only.

    Exit codes: 0 nothing regressed; 1 something regressed; 2 bad input.
    """
    from ..ci.diff import DEFAULT_TOLERANCE, DIFF_COLUMNS, diff_rankings, read_ranking
    from ..io.tables import render

    review = None
    options = parse_storage_options(storage_options, timeout)  # checked even when --reviewed does not use it
    with exit_on_error():
        base_ranking, head_ranking = read_ranking(base), read_ranking(head)
        if reviewed is not None:
            from ..ci.review import review_ranking

            review = review_ranking(reviewed, head_ranking, options)
        changes = diff_rankings(base_ranking, head_ranking, tolerance=tolerance, fail_under=fail_under,
                                exempt=review.exempt if review else frozenset(), scale=scale)
    if review is not None and not quiet:
        for line in review.notes():
            stderr.print(f"note: {line}", soft_wrap=True)
        if changes.exempted:
            stderr.print(f"note: {len(changes.exempted)} regressed or new image(s) exempt (reviewed ok): "
                         + ", ".join(i for i, _, _ in changes.exempted[:5])
                         + (" ..." if len(changes.exempted) > 5 else ""), soft_wrap=True)
    if changes.outside_subset and not quiet:
        stderr.print(f"note: {changes.outside_subset} image(s) outside the --only subset were not compared")
    if output_format:
        sys.stdout.write(render(DIFF_COLUMNS, changes.rows(), output_format.value))
    elif not quiet:
        from ..outputs.terminal import diff_table

        stderr.print(diff_table(changes, DEFAULT_TOLERANCE[scale] if tolerance is None else tolerance))
    if changes.failed:
        raise typer.Exit(EXIT_FINDINGS)
