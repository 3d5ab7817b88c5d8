"""The shared Typer app of the command line and what every command uses: the stderr
console, the error exit and the progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
import typer.core
from rich.console import Console

from .. import __version__

EXIT_OK, EXIT_FINDINGS, EXIT_INPUT = 0, 1, 2

#: How an option's value reads in --help, by the type typer would print (``<int>`` ...).
_METAVARS = {"<int>": "N", "<list[int]>": "N", "<float>": "NUMBER", "<str>": "TEXT", "<list[str]>": "TEXT",
             "<path>": "PATH"}


class Command(typer.core.TyperCommand):
    """A command whose --help reads as a usage line should: ``segaudit score [OPTIONS]
    MASKS PREDICTIONS`` (arguments in capitals, no braces), and option values as ``N``,
    ``NUMBER``, ``TEXT``, ``PATH`` or ``[a|b|c]`` instead of Python types."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        context = typer.Context(self)
        for param in self.params:
            if param.metavar is not None:
                continue
            if isinstance(param, typer.core.TyperArgument):
                param.metavar = param.name.upper()
                param.display_type_rich = lambda ctx: None  # the name says it; the help says what
            elif not getattr(param, "is_flag", False):
                shown = param.display_type(context)
                param.metavar = _METAVARS.get(shown) or ("[" + shown[1:-1] + "]" if "|" in shown
                                                         else shown[1:-1].upper())

    def parse_args(self, ctx, args):
        """Options and arguments as click parses them; a usage error (an unknown option, a
        value outside an option's choices, a missing argument) is one ``error:`` line and exit
        2, as every other bad input is, instead of click's three-line usage block."""
        try:
            return super().parse_args(ctx, args)
        except typer.core._click.exceptions.UsageError as exc:  # typer's own copy of click
            message = " ".join(exc.format_message().split()).replace("Value error, ", "").rstrip(".")
            raise fail(f"{message} (segaudit {ctx.info_name} --help lists the options)") from None

    def collect_usage_pieces(self, ctx):
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.params:
            if isinstance(param, typer.core.TyperArgument):
                name = param.metavar + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces


#: The app's settings (``segaudit.cli.app_for`` makes an app of one command with them).
APP_SETTINGS = dict(
    help="Find annotation errors in semantic-segmentation datasets from a model's predicted probabilities.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app = typer.Typer(**APP_SETTINGS)
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


@contextmanager
def exit_on_error(writing: str | None = None, *, name_file: bool = False) -> Iterator[None]:
    """Turn the library's InputError raised in the block into a one-line error and exit 2
    (worded for the command line: options as flags, see ``InputError.cli_message``).

    With ``writing``, an OSError too, as ``cannot write <writing>: <reason>`` (followed by
    the file's name if ``name_file``).
    """
    from ..errors import InputError

    try:
        yield
    except InputError as exc:
        raise fail(exc.cli_message) from None
    except OSError as exc:
        if writing is None:
            raise
        where = f" ({exc.filename})" if name_file and exc.filename else ""
        raise fail(f"cannot write {writing}: {exc.strerror or exc}{where}") from None


def refuse_overwriting_inputs(reads: dict[str, object], writes: dict[str, object],
                              replaced: tuple[str, ...] = ()) -> None:
    """Exit 2 (nothing written) if an output would land on or inside something the command reads."""
    from ..io.files import refuse_overwriting_inputs as refuse

    with exit_on_error():
        refuse(reads, writes, replaced)


def dash_is_stdout(path: Path | None) -> Path | None:
    """An output option's path, or None (stdout) for ``-``: ``-`` means stdout for every
    command that writes a table."""
    return None if path is not None and str(path) == "-" else path


def require_parent_dirs(*paths: Path | None) -> None:
    """Exit 2 unless the directory of every output file given (None: not asked for) exists."""
    from ..io.remote import refuse_url_output

    for path in paths:
        with exit_on_error():
            refuse_url_output(path, "output")
        if path is not None and not path.parent.is_dir():
            raise fail(f"output directory does not exist: {path.parent}")


def interactive(quiet: bool, verbose: bool = False) -> bool:
    """Whether to draw progress bars and tables: not --quiet, and stderr is a terminal (or --verbose)."""
    return not quiet and (verbose or stderr.is_terminal)


@dataclass(frozen=True)
class ProgressCallbacks:
    """A progress bar's callbacks in the library's two conventions; both None when no bar is drawn."""

    on_progress: Callable[[str, int, int], None] | None = None  # (stage, done, total)
    on_image: Callable[[int, int], None] | None = None  # (done, total)


@contextmanager
def progress(show: bool, label: str = "reading") -> Iterator[ProgressCallbacks]:
    """A transient progress bar on stderr while the block runs, if ``show``.

    The bar is labelled ``label`` until an ``on_progress`` call names the stage.
    """
    if not show:
        yield ProgressCallbacks()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def on_progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        def on_image(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield ProgressCallbacks(on_progress, on_image)
