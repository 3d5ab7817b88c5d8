"""``segaudit export``: the images to relabel, for Label Studio, CVAT or a COCO tool."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import exit_on_error, fail, interactive, progress, stderr
from ._options import DEFAULT_TIMEOUT, StorageOptions, Timeout, parse_storage_options

#: The formats of :data:`segaudit.outputs.exports.EXPORTERS` (named here so that --help
#: imports nothing; a test checks they agree).
FORMATS = ("label-studio", "cvat", "coco")


def command(
    to: Annotated[str, typer.Option("--to", metavar="[" + "|".join(FORMATS) + "]", help="Format: label-studio (tasks JSON, brush pre-annotations of the current mask and the proposed fix, and a labeling config beside), cvat (Segmentation mask 1.1 zip: current masks, suspect regions as the label segaudit_suspect) or coco (JSON: regions as RLE segments, likely class as category, score).")],
    ranking: Annotated[Path, typer.Option("--ranking", "-r", help="Ranking written by segaudit score; its run record names the masks, predictions and options.")] = Path("ranking.csv"),
    regions: Annotated[Optional[Path], typer.Option("--regions", help="Region table from segaudit regions: export only its regions (checked against the regions found now).")] = None,
    decisions: Annotated[Optional[Path], typer.Option("--decisions", help="A reviewer's decisions.csv: export the images marked fix (a region marked fix whatever its score); regions marked ok are left out.")] = None,
    top: Annotated[Optional[int], typer.Option(help="Also export the N worst images of the ranking (but those marked ok in --decisions, masks unchanged).")] = None,
    min_score: Annotated[Optional[float], typer.Option(help="Regions scoring at least this (0-1, calibrated score) are suspect; without --decisions and --top, the images with such a region are exported. Default: the calibrated threshold score --regions recorded (without it, the region scores are calibrated now, one more pass).")] = None,
    proposals: Annotated[Optional[Path], typer.Option("--proposals", help="Directory of proposed masks (segaudit regions --propose-dir). Default: propose the fix now, the exported regions relabeled to their likely class.")] = None,
    image_url: Annotated[str, typer.Option(help="Where the tool finds each photo; {id} is replaced by the image id (e.g. '/data/local-files/?d=photos/{id}.jpg' for Label Studio).")] = "{id}.png",
    margin: Annotated[Optional[float], typer.Option(help="Region rule (as segaudit regions); default: the ranking's (score --regions) or 0.25.")] = None,
    band: Annotated[Optional[int], typer.Option(help="Region rule (as segaudit regions); default: the ranking's or 2.")] = None,
    band_weight: Annotated[Optional[float], typer.Option(help="Region rule (as segaudit regions); default: the ranking's or 1.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write (default: tasks.json, cvat-masks.zip or regions.coco.json).")] = None,
    storage_options: StorageOptions = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or notes; errors only.")] = False,
) -> None:
    """Export the images to relabel to an annotation tool: the images marked fix, the worst N,
    or those with a suspect region, with their current masks, suspect regions and proposed fixes.

    Exit codes: 0 written; 2 bad input or options (nothing written).
    """
    if to not in FORMATS:
        raise fail(f"--to must be one of {', '.join(FORMATS)}, got {to!r}")
    with exit_on_error(f"the {to} export", name_file=True):
        from ..outputs.exports import export, get_exporter

        out = output if output is not None else Path(get_exporter(to).default_output)
        rule = _rule(ranking, margin, band, band_weight)
        with progress(interactive(quiet)) as bar:
            outcome = export(to, ranking, out, regions=regions, decisions=decisions, top=top, min_score=min_score,
                             proposals=proposals, image_url=image_url, rule=rule, on_progress=bar.on_progress,
                             storage_options=parse_storage_options(storage_options, timeout))
    if not quiet:
        if outcome.without_proposal:
            stderr.print(f"note: {len(outcome.without_proposal)} image(s) have no proposal in {proposals} (their "
                         f"current mask is the proposal): {', '.join(outcome.without_proposal[:3])}"
                         + (" ..." if len(outcome.without_proposal) > 3 else ""), soft_wrap=True)
        stderr.print(f"wrote {', '.join(str(f) for f in outcome.files)} ({len(outcome.images)} image(s), "
                     f"{outcome.regions} suspect region(s))", soft_wrap=True)


def _rule(ranking: Path, margin: float | None, band: int | None, band_weight: float | None):
    """The region rule: the options given, the rest from the ranking's record or the defaults."""
    if margin is None and band is None and band_weight is None:
        return None  # export takes the ranking's
    from ..core.regions import RegionRule
    from ..errors import InputError
    from ..io.rankings import load_ranking

    record = load_ranking(ranking).record
    base = record.regions if record is not None and record.regions else RegionRule()
    try:
        return RegionRule(margin=base.margin if margin is None else margin, band=base.band if band is None else band,
                          band_weight=base.band_weight if band_weight is None else band_weight)
    except ValueError as exc:
        raise InputError(str(exc)) from None
