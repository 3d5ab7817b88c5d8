"""The ``segaudit`` command line: parses options and calls the library.

Only typer and rich are imported at start-up; numba, zarr and the scoring code are
imported inside the commands, so ``--help`` and usage errors are instant. Each command
lives in its own module, whose ``command`` function declares its options and calls the
library; :data:`COMMANDS` names them and registers them on the shared app.
"""

from __future__ import annotations

import sys

from . import check, corrupt, diff, evaluate, info, issues, overlay, pack, pack_masks, report, score, summary
from ._app import app, stderr

__all__ = ["COMMANDS", "app", "main"]

#: Every command's name and module, in the order ``segaudit --help`` lists them.
COMMANDS = {
    "check": check,
    "diff": diff,
    "issues": issues,
    "summary": summary,
    "score": score,
    "pack": pack,
    "pack-masks": pack_masks,
    "info": info,
    "overlay": overlay,
    "report": report,
    "corrupt": corrupt,
    "evaluate": evaluate,
}

for _name, _module in COMMANDS.items():
    app.command(_name)(_module.command)


def main() -> None:
    """Entry point of the ``segaudit`` executable."""
    try:
        app()
    except KeyboardInterrupt:
        # Every file is renamed into place only when complete, so nothing partial is left.
        stderr.print("interrupted; no partially written file was left")
        sys.exit(130)
