"""Options shared by the commands that read masks and predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import fail

Masks = Annotated[Path, typer.Argument(help="Directory of annotation PNGs, searched recursively; pixel value = class index.")]
Predictions = Annotated[Path, typer.Argument(help="Zarr store of predicted class probabilities (per-image or stacked layout).")]
PixelThreshold = Annotated[float, typer.Option(help="Pixels whose probability of the annotated class is below this are low-quality pixels.")]
Downsample = Annotated[int, typer.Option(help="Cell size F of the FxF grid that clc and coco work on (1 = full resolution).")]
IgnoreIndex = Annotated[Optional[list[int]], typer.Option("--ignore-index", help="Label value that takes no part in any score; repeat for several. Default 255.")]
NoIgnore = Annotated[bool, typer.Option("--no-ignore", help="Score every label value (no ignore index).")]
MaskSuffix = Annotated[str, typer.Option(help="Use only masks whose name ends with this (before .png) and strip it from the image id, e.g. _gtFine_labelIds.")]
Palette = Annotated[Optional[Path], typer.Option(help="JSON list or mapping of colours to class indices; needed for RGB/RGBA masks.")]
Classes = Annotated[Optional[str], typer.Option(help="Class names, comma-separated or a file (JSON list or one per line); overrides the store's 'classes' attribute.")]
Logits = Annotated[Optional[bool], typer.Option("--logits/--probabilities", help="The store holds logits (softmax applied per pixel) or probabilities; overrides its 'kind' attribute.")]
ChannelsLast = Annotated[Optional[bool], typer.Option("--channels-last/--channels-first", help="Arrays are (H, W, K) / (N, H, W, K); overrides the store's 'channels_last' attribute.")]
AllowMissing = Annotated[bool, typer.Option(help="Skip masks without predictions and predictions without masks (and say how many) instead of failing.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, tables or notes; errors only.")]


def parse_classes(value: str | None) -> list[str] | None:
    """``--classes``: a file (JSON list, or one name per line) or a comma-separated list."""
    if value is None:
        return None
    if Path(value).is_file():
        from ..io.files import read_class_names

        return read_class_names(value)
    return [name.strip() for name in value.split(",")]


def input_options(ignore_index, no_ignore, mask_suffix, palette, classes, logits, channels_last,
                  allow_missing) -> dict:
    """The library's input keyword arguments from the shared options (exit 2 on bad --classes)."""
    from ..errors import InputError

    try:
        class_names = parse_classes(classes)
    except (InputError, OSError) as exc:
        raise fail(str(exc))
    return dict(
        ignore_index=() if no_ignore else ignore_index or None, mask_suffix=mask_suffix, palette=palette,
        classes=class_names, logits=logits, channels_last=channels_last, allow_missing=allow_missing,
    )

