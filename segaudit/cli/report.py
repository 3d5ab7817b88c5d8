"""``segaudit report``: one self-contained, interactive HTML report of a ranking, after ``score``
and ``overlay``; it needs no arguments after them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import exit_on_error, fail, refuse_overwriting_inputs, require_parent_dirs, stderr


def command(
    ranking: Annotated[Path, typer.Option("--ranking", "-r", help="Ranking CSV written by segaudit score (its run record is used when present).")] = Path("ranking.csv"),
    overlays: Annotated[Path, typer.Option(help="Directory of PNGs written by segaudit overlay; the page embeds those of the --top worst images.")] = Path("overlays"),
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write (self-contained: images embedded, no network access).")] = Path("report.html"),
    top: Annotated[int, typer.Option(help="The worst images whose overlays are embedded (as overlay --top).")] = 20,
    score_threshold: Annotated[float, typer.Option(help="The summary counts images scoring below this (the histogram marks it, the table tints them).")] = 0.1,
    confusions: Annotated[Optional[Path], typer.Option(help="CSV of class confusions (columns annotated,predicted,pixels,images,share) to show as a table.")] = None,
    thumb_width: Annotated[int, typer.Option(help="Overlays wider than this are scaled down to it for embedding.")] = 1600,
    regions: Annotated[Optional[Path], typer.Option(help="Region table written by segaudit regions (csv, jsonl or json): each image shows its error regions (number, kind, annotated -> likely class, area, score, box), to filter on and decide about one by one.")] = None,
    decisions: Annotated[Optional[Path], typer.Option("--decisions", help="An earlier decisions.csv (image,region,decision,note,mask_sha256; csv, jsonl or json) to start the review from: its decisions appear in the page, where this browser's own later ones win, and go into the downloaded file. A decision whose mask changed since shows as stale.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No notes; errors only.")] = False,
) -> None:
    """Write one self-contained HTML page to review a ranking: summary, histogram, a searchable, filterable
    table of every image with its overlay and regions, decisions kept in the browser and downloaded as
    decisions.csv (for score --reviewed).

    Exit codes: 0 written; 2 bad input or options.
    """
    from ..io.decisions import read_decisions
    from ..io.rankings import load_ranking
    from ..io.confusions import load_confusions
    from ..io.regions import load_regions
    from ..outputs.report import write_report

    if top < 0:
        raise fail(f"--top must be >= 0, got {top}")
    if thumb_width < 16:
        raise fail(f"--thumb-width must be at least 16, got {thumb_width}")
    from ..io.files import run_record_path

    require_parent_dirs(output)
    refuse_overwriting_inputs({"ranking": ranking, "run record": run_record_path(ranking), "overlays directory": overlays,
                               "--confusions file": confusions, "--regions file": regions,
                               "--decisions file": decisions}, {"--output": output})
    with exit_on_error(str(output)):
        loaded = load_ranking(ranking, need_record=False)
    if loaded.record is not None and loaded.record.masks:  # the masks are read too (hashed)
        refuse_overwriting_inputs({"masks directory": Path(loaded.record.masks)}, {"--output": output})
    with exit_on_error(str(output)):
        rows = load_confusions(confusions) if confusions is not None else None
        region_table = load_regions(regions) if regions is not None else None
        earlier = read_decisions(decisions) if decisions is not None else None
        result = write_report(loaded, output, overlays_dir=overlays, top=top, score_threshold=score_threshold,
                              confusions=rows, thumb_width=thumb_width, regions=region_table, decisions=earlier)
    if quiet:
        return
    if loaded.record is None:
        stderr.print(f"note: no run record {loaded.record_path}; the summary omits the inputs and options",
                     soft_wrap=True)
    if result.missing_overlays:
        stderr.print(f"note: {result.missing_overlays} of the {result.gallery} worst image(s) have no overlay "
                     f"in {overlays} (run segaudit overlay --top {top})", soft_wrap=True)
    if result.hash_note:
        stderr.print(f"note: {result.hash_note}", soft_wrap=True)
    if result.unmatched_region_images:
        unmatched = result.unmatched_region_images
        stderr.print(f"note: {len(unmatched)} image(s) of {regions} are not in the ranking (e.g. {unmatched[0]}); "
                     "their regions are not shown", soft_wrap=True)
    stderr.print(f"wrote {output} ({len(loaded.rows)} images, {result.gallery - result.missing_overlays} overlay(s), "
                 f"{result.hashed} mask hash(es))", soft_wrap=True)
