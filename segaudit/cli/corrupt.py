"""``segaudit corrupt``: plant known errors in a copy of a mask set (the first half of the
paper's benchmark protocol; ``segaudit evaluate`` is the second)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import exit_on_error, interactive, progress, refuse_overwriting_inputs, stderr
from ._options import Masks, MaskSuffix, Palette, Quiet


KeepIndex = Annotated[Optional[list[int]], typer.Option("--ignore-index", help="Label value that is never chosen and never changed (ignore pixels); repeat for several. Default 255.")]
NoKeep = Annotated[bool, typer.Option("--no-ignore", help="No ignore value: every label value may be chosen or changed.")]


class Kind(str, Enum):
    drop = "drop"
    swap = "swap"
    shift = "shift"
    boundary = "boundary"
    coarse = "coarse"
    object_drop = "object_drop"
    object_class = "object_class"
    object_outline = "object_outline"
    blob = "blob"


class Fill(str, Enum):
    unlabeled = "unlabeled"
    nearest = "nearest"


def command(
    masks: Masks,
    out: Annotated[Path, typer.Option("--out", help="New directory for the copy (must not exist, or be empty); file names are kept.")],
    kind: Annotated[Kind, typer.Option(help="drop: a class's pixels become --unlabeled; swap: two classes exchange their pixels; shift: a class's region outlines are perturbed; boundary: a class's boundaries move by a one-sided random walk (real annotators' biased, spatially correlated noise); coarse: a class is redrawn on a grid of square blocks (a coarse polygon or a big brush); object_drop, object_class, object_outline, blob: one object painted over by its surroundings, given another class, outlined wrong, or a spurious blob (the kinds --method auto plants; --classes does not apply).")],
    rate: Annotated[float, typer.Option(help="Fraction of ALL images to change, chosen among those where the class(es) occur.")],
    truth: Annotated[Path, typer.Option(help="CSV to write: image,is_error,kind,classes for every image.")],
    classes: Annotated[Optional[str], typer.Option(help="Comma list of the classes errors may involve: indices, or names from --classes-file. Default: every class but --unlabeled and the ignored values.")] = None,
    classes_file: Annotated[Optional[Path], typer.Option(help="Class names (JSON list or one per line; position = class index) for --classes and truth.csv.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed and inputs give byte-identical output.")] = 0,
    unlabeled: Annotated[int, typer.Option(help="The unlabeled class: what drop and lost shift pixels become.")] = 0,
    sigma: Annotated[Optional[str], typer.Option(help="shift: standard deviation of the 5 radial displacement samples, in pixels (3) or as a percentage of the region's size (default 10%). boundary: the mean displacement, in pixels or as a percentage of the image's mean side (default 1%). coarse: the block side, in pixels or as a percentage of the image's mean side (default 2%).")] = None,
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
    from ..evaluation.corrupt import corrupt_masks

    refuse_overwriting_inputs({"masks directory": masks, "--classes-file": classes_file, "--palette file": palette},
                              {"--out": out, "--truth": truth}, replaced=("--out",))
    ignore = () if no_ignore else tuple(ignore_index or (255,))
    tokens = classes.split(",") if classes is not None else None
    with exit_on_error(str(out), name_file=True), progress(interactive(quiet)) as bar:
        run = corrupt_masks(masks, out, kind=kind.value, rate=rate, seed=seed, classes=tokens,
                            classes_file=classes_file, unlabeled=unlabeled, ignore_index=ignore, sigma=sigma, correlation=correlation, fill=fill.value,
                            min_pixels=min_pixels, mask_suffix=mask_suffix, palette=palette, truth=truth,
                            on_progress=bar.on_progress)
    if quiet:
        return
    changed = len(run.changed)
    if changed < run.target:
        stderr.print(f"note: only {run.eligible} of {run.images} image(s) can take a {run.kind} error with "
                     f"these classes; changed {changed} instead of {run.target}", soft_wrap=True)
    stderr.print(f"changed {changed} of {run.images} image(s) ({run.kind}, {changed / run.images:.1%}); "
                 f"copied {run.images - changed} unchanged; wrote {out} and {truth}", soft_wrap=True)
