"""Passes over a dataset: masks and prediction blocks read ahead, handed over in order.

Every pass walks the images in the dataset's order and each image's row blocks top to
bottom. :func:`walk` calls back on one thread while two threads read the next masks and
blocks (the extra passes of confident learning). :func:`map_images` scores several
images at once, one per worker thread (the per-image scoring pass): each worker folds
one image's blocks into that image's own accumulators, in row order, while the readers
fetch its next block, and the results come back in dataset order, so they are the same
whatever the number of threads.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import option_error
from .dataset import Dataset
from .kernel import BadProbabilities


#: glibc's malloc: blocks below this come from the heap, never from a fresh mmap ...
MMAP_THRESHOLD = 32 * 2**20
#: ... and freed heap memory is given back to the system only above this much.
TRIM_THRESHOLD = 128 * 2**20
_malloc_tuned = False


def keep_freed_blocks() -> None:
    """Let glibc's malloc reuse freed row blocks instead of unmapping them (no-op elsewhere).

    Every row block (16-32 MB) is a fresh allocation, freed once scored. By default glibc
    maps such blocks anew and unmaps them on free (or trims the heap), so every block
    costs the kernel thousands of page faults and zeroing: with blocks read and scored on
    several threads that was a third of the CPU time of a softmin run. With these
    thresholds the blocks are reused; memory stays at the few blocks in flight.
    """
    global _malloc_tuned
    if _malloc_tuned or not sys.platform.startswith("linux"):
        return
    _malloc_tuned = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, TRIM_THRESHOLD)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def default_threads() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(threads: int | None) -> int:
    """``threads``: a whole number >= 1, or None for :func:`default_threads`."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise option_error("threads", f"must be a whole number >= 1, got {threads}")
    return int(threads)


def prefetched(jobs: Iterable[Callable[[], object]], depth: int, workers: int = 2) -> Iterator[object]:
    """Run jobs on ``workers`` threads, at most ``depth`` ahead, yielding results in order."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segaudit-read") as pool:
        pending: deque = deque()
        jobs = iter(jobs)
        try:
            for job in jobs:
                pending.append(pool.submit(job))
                if len(pending) >= depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


@dataclass
class Block:
    """Rows [start, stop) of one image: stored values [class, row, column] and labels."""

    start: int
    stop: int
    probs: np.ndarray
    labels: np.ndarray


def walk(
    dataset: Dataset,
    on_block: Callable[[int, str, Block], None],
    *,
    on_image_start: Callable[[int, str, np.ndarray], None] | None = None,
    on_image_end: Callable[[int, str], None] | None = None,
    row_alignment: int = 1,
    prefetch: int = 4,
) -> None:
    """One pass over the dataset, calling back per image and per block, in order.

    ``row_alignment``: block starts are multiples of it (the downsampling factor), so
    no cell straddles two blocks. A BadProbabilities from a callback becomes an
    InputError naming the image.
    """
    keep_freed_blocks()
    store = dataset.store
    plan = [(index, mask, image_id, store.row_blocks(image_id, align=row_alignment))
            for index, (mask, image_id) in enumerate(dataset.pairs)]

    def jobs():
        for _, mask, image_id, blocks in plan:
            yield lambda mask=mask: dataset.read_labels(mask)
            for start, stop in blocks:
                yield lambda image_id=image_id, start=start, stop=stop: dataset.read_block(image_id, start, stop)

    reads = prefetched(jobs(), max(1, prefetch))
    try:
        for index, _, image_id, blocks in plan:
            labels = next(reads)
            if on_image_start:
                on_image_start(index, image_id, labels)
            for start, stop in blocks:
                try:
                    on_block(index, image_id, Block(start, stop, next(reads), labels[start:stop]))
                except BadProbabilities as exc:
                    raise dataset.probabilities_error(image_id, exc) from None
            if on_image_end:
                on_image_end(index, image_id)
    finally:
        reads.close()


class _Cancelled(Exception):
    """Another image failed; this worker stops early (its result is never read)."""


def map_images(
    dataset: Dataset,
    score_image: Callable[[int, str, np.ndarray, Iterator[Block]], object],
    *,
    threads: int = 1,
    row_alignment: int = 1,
    prefetch: int = 4,
) -> Iterator[tuple[int, str, object]]:
    """Score images on ``threads`` worker threads; yield (index, image id, result) in dataset order.

    ``score_image(index, image_id, labels, blocks)`` runs on a worker, for one image at a
    time: ``blocks`` yields the image's row blocks top to bottom, each read ahead by two
    reader threads while the worker computes. Whatever it returns is handed back, in
    dataset order, so that a caller merging the results in that order gets the same
    result for any number of threads.

    Memory stays bounded: at most ``2 * threads`` images are started ahead of the one the
    caller waits for, and each running image has at most ``max(1, prefetch // threads - 1)``
    row blocks read ahead of the one its worker holds. ``row_alignment`` is as for :func:`walk`. The
    first error in dataset order is raised (a BadProbabilities as an InputError naming
    the image); the other workers stop at their next block.
    """
    keep_freed_blocks()
    store = dataset.store
    threads = max(1, int(threads))
    ahead = max(1, prefetch // threads - 1)
    cancelled = threading.Event()

    def blocks(readers, image_id, spans, labels) -> Iterator[Block]:
        pending: deque[tuple[int, int, Future]] = deque()
        spans = iter(spans)

        def refill():
            for start, stop in spans:
                pending.append((start, stop, readers.submit(dataset.read_block, image_id, start, stop)))
                if len(pending) >= ahead:
                    break

        try:
            refill()
            while pending:
                if cancelled.is_set():
                    raise _Cancelled
                start, stop, future = pending.popleft()
                refill()  # `ahead` reads in flight while this block is scored
                yield Block(start, stop, future.result(), labels[start:stop])
        finally:
            for _, _, future in pending:
                future.cancel()

    def job(readers, index, mask, image_id):
        if cancelled.is_set():
            raise _Cancelled
        spans = store.row_blocks(image_id, align=row_alignment)
        labels = dataset.read_labels(mask)
        try:
            return score_image(index, image_id, labels, blocks(readers, image_id, spans, labels))
        except BadProbabilities as exc:
            raise dataset.probabilities_error(image_id, exc) from None

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="segaudit-read") as readers, \
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="segaudit-score") as workers:
        pending: deque[tuple[int, str, Future]] = deque()
        images = iter(enumerate(dataset.pairs))
        try:
            while True:
                for index, (mask, image_id) in images:
                    pending.append((index, image_id, workers.submit(job, readers, index, mask, image_id)))
                    if len(pending) > 2 * threads:
                        break
                if not pending:
                    break
                index, image_id, future = pending.popleft()
                yield index, image_id, future.result()
        finally:
            cancelled.set()
            for _, _, future in pending:
                future.cancel()
