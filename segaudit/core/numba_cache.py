"""Where Numba caches the compiled kernels, when neither the package nor HOME is writable.

Numba caches a ``cache=True`` function in the ``__pycache__`` beside its source, else in
the user-wide cache (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``numba``), else it
refuses ("cannot cache function ...: no locator available"). A read-only install run
without a writable HOME (a CI container, a service account) has neither, so
:func:`ensure_numba_cache` points ``NUMBA_CACHE_DIR`` at a private temporary directory
first. It imports no numba (so that ``segaudit --help`` stays fast) and leaves a writable
``NUMBA_CACHE_DIR`` the user set alone; one that is not writable is passed over as Numba
passes it over (then the package, then HOME, then this fallback).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

#: The package directories whose modules hold ``cache=True`` functions.
CACHED_PACKAGES = ("core", "methods", "evaluation")

#: The directory set as ``NUMBA_CACHE_DIR`` by :func:`ensure_numba_cache`, if it set one.
fallback: Path | None = None


def _writable(directory: Path) -> bool:
    """What Numba's locators check: the directory can be made, and a file made in it."""
    try:
        os.makedirs(directory, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError:
        return False
    return True


def _user_wide() -> Path:
    """Numba's user-wide cache directory (appdirs' user_cache_dir on Linux and others)."""
    if sys.platform == "darwin":
        return Path("~/Library/Caches/numba").expanduser()
    if sys.platform.startswith("win"):
        return Path(os.environ.get("LOCALAPPDATA", "~")).expanduser() / "numba" / "Cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()) / "numba"


def _private_directory() -> Path:
    """``<tmp>/segaudit-numba-<uid>``, made if needed and used only if this user alone owns
    and can write it (cached kernels are loaded as code); else a fresh temporary one."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = Path(tempfile.gettempdir()) / f"segaudit-numba-{uid if uid is not None else 'user'}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(path)
        private = stat.S_ISDIR(info.st_mode) and not info.st_mode & 0o022 and (uid is None or info.st_uid == uid)
        if private and _writable(path):
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="segaudit-numba-"))


def ensure_numba_cache() -> Path | None:
    """Set ``NUMBA_CACHE_DIR`` to a writable temporary directory if Numba would have
    nowhere to cache segaudit's kernels; return that directory (None if not needed).

    Called when ``segaudit`` is imported, before any kernel is compiled; the command line
    prints a one-line note when it returns a directory.
    """
    global fallback
    if fallback is not None:
        return fallback
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given and _writable(Path(given)):
        return None
    package = Path(__file__).resolve().parents[1]
    if all(_writable(package / name / "__pycache__") for name in CACHED_PACKAGES):
        return None
    if _writable(_user_wide()):
        return None
    fallback = _private_directory()
    os.environ["NUMBA_CACHE_DIR"] = str(fallback)
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba imported already: it read the environment at import
        config.CACHE_DIR = str(fallback)
    return fallback
