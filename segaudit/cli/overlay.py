"""``segaudit overlay``: what a reviewer looks at after ``score``.

It works from the ranking CSV and the run record ``score`` writes beside it, so right
after ``segaudit score masks/ preds.zarr`` it needs no arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import exit_on_error, fail, interactive, progress, refuse_overwriting_inputs, stderr
from ._options import DEFAULT_TIMEOUT, StorageOptions, Timeout, parse_storage_options


def command(
    ranking: Annotated[Path, typer.Option("--ranking", "-r", help="Ranking CSV written by segaudit score; its run record <stem>.run.json names the masks, predictions and options.")] = Path("ranking.csv"),
    top: Annotated[int, typer.Option(help="Render the N worst images of the ranking.")] = 20,
    ids: Annotated[Optional[list[str]], typer.Option("--ids", help="Render these image ids instead of the top N (repeatable, or comma-separated).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Directory of the original photos, matched by image id (<id><suffix>.png/.jpg/.jpeg/.tif/.tiff, any case; a volume's scan: <id><suffix>.nii.gz/.nii/.npy, e.g. nnU-Net's imagesTr with --image-suffix _0000). Optional.")] = None,
    image_suffix: Annotated[str, typer.Option(help="Photo names end with this before the extension, e.g. _leftImg8bit for Cityscapes, _0000 for nnU-Net's imagesTr.")] = "",
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the PNGs, named <rank>_<id with / as __>.png so that ls lists them in rank order.")] = Path("overlays"),
    pixel_threshold: Annotated[Optional[float], typer.Option(help="Highlight pixels whose probability of the annotated class is below this. Default: the one score used.")] = None,
    max_width: Annotated[int, typer.Option(help="Downscale panels wider than this many pixels (nearest for label maps; the error map keeps every low pixel visible). 0 = full resolution.")] = 1024,
    palette: Annotated[Optional[Path], typer.Option(help="JSON colours for the classes (list, or mapping colour -> class). Default: the masks' own palette, the palette score used, or fixed colours.")] = None,
    region_min_score: Annotated[Optional[float], typer.Option(help="Outline the image's error regions (as segaudit regions finds them) scoring at least this (0-1) on the error map, numbered, with a legend line each. Default: the calibrated threshold that score --regions recorded (the one its regions column counts from); 0.5 of the raw score without --regions.")] = None,
    max_regions: Annotated[int, typer.Option(help="Outline at most this many regions per image, the worst first; 0 = none.")] = 5,
    storage_options: StorageOptions = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or notes; errors only.")] = False,
) -> None:
    """Draw error-highlight PNGs of the worst images: photo, annotation, prediction, error map.

    The error map outlines and numbers the image's worst error regions (a legend line each).

    Exit codes: 0 written; 2 bad input or options.
    """
    from ..outputs.overlay import check_region_min_score, write_overlays
    from ..io.rankings import load_ranking

    if top < 0:
        raise fail(f"--top must be >= 0, got {top}")
    if region_min_score is not None:
        with exit_on_error():
            check_region_min_score(region_min_score)
    if max_regions < 0:
        raise fail(f"--max-regions must be >= 0, got {max_regions}")
    with exit_on_error(f"overlays to {out}", name_file=True):
        if palette is not None:  # read it now, whichever colours are used in the end
            from ..io.masks import load_palette

            load_palette(palette)
        loaded = load_ranking(ranking, need_record=True)
        record = loaded.record
        refuse_overwriting_inputs({"ranking": ranking, "run record": loaded.record_path, "masks directory": record.masks,
                                   "prediction store": record.predictions, "photo directory": images,
                                   "--palette file": palette, "recorded palette": record.palette}, {"--out": out})
        with progress(interactive(quiet), "drawing") as bar:
            run = write_overlays(loaded, out, top=top, ids=ids, images=images, image_suffix=image_suffix,
                                 pixel_threshold=pixel_threshold, max_width=max_width, palette=palette,
                                 on_image=bar.on_image, region_min_score=region_min_score,
                                 max_regions=max_regions, storage_options=parse_storage_options(storage_options, timeout))
    if quiet:
        return
    if run.missing_photos:
        stderr.print(f"note: no photo in {images} for {len(run.missing_photos)} image(s), drawn from the "
                     f"annotation instead: {', '.join(run.missing_photos[:3])}"
                     + (" ..." if len(run.missing_photos) > 3 else ""), soft_wrap=True)
    if run.stale:
        stderr.print(f"note: {len(run.stale)} other overlay PNG(s) in {out} are not from this ranking "
                     f"(e.g. {run.stale[0]})", soft_wrap=True)
    stderr.print(f"wrote {len(run.written)} overlay(s) to {out} (pixels with s < {run.threshold:g} highlighted)",
                 soft_wrap=True)
