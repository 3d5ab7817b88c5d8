"""Confident-learning counts (clc, paper section 3.5) over every cell of the dataset.

The semantics are cleanlab's ``cleanlab.segmentation.filter.find_label_issues``:

1. Per-class thresholds t_k = mean of p_k over the cells annotated k (whole dataset),
   clipped below at 2e-6.
2. The number of issues n = count of cells whose argmax j differs from the label and
   p_j >= t_j - 1e-6.
3. The n cells with the lowest self-confidence s = p[label] across the dataset are
   flagged (ties broken by dataset order: image, then row-major cell); at full
   resolution, a flagged cell's pixels whose argmax equals their label are unflagged.

clc = 1 - flagged pixels / scored pixels.

Nothing per cell is kept in memory across images. The n-th lowest s is found by a radix
selection on s's float64 bit pattern (non-negative floats sort like their bits): a
2^20-bin histogram in the counting pass; if the boundary bin is still large, 22 more bits
per extra pass; then the flagging pass keeps only the boundary bin's cells (at most
``MAX_CANDIDATES``) and settles them at the end.

The passes after the per-image pass read the cells from a :class:`CellCache` on disk,
which the per-image pass fills, instead of reading and pooling the store again; without
one (it would not fit on disk) they re-read the store.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from ..results import ClcState, Selection

THRESHOLD_FLOOR = 2e-6  # cleanlab's CONFIDENT_THRESHOLDS_LOWER_BOUND
THRESHOLD_MARGIN = 1e-6  # cleanlab's FLOATING_POINT_COMPARISON
FIRST_BITS = 20
NEXT_BITS = 22
MAX_CANDIDATES = 1 << 22  # boundary cells kept in the flagging pass (64 MB)


@njit(cache=True, nogil=True)
def _threshold_sums(cell_label, cell_s, sums, counts):
    for i in range(cell_label.shape[0]):
        for j in range(cell_label.shape[1]):
            label = cell_label[i, j]
            if label >= 0:
                sums[label] += cell_s[i, j]
                counts[label] += 1


def thresholds(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """t_k from the per-class sums of s and counts of cells annotated k."""
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return np.maximum(means, THRESHOLD_FLOOR)


@njit(cache=True, nogil=True)
def _count_and_histogram(cell_label, cell_pred, cell_s, cell_ppred, adjusted, prefix, prefix_bits,
                         bits, histogram, count_issues):
    """Count issues (when count_issues) and histogram s's bits below the fixed prefix.

    The cell arrays are flat; cell_pred and cell_ppred are read only when count_issues.
    """
    issues = 0
    s_bits = cell_s.view(np.uint64)
    shift = np.uint64(64 - prefix_bits - bits)
    mask = np.uint64((1 << bits) - 1)
    for i in range(cell_label.shape[0]):
        label = cell_label[i]
        if label < 0:
            continue
        if count_issues:
            pred = cell_pred[i]
            if pred != label and cell_ppred[i] >= adjusted[pred]:
                issues += 1
        b = s_bits[i]
        if prefix_bits > 0 and (b >> np.uint64(64 - prefix_bits)) != prefix:
            continue
        histogram[(b >> shift) & mask] += 1
    return issues


@njit(cache=True, nogil=True)
def _flag_cells(cell_label, cell_s, cell_mismatched, low, high, take, ties_taken,
                cand_bits, cand_image, cand_pixels, n_cand, image_index, certain_out):
    """Flag one image's cells (flat, row-major); return the flagged pixels that survive
    the re-check (scored pixels whose argmax is not their label, ``cell_mismatched``).

    Cells with s below ``low`` are flagged. Cells in [low, high) are the boundary: when
    the range is one value (high == low + 1) the first ``take`` of them in dataset
    order are flagged (ties_taken counts across calls); otherwise they are recorded as
    candidates (bits, image, surviving pixels) to settle after the pass. When
    ``certain_out`` is not empty, it receives which cells are flagged.
    """
    flagged = 0
    write = certain_out.shape[0] > 0
    s_bits = cell_s.view(np.uint64)
    exact = high - low == np.uint64(1)
    for i in range(cell_label.shape[0]):
        certain = False
        b = s_bits[i]
        if cell_label[i] >= 0 and b < high:
            certain = b < low
            if not certain and exact and ties_taken[0] < take:
                certain = True
                ties_taken[0] += 1
            if certain:
                flagged += cell_mismatched[i]
            elif not exact:
                k = n_cand[0]
                cand_bits[k] = b
                cand_image[k] = image_index
                cand_pixels[k] = cell_mismatched[i]
                n_cand[0] = k + 1
        if write:
            certain_out[i] = certain
    return flagged


@njit(cache=True, nogil=True)
def _map_flags(certain, labels, pixel_pred, ignore, factor, flag_map, confusion):
    """Mark the flagged pixels of flagged cells: scored pixels whose argmax is not their
    label. Count their (annotated, predicted) pairs in ``confusion``."""
    n_classes = ignore.shape[0]
    rows, width = labels.shape
    for gi in range(certain.shape[0]):
        for gj in range(certain.shape[1]):
            if not certain[gi, gj]:
                continue
            for r in range(gi * factor, min((gi + 1) * factor, rows)):
                for c in range(gj * factor, min((gj + 1) * factor, width)):
                    label = labels[r, c]
                    if label < 0 or label >= n_classes or ignore[label] or pixel_pred[r, c] == label:
                        continue
                    flag_map[r, c] = 1
                    confusion[label, pixel_pred[r, c]] += 1


def select_from_histogram(histogram: np.ndarray, rank: int, prefix: int, prefix_bits: int, bits: int):
    """The bin holding the rank-th smallest (0-based) and the rank within it.

    Returns (new prefix, new prefix bits, rank within the bin, cells in the bin).
    """
    cumulative = np.cumsum(histogram)
    b = int(np.searchsorted(cumulative, rank, side="right"))
    below = int(cumulative[b - 1]) if b else 0
    return (prefix << bits) | b, prefix_bits + bits, rank - below, int(histogram[b])


def bin_range(prefix: int, prefix_bits: int) -> tuple[int, int]:
    """[low, high) of the bit patterns that start with ``prefix``."""
    width = 1 << (64 - prefix_bits)
    return prefix * width, (prefix + 1) * width


class Candidates:
    """The boundary cells recorded by a flagging pass, settled once it is over."""

    def __init__(self, capacity: int):
        self.bits = np.empty(capacity, np.uint64)
        self.image = np.empty(capacity, np.int64)
        self.pixels = np.empty(capacity, np.int64)
        self.count = np.zeros(1, np.int64)

    def settle(self, take: int) -> tuple[np.ndarray, np.ndarray, Selection | None]:
        """Flag the ``take`` smallest candidates (stable: dataset order breaks ties).

        Returns the image index and surviving pixels of each flagged candidate, and the
        exact selection that flags the same cells in a later pass.
        """
        n = int(self.count[0])
        bits, image, pixels = self.bits[:n], self.image[:n], self.pixels[:n]
        order = np.argsort(bits, kind="stable")[:take]
        chosen = np.zeros(n, bool)
        chosen[order] = True
        if take == 0:
            return image[:0], pixels[:0], None
        cut = int(bits[order[-1]])
        ties = int(np.sum(bits[order] == np.uint64(cut)))
        return image[chosen], pixels[chosen], Selection(cut, cut + 1, ties)


#: Per cell, what the passes after the per-image pass need (dtype as :class:`Cells`).
CELL_FIELDS = {"label": np.int32, "pred": np.int32, "s": np.float64, "p_pred": np.float64,
               "mismatched": np.int32}
CELL_BYTES = sum(np.dtype(t).itemsize for t in CELL_FIELDS.values())
CHUNK_CELLS = 1 << 18  # cells read back at a time (whole images; 7 MB)
DISK_SHARE = 0.5  # the cache may take at most this share of the free temporary space


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
    """

    def __init__(self, directory: str | Path, n_classes: int, pixels: bool = False):
        self.directory = Path(directory)
        self.pixel_dtype = pixel_dtype(n_classes) if pixels else None
        names = list(CELL_FIELDS) + (["pixel_pred"] if pixels else [])
        self._files = ExitStack()  # every file the cache opens, closed by close()
        self._writers = {name: self._files.enter_context(self._open(name, "wb")) for name in names}
        self._cell_offsets = [0]  # per image, its first cell; then the total
        self._pixel_offsets = [0]
        self._pixel_shapes: list[tuple[int, int]] = []
        self._pixel_reader = None

    def _open(self, name: str, mode: str):
        return open(self.directory / f"{name}.bin", mode)

    @property
    def images(self) -> int:
        return len(self._cell_offsets) - 1

    def add_pixels(self, pixel_pred: np.ndarray) -> None:
        """Append rows of the current image's full-resolution argmax (with ``pixels``)."""
        self._writers["pixel_pred"].write(np.ascontiguousarray(pixel_pred, self.pixel_dtype).data)

    def add_image(self, height: int, width: int, **cells: np.ndarray) -> None:
        """Append one image's cell grids (keyword per :data:`CELL_FIELDS`), after its pixels."""
        for name, dtype in CELL_FIELDS.items():
            self._writers[name].write(np.ascontiguousarray(cells[name], dtype).data)
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
        if self._pixel_reader is None:
            self._pixel_reader = self._files.enter_context(self._open("pixel_pred", "rb"))
        self._pixel_reader.seek(self._pixel_offsets[index] * self.pixel_dtype.itemsize)
        count = self._pixel_offsets[index + 1] - self._pixel_offsets[index]
        return np.fromfile(self._pixel_reader, self.pixel_dtype, count).reshape(self._pixel_shapes[index])

    def close(self) -> None:
        self._files.close()


def cache_bytes(dataset, factor: int, pixels: bool) -> int:
    """Disk space a :class:`CellCache` of ``dataset`` takes."""
    from ..core.pooling import grid_shape

    total = 0
    for _, image_id in dataset.pairs:
        height, width = dataset.store.image_shape(image_id)
        rows, cols = grid_shape(height, width, factor)
        total += rows * cols * CELL_BYTES
        if pixels:
            total += height * width * pixel_dtype(dataset.store.n_classes).itemsize
    return total


@contextmanager
def cell_cache(dataset, factor: int, *, pixels: bool = False,
               parent: str | Path | None = None) -> Iterator[CellCache | None]:
    """A temporary :class:`CellCache` for ``dataset``, removed on exit (errors too).

    It lives in ``parent`` (default: the temporary directory). None when it would take
    more than ``DISK_SHARE`` of the free space there (F = 1 on a huge dataset, say): the
    later passes then re-read the store instead.
    """
    parent = str(parent or tempfile.gettempdir())
    free = shutil.disk_usage(parent).free
    if cache_bytes(dataset, factor, pixels) > DISK_SHARE * free:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="segaudit-cells-", dir=parent) as directory:
        cache = CellCache(directory, dataset.store.n_classes, pixels)
        try:
            yield cache
        finally:
            cache.close()


def confident_learning(dataset, factor: int, threshold_sums: np.ndarray, threshold_counts: np.ndarray,
                       *, prefetch: int = 4, progress=None, cache: CellCache | None = None) -> ClcState:
    """Count, select and flag (the passes after the per-image pass, which gave the sums).

    With ``cache`` (filled by the per-image pass) the passes read it instead of the store.
    Returns the flagged pixels per image and the exact selection for later passes.
    """
    progress = progress or (lambda stage, done, total: None)
    n_images = len(dataset.pairs)
    t = thresholds(threshold_sums, threshold_counts)
    adjusted = t - THRESHOLD_MARGIN
    passes = 1

    def histogram_pass(stage, prefix, prefix_bits, bits, count_issues):
        histogram = np.zeros(1 << bits, np.int64)
        issues = [0]

        def count(label, pred, s, p_pred):
            issues[0] += _count_and_histogram(label, pred, s, p_pred, adjusted, np.uint64(prefix), prefix_bits,
                                              bits, histogram, count_issues)

        def done(index):
            progress(stage, index + 1, n_images)

        if cache is None:
            _cells_from_store(dataset, factor, prefetch, count, done)
        else:
            _cells_from_cache(cache, count_issues, count, done)
        return histogram, issues[0]

    histogram, issues = histogram_pass("clc: counting", 0, 0, FIRST_BITS, True)
    passes += 1
    flagged = np.zeros(n_images, np.int64)
    if issues == 0:
        return ClcState(factor, t, 0, None, flagged, passes)
    prefix, prefix_bits, rank, in_bin = select_from_histogram(histogram, issues - 1, 0, 0, FIRST_BITS)
    while in_bin > MAX_CANDIDATES and prefix_bits < 64:
        bits = min(NEXT_BITS, 64 - prefix_bits)
        histogram, _ = histogram_pass("clc: selecting", prefix, prefix_bits, bits, False)
        passes += 1
        prefix, prefix_bits, rank, in_bin = select_from_histogram(histogram, rank, prefix, prefix_bits, bits)
    selection = Selection(*bin_range(prefix, prefix_bits), rank + 1)
    candidates = Candidates(0 if selection.exact else in_bin)
    flag_pass(dataset, factor, selection, prefetch=prefetch, progress=progress, flagged=flagged,
              candidates=candidates, cache=cache)
    passes += 1
    if not selection.exact:
        images, pixels, selection = candidates.settle(selection.take)
        np.add.at(flagged, images, pixels)
    return ClcState(factor, t, issues, selection, flagged, passes)


def _cells_from_cache(cache: CellCache, count_issues: bool, on_cells, on_image_end) -> None:
    """Hand the cached cells to ``on_cells(label, pred, s, p_pred)``, flat, in dataset order
    (pred and p_pred only with count_issues), then report each image they completed."""
    names = ("label", "pred", "s", "p_pred") if count_issues else ("label", "s")
    for first, offsets, cells in cache.chunks(names):
        label, s = cells["label"], cells["s"]
        pred, p_pred = (cells["pred"], cells["p_pred"]) if count_issues else (label, s)
        on_cells(label, pred, s, p_pred)
        for index in range(first, first + len(offsets) - 1):
            on_image_end(index)


def _cells_from_store(dataset, factor: int, prefetch: int, on_cells, on_image_end) -> None:
    """As :func:`_cells_from_cache`, reading and pooling the store block by block."""
    from ..core.pooling import pool
    from ..core.passes import walk

    def block(index, image_id, b):
        cells = pool(b.probs, b.labels, dataset.config, factor, pixel_dtype=None)
        on_cells(cells.label.ravel(), cells.pred.ravel(), cells.s.ravel(), cells.p_pred.ravel())

    walk(dataset, block, on_image_end=lambda index, _: on_image_end(index), row_alignment=factor,
         prefetch=prefetch)


def flag_pass(dataset, factor: int, selection: Selection, *, prefetch: int = 4, progress=None,
              flagged: np.ndarray | None = None, candidates: Candidates | None = None,
              on_image=None, cache: CellCache | None = None) -> None:
    """One pass flagging cells by ``selection``; per image, count flagged pixels.

    With an exact selection and ``on_image``, each image's full-resolution flag map
    (uint8, 1 = flagged) and the (annotated, predicted) counts of its flagged pixels are
    handed to ``on_image(index, image_id, flag_map, confusion)``.

    With ``cache`` (of ``dataset``, at ``factor``) the cells come from it; for
    ``on_image`` it must hold the pixels, and the labels are read from the masks again.
    Without, the pass reads and pools the store.
    """
    progress = progress or (lambda stage, done, total: None)
    candidates = candidates or Candidates(0)
    ties_taken = np.zeros(1, np.int64)
    low, high = np.uint64(selection.low), np.uint64(selection.high)

    def flag(index, label, s, mismatched, certain_out):
        count = _flag_cells(label, s, mismatched, low, high, selection.take, ties_taken, candidates.bits,
                            candidates.image, candidates.pixels, candidates.count, index, certain_out)
        if flagged is not None:
            flagged[index] += count

    def done(index):
        progress("clc: flagging", index + 1, len(dataset.pairs))

    if cache is None:
        _flag_store(dataset, factor, flag, on_image, done, prefetch)
    else:
        _flag_cache(dataset, factor, cache, flag, on_image, done, prefetch)


def _flag_store(dataset, factor: int, flag, on_image, done, prefetch: int) -> None:
    """:func:`flag_pass` reading and pooling the store."""
    from ..core.pooling import pool
    from ..core.passes import walk

    config = dataset.config
    n_classes = dataset.store.n_classes
    state = {}

    def start(index, image_id, labels):
        if on_image:
            state["map"] = np.zeros(labels.shape, np.uint8)
            state["confusion"] = np.zeros((n_classes, n_classes), np.int64)

    def block(index, image_id, b):
        cells = pool(b.probs, b.labels, config, factor, pixel_dtype=np.int32 if on_image else None)
        certain = np.empty(cells.label.size if on_image else 0, np.bool_)
        flag(index, cells.label.ravel(), cells.s.ravel(), cells.mismatched.ravel(), certain)
        if on_image:
            _map_flags(certain.reshape(cells.label.shape), b.labels, cells.pixel_pred, config.ignore, factor,
                       state["map"][b.start:b.stop], state["confusion"])

    def end(index, image_id):
        if on_image:
            on_image(index, image_id, state["map"], state["confusion"])
        done(index)

    walk(dataset, block, on_image_start=start, on_image_end=end, row_alignment=factor, prefetch=prefetch)


def _flag_cache(dataset, factor: int, cache: CellCache, flag, on_image, done, prefetch: int) -> None:
    """:func:`flag_pass` reading the cache (and, for flag maps, the masks)."""
    from ..core.passes import prefetched

    labels = None
    if on_image:
        labels = prefetched((lambda mask=mask: dataset.read_labels(mask) for mask, _ in dataset.pairs),
                            max(1, prefetch))
    try:
        for first, offsets, cells in cache.chunks(("label", "s", "mismatched")):
            for i in range(len(offsets) - 1):
                index, part = first + i, slice(offsets[i], offsets[i + 1])
                label, s, mismatched = (cells[name][part] for name in ("label", "s", "mismatched"))
                if on_image:
                    certain = np.empty(label.size, np.bool_)
                    flag(index, label, s, mismatched, certain)
                    _hand_out_map(dataset, factor, index, certain, next(labels), cache.pixel_pred(index), on_image)
                else:
                    flag(index, label, s, mismatched, np.empty(0, np.bool_))
                done(index)
    finally:
        if labels is not None:
            labels.close()


def _hand_out_map(dataset, factor: int, index: int, certain: np.ndarray, labels: np.ndarray,
                  pixel_pred: np.ndarray, on_image) -> None:
    """One image's flag map and confusion from its flagged cells, to ``on_image``."""
    from ..core.pooling import grid_shape

    n_classes = dataset.store.n_classes
    flag_map = np.zeros(labels.shape, np.uint8)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    _map_flags(certain.reshape(grid_shape(*labels.shape, factor)), labels, pixel_pred, dataset.config.ignore,
               factor, flag_map, confusion)
    on_image(index, dataset.pairs[index][1], flag_map, confusion)


def clc_from_baseline(dataset, record: dict, *, prefetch: int = 4, progress=None,
                      cache: CellCache | None = None) -> ClcState:
    """Flag with an earlier run's cut (see :meth:`ClcState.record`): one pass, over
    ``cache`` when given (filled by the per-image pass), else over the store."""
    factor = int(record["downsample"])
    flagged = np.zeros(len(dataset.pairs), np.int64)
    if record["cut_bits"] is None:  # the full run flagged nothing
        selection = None
    else:
        # Every cell at or below the cut: ties at the cut cannot be ordered within a subset.
        low = int(record["cut_bits"]) + 1
        selection = Selection(low, low, 0)
        flag_pass(dataset, factor, selection, prefetch=prefetch, progress=progress, flagged=flagged, cache=cache)
    return ClcState(factor, np.asarray(record["thresholds"], float), int(record["issues"]),
                    None if selection is None else Selection(low - 1, low, int(record["cut_ties"])),
                    flagged, passes=2)
