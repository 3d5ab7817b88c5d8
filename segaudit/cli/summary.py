"""``segaudit summary``: class confusions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import dash_is_stdout, exit_on_error, fail, interactive, progress, refuse_overwriting_inputs, require_parent_dirs, stderr
from ._options import (DaskWorkers, Downsample, InputOptions, OutputFormat, PartitionSize, Quiet, Scheduler, Threads,
                       dask_client, reads_inputs)


@reads_inputs
def command(
    *,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Also write every (annotated, predicted) row as CSV: annotated,predicted,pixels,images,share ('-' = stdout, in place of the table).")] = None,
    top: Annotated[int, typer.Option(help="Rows of the table shown.")] = 20,
    output_format: Annotated[Optional[OutputFormat], typer.Option("--format", help="Write every row to stdout as csv, jsonl or json instead of the table.")] = None,
    downsample: Downsample = 4,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Also plant errors into a sample of the masks, as --method auto of segaudit score does, in the same pass, and print how well each kind of error can be found with this model (AUPRC per kind and candidate score).")] = False,
    calibration_seed: Annotated[int, typer.Option(help="With --calibrate: seed of the planted copies (which images, which errors).")] = 0,
    threads: Threads = None,
    scheduler: Scheduler = None,
    dask_workers: DaskWorkers = None,
    partition_size: PartitionSize = None,
    inputs: InputOptions,
    quiet: Quiet = False,
) -> None:
    """Which class mix-ups dominate: over all confident-learning flagged pixels, the
    (annotated class -> class the model sees instead) pairs, with pixel and image counts.

    Reads the store once (confident learning's later passes read a temporary cell
    cache). Exit codes: 0 done; 2 bad input or options.
    """
    from ..outputs.findings import class_confusions, confusions_csv
    from ..io.files import atomic_write_all

    if top < 0:
        raise fail(f"--top must be >= 0, got {top}")
    if csv is not None and dash_is_stdout(csv) is None:  # '-': the CSV on stdout, in place of the table
        csv, output_format = None, output_format or OutputFormat.csv
    require_parent_dirs(csv)
    refuse_overwriting_inputs(inputs.reads(), {"--csv": csv})
    spec = inputs.spec()
    cluster = dask_client(scheduler, dask_workers, partition_size, inputs.timeout)
    with exit_on_error(), cluster as client, progress(interactive(quiet)) as bar:
        rows, run = class_confusions(spec=spec, downsample=downsample,
                                     on_progress=bar.on_progress, threads=threads, client=client,
                                     partition_size=partition_size, calibrate=calibrate,
                                     calibration_seed=calibration_seed)
    if csv is not None:
        with exit_on_error(str(csv)):
            atomic_write_all({csv: confusions_csv(rows, run.class_name)})
    if not quiet:  # the dataset-level check of the scoring run: mix-ups of a wrong numbering mean nothing
        for warning in run.warnings:
            stderr.print(f"warning: {warning}", soft_wrap=True)
    if run.calibration is not None:  # asked for: on stderr, as score prints it (stdout may be data)
        from ..outputs.calibration import calibration_lines

        for line in calibration_lines(run.calibration):
            stderr.print(line, soft_wrap=True, highlight=False, markup=False)
    if output_format:
        import sys

        from ..outputs.findings import CONFUSION_COLUMNS, confusion_rows
        from ..io.tables import render

        sys.stdout.write(render(CONFUSION_COLUMNS, confusion_rows(rows, run.class_name), output_format.value))
        return
    from rich.console import Console

    from ..outputs.terminal import confusion_table

    Console(highlight=False).print(confusion_table(rows, run, top))
