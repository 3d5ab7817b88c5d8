"""``segaudit info``: describe a prediction store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import exit_on_error
from ._options import DEFAULT_TIMEOUT, StorageOptions, Timeout, parse_storage_options


def command(
    store: Annotated[str, typer.Argument(help="A zarr prediction store (per-image or stacked layout, zarr format 3 or 2), or its URL (s3://, gs://, https://, anything fsspec opens).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON.")] = False,
    storage_options: StorageOptions = None,
    folds: Annotated[Optional[Path], typer.Option("--folds", help="An image,fold table (from 'segaudit folds'): check that every image with a recorded fold (PredictionWriter(fold=), pack --fold) was predicted by its own fold's model; exit 2 naming the first offenders otherwise.")] = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Describe a prediction store: layout, images, classes, shapes, dtype, chunks, codec, size, completeness.

    Exit codes: 0 described (even if 'segaudit score' would refuse the store: see 'readable');
    2 not a zarr store, or (--folds) an image predicted by a model that trained on it.
    """
    with exit_on_error():
        from ..io.info import format_info, inspect_store

        options = parse_storage_options(storage_options, timeout)
        description = inspect_store(store, options)
        if folds is not None:
            from ..io.folds import check_store_folds

            check = check_store_folds(store, folds, options)
            description["folds_table"] = str(folds)
            description["folds_check"] = check.describe()
    if as_json:
        typer.echo(json.dumps(description, indent=2))
    else:
        typer.echo(format_info(description), nl=False)
