"""The shared Typer app, console and error exit of the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from .. import __version__

EXIT_OK, EXIT_FINDINGS, EXIT_INPUT = 0, 1, 2

app = typer.Typer(
    help="Find annotation errors in semantic-segmentation datasets from a model's predicted probabilities.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
# Messages quote paths and image ids, which may hold "[...]" or ":name:": never markup.
stderr = Console(stderr=True, highlight=False, markup=False, emoji=False)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"segaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Find annotation errors in semantic-segmentation datasets from a model's predicted probabilities."""


def fail(message: str) -> typer.Exit:
    """Print a one-line error and return the exit to raise (code 2)."""
    from rich.text import Text

    stderr.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    return typer.Exit(EXIT_INPUT)
