"""``segaudit corrupt`` (plant known errors in a copy of a mask set) and ``segaudit evaluate``
(how well a ranking finds them): the paper's benchmark protocol as two commands."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import app, fail, stderr
from ._options import Masks, MaskSuffix, Palette, Quiet, with_progress

KeepIndex = Annotated[Optional[list[int]], typer.Option("--ignore-index", help="Label value that is never chosen and never changed (ignore pixels); repeat for several. Default 255.")]
NoKeep = Annotated[bool, typer.Option("--no-ignore", help="No ignore value: every label value may be chosen or changed.")]


class Kind(str, Enum):
    drop = "drop"
    swap = "swap"
    shift = "shift"
    boundary = "boundary"


class Fill(str, Enum):
    unlabeled = "unlabeled"
    nearest = "nearest"


class Format(str, Enum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"
    json = "json"


@app.command()
def corrupt(
    masks: Masks,
    out: Annotated[Path, typer.Option("--out", help="New directory for the copy (must not exist, or be empty); file names are kept.")],
    kind: Annotated[Kind, typer.Option(help="drop: a class's pixels become --unlabeled; swap: two classes exchange their pixels; shift: a class's region outlines are perturbed; boundary: a class's boundaries move by a one-sided random walk (real annotators' biased, spatially correlated noise).")],
    rate: Annotated[float, typer.Option(help="Fraction of ALL images to change, chosen among those where the class(es) occur.")],
    truth: Annotated[Path, typer.Option(help="CSV to write: image,is_error,kind,classes for every image.")],
    classes: Annotated[Optional[str], typer.Option(help="Comma list of the classes errors may involve: indices, or names from --classes-file. Default: every class but --unlabeled and the ignored values.")] = None,
    classes_file: Annotated[Optional[Path], typer.Option(help="Class names (JSON list or one per line; position = class index) for --classes and truth.csv.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed and inputs give byte-identical output.")] = 0,
    unlabeled: Annotated[int, typer.Option(help="The unlabeled class: what drop and lost shift pixels become.")] = 0,
    sigma: Annotated[Optional[str], typer.Option(help="shift: standard deviation of the 5 radial displacement samples, in pixels (3) or as a percentage of the region's size (default 10%). boundary: the mean displacement, in pixels or as a percentage of the image's mean side (default 1%).")] = None,
    correlation: Annotated[float, typer.Option(help="boundary: correlation length of the displacement's random walk along the boundary, in boundary pixels.")] = 20.0,
    fill: Annotated[Fill, typer.Option(help="drop and shift: what lost pixels become: the --unlabeled class, or the class of the nearest pixel outside (for mask sets whose unlabeled class is ignored). boundary always uses the nearest.")] = Fill.unlabeled,
    min_pixels: Annotated[int, typer.Option(help="A class counts as present in an image only with at least this many pixels.")] = 1,
    ignore_index: KeepIndex = None,
    no_ignore: NoKeep = False,
    mask_suffix: MaskSuffix = "",
    palette: Palette = None,
    quiet: Quiet = False,
) -> None:
    """Copy a mask set and plant drop, swap, shift or boundary errors in a random fraction of its images.

    Unchanged masks are copied byte for byte; changed ones keep their PNG mode and palette.
    Exit codes: 0 written; 2 bad input or options (nothing written).
    """
    from ..corrupt import corrupt_masks
    from ..errors import InputError

    ignore = () if no_ignore else tuple(ignore_index or (255,))
    tokens = classes.split(",") if classes is not None else None
    try:
        run = with_progress(not quiet and stderr.is_terminal, corrupt_masks, masks, out, kind=kind.value,
                            rate=rate, seed=seed, classes=tokens, classes_file=classes_file, unlabeled=unlabeled,
                            ignore_index=ignore, sigma=sigma, correlation=correlation, fill=fill.value, min_pixels=min_pixels, mask_suffix=mask_suffix,
                            palette=palette, truth=truth)
    except InputError as exc:
        raise fail(str(exc))
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""))
    if quiet:
        return
    changed = len(run.changed)
    if changed < run.target:
        stderr.print(f"note: only {run.eligible} of {run.images} image(s) can take a {run.kind} error with "
                     f"these classes; changed {changed} instead of {run.target}", soft_wrap=True)
    stderr.print(f"changed {changed} of {run.images} image(s) ({run.kind}, {changed / run.images:.1%}); "
                 f"copied {run.images - changed} unchanged; wrote {out} and {truth}", soft_wrap=True)


@app.command()
def evaluate(
    ranking: Annotated[Path, typer.Argument(help="Ranking written by segaudit score (CSV, JSON or JSONL; --method all gives every method); every column but rank, image, pixels, low_pixels, suspect_class, likely_class is a score, lower = more likely error.")],
    truth: Annotated[Path, typer.Argument(help="CSV image,is_error,kind,classes (segaudit corrupt --truth writes it).")],
    output_format: Annotated[Optional[Format], typer.Option("--format", help="table (best per metric in bold), or csv, jsonl, json with the columns method,auroc,auprc,lift_at_t,lift_at_100,images,errors,top. Default: table on a terminal, csv otherwise.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No notes on stderr; errors only.")] = False,
) -> None:
    """AUROC, AUPRC, Lift@T (T = number of true errors) and Lift@100 of every score column.

    Exit codes: 0 evaluated; 2 bad input or options.
    """
    from ..errors import InputError
    from ..evaluate import evaluate as evaluate_ranking
    from ..evaluate import evaluation_table, evaluation_text

    if output is not None and not output.parent.is_dir():
        raise fail(f"output directory does not exist: {output.parent}")
    try:
        result = evaluate_ranking(ranking, truth)
    except InputError as exc:
        raise fail(str(exc))
    if output_format is None:
        output_format = Format.table if output is None and sys.stdout.isatty() else Format.csv
    if output_format is Format.table:
        from rich.console import Console

        if output is None:
            Console(highlight=False).print(evaluation_table(result))
            text = None
        else:
            import io

            console = Console(record=True, file=io.StringIO(), width=120, highlight=False)
            console.print(evaluation_table(result))
            text = console.export_text()
    else:
        text = evaluation_text(result, output_format.value)
    if text is not None:
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            from ..files import atomic_write_all

            try:
                atomic_write_all({output: text})
            except OSError as exc:
                raise fail(f"cannot write {output}: {exc.strerror or exc}")
    if not quiet and result.truth_only:
        stderr.print(f"note: {len(result.truth_only)} truth row(s) have no ranking row and were left out "
                     f"(e.g. {result.truth_only[0]})", soft_wrap=True)
