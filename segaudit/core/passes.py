"""Passes over a dataset: masks and prediction blocks read ahead, handed over in order.

Every pass (the per-image scoring pass, and the extra passes of confident learning)
walks the images in the dataset's order and each image's row blocks top to bottom,
while two threads read the next masks and blocks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .dataset import Dataset
from .kernel import BadProbabilities


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
