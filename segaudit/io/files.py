"""Files named after image ids, and writing files so that none is ever left half-written.

Light on purpose (no numpy, no numba): every command that writes imports it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError

RUN_RECORD_SUFFIX = ".run.json"


def run_record_path(csv_path: str | Path) -> Path:
    """``ranking.csv`` -> ``ranking.run.json``."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.stem + RUN_RECORD_SUFFIX)


def safe_relative_path(image_id: str, suffix: str = "") -> Path:
    """The relative file path an image id maps to, refusing ids that would escape.

    Output files are named after image ids; an id that is absolute, has an empty, ``.``
    or ``..`` component, or holds a backslash or NUL could write outside the output
    directory, so it is an InputError.
    """
    parts = image_id.split("/")
    if (not image_id or image_id.startswith("/") or "\\" in image_id or "\0" in image_id
            or any(part in ("", ".", "..") for part in parts)):
        raise InputError(f"image id {image_id!r} cannot be used as an output file name (it could "
                         "write outside the output directory)")
    return Path(*parts[:-1], parts[-1] + suffix)


def require_regular_file(path: str | Path, what: str) -> None:
    """InputError unless ``path``, if it exists, is a regular file (or a symlink to one).

    Every file a command reads goes through this first: reading a FIFO blocks until some
    other process writes to it (forever, in practice), and a device may never end. A missing
    path is left to the reader, which says "not found" in its own words.

    Parameters
    ----------
    path : str or Path
        The file about to be read.
    what : str
        What it is, for the message (``"--only file"``, ``"decisions file"``).
    """
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISDIR(mode):
        raise InputError(f"{what} {path} is a directory")
    if not stat.S_ISREG(mode):
        raise InputError(f"{what} {path}: not a regular file (a FIFO, socket or device would block or never end); "
                         "give a file")


def _real(path) -> Path:
    """``path`` made absolute with every symlink resolved (whether or not it exists)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def _within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def lies_within(path: str | Path, directory: str | Path) -> bool:
    """Whether ``path`` is ``directory`` or lies inside it, every symlink resolved (neither
    needs to exist)."""
    return _within(_real(path), _real(directory))


def refuse_overwriting_inputs(reads: dict[str, object], writes: dict[str, object],
                              replaced: tuple[str, ...] = ()) -> None:
    """InputError unless every output of a command stays clear of everything it reads.

    ``reads`` and ``writes`` map a description (``"masks directory"``, ``"--output"``) to
    a path (None: not given; ``"-"``: stdin or stdout). After resolving symlinks, an
    output may not be an input, nor lie inside an input (a masks directory, a store, a
    directory of overlays); the outputs named in ``replaced`` (directories that are
    replaced whole) may not contain an input either. Called by every command that writes,
    before anything is written.
    """
    from .remote import is_url

    # A URL (s3://...) is nowhere on the local disk: no local output can land in it.
    read_paths = [(what, path, _real(path)) for what, path in reads.items() if path not in (None, "-")
                  and not is_url(path)]
    for label, target in writes.items():
        if target in (None, "-"):
            continue
        real = _real(target)
        for what, path, source in read_paths:
            if real == source:
                relation = "is"
            elif _within(real, source):
                relation = "is inside"
            elif label in replaced and _within(source, real):
                relation = "contains"
            else:
                continue
            raise InputError(f"{label} {target} {relation} the {what} {path}: refusing to write over an input")


def contained_path(directory: str | Path, relative: str | Path) -> Path:
    """``directory / relative``, refusing one that a symlink inside ``directory`` leads out of it."""
    directory = Path(directory)
    path = directory / relative
    real_dir = _real(directory)
    # The file itself may not exist yet: resolve its directory (symlinked folders escape).
    if not _within(_real(path.parent), real_dir) or (path.is_symlink() and not _within(_real(path), real_dir)):
        raise InputError(f"{path} leads outside the output directory {directory} (through a symlink): "
                         "refusing to write there")
    return path


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs (in the main thread).

    For creating a temporary and recording it for clean-up in one step: a signal arriving
    in between would otherwise leave it behind. The signal is handled right after.

    Masking the signals (pthread_sigmask) is not enough: it masks them for the calling
    thread only, and Python runs its handlers in the main thread even when another thread
    (a reader, zarr's event loop) received the signal. So the handlers themselves are
    swapped for one that only notes the signal, and the noted signal is handed to the
    original handler when the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def note(signum, frame):
        pending.append(signum)

    held = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, note) for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            signum = pending[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def plain_mode(mode: int) -> int:
    """``mode`` less the process's umask: what a plain open() or mkdir() would give."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def temporary_directory(parent: str | Path, prefix: str, *, renamed_into_place: bool = True) -> Path:
    """A new directory in ``parent`` (``prefix`` + a random part + ``.tmp``), made with the
    signals deferred so that an interrupt cannot leave it behind unrecorded: one that
    lands while it is made removes it again before the interrupt goes on.

    ``renamed_into_place``: the directory becomes an output itself, so it gets the mode a
    plain mkdir() would give (mkdtemp makes it private, 0700).
    """
    path = None
    try:
        with signals_deferred():
            path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix, suffix=".tmp"))
    except BaseException:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
        raise
    if renamed_into_place:
        os.chmod(path, plain_mode(0o777))
    return path


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's live process
        return True
    return True


def remove_orphans(parent: str | Path, prefix: str) -> list[Path]:
    """Remove the directories ``prefix`` + a process id + ``-`` ... in ``parent`` whose process
    no longer runs (killed with SIGKILL, say, which no clean-up survives); returns them.

    A directory that is a symlink, or whose name does not carry a process id, is left alone,
    as are this process's own and those of live processes.
    """
    removed = []
    try:
        entries = os.listdir(parent)
    except OSError:
        return removed
    for name in entries:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or process_alive(int(pid)):
            continue
        path = Path(parent) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class StagedDirectory:
    """Files of an output directory written into a staging folder inside it and moved in only
    when all are complete (see :func:`staged_directory`)."""

    def __init__(self, out: Path, staging: Path):
        self.out = out
        self.staging = staging
        self.relatives: list[Path] = []

    def path(self, relative: str | Path) -> Path:
        """Where to write the file that will be ``out / relative``: its place in the staging
        folder (its directories made). The final place is checked now (a symlink inside ``out``
        leading out of it is an InputError) and again when it is moved in."""
        relative = Path(relative)
        contained_path(self.out, relative)
        staged = self.staging / relative
        staged.parent.mkdir(parents=True, exist_ok=True)
        self.relatives.append(relative)
        return staged

    def check(self) -> list[tuple[Path, Path]]:
        """Raise now what would make moving the files in fail, as far as it can be foreseen (a
        directory, or a symlink out of ``out``, where a file goes); (staged, final) pairs.
        For writing another output only when these are sure to go in."""
        targets = [(self.staging / relative, contained_path(self.out, relative)) for relative in self.relatives]
        for _, target in targets:
            if target.is_dir():
                raise IsADirectoryError(errno.EISDIR, f"{target} is a directory", str(target))
        return targets

    def _move_in(self) -> None:
        targets = self.check()
        with signals_deferred():  # all in, or (on an error) none of what was left
            for staged, target in targets:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, target)


@contextmanager
def staged_directory(out: str | Path, prefix: str) -> Iterator[StagedDirectory]:
    """An output directory whose files appear all at once, or not at all.

    ``out`` is made if missing. Inside it, a staging folder (``prefix`` + the process id +
    ``-`` ... ``.tmp``) receives every file written to :meth:`StagedDirectory.path`; when the
    block ends normally they are renamed into place (one directory, one filesystem: nothing
    is copied). When it ends with an error, SIGINT or SIGTERM, the staging folder is removed
    (and ``out`` too, if this made it and it is empty), so nothing is left half-written. A
    run killed outright (SIGKILL) leaves its staging folder; the next one removes it.

    Raises
    ------
    InputError
        When ``out`` is not a directory or cannot be made.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output path is not a directory: {out}")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        remove_orphans(out, prefix)
        staging = temporary_directory(out, f"{prefix}{os.getpid()}-", renamed_into_place=False)
    except OSError as exc:
        raise InputError(f"cannot create output directory {out}: {exc.strerror or exc}") from None
    staged = StagedDirectory(out, staging)
    try:
        yield staged
        staged._move_in()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not _holds_files(out):
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)


def _holds_files(directory: Path) -> bool:
    """Whether anything but directories lies under ``directory``."""
    return any(not path.is_dir() or path.is_symlink() for path in directory.rglob("*"))


def atomic_write_all(files: dict[Path, str | bytes]) -> None:
    """Write every file to a temporary beside it, then rename them all into place.

    Nothing is renamed until every temporary is complete, so a failed write (disk full,
    a directory in the way) leaves none of the files changed and no temporaries behind.
    """
    for path in files:  # the one rename failure that is foreseeable: check it before writing
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, f"{path} is a directory", str(path))
    temporaries: dict[Path, str] = {}
    try:
        for path, text in files.items():
            with signals_deferred():
                handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                temporaries[path] = temporary
            if isinstance(text, bytes):
                with os.fdopen(handle, "wb") as stream:
                    stream.write(text)
            else:
                with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
                    stream.write(text)
            # mkstemp makes the file private (0600); give it the mode a plain open() would.
            os.chmod(temporary, plain_mode(0o666))
        for path, temporary in temporaries.items():
            os.replace(temporary, path)
    except BaseException:
        for temporary in temporaries.values():
            Path(temporary).unlink(missing_ok=True)
        raise


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a file: a JSON list, or one name per line (position = class index)."""
    path = Path(path)
    require_regular_file(path, "classes file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"classes file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read classes file {path}: {exc}") from None
    try:
        names = json.loads(text)
    except json.JSONDecodeError:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not isinstance(names, list) or not names:
        raise InputError(f"{path}: classes file must hold a JSON list or one class name per line")
    names = [str(name) for name in names]
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise InputError(f"{path}: class name {name!r} is given twice (classes {seen[name]} and {index})")
        seen[name] = index
    return names


def replace_generated_section(path: str | Path, begin: str, end: str, text: str, *, title: str) -> None:
    """Put ``text`` between the ``begin`` and ``end`` marker lines of a Markdown file, atomically.

    The rest of the file is kept. Without the markers they are appended with the text; a
    missing file is created with the heading ``title``. Used by the benchmarks to rewrite
    their measured sections of the docs.
    """
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else f"# {title}\n"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + begin + "\n" + text + "\n" + end + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + f"\n\n{begin}\n{text}\n{end}\n"
    atomic_write_all({path: new})
