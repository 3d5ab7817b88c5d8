"""Where Numba caches the compiled kernels, and how they are loaded from that cache.

Numba caches a ``cache=True`` function in the ``__pycache__`` beside its source, else in
the user-wide cache (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``numba``), else it
refuses ("cannot cache function ...: no locator available"). A read-only install run
without a writable HOME (a CI container, a service account) has neither, so
:func:`ensure_numba_cache` points ``NUMBA_CACHE_DIR`` at a private temporary directory
first. It imports no numba (so that ``segaudit --help`` stays fast) and leaves a writable
``NUMBA_CACHE_DIR`` the user set alone; one that is not writable is passed over as Numba
passes it over (then the package, then HOME, then this fallback).

:func:`load_kernels_without_refresh` makes loading a cached segaudit kernel skip Numba's
target-context refresh, which only a compilation needs (see its docstring).
"""

from __future__ import annotations

import importlib.machinery
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


# --- loading cached kernels ---------------------------------------------------------------

#: The module whose ``Cache.load_overload`` :func:`load_kernels_without_refresh` replaces.
NUMBA_CACHING = "numba.core.caching"


def load_kernels_without_refresh() -> None:
    """Load segaudit's cached kernels without refreshing Numba's target context first.

    Numba's ``Cache.load_overload`` calls ``target_context.refresh()`` before it reads a
    cached kernel. The first refresh imports and installs every typing and lowering
    registry Numba has (``numba.np.arraymath``, whose BLAS check imports
    ``scipy.linalg`` when scipy is installed, ``numba.np.npyimpl``, ``numba.typed`` ...):
    0.3 s of a 1 s run on the fixtures, for code that only compiling needs. A cached kernel
    is machine code linked against the C symbols Numba registers with LLVM; of those, the
    refresh adds only the runtime's (NRT, ``rtsys.initialize``) and the hash secret
    (``numba.cpython.hashing``), which this load still adds. Every compilation refreshes by
    itself (``CompilerBase.__init__``), so a cache miss, a new signature or any other Numba
    code in the process is unaffected; functions from other packages keep Numba's own load.

    Takes effect when ``numba.core.caching`` is imported from the path, as an installed
    Numba is (now, if it is already), without importing numba here, so that ``segaudit
    --help`` stays fast. Called when ``segaudit``
    is imported. Does nothing if Numba's cache no longer has the methods it relies on.
    """
    caching = sys.modules.get(NUMBA_CACHING)
    if caching is not None:
        _replace_load_overload(caching)
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


def _is_segaudit_function(py_func) -> bool:
    module = getattr(py_func, "__module__", None) or ""
    return module == "segaudit" or module.startswith("segaudit.")


def _replace_load_overload(caching) -> None:
    cache = getattr(caching, "Cache", None)
    if cache is None or getattr(cache.load_overload, "segaudit_without_refresh", False):
        return
    if not all(hasattr(cache, name) for name in ("_load_overload", "_guard_against_spurious_io_errors")):
        return  # another Numba than the one this was written against: keep its own load
    numba_load = cache.load_overload

    def load_overload(self, sig, target_context):
        if not _is_segaudit_function(getattr(self, "_py_func", None)):
            return numba_load(self, sig, target_context)
        # What the refresh adds that the cached machine code links against.
        import numba.cpython.hashing  # noqa: F401  (the hash secret's symbols)
        from numba.core.runtime import rtsys

        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)
        return None  # the guard swallowed a spurious I/O error (Windows): a cache miss

    load_overload.segaudit_without_refresh = True
    load_overload.__doc__ = numba_load.__doc__
    cache.load_overload = load_overload


class _PatchOnImport:
    """A meta path finder: finds ``numba.core.caching`` as the path finder does, and replaces
    its ``Cache.load_overload`` once the module has run. (Not derived from importlib.abc's
    classes, whose import costs 15 ms: the import system needs only these methods.)"""

    def find_spec(self, fullname, path, target=None):
        if fullname != NUMBA_CACHING:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenPatch(spec.loader)
        return spec


class _ThenPatch:
    """The module's own loader, then :func:`_replace_load_overload` on the module."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _replace_load_overload(module)

    def __getattr__(self, name):  # get_source, get_filename ... as the module's own loader
        if name == "loader":  # not set yet (a copy being made): no recursion through here
            raise AttributeError(name)
        return getattr(self.loader, name)
