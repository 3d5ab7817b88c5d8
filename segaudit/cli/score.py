"""``segaudit score``: rank every image of a dataset, worst label quality first."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import (EXIT_FINDINGS, exit_on_error, fail, interactive, progress, refuse_overwriting_inputs,
                   require_parent_dirs, stderr)
from ._options import (DaskWorkers, Downsample, InputOptions, PartitionSize, Scheduler, Threads, Only, OutputFormat,
                       PixelThreshold, Quiet, dask_client, method_names,
                       reads_inputs, read_only_entries)


@reads_inputs
def command(
    *,
    output: Annotated[str, typer.Option("--output", "-o", help="Ranking to write, worst image first; '-' writes to stdout (logs go to stderr). A run record <stem>.run.json is written beside a file.")] = "ranking.csv",
    method: Annotated[str, typer.Option("--method", "-m", help="Scoring method, a comma list, or 'all' (auto, " + ", ".join(method_names()) + "). The first ranks the images and fills the 'score' column. auto (default) plants realistic errors into copies of a sample of your masks, measures how well every candidate score (each method, softmin at several temperatures) finds them with your model's predictions, and ranks by rsoftmin unless another candidate surely finds them better; the table goes to the terminal and the run record. rsoftmin is softmin at a temperature scaled to the image size; softmin is the paper's. clc adds two passes over a temporary cell cache (the store is read once).")] = "auto",
    calibration_seed: Annotated[int, typer.Option(help="auto and --regions: seed of the planted copies they calibrate on (which images, which errors); the same seed gives the same ranking and region scores.")] = 0,
    unlabeled: Annotated[Optional[int], typer.Option("--unlabeled", help="auto: your unlabeled (background) class, if it is a scored class (not an --ignore-index): planted missed objects are annotated as it, as real ones are. Default: a missed object keeps the class around it.")] = None,
    temperature: Annotated[float, typer.Option(help="Softmin temperature (> 0): lower focuses on the worst pixels, higher approaches the mean. rsoftmin uses it on 760x1280 images and scales it to each image's size.")] = 0.1,
    pixel_threshold: PixelThreshold = 0.5,
    downsample: Downsample = 4,
    threads: Threads = None,
    scheduler: Scheduler = None,
    dask_workers: DaskWorkers = None,
    partition_size: PartitionSize = None,
    inputs: InputOptions,
    only: Only = None,
    baseline: Annotated[Optional[Path], typer.Option(help="Ranking of an earlier full run: reuse its dataset-wide clc cut and downsampling (from its run record), so a subset scores consistently with it.")] = None,
    fail_under: Annotated[Optional[float], typer.Option(help="Gate: exit 1 if any image's score (the first method, or --fail-under-method) is below this; the images are listed on stderr.")] = None,
    fail_under_method: Annotated[Optional[str], typer.Option(help="Gate --fail-under on this computed method instead of the first.")] = None,
    max_flagged: Annotated[Optional[int], typer.Option(help="Gate: exit 1 if any image has more than N clc-flagged pixels (needs clc in --method).")] = None,
    regions: Annotated[bool, typer.Option("--regions", help="Also find each image's error regions (one more pass over the store; see segaudit regions): adds the columns regions (how many score at or above the calibrated threshold: region scores are calibrated on errors planted into a sample of the masks, seeded by --calibration-seed; the threshold is printed and recorded) and worst_region (the worst one's kind: missing, wrong_class, boundary, spurious), and the rule to the run record, so overlay draws the same regions.")] = False,
    reviewed: Annotated[Optional[Path], typer.Option("--reviewed", help="A reviewer's decisions.csv (image,region,decision,note,mask_sha256): images marked ok whose mask file still has the recorded sha256 stay in the ranking but are exempt from the gates; a changed mask is judged again. The run record and --summary-md say how many were exempted and how many decisions went stale.")] = None,
    folds: Annotated[Optional[Path], typer.Option("--folds", help="An image,fold table (from 'segaudit folds'): before scoring, check that every image with a recorded fold (PredictionWriter(fold=), pack --fold) was predicted by its own fold's model; exit 2 naming the first offenders otherwise. A store without recorded folds passes.")] = None,
    fail_on_warning: Annotated[bool, typer.Option("--fail-on-warning", help="Gate: exit 1 if the dataset-level check warns (labels and predictions do not look like the same class space, e.g. masks needing --label-map).")] = False,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="Output format: csv, jsonl (one JSON object per image) or json.")] = OutputFormat.csv,
    summary_md: Annotated[Optional[Path], typer.Option(help="Also write a Markdown summary (counts, gates, worst images) for $GITHUB_STEP_SUMMARY or a PR comment.")] = None,
    top: Annotated[int, typer.Option(help="Rows of the terminal table and of the Markdown summary's worst images.")] = 10,
    quiet: Quiet = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the progress bar and table even when stderr is not a terminal.")] = False,
) -> None:
    """Score every image and write a ranking, most likely mislabeled first.

    Exit codes: 0 scored, no gate failed; 1 scored, a gate failed (outputs written);
    2 bad input or options (nothing written).
    """
    from ..api import score as score_images
    from ..ci.gates import check_gates

    from ..io.files import run_record_path

    if top < 0:
        raise fail(f"--top must be >= 0, got {top}")
    require_parent_dirs(None if output == "-" else Path(output), summary_md)
    refuse_overwriting_inputs(
        {**inputs.reads(), "--only file": only, "--baseline ranking": baseline,
         "--baseline run record": baseline and run_record_path(baseline), "--reviewed decisions file": reviewed},
        {"--output": output, "run record": None if output == "-" else run_record_path(output),
         "--summary-md": summary_md})
    with exit_on_error():
        methods, gates, only_entries, baseline_clc = _parse_options(method, fail_under, fail_under_method,
                                                                    max_flagged, only, baseline)
        if reviewed is not None:  # a malformed file fails before the scoring
            from ..io.decisions import read_decisions

            decisions = read_decisions(reviewed)
        if folds is not None:  # in-sample predictions would trust the labels they should audit
            from ..io.folds import check_store_folds
            from ._options import parse_storage_options

            check_store_folds(inputs.predictions, folds, parse_storage_options(inputs.storage_options))
    spec = inputs.spec()
    cluster = dask_client(scheduler, dask_workers, partition_size, inputs.timeout)
    show = interactive(quiet, verbose)
    with exit_on_error(), cluster as client, progress(show) as bar:
        run = score_images(spec=replace(spec, only=only_entries), methods=methods, temperature=temperature,
                           pixel_threshold=pixel_threshold, downsample=downsample,
                           baseline=baseline_clc, regions=regions, on_progress=bar.on_progress, threads=threads,
                           client=client, partition_size=partition_size, calibration_seed=calibration_seed,
                           unlabeled=unlabeled)
    review = None
    if reviewed is not None:
        from ..ci.review import review_masks

        with exit_on_error():
            review = review_masks(reviewed, spec.masks, spec.mask_suffix, [r.image_id for r in run.results],
                                  decisions, spec.storage_options)
        run.reviewed = review.record()
    gate_results = check_gates(run, gates, review.exempt if review else frozenset())
    with exit_on_error("output"):
        _write_outputs(run, output, output_format, summary_md, gate_results, top)
    if not quiet:
        _notes(run, output)
        for line in review.notes() if review else ():
            stderr.print(f"note: {line}", soft_wrap=True)
        if not fail_on_warning:  # the gate prints them
            for warning in run.warnings:
                stderr.print(f"warning: {warning}", soft_wrap=True)
    if run.regions is not None and run.regions.calibration is not None and not quiet:
        from ..calibration.regions import RegionCalibration

        calibration = RegionCalibration.from_dict(run.regions.calibration)
        stderr.print(calibration.describe() + f"; {run.regions.regions} region(s) at or above it (the regions column)",
                     soft_wrap=True, highlight=False, markup=False)
        for sentence in calibration.hard_sentences():
            stderr.print(f"warning: {sentence}", soft_wrap=True, highlight=False, markup=False)
    if run.calibration is not None and not quiet:
        from ..outputs.calibration import calibration_lines

        for line in calibration_lines(run.calibration):
            stderr.print(line, soft_wrap=True, highlight=False, markup=False)
    if show and run.results:
        from ..outputs.terminal import worst_table

        stderr.print(worst_table(run, top, width=stderr.width))
    if fail_on_warning and run.warnings:
        for warning in run.warnings:
            stderr.print(f"gate failed: --fail-on-warning: {warning}", soft_wrap=True)
        _exit_on_failed_gates(gate_results)  # the other gates' failures too
        raise typer.Exit(EXIT_FINDINGS)
    _exit_on_failed_gates(gate_results)


def _parse_options(method: str, fail_under: float | None, fail_under_method: str | None, max_flagged: int | None,
                   only: str | None, baseline: Path | None):
    """The methods, gates, --only entries and --baseline clc section (InputError if one is bad)."""
    from ..ci.gates import make_gates
    from ..errors import InputError
    from ..methods import parse_methods

    methods = parse_methods(method)
    gates = make_gates(methods, fail_under, fail_under_method, max_flagged)
    only_entries = read_only_entries(only)
    if baseline is not None and "clc" not in methods and "auto" not in methods:
        raise InputError("--baseline reuses the baseline's clc cut: it needs clc in --method")
    baseline_clc = _read_baseline(baseline) if baseline else None
    return methods, gates, only_entries, baseline_clc


def _write_outputs(run, output: str, output_format: OutputFormat, summary_md: Path | None, gate_results,
                   top: int) -> None:
    """The ranking (a file with its run record, or stdout for '-') and the --summary-md file."""
    from ..outputs.ranking import ranking_text, write_ranking

    if output == "-":
        sys.stdout.write(ranking_text(run, output_format.value))
        sys.stdout.flush()
    else:
        write_ranking(run, output, output_format.value)
    if summary_md:
        from ..io.files import atomic_write_all
        from ..outputs.markdown import summary_markdown

        atomic_write_all({summary_md: summary_markdown(run, gate_results, top)})


def _exit_on_failed_gates(gate_results) -> None:
    """List every failed gate's images on stderr and exit 1 if a gate failed."""
    failed = [g for g in gate_results if not g.passed]
    for result in failed:
        listed = ", ".join(f"{image_id} ({value:.4g})" for image_id, value in result.failures[:20])
        more = f" and {len(result.failures) - 20} more" if len(result.failures) > 20 else ""
        stderr.print(f"gate failed: {result.gate.describe()}: {len(result.failures)} image(s): {listed}{more}",
                     soft_wrap=True)
    if failed:
        raise typer.Exit(EXIT_FINDINGS)


def _read_baseline(csv_path: Path):
    """The clc section of a full run's record (``<stem>.run.json`` beside the ranking)."""
    from ..errors import InputError
    from ..io.files import run_record_path
    from ..io.rankings import read_run_record

    record_path = run_record_path(csv_path)
    if not record_path.exists():
        raise InputError(f"--baseline: no run record {record_path} beside {csv_path}")
    try:
        record = read_run_record(record_path)
    except InputError as exc:
        raise InputError(f"--baseline: {exc}") from None
    if record.clc is None:
        raise InputError(f"--baseline: {record_path} has no clc results (score the full dataset with clc first)")
    return record.clc


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
    deleted = run.options.get("only_deleted") or []
    if deleted:
        stderr.print(f"note: skipped {len(deleted)} deleted mask(s) listed by --only: {', '.join(deleted[:3])}"
                     + (" ..." if len(deleted) > 3 else ""), soft_wrap=True)
    if output != "-":
        stderr.print(f"wrote {output} ({len(run.results)} images, ranked by {run.methods[0]})", soft_wrap=True)
