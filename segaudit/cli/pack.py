"""``segaudit pack``: pack numpy predictions into a zarr store."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import exit_on_error, interactive, progress, refuse_overwriting_inputs, stderr
from ._options import parse_classes


class StoreDtype(str, Enum):
    float16 = "float16"
    float32 = "float32"
    uint8 = "uint8"


class Codec(str, Enum):  # the names of segaudit.io.writer.CODECS (kept literal: no zarr import here)
    none = "none"
    lz4 = "lz4"
    zstd = "zstd"


def command(
    sources: Annotated[list[Path], typer.Argument(metavar="SOURCE", help="A directory of per-image .npy/.npz files (id = relative path without extension): (K, H, W) images or (K, Z, Y, X) volumes, nnU-Net's --save_probabilities and --npz folders included; or one (N, K, H, W) .npy file; or several directories, merged (nnU-Net's fold_*/validation): a case found in two of them is refused, and a directory named fold_N (or inside one) records fold N for its images.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The zarr store to write (per-image layout).")],
    ids: Annotated[Optional[Path], typer.Option(help="For one (N, K, H, W) .npy: a text file with the N image ids, one per line, in array order.")] = None,
    masks: Annotated[Optional[Path], typer.Option(help="For one (N, K, H, W) .npy: name the images by this masks directory's sorted ids (as 'segaudit score' pairs them). For directories: the masks the predictions are for (nnU-Net's labelsTr); the cases without prediction, and the predictions without mask, are named.")] = None,
    mask_suffix: Annotated[str, typer.Option(help="With --masks: use only masks whose name ends with this and strip it from the id, as for 'segaudit score'.")] = "",
    classes: Annotated[Optional[str], typer.Option(help="Class names, comma-separated or a file (JSON list or one per line); stored as the 'classes' attribute.")] = None,
    dtype: Annotated[StoreDtype, typer.Option(help="Stored dtype. float16 rounds each value by at most 2^-11 relative (softmin moves ~1e-6); uint8 stores round(p*255) and shifts softmin of mislabeled images by a few percent (see docs/predictions.md).")] = StoreDtype.float16,
    logits: Annotated[bool, typer.Option("--logits", help="The arrays are logits (a softmax is applied per pixel when scoring); only finiteness is checked.")] = False,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="The source arrays are (H, W, K) / (N, H, W, K); they are stored as (K, H, W).")] = False,
    codec: Annotated[Codec, typer.Option(help="Chunk compression: none (fastest to read), lz4 (blosc, byte shuffle) or zstd.")] = Codec.none,
    fold: Annotated[Optional[int], typer.Option("--fold", help="The fold whose model made these predictions (k-fold cross-validation), recorded for every image so that 'segaudit score --folds folds.csv' can check it (a single source; default: the fold of a fold_N directory name).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing zarr store at --output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary; errors only.")] = False,
) -> None:
    """Pack numpy predictions into a zarr store that 'segaudit score' reads fast.

    Every array is checked (shape, K, finite non-negative probabilities summing to 1).
    The store is written beside --output and renamed into place when complete.
    Exit codes: 0 written; 2 bad input or options (nothing written).
    """
    refuse_overwriting_inputs({**{"source" if len(sources) == 1 else f"source {n + 1}": source
                                  for n, source in enumerate(sources)},
                               "--ids file": ids, "masks directory": masks, "--classes file": classes if classes is not None and Path(classes).is_file() else None},
                              {"--output": output}, replaced=("--output",))
    class_names = parse_classes(classes)
    with exit_on_error(str(output)):
        from ..io.pack import pack as pack_arrays

        with progress(interactive(quiet), "packing") as bar:
            result = pack_arrays(sources, output, ids=ids, masks=masks, mask_suffix=mask_suffix, classes=class_names,
                                 dtype=dtype.value, logits=logits, channels_last=channels_last, codec=codec.value,
                                 overwrite=overwrite, fold=fold, on_image=bar.on_image)
    for what, listed in (("mask(s) without prediction", result.without_prediction),
                         ("prediction(s) without mask", result.without_mask)):
        if listed:  # scoring fails on them unless --allow-missing: say which before it does
            shown = ", ".join(listed[:5]) + (f" and {len(listed) - 5} more" if len(listed) > 5 else "")
            stderr.print(f"warning: {len(listed)} {what} in {masks}: {shown}", soft_wrap=True)
    if not quiet:
        from ..io.info import human_bytes

        stderr.print(f"wrote {result.path} ({result.images} images, {result.detail}, "
                     f"{human_bytes(result.bytes_on_disk)})", soft_wrap=True)
