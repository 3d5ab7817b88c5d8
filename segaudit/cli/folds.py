"""``segaudit folds``: a k-fold split of the images that keeps groups together."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from ._app import exit_on_error, interactive, progress, refuse_overwriting_inputs, require_parent_dirs, stderr
from ._options import IgnoreIndex, Masks, MaskSuffix, NoIgnore, Palette, StorageOptions, parse_storage_options


def command(
    masks: Masks,
    k: Annotated[int, typer.Option("-k", "--n-folds", help="Number of folds (at least 2, at most the number of images or groups).")] = 5,
    output: Annotated[str, typer.Option("--output", "-o", help="The image,fold CSV to write ('-' = stdout).")] = "folds.csv",
    seed: Annotated[int, typer.Option(help="Seed of the split: the same masks, k and seed give the same folds on any machine.")] = 0,
    group_by: Annotated[Optional[str], typer.Option("--group-by", metavar="REGEX", help="Keep images whose ids share this regex's first group (the whole match if it has none) in one fold: a city ('^([^/]+)/'), a patient ('^(patient\\d+)_'), a video sequence ('^(\\w+?)_'). An id it does not match is an error.")] = None,
    mask_suffix: MaskSuffix = "",
    ignore_index: IgnoreIndex = None,
    no_ignore: NoIgnore = False,
    palette: Palette = None,
    storage_options: StorageOptions = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary; errors only.")] = False,
) -> None:
    """Split the images into k folds for out-of-fold predictions: deterministic, seeded, balanced.

    Each fold's model trains on the other folds and predicts its own images, so every image
    gets a prediction from a model that never saw it. The folds are balanced by size and by
    class presence (each class's images spread over the folds), whole groups at a time.
    Exit codes: 0 written; 2 bad input or options (nothing written).
    """
    from pathlib import Path

    path = None if output == "-" else Path(output)
    require_parent_dirs(path)
    refuse_overwriting_inputs({"masks directory": masks, "--palette file": palette}, {"--output": path})
    with exit_on_error(output):
        from ..io.folds import folds_text, make_folds, summarise, write_folds

        with progress(interactive(quiet), "reading masks") as bar:
            assignment = make_folds(masks, k, seed=seed, group_by=group_by, mask_suffix=mask_suffix,
                                    ignore_index=() if no_ignore else tuple(ignore_index or (255,)),
                                    storage_options=parse_storage_options(storage_options), palette=palette,
                                    on_image=bar.on_image)
        if path is None:
            sys.stdout.write(folds_text(assignment))
            sys.stdout.flush()
        else:
            write_folds(assignment, path)
    if not quiet:
        summary = summarise(assignment, group_by)
        groups = f" in {sum(summary.groups)} groups" if group_by else ""
        sizes = ", ".join(map(str, summary.images))
        stderr.print(f"{'split' if path is None else f'wrote {output}:'} {len(assignment)} images{groups} into "
                     f"{len(summary.images)} folds of {sizes} images", soft_wrap=True)
