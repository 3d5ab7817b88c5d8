"""The ``segaudit`` command line: parses options and calls the library.

Only typer and rich are imported at start-up; numba, zarr and the scoring code are
imported inside the commands, so ``--help`` and usage errors are instant. Each command
lives in its own module and registers itself on the shared app.
"""

from __future__ import annotations

import sys

from . import check  # noqa: F401  (each import registers its command)
from . import diff  # noqa: F401
from . import issues  # noqa: F401
from . import summary  # noqa: F401
from . import score  # noqa: F401
from . import pack  # noqa: F401
from . import pack_masks  # noqa: F401
from . import info  # noqa: F401
from . import overlay  # noqa: F401
from . import report  # noqa: F401
from . import corrupt  # noqa: F401
from . import evaluate  # noqa: F401
from ._app import app, stderr

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``segaudit`` executable."""
    try:
        app()
    except KeyboardInterrupt:
        # Every file is renamed into place only when complete, so nothing partial is left.
        stderr.print("interrupted; no partially written file was left")
        sys.exit(130)
