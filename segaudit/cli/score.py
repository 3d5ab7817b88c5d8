"""``segaudit score``: rank every image of a dataset, worst label quality first."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import app, fail, stderr


def parse_classes(value: str | None) -> list[str] | None:
    """``--classes``: a file (JSON list, or one name per line) or a comma-separated list."""
    if value is None:
        return None
    path = Path(value)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: --classes file is not UTF-8 text ({exc.reason})") from None
        try:
            names = json.loads(text)
        except json.JSONDecodeError:
            names = [line.strip() for line in text.splitlines() if line.strip()]
        if not isinstance(names, list):
            raise ValueError(f"{path}: --classes file must hold a JSON list or one name per line")
        return [str(name) for name in names]
    return [name.strip() for name in value.split(",")]


@app.command()
def score(
    masks: Annotated[Path, typer.Argument(help="Directory of annotation PNGs, searched recursively; pixel value = class index.")],
    predictions: Annotated[Path, typer.Argument(help="Zarr store of predicted class probabilities (per-image or stacked layout).")],
    output: Annotated[str, typer.Option("--output", "-o", help="CSV to write, worst image first; '-' writes to stdout. A run record <stem>.run.json is written beside a file.")] = "ranking.csv",
    method: Annotated[str, typer.Option("--method", "-m", help="Scoring method, a comma list, or 'all' (softmin, cil, ccp, tccp, iou). The first ranks the images and fills the 'score' column.")] = "softmin",
    temperature: Annotated[float, typer.Option(help="Softmin temperature (> 0): lower focuses on the worst pixels, higher approaches the mean.")] = 0.1,
    pixel_threshold: Annotated[float, typer.Option(help="Pixels whose probability of the annotated class is below this are counted as low_pixels.")] = 0.5,
    ignore_index: Annotated[Optional[list[int]], typer.Option("--ignore-index", help="Label value that takes no part in any score; repeat for several. Default 255.")] = None,
    no_ignore: Annotated[bool, typer.Option("--no-ignore", help="Score every label value (no ignore index).")] = False,
    mask_suffix: Annotated[str, typer.Option(help="Use only masks whose name ends with this (before .png) and strip it from the image id, e.g. _gtFine_labelIds.")] = "",
    palette: Annotated[Optional[Path], typer.Option(help="JSON list or mapping of colours to class indices; needed for RGB/RGBA masks.")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Class names, comma-separated or a file (JSON list or one per line); overrides the store's 'classes' attribute.")] = None,
    logits: Annotated[Optional[bool], typer.Option("--logits/--probabilities", help="The store holds logits (softmax applied per pixel) or probabilities; overrides its 'kind' attribute.")] = None,
    channels_last: Annotated[Optional[bool], typer.Option("--channels-last/--channels-first", help="Arrays are (H, W, K) / (N, H, W, K); overrides the store's 'channels_last' attribute.")] = None,
    allow_missing: Annotated[bool, typer.Option(help="Skip masks without predictions and predictions without masks (and say how many) instead of failing.")] = False,
    top: Annotated[int, typer.Option(help="Rows of the summary table shown on a terminal.")] = 10,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, summary table or notes; errors only.")] = False,
) -> None:
    """Score every image and write a CSV ranking, most likely mislabeled first.

    Exit codes: 0 scored; 2 bad input or options (nothing written).
    """
    from ..errors import InputError
    from ..methods import parse_methods

    if output != "-" and not Path(output).parent.is_dir():
        raise fail(f"output directory does not exist: {Path(output).parent}")
    try:
        methods = parse_methods(method)
        class_names = parse_classes(classes)
    except (InputError, ValueError, OSError) as exc:
        raise fail(str(exc))
    ignore = () if no_ignore else ignore_index or None
    show = not quiet and stderr.is_terminal
    try:
        run = _score_with_progress(
            show, masks, predictions, methods=methods, temperature=temperature,
            pixel_threshold=pixel_threshold, ignore_index=ignore, mask_suffix=mask_suffix,
            palette=palette, classes=class_names, logits=logits, channels_last=channels_last,
            allow_missing=allow_missing,
        )
    except InputError as exc:
        raise fail(str(exc))

    from ..output import ranking_csv, write_ranking

    if output == "-":
        sys.stdout.write(ranking_csv(run))
        sys.stdout.flush()
    else:
        try:
            write_ranking(run, output)
        except OSError as exc:
            raise fail(f"cannot write {output}: {exc.strerror or exc}")
    if not quiet:
        _notes(run, output)
    if show:
        from ..tables import worst_table

        stderr.print(worst_table(run, top))


def _score_with_progress(show: bool, masks, predictions, **options):
    from ..scoring import score as score_dataset

    if not show:
        return score_dataset(masks, predictions, **options)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("scoring", total=None)
        return score_dataset(
            masks, predictions, on_image=lambda done, total: progress.update(task, completed=done, total=total),
            **options,
        )


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
    if output != "-":
        stderr.print(f"wrote {output} ({len(run.results)} images, ranked by {run.methods[0]})", soft_wrap=True)
