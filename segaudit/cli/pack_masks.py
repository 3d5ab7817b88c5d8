"""``segaudit pack-masks``: write an (N, H, W) label array as PNG masks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import exit_on_error, interactive, progress, refuse_overwriting_inputs, stderr


def command(
    labels: Annotated[Path, typer.Argument(help="An (N, H, W) integer .npy (or .npz) of class indices.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write the PNG masks to (<id>.png).")],
    ids: Annotated[Optional[Path], typer.Option(help="Text file with the N image ids, one per line, in array order. Default: 0, 1, ... zero-padded.")] = None,
    label_map: Annotated[Optional[str], typer.Option("--label-map", help="Translate the values first: a built-in map (cityscapes, ade20k, coco-stuff) or a JSON / 2-column CSV file of value -> class or ignore; ignored values are written as 255.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing directory of PNG masks at --output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary; errors only.")] = False,
) -> None:
    """Write an (N, H, W) label array as PNG masks: 8-bit L, or 16-bit I;16 if a value exceeds 255.

    Exit codes: 0 written; 2 bad input or options (nothing written).
    """
    label_map_file = label_map if label_map is not None and Path(label_map).is_file() else None
    refuse_overwriting_inputs({"labels file": labels, "--ids file": ids, "--label-map file": label_map_file},
                              {"--output": output},
                              replaced=("--output",))
    with exit_on_error(str(output)):
        from ..io.pack import pack_masks as write_masks

        with progress(interactive(quiet), "writing masks") as bar:
            result = write_masks(labels, output, ids=ids, overwrite=overwrite, on_image=bar.on_image,
                                 label_map=label_map)
    if not quiet:
        from ..io.info import human_bytes

        stderr.print(f"wrote {result.path} ({result.images} masks, {result.detail}, "
                     f"{human_bytes(result.bytes_on_disk)})", soft_wrap=True)
