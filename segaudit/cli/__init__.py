"""The ``segaudit`` command line: parses options and calls the library.

Only typer and rich are imported at start-up; numba, zarr and the scoring code are
imported inside the commands, so ``--help`` and usage errors are instant. Each command
lives in its own module, whose ``command`` function declares its options and calls the
library; :data:`COMMAND_MODULES` names them. The full app (:data:`app`, every command
registered) and :data:`COMMANDS` (name -> module) are made when first asked for: a run of
one command imports that command's module alone (:func:`app_for`).
"""

from __future__ import annotations

import sys
from importlib import import_module

import typer

from . import _app
from ._app import APP_SETTINGS, Command, stderr

__all__ = ["COMMANDS", "COMMAND_MODULES", "app", "app_for", "main"]

#: Every command's name and the module in this package that defines it, in the order
#: ``segaudit --help`` lists them.
COMMAND_MODULES = {
    "check": "check",
    "diff": "diff",
    "issues": "issues",
    "summary": "summary",
    "score": "score",
    "regions": "regions",
    "folds": "folds",
    "pack": "pack",
    "pack-masks": "pack_masks",
    "info": "info",
    "overlay": "overlay",
    "report": "report",
    "export": "export",
    "corrupt": "corrupt",
    "evaluate": "evaluate",
    "evaluate-regions": "evaluate_regions",
}

#: Each command's line in ``segaudit --help`` (short enough not to be cut at 80 columns).
SHORT_HELP = {
    "check": "Validate a dataset without scoring it.",
    "diff": "Compare two rankings (base and pull request).",
    "issues": "Write PNGs marking the suspect pixels.",
    "summary": "Which class mix-ups dominate.",
    "score": "Score every image and write a ranking.",
    "regions": "List error regions and propose fixes.",
    "folds": "Split the images into k folds (no leaks).",
    "pack": "Pack numpy predictions into a zarr store.",
    "pack-masks": "Write an (N, H, W) label array as PNG masks.",
    "info": "Describe a prediction store.",
    "overlay": "Draw error-highlight PNGs of the worst images.",
    "report": "Write a self-contained HTML report.",
    "export": "Export images to relabel (Label Studio, CVAT, COCO).",
    "corrupt": "Copy a mask set and plant known errors.",
    "evaluate": "Measure a ranking against planted errors.",
    "evaluate-regions": "Measure the error regions against planted errors.",
}


def _command_module(name: str):
    return import_module(f"{__name__}.{COMMAND_MODULES[name]}")


def _register(target: typer.Typer, name: str) -> None:
    target.command(name, cls=Command, short_help=SHORT_HELP[name])(_command_module(name).command)


def _full_app() -> typer.Typer:
    """The shared app with every command registered (once)."""
    if not _app.app.registered_commands:
        for name in COMMAND_MODULES:
            _register(_app.app, name)
    return _app.app


def __getattr__(name: str):
    # app and COMMANDS import all sixteen command modules: made when first asked for, then kept.
    if name == "app":
        value = _full_app()
    elif name == "COMMANDS":
        value = {command: _command_module(command) for command in COMMAND_MODULES}
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def app_for(args: list[str]) -> typer.Typer:
    """The app that runs these command-line arguments: when the first names a command, an
    app of that command alone, with the same callback and settings, which imports that
    command's module alone (typer builds every registered command's options before it runs
    one, 25 ms for all 16, and importing the other fifteen modules costs about as much);
    else the full :data:`app`.

    Parameters
    ----------
    args : list of str
        The arguments after the program name (``sys.argv[1:]``).
    """
    if not args or args[0] not in COMMAND_MODULES:
        return _full_app()
    one = typer.Typer(**APP_SETTINGS)
    one.registered_callback = _app.app.registered_callback
    _register(one, args[0])
    return one


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so that it unwinds like Ctrl-C: every temporary
    file, directory and cell cache is removed on the way out."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def main() -> None:
    """Entry point of the ``segaudit`` executable.

    SIGINT (Ctrl-C) exits 130 and SIGTERM (CI runners, ``timeout``, Kubernetes) 143, both
    after the temporaries are cleaned up; files are renamed into place only when complete.
    """
    import signal

    from ..core.numba_cache import ensure_numba_cache

    _fewer_young_collections()
    cache = ensure_numba_cache()
    if cache is not None:
        stderr.print(f"note: no writable Numba cache (NUMBA_CACHE_DIR, package __pycache__, HOME); caching compiled kernels in "
                     f"{cache} (set NUMBA_CACHE_DIR to choose)", soft_wrap=True)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app_for(sys.argv[1:])()
    except KeyboardInterrupt:
        _interrupted(130)
    except Terminated:
        _interrupted(143)
    finally:
        # The work and its clean-up are over: a signal that lands while the interpreter
        # shuts down (joining reader threads) must not print a traceback.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _quiet_shutdown()
        _skip_exit_collections()


def _quiet_shutdown() -> None:
    """Nothing more on stderr once the command has said its last line: requests still
    pending on a filesystem's event loop (zarr's, fsspec's) when a remote read failed are
    destroyed as the interpreter exits, and asyncio would log each ("Task was destroyed but
    it is pending!", "coroutine ignored GeneratorExit"): a hundred lines after a one-line
    error."""
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)
    sys.unraisablehook = lambda unraisable: None


#: Allocations (less deallocations) between two collections of the youngest generation, for
#: the command line's process (Python's default is 700).
YOUNG_COLLECTION_THRESHOLD = 20_000


def _fewer_young_collections() -> None:
    """Collect the youngest generation of garbage less often.

    A command's start-up (numba, its type registries, zarr, typer's option adapters) creates
    about 150,000 objects that live until the end, and at Python's default threshold each
    700 of them start a collection: some 300 young and 2 full collections, 60-70 ms of a
    small run. Cyclic garbage is still collected, a few thousand objects later.
    """
    import gc

    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


def _skip_exit_collections() -> None:
    """Let the interpreter's shutdown skip its garbage collections over every object left.

    A scoring run leaves about 150,000 objects behind (numba's type system and registries,
    zarr, the command's modules), and the shutdown collects several times over all of them
    while it clears the modules: 0.15-0.2 s, a sixth of a small run. Frozen objects are
    left out of every collection. Nothing needs them collected: the outputs are closed and
    renamed, the atexit clean-ups (temporary files, the cell cache) still run, and the
    process's memory goes back to the system as a whole.
    """
    import gc

    gc.freeze()


def _interrupted(code: int) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not break the message
    stderr.print("interrupted; no partially written file was left")
    sys.exit(code)
