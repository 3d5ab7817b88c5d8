"""The cell cache: every image's downsampled cells, kept by the per-image pass; and the
passes over every cell (:func:`dataset_cells`, :func:`image_cells`), from the cache or,
without one, from the store.

Dataset-wide methods (clc) make passes over every cell after the per-image pass; reading
the cells back from this cache costs far less than reading and pooling the store again.
For a dataset held in memory (arrays, :mod:`segaudit.core.arrays`) the cells stay in
memory when they fit in half the free RAM (they take 28 bytes a cell, against K values a
pixel for the arrays); otherwise, and for stores, they are spilled to disk, so that a
run's memory does not grow with the number of images.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import option_error
from ..io.files import remove_orphans, signals_deferred
from .pooling import grid_shape


#: Per cell, what the passes after the per-image pass need (dtype as :class:`Cells`).
CELL_FIELDS = {"label": np.int32, "pred": np.int32, "s": np.float64, "p_pred": np.float64,
               "mismatched": np.int32}
CELL_BYTES = sum(np.dtype(t).itemsize for t in CELL_FIELDS.values())
CHUNK_CELLS = 1 << 18  # cells read back at a time (whole images; 7 MB)
DISK_SHARE = 0.5  # the cache may take at most this share of the free temporary space
MEMORY_SHARE = 0.5  # an in-memory dataset's cache stays in memory up to this share of free RAM


#: The largest cell size F (``--downsample``): far beyond any image's side, and cell counts stay small.
MAX_DOWNSAMPLE = 1 << 16


def check_downsample(factor: int) -> int:
    """The cell size F of clc's and coco's grid: a whole number from 1 to :data:`MAX_DOWNSAMPLE`;
    InputError (``downsample``, ``--downsample`` on the command line) otherwise."""
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise option_error("downsample", f"must be a whole number >= 1, got {factor}")
    if factor > MAX_DOWNSAMPLE:
        raise option_error("downsample", f"must be a whole number from 1 to {MAX_DOWNSAMPLE}, got {factor}")
    return factor


def pixel_dtype(n_classes: int) -> np.dtype:
    """The smallest integer dtype holding every class index."""
    return np.dtype(np.uint8 if n_classes <= 256 else np.int16)


class CellCache:
    """Every image's cells, spilled to disk by the per-image pass for clc's later passes.

    Reading them back costs far less than reading and pooling the store again. Per cell:
    label, pred, s, p_pred and the scored pixels whose argmax is not their label (all that
    counting, selecting and flagging need); with ``pixels``, also every pixel's argmax,
    for full-resolution flag maps. Images are appended in dataset order and read back in
    chunks of whole images, so memory stays bounded whatever the number of images.

    With ``directory`` None the cells stay in memory instead (one array per image and
    field, handed back without copies).
    """

    def __init__(self, directory: str | Path | None, n_classes: int, pixels: bool = False):
        self.directory = None if directory is None else Path(directory)
        self.pixel_dtype = pixel_dtype(n_classes) if pixels else None
        names = list(CELL_FIELDS) + (["pixel_pred"] if pixels else [])
        self._files = ExitStack()  # every file the cache opens, closed by close()
        self._memory: dict[str, list[np.ndarray]] | None = None
        self._pending_pixels: list[np.ndarray] = []  # in memory: the current image's argmax rows
        if self.directory is None:
            self._memory = {name: [] for name in names}
            self._writers = {}
        else:
            self._writers = {name: self._files.enter_context(self._open(name, "wb")) for name in names}
        self._cell_offsets = [0]  # per image, its first cell; then the total
        self._pixel_offsets = [0]
        self._pixel_shapes: list[tuple[int, int]] = []
        self._pixel_reader = None

    @property
    def in_memory(self) -> bool:
        """The cells are held in memory, not spilled to disk."""
        return self._memory is not None

    def _open(self, name: str, mode: str):
        return open(self.directory / f"{name}.bin", mode)

    @property
    def images(self) -> int:
        return len(self._cell_offsets) - 1

    def add_pixels(self, pixel_pred: np.ndarray) -> None:
        """Append rows of the current image's full-resolution argmax (with ``pixels``)."""
        if self._memory is not None:
            self._pending_pixels.append(np.asarray(pixel_pred, self.pixel_dtype))
            return
        self._writers["pixel_pred"].write(np.ascontiguousarray(pixel_pred, self.pixel_dtype).data)

    def add_image(self, height: int, width: int, **cells: np.ndarray) -> None:
        """Append one image's cell grids (keyword per :data:`CELL_FIELDS`), after its pixels.

        In memory, the grids are kept as they are (not copied): the caller must not
        change them afterwards.
        """
        for name, dtype in CELL_FIELDS.items():
            if self._memory is not None:
                self._memory[name].append(np.ascontiguousarray(cells[name], dtype).reshape(-1))
            else:
                self._writers[name].write(np.ascontiguousarray(cells[name], dtype).data)
        if self._memory is not None and self.pixel_dtype is not None:
            rows = self._pending_pixels
            image = rows[0] if len(rows) == 1 else np.concatenate(rows) if rows else np.empty((0, width), self.pixel_dtype)
            self._memory["pixel_pred"].append(image.reshape(height, width))
            self._pending_pixels = []
        self._cell_offsets.append(self._cell_offsets[-1] + cells["label"].size)
        if self.pixel_dtype is not None:
            self._pixel_offsets.append(self._pixel_offsets[-1] + height * width)
            self._pixel_shapes.append((height, width))

    def _seal(self) -> None:
        for writer in self._writers.values():
            writer.close()

    def chunks(self, names: tuple[str, ...], max_cells: int | None = None
               ) -> Iterator[tuple[int, np.ndarray, dict[str, np.ndarray]]]:
        """Read the cells back in dataset order, whole images at a time.

        Yields (first image, cell offsets of its images from the chunk's start (one more
        than the images), {name: flat array}).
        """
        self._seal()
        if self._memory is not None:  # one image at a time, as kept
            for index in range(self.images):
                arrays = {name: self._memory[name][index] for name in names}
                yield index, np.array([0, arrays[names[0]].size], np.int64), arrays
            return
        max_cells = max_cells or CHUNK_CELLS
        offsets = np.asarray(self._cell_offsets, np.int64)
        with ExitStack() as files:
            readers = {name: files.enter_context(self._open(name, "rb")) for name in names}
            first = 0
            while first < self.images:
                # At least one image, then as many as fit.
                stop = max(first + 1, int(np.searchsorted(offsets, offsets[first] + max_cells, "right")) - 1)
                stop = min(stop, self.images)
                count = int(offsets[stop] - offsets[first])
                arrays = {name: np.fromfile(readers[name], CELL_FIELDS[name], count) for name in names}
                yield first, offsets[first:stop + 1] - offsets[first], arrays
                first = stop

    def pixel_pred(self, index: int) -> np.ndarray:
        """Image ``index``'s full-resolution argmax (with ``pixels``)."""
        self._seal()
        if self._memory is not None:
            return self._memory["pixel_pred"][index]
        if self._pixel_reader is None:
            self._pixel_reader = self._files.enter_context(self._open("pixel_pred", "rb"))
        self._pixel_reader.seek(self._pixel_offsets[index] * self.pixel_dtype.itemsize)
        count = self._pixel_offsets[index + 1] - self._pixel_offsets[index]
        return np.fromfile(self._pixel_reader, self.pixel_dtype, count).reshape(self._pixel_shapes[index])

    def close(self) -> None:
        self._files.close()
        if self._memory is not None:
            self._memory = {name: [] for name in self._memory}


def cache_bytes(dataset, factor: int, pixels: bool) -> int:
    """Disk space a :class:`CellCache` of ``dataset`` takes."""
    total = 0
    for _, image_id in dataset.pairs:
        height, width = dataset.store.image_shape(image_id)
        rows, cols = grid_shape(height, width, factor, dataset.store.slice_rows(image_id))
        total += rows * cols * CELL_BYTES
        if pixels:
            total += height * width * pixel_dtype(dataset.store.n_classes).itemsize
    return total


CACHE_PREFIX = "segaudit-cells-"  # then the owner's process id, "-" and a random suffix

#: The folders this process made cell caches in. A signal can land between creating a
#: cache and recording it (Python runs its handler in the main thread even while the main
#: thread masks the signal, when another thread received it), or between a context
#: manager's entry and its registration for exit; so at exit the process removes every
#: cache named with its own process id in these folders.
_PARENTS: set[str] = set()


@atexit.register
def _remove_own_caches() -> None:
    prefix = f"{CACHE_PREFIX}{os.getpid()}-"
    for parent in list(_PARENTS):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
def remove_stale_caches(parent: str | Path) -> list[Path]:
    """Remove the cell caches in ``parent`` left by processes that no longer run (killed
    with SIGKILL, say, which no clean-up survives); returns them."""
    return remove_orphans(parent, CACHE_PREFIX)


def _free_memory() -> int:
    """Bytes of RAM free for new allocations (0 if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return 0


def keeps_in_memory(dataset, size: int) -> bool:
    """Whether a cache of ``size`` bytes for ``dataset`` stays in memory (see the module)."""
    from .arrays import ArrayStore

    return isinstance(dataset.store, ArrayStore) and size <= MEMORY_SHARE * _free_memory()


@contextmanager
def cell_cache(dataset, factor: int, *, pixels: bool = False,
               parent: str | Path | None = None) -> Iterator[CellCache | None]:
    """A temporary :class:`CellCache` for ``dataset``, removed on exit (errors too).

    In memory when :func:`keeps_in_memory` says so; else on disk, in ``parent`` (default:
    the temporary directory). None when it would take more than ``DISK_SHARE`` of the
    free space there (F = 1 on a huge dataset, say): the later passes then re-read the
    store instead.
    """
    check_downsample(factor)
    size = cache_bytes(dataset, factor, pixels)
    if keeps_in_memory(dataset, size):
        cache = CellCache(None, dataset.store.n_classes, pixels)
        try:
            yield cache
        finally:
            cache.close()
        return
    parent = str(parent or tempfile.gettempdir())
    remove_stale_caches(parent)
    free = shutil.disk_usage(parent).free
    if size > DISK_SHARE * free:
        yield None
        return
    directory = cache = None
    _PARENTS.add(parent)  # before the cache exists: see _remove_own_caches
    try:
        with signals_deferred():  # no SIGTERM between creating the directory and owning it
            directory = tempfile.mkdtemp(prefix=f"{CACHE_PREFIX}{os.getpid()}-", dir=parent)
        cache = CellCache(directory, dataset.store.n_classes, pixels)
        yield cache
    finally:
        if cache is not None:
            cache.close()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


# --- passes over every cell: from the cache, or from the store when there is none -------------


@dataclass
class CellRows:
    """Full-resolution rows that a piece of cells covers, for flag maps: rows ``start`` ..
    ``start + len(labels)`` of the image, their labels and argmax, the pieces' cell grid
    shape and the image's slice height (None: a 2-D image)."""

    start: int
    labels: np.ndarray
    pixel_pred: np.ndarray
    grid: tuple[int, int]
    slice_rows: int | None


def dataset_cells(dataset, factor: int, cache: CellCache | None, names: tuple[str, ...],
                  on_cells: Callable[[dict[str, np.ndarray]], None], on_image_end: Callable[[int], None],
                  prefetch: int = 4) -> None:
    """Hand every cell of ``dataset`` to ``on_cells({name: flat array})``, in dataset order,
    then report each image they completed to ``on_image_end(index)``.

    From ``cache`` (of ``dataset`` at ``factor``) in chunks of whole images; without one,
    reading and pooling the store block by block. ``names``: fields of :data:`CELL_FIELDS`.
    """
    if cache is not None:
        for first, offsets, cells in cache.chunks(names):
            on_cells(cells)
            for index in range(first, first + len(offsets) - 1):
                on_image_end(index)
        return
    from .passes import walk
    from .pooling import pool

    def block(index, image_id, b):
        cells = pool(b.probs, b.labels, dataset.decoding, factor, pixel_dtype=None,
                     slice_rows=dataset.slice_rows(image_id))
        on_cells({name: getattr(cells, name).ravel() for name in names})

    walk(dataset, block, on_image_end=lambda index, _: on_image_end(index), row_alignment=factor,
         prefetch=prefetch)


def image_cells(dataset, factor: int, cache: CellCache | None, names: tuple[str, ...],
                on_cells: Callable[[int, dict[str, np.ndarray], CellRows | None], None], *,
                on_image_start: Callable[[int, str, np.ndarray | None], None] | None = None,
                on_image_end: Callable[[int, str], None] | None = None, pixels: bool = False,
                prefetch: int = 4) -> None:
    """Hand each image's cells to ``on_cells(index, {name: flat array}, rows)``, image by
    image in dataset order: the whole image's from ``cache``, or block by block from the
    store (pooled) without one.

    With ``pixels``, ``rows`` (:class:`CellRows`) holds the full-resolution labels and
    argmax that the cells cover (the labels read from the masks again; with a cache, it
    must keep the pixels' argmax), and ``on_image_start(index, image_id, labels)`` gets the
    image's labels (None without ``pixels`` when the cells come from the cache).
    """
    start = on_image_start or (lambda index, image_id, labels: None)
    end = on_image_end or (lambda index, image_id: None)
    if cache is None:
        from .passes import walk
        from .pooling import pool

        def block(index, image_id, b):
            slice_rows = dataset.slice_rows(image_id)
            cells = pool(b.probs, b.labels, dataset.decoding, factor, pixel_dtype=np.int32 if pixels else None,
                         slice_rows=slice_rows)
            rows = CellRows(b.start, b.labels, cells.pixel_pred, cells.label.shape, slice_rows) if pixels else None
            on_cells(index, {name: getattr(cells, name).ravel() for name in names}, rows)

        walk(dataset, block, on_image_start=start, on_image_end=end, row_alignment=factor, prefetch=prefetch)
        return
    from .passes import prefetched

    labels = None
    if pixels:
        labels = prefetched((lambda mask=mask: dataset.read_labels(mask) for mask, _ in dataset.pairs),
                            max(1, prefetch))
    try:
        for first, offsets, cells in cache.chunks(names):
            for i in range(len(offsets) - 1):
                index, part = first + i, slice(offsets[i], offsets[i + 1])
                image_id = dataset.pairs[index][1]
                rows = None
                if pixels:
                    image_labels = next(labels)
                    slice_rows = dataset.slice_rows(image_id)
                    rows = CellRows(0, image_labels, cache.pixel_pred(index),
                                    grid_shape(*image_labels.shape, factor, slice_rows), slice_rows)
                start(index, image_id, None if rows is None else rows.labels)
                on_cells(index, {name: cells[name][part] for name in names}, rows)
                end(index, image_id)
    finally:
        if labels is not None:
            labels.close()
