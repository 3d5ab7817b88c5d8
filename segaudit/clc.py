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

Nothing per cell is kept across images. The n-th lowest s is found by a radix selection
on s's float64 bit pattern (non-negative floats sort like their bits): a 2^20-bin
histogram in the counting pass; if the boundary bin is still large, 22 more bits per
extra pass; then the flagging pass keeps only the boundary bin's cells (at most
``MAX_CANDIDATES``) and settles them at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

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
    """Count issues (when count_issues) and histogram s's bits below the fixed prefix."""
    issues = 0
    s_bits = cell_s.view(np.uint64)
    shift = np.uint64(64 - prefix_bits - bits)
    mask = np.uint64((1 << bits) - 1)
    for i in range(cell_label.shape[0]):
        for j in range(cell_label.shape[1]):
            label = cell_label[i, j]
            if label < 0:
                continue
            pred = cell_pred[i, j]
            if count_issues and pred != label and cell_ppred[i, j] >= adjusted[pred]:
                issues += 1
            b = s_bits[i, j]
            if prefix_bits > 0 and (b >> np.uint64(64 - prefix_bits)) != prefix:
                continue
            histogram[(b >> shift) & mask] += 1
    return issues


@njit(cache=True, nogil=True)
def _flag(cell_label, cell_s, labels, pixel_pred, ignore, factor, low, high, take, ties_taken,
          cand_bits, cand_image, cand_pixels, n_cand, image_index, flag_map, write_map, confusion):
    """Flag one block's cells; return the flagged pixels that survive the re-check.

    Cells with s below ``low`` are flagged. Cells in [low, high) are the boundary: when
    the range is one value (high == low + 1) the first ``take`` of them in dataset
    order are flagged (ties_taken counts across calls); otherwise they are recorded as
    candidates (bits, image, surviving pixels) to settle after the pass.
    """
    n_classes = ignore.shape[0]
    rows, width = labels.shape
    flagged = 0
    s_bits = cell_s.view(np.uint64)
    exact = high - low == np.uint64(1)
    for gi in range(cell_label.shape[0]):
        for gj in range(cell_label.shape[1]):
            if cell_label[gi, gj] < 0:
                continue
            b = s_bits[gi, gj]
            if b >= high:
                continue
            certain = b < low
            if not certain and exact and ties_taken[0] < take:
                certain = True
                ties_taken[0] += 1
            survivors = 0
            for r in range(gi * factor, min((gi + 1) * factor, rows)):
                for c in range(gj * factor, min((gj + 1) * factor, width)):
                    label = labels[r, c]
                    if label < 0 or label >= n_classes or ignore[label] or pixel_pred[r, c] == label:
                        continue
                    survivors += 1
                    if certain:
                        if write_map:
                            flag_map[r, c] = 1
                        confusion[label, pixel_pred[r, c]] += 1
            if certain:
                flagged += survivors
            elif not exact:
                k = n_cand[0]
                cand_bits[k] = b
                cand_image[k] = image_index
                cand_pixels[k] = survivors
                n_cand[0] = k + 1
    return flagged


@dataclass
class Selection:
    """Which cells the flagging pass flags: s bits below ``low``, and ``take`` of [low, high)."""

    low: int
    high: int
    take: int

    @property
    def exact(self) -> bool:
        return self.high - self.low == 1


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


@dataclass
class ClcState:
    """What confident learning found over the dataset."""

    downsample: int
    thresholds: np.ndarray  # t_k per class
    issues: int  # n, the number of cells flagged
    selection: Selection | None  # the exact rule that flags those cells (None when n = 0)
    flagged: np.ndarray  # flagged full-resolution pixels per image, in dataset order
    passes: int  # passes over the store, the per-image pass included

    def record(self) -> dict:
        """For the run record: enough to flag the same pixels again without the counting."""
        return {
            "downsample": self.downsample,
            "thresholds": self.thresholds.tolist(),
            "issues": self.issues,
            "cut_bits": None if self.selection is None else self.selection.low,
            "cut_ties": None if self.selection is None else self.selection.take,
            "passes": self.passes,
        }


def confident_learning(dataset, factor: int, threshold_sums: np.ndarray, threshold_counts: np.ndarray,
                       *, prefetch: int = 4, progress=None) -> ClcState:
    """Count, select and flag (the passes after the per-image pass, which gave the sums).

    Returns the flagged pixels per image and the exact selection for later passes.
    """
    from .downsample import pool
    from .passes import walk

    progress = progress or (lambda stage, done, total: None)
    n_images = len(dataset.pairs)
    config = dataset.config
    t = thresholds(threshold_sums, threshold_counts)
    adjusted = t - THRESHOLD_MARGIN
    passes = 1

    def histogram_pass(stage, prefix, prefix_bits, bits, count_issues):
        histogram = np.zeros(1 << bits, np.int64)
        issues = [0]

        def block(index, image_id, b):
            cells = pool(b.probs, b.labels, config, factor)
            issues[0] += _count_and_histogram(cells.label, cells.pred, cells.s, cells.p_pred, adjusted,
                                              np.uint64(prefix), prefix_bits, bits, histogram, count_issues)

        walk(dataset, block, on_image_end=lambda index, _: progress(stage, index + 1, n_images),
             row_alignment=factor, prefetch=prefetch)
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
              candidates=candidates)
    passes += 1
    if not selection.exact:
        images, pixels, selection = candidates.settle(selection.take)
        np.add.at(flagged, images, pixels)
    return ClcState(factor, t, issues, selection, flagged, passes)


def flag_pass(dataset, factor: int, selection: Selection, *, prefetch: int = 4, progress=None,
              flagged: np.ndarray | None = None, candidates: Candidates | None = None,
              on_image=None) -> None:
    """One pass flagging cells by ``selection``; per image, count flagged pixels.

    With an exact selection and ``on_image``, each image's full-resolution flag map
    (uint8, 1 = flagged) and the (annotated, predicted) counts of its flagged pixels are
    handed to ``on_image(index, image_id, flag_map, confusion)``.
    """
    from .downsample import pool
    from .passes import walk

    progress = progress or (lambda stage, done, total: None)
    config = dataset.config
    n_classes = dataset.store.n_classes
    candidates = candidates or Candidates(0)
    ties_taken = np.zeros(1, np.int64)
    low, high = np.uint64(selection.low), np.uint64(selection.high)
    state = {}

    def start(index, image_id, labels):
        state["map"] = np.zeros(labels.shape, np.uint8) if on_image else np.zeros((0, 0), np.uint8)
        state["confusion"] = np.zeros((n_classes, n_classes), np.int64)

    def block(index, image_id, b):
        cells = pool(b.probs, b.labels, config, factor)
        part = state["map"][b.start:b.stop] if on_image else state["map"]
        count = _flag(cells.label, cells.s, b.labels, cells.pixel_pred, config.ignore, factor, low, high,
                      selection.take, ties_taken, candidates.bits, candidates.image, candidates.pixels,
                      candidates.count, index, part, on_image is not None, state["confusion"])
        if flagged is not None:
            flagged[index] += count

    def end(index, image_id):
        if on_image:
            on_image(index, image_id, state["map"], state["confusion"])
        progress("clc: flagging", index + 1, len(dataset.pairs))

    walk(dataset, block, on_image_start=start, on_image_end=end, row_alignment=factor, prefetch=prefetch)


def clc_from_baseline(dataset, record: dict, *, prefetch: int = 4, progress=None) -> ClcState:
    """Flag with an earlier run's cut (see :meth:`ClcState.record`): one pass."""
    factor = int(record["downsample"])
    flagged = np.zeros(len(dataset.pairs), np.int64)
    if record["cut_bits"] is None:  # the full run flagged nothing
        selection = None
    else:
        # Every cell at or below the cut: ties at the cut cannot be ordered within a subset.
        low = int(record["cut_bits"]) + 1
        selection = Selection(low, low, 0)
        flag_pass(dataset, factor, selection, prefetch=prefetch, progress=progress, flagged=flagged)
    return ClcState(factor, np.asarray(record["thresholds"], float), int(record["issues"]),
                    None if selection is None else Selection(low - 1, low, int(record["cut_ties"])),
                    flagged, passes=2)
