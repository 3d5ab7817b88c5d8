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

import math

import numpy as np
from numba import njit

from ..core.cells import CellCache, dataset_cells, image_cells
from ..results import ClcRecord, ClcState, Selection
from ..core.partitions import Partitions
from .base import DatasetOutcome, Method

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
def _map_flags(certain, labels, pixel_pred, ignore, factor, slice_rows, flag_map, confusion):
    """Mark the flagged pixels of flagged cells: scored pixels whose argmax is not their
    label. Count their (annotated, predicted) pairs in ``confusion``.

    ``slice_rows``: the rows are slices of that many rows each (a volume's, pooled in
    F x F x F cells, see :func:`segaudit.core.pooling.grid_shape`); all rows for a 2-D image."""
    n_classes = ignore.shape[0]
    rows, width = labels.shape
    n_slices = rows // slice_rows
    per_slab = -(-slice_rows // factor)
    for gi in range(certain.shape[0]):
        gz, gy = gi // per_slab, gi % per_slab
        for gj in range(certain.shape[1]):
            if not certain[gi, gj]:
                continue
            for z in range(gz * factor, min((gz + 1) * factor, n_slices)):
                top = z * slice_rows
                for r in range(top + gy * factor, top + min((gy + 1) * factor, slice_rows)):
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


def confident_learning(parts: Partitions, factor: int, threshold_sums: np.ndarray, threshold_counts: np.ndarray,
                       *, max_candidates: int | None = None) -> ClcState:
    """Count, select and flag (the passes after the per-image pass, which gave the sums).

    Each pass is one job per partition (:func:`histogram_part`, :func:`flag_part`) whose
    integer histograms, counts and candidates are merged here in dataset order, so one
    partition in this process (over the cell cache, if any) and many on Dask workers
    give the same state (the driver runs here; only the per-partition jobs travel).
    ``max_candidates``: the boundary cells the flagging pass may keep (default
    :data:`MAX_CANDIDATES`). Returns the flagged pixels per image and the exact selection
    for later passes.
    """
    max_candidates = MAX_CANDIDATES if max_candidates is None else max_candidates
    n_images = parts.n_images
    t = thresholds(threshold_sums, threshold_counts)
    adjusted = t - THRESHOLD_MARGIN
    passes = 1

    def histograms(stage, prefix, prefix_bits, bits, count_issues):
        return parts.map_sum(stage, histogram_part,
                             [(factor, adjusted, prefix, prefix_bits, bits, count_issues)] * parts.count)

    histogram, issues = histograms("clc: counting", 0, 0, FIRST_BITS, True)
    passes += 1
    if issues == 0:
        return ClcState(factor, t, 0, None, np.zeros(n_images, np.int64), passes)
    prefix, prefix_bits, rank, in_bin = select_from_histogram(histogram, issues - 1, 0, 0, FIRST_BITS)
    while in_bin > max_candidates and prefix_bits < 64:
        bits = min(NEXT_BITS, 64 - prefix_bits)
        histogram, _ = histograms("clc: selecting", prefix, prefix_bits, bits, False)
        passes += 1
        prefix, prefix_bits, rank, in_bin = select_from_histogram(histogram, rank, prefix, prefix_bits, bits)
    selection = Selection(*bin_range(prefix, prefix_bits), rank + 1)
    flagged, candidates = flag_parts(parts, factor, selection, 0 if selection.exact else in_bin, in_bin)
    passes += 1
    if not selection.exact:
        images, pixels, selection = candidates.settle(selection.take)
        np.add.at(flagged, images, pixels)
    return ClcState(factor, t, issues, selection, flagged, passes)


def flag_parts(parts: Partitions, factor: int, selection: Selection, capacity: int, in_bin: int):
    """The flagging pass over ``parts``: flagged pixels per image and the boundary
    :class:`Candidates` (at most ``capacity``), both in dataset order.

    An exact selection flags the first ``take`` of its ``in_bin`` tied cells in dataset
    order; over several partitions, each is told how many of its own ties to take, which
    needs their counts first (one more pass, only when some but not all ties are taken:
    it is not counted in the recorded passes, which are the single-machine run's).
    """
    takes = [selection.take] * parts.count
    if selection.exact and parts.count > 1 and selection.take < in_bin:
        found = parts.map("clc: counting ties", histogram_part,
                          [(factor, np.zeros(0), selection.low, 64, 0, False)] * parts.count)
        left, takes = selection.take, []
        for histogram, _ in found:
            takes.append(min(left, int(histogram[0])))
            left -= takes[-1]
    found = parts.map("clc: flagging", flag_part,
                      [(factor, Selection(selection.low, selection.high, take), capacity) for take in takes])
    flagged = np.concatenate([f for f, _ in found]) if found else np.zeros(0, np.int64)
    candidates = Candidates(0)
    if capacity:
        candidates.bits, candidates.image, candidates.pixels = (
            np.concatenate([c[n] for _, c in found]) for n in range(3))
        candidates.count[0] = candidates.bits.size
    return flagged, candidates


def histogram_part(dataset, first: int, cache: CellCache | None, prefetch: int, done, factor: int,
                   adjusted: np.ndarray, prefix: int, prefix_bits: int, bits: int, count_issues: bool):
    """One partition's histogram of s's bits below ``prefix`` (2^bits bins) and, with
    ``count_issues``, its count of issues (cells whose argmax j is not the label and
    p_j >= ``adjusted[j]``). A :meth:`Partitions.map` job: cells from ``cache``, or from
    the store when None."""
    histogram = np.zeros(1 << bits, np.int64)
    issues = [0]

    def count(cells):
        label, s = cells["label"], cells["s"]
        pred, p_pred = (cells["pred"], cells["p_pred"]) if count_issues else (label, s)  # not read
        issues[0] += _count_and_histogram(label, pred, s, p_pred, adjusted, np.uint64(prefix), prefix_bits,
                                          bits, histogram, count_issues)

    names = ("label", "pred", "s", "p_pred") if count_issues else ("label", "s")
    dataset_cells(dataset, factor, cache, names, count, lambda index: done(first + index), prefetch)
    return histogram, issues[0]


def flag_part(dataset, first: int, cache: CellCache | None, prefetch: int, done, factor: int,
              selection: Selection, capacity: int):
    """One partition's flagging pass (:func:`flag_pass`): its flagged pixels per image and
    its boundary candidates (bits, image index in the whole dataset, pixels). A
    :meth:`Partitions.map` job."""
    flagged = np.zeros(len(dataset.pairs), np.int64)
    candidates = Candidates(capacity)
    flag_pass(dataset, factor, selection, prefetch=prefetch, flagged=flagged, candidates=candidates, cache=cache,
              progress=lambda stage, index, total: done(first + index - 1))
    n = int(candidates.count[0])
    return flagged, (candidates.bits[:n].copy(), candidates.image[:n] + first, candidates.pixels[:n].copy())


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

    n_classes = dataset.store.n_classes
    state = {}

    def start(index, image_id, labels):
        if on_image:
            state["map"] = np.zeros(labels.shape, np.uint8)
            state["confusion"] = np.zeros((n_classes, n_classes), np.int64)

    def cells_of(index, cells, rows):
        certain = np.empty(cells["label"].size if on_image else 0, np.bool_)
        flag(index, cells["label"], cells["s"], cells["mismatched"], certain)
        if on_image:
            _map_flags(certain.reshape(rows.grid), rows.labels, rows.pixel_pred, dataset.decoding.ignore, factor,
                       rows.slice_rows or max(1, rows.labels.shape[0]),
                       state["map"][rows.start:rows.start + rows.labels.shape[0]], state["confusion"])

    def end(index, image_id):
        if on_image:
            on_image(index, image_id, state.pop("map"), state.pop("confusion"))
        progress("clc: flagging", index + 1, len(dataset.pairs))

    image_cells(dataset, factor, cache, ("label", "s", "mismatched"), cells_of, on_image_start=start,
                on_image_end=end, pixels=on_image is not None, prefetch=prefetch)


def clc_from_baseline(parts: Partitions, record: ClcRecord) -> ClcState:
    """Flag with an earlier run's cut (see :meth:`ClcState.record`): one pass over ``parts``."""
    selection = record.at_or_below_cut  # None: the full run flagged nothing
    if selection is None:
        flagged = np.zeros(parts.n_images, np.int64)
    else:
        flagged, _ = flag_parts(parts, record.downsample, selection, 0, 0)
    return ClcState(record.downsample, np.asarray(record.thresholds, float), record.issues, record.selection,
                    flagged, passes=2)


class ConfidentLearningPass:
    """clc across a run: class thresholds from the first pass, then counting and flagging.

    The per-class sums of s are summed per image (:meth:`image_piece`, wherever the image
    was scored), then image by image in dataset order (:meth:`add_piece`): the same
    floating-point additions in the same order for any threads, partitions or workers.
    """

    def __init__(self, n_classes: int):
        self.sums = np.zeros(n_classes)
        self.counts = np.zeros(n_classes, np.int64)

    def image_piece(self, cells: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One image's sums of s and counts of cells, per annotated class (from zero)."""
        sums, counts = np.zeros_like(self.sums), np.zeros_like(self.counts)
        _threshold_sums(cells["label"], cells["s"], sums, counts)
        return sums, counts

    def add_piece(self, piece: tuple[np.ndarray, np.ndarray]) -> None:
        """Add one image's :meth:`image_piece`, in dataset order."""
        sums, counts = piece
        self.sums += sums
        self.counts += counts

    def finish(self, parts: Partitions, factor: int, baseline, pixels: list[int]) -> DatasetOutcome:
        """Count and flag (or flag with the ``baseline`` run's cut): clc = 1 - flagged / scored
        pixels per image; the state goes on the run (``ScoreRun.clc``)."""
        if baseline is not None:
            state = clc_from_baseline(parts, baseline)
        else:
            state = confident_learning(parts, factor, self.sums, self.counts)
        scores = [1.0 - int(flagged) / n if n else math.nan for flagged, n in zip(state.flagged, pixels)]
        cut = -math.inf
        if state.selection is not None:  # the s of the last flagged cells, from its bits
            cut = float(np.array([state.selection.low], np.uint64).view(np.float64)[0])
        return DatasetOutcome(scores, state.flagged, cut, keep={"clc": state})


METHOD = Method(
    name="clc",
    order=70,
    dataset_pass=ConfidentLearningPass,
)
