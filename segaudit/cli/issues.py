"""``segaudit issues``: pixel issue masks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import exit_on_error, fail, interactive, progress, refuse_overwriting_inputs, stderr
from ._options import (DaskWorkers, InputOptions, PartitionSize, PixelThreshold, Quiet, Scheduler, Threads,
                       check_downsample, dask_client, reads_inputs)

IssueDownsample = Annotated[int, typer.Option(callback=check_downsample, help="Cell size F of clc's FxF grid: thresholds, count and cut are taken over cells. The default 4 is not cleanlab's: give 1 to flag exactly the pixels cleanlab.segmentation.filter.find_label_issues flags with its default downsample=1 (at 4 the two flag different, overlapping pixel sets).")]
#: segaudit.outputs.findings.ISSUE_METHODS, named here so that --help imports nothing (a test checks they agree).
ISSUE_METHODS = ("clc", "threshold")


@reads_inputs
def command(
    *,
    out: Annotated[Path, typer.Option("--out", help="Directory for the issue masks; files mirror the mask ids (<out>/<id>.png).")] = Path("issues"),
    top: Annotated[Optional[int], typer.Option(help="Write only the N images with the largest flagged fraction (even with none flagged); default: every image with a flagged pixel.")] = None,
    method: Annotated[str, typer.Option(metavar="[" + "|".join(ISSUE_METHODS) + "]", help="clc: confident-learning flags (reads the store once, then a temporary cell cache); threshold: pixels with s below --pixel-threshold (2 passes).")] = "clc",
    pixel_threshold: PixelThreshold = 0.5,
    downsample: IssueDownsample = 4,
    threads: Threads = None,
    scheduler: Scheduler = None,
    dask_workers: DaskWorkers = None,
    partition_size: PartitionSize = None,
    inputs: InputOptions,
    quiet: Quiet = False,
) -> None:
    """Write full-resolution PNGs marking the suspect pixels: 0 = fine, 255 = flagged.

    Exit codes: 0 written; 2 bad input or options.
    """
    from ..outputs.findings import write_issue_masks

    if method not in ISSUE_METHODS:
        raise fail(f"--method must be one of {', '.join(ISSUE_METHODS)}, got {method!r}")
    if top is not None and top < 1:
        raise fail(f"--top must be at least 1, got {top}")
    refuse_overwriting_inputs(inputs.reads(), {"--out": out})
    spec = inputs.spec()
    cluster = dask_client(scheduler, dask_workers, partition_size, inputs.timeout)
    with exit_on_error(f"to {out}"), cluster as client, progress(interactive(quiet)) as bar:
        written, run = write_issue_masks(out_dir=out, spec=spec, method=method, top=top,
                                         pixel_threshold=pixel_threshold, downsample=downsample,
                                         on_progress=bar.on_progress, threads=threads, client=client,
                                         partition_size=partition_size)
    if not quiet:
        flagged = sum(pixels for _, pixels in written)
        stderr.print(f"wrote {len(written)} issue mask(s) to {out} ({flagged} flagged pixels, method {method})",
                     soft_wrap=True)
