"""``segaudit regions``: the error regions of every image, ranked, with proposed fixes."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import exit_on_error, fail, interactive, progress, refuse_overwriting_inputs, require_parent_dirs, stderr
from ._options import (Band, BandWeight, InputOptions, Margin, Only, OutputFormat, Quiet, read_only_entries,
                       reads_inputs, region_rule)


@reads_inputs
def command(
    *,
    output: Annotated[str, typer.Option("--output", "-o", help="Region table to write, worst region first, columns rank,image,region,score,raw_score,area,x0,y0,x1,y1,annotated_class,likely_class,mean_s,mean_p_likely,kind (score: calibrated probability of an annotation error; raw_score: the rule's uncalibrated score; box in pixels, x1/y1 exclusive); '-' writes to stdout.")] = "regions.csv",
    output_format: Annotated[OutputFormat, typer.Option("--format", help="Output format: csv, jsonl (one JSON object per region) or json.")] = OutputFormat.csv,
    propose_dir: Annotated[Optional[Path], typer.Option("--propose-dir", help="Also write a corrected mask per image with a region scoring at least --min-score: those regions relabeled to their likely class (a 'missing' region grows to the model's outline of the object); every other pixel unchanged, in the source mask's encoding. Files mirror the mask ids; the input masks are never written.")] = None,
    min_score: Annotated[Optional[float], typer.Option(help="Regions scoring at least this (0-1, calibrated score) count as suspect and are relabeled in --propose-dir. Default: the calibrated threshold, the lowest at which images with a region find the errors planted into your masks with precision 0.5 (printed).")] = None,
    calibration_seed: Annotated[int, typer.Option(help="Seed of the errors planted into a sample of the masks to calibrate region scores on (same seed, same scores).")] = 0,
    unlabeled: Annotated[Optional[int], typer.Option(help="Your unlabeled (background) class when it is a scored class: planted missed objects become it (default: their surroundings).")] = None,
    margin: Margin = 0.25,
    band: Band = 2,
    band_weight: BandWeight = 1.0,
    inputs: InputOptions,
    only: Only = None,
    quiet: Quiet = False,
) -> None:
    """Find error regions: connected suspect pixels per (annotated class, likely class), ranked over the dataset.

    Each region gets a score in [0, 1): its probability of being an annotation error,
    calibrated on errors planted into a seeded sample of your own masks (raw_score keeps
    the uncalibrated score, which grows with the region's summed margin relative to the
    image's size), and a hint of its kind: missing, wrong_class, boundary or spurious (the
    rules are in docs/methods.md).

    Exit codes: 0 written; 2 bad input or options (nothing written).
    """
    from ..outputs.regions import find_and_write_regions, regions_text

    to_stdout = output == "-"
    if propose_dir is not None and not to_stdout:
        from ..io.files import lies_within

        if lies_within(output, propose_dir):
            raise fail(f"--output {output} is inside --propose-dir {propose_dir}: a proposal could overwrite it; "
                       "write the region table elsewhere")
    require_parent_dirs(None if to_stdout else Path(output))
    refuse_overwriting_inputs({**inputs.reads(), "--only file": only}, {"--output": None if to_stdout else output,
                                               "--propose-dir": propose_dir})
    rule = region_rule(margin, band, band_weight)
    spec = inputs.spec()
    where = f"to {propose_dir}" if propose_dir is not None else f"to {output}"
    with exit_on_error(where, name_file=True), progress(interactive(quiet)) as bar:
        outcome = find_and_write_regions(spec=replace(spec, only=read_only_entries(only)), rule=rule,
                                         out=None if to_stdout else output, fmt=output_format.value,
                                         propose_dir=propose_dir, min_score=min_score,
                                         calibration_seed=calibration_seed, unlabeled=unlabeled,
                                         on_progress=bar.on_progress)
    if to_stdout:
        sys.stdout.write(regions_text(outcome.run, output_format.value))
        sys.stdout.flush()
    if not quiet:
        run = outcome.run
        threshold = outcome.threshold
        suspect = [r for r in run.regions if r.score >= threshold]
        with_regions = len({r.image_id for r in suspect})
        where = "stdout" if to_stdout else output
        stderr.print(run.calibration.describe(), soft_wrap=True)
        for sentence in run.calibration.hard_sentences():
            stderr.print(f"warning: {sentence}", soft_wrap=True, highlight=False, markup=False)
        chosen = "--min-score" if min_score is not None else "the calibrated threshold"
        stderr.print(f"wrote {len(run.regions)} region(s) to {where}: {len(suspect)} score >= {threshold:.3f} "
                     f"({chosen}), in {with_regions} of {run.images} image(s)", soft_wrap=True)
        if propose_dir is not None:
            pixels = sum(n for _, n in outcome.proposals)
            stderr.print(f"wrote {len(outcome.proposals)} proposed mask(s) to {propose_dir} ({pixels} pixels "
                         f"relabeled, regions scoring >= {threshold:.3f})", soft_wrap=True)
