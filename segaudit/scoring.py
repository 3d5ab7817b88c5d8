"""Scoring a dataset: pair masks with predictions, stream blocks through the kernel.

The data flow is one-way: masks and prediction blocks are read ahead on worker threads,
the fused kernel folds each block into that image's accumulators, and each finished
image leaves only its scores behind.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .dataset import open_dataset
from .errors import InputError
from .kernel import BadProbabilities, ImageStats, accumulate
from .methods import SCORERS, check_methods


@dataclass(frozen=True)
class ImageResult:
    """One image's scores (NaN when it has no scored pixel) and its low-pixel summary."""

    image_id: str
    scores: dict[str, float]
    pixels: int
    low_pixels: int
    suspect_class: int | None  # annotated class holding most low pixels
    likely_class: int | None  # the predicted class most common among those pixels


@dataclass
class ScoreRun:
    """The ranked results of a run and what the run was."""

    results: list[ImageResult]  # worst first
    methods: tuple[str, ...]
    classes: list[str] | None
    options: dict
    skipped_masks: list[str] = field(default_factory=list)  # masks with no prediction
    skipped_predictions: list[str] = field(default_factory=list)  # predictions with no mask

    @property
    def empty_images(self) -> list[str]:
        return [r.image_id for r in self.results if r.pixels == 0]

    def class_name(self, index: int | None) -> str:
        if index is None:
            return ""
        return self.classes[index] if self.classes else str(index)


def rank_results(results: Iterable[ImageResult], key: str) -> list[ImageResult]:
    """Worst first by ``key``; images without a score last; ties by image id."""

    def order(result: ImageResult):
        value = result.scores[key]
        return (math.isnan(value), 0.0 if math.isnan(value) else value, result.image_id)

    return sorted(results, key=order)


def finish_image(image_id: str, stats: ImageStats, methods: tuple[str, ...]) -> ImageResult:
    """Turn an image's accumulators into its result row."""
    low = stats.low_pixels
    suspect = likely = None
    if low:
        # Ties go to the lowest class index (np.argmax keeps the first maximum).
        suspect = int(np.argmax(stats.low_confusion.sum(axis=1)))
        likely = int(np.argmax(stats.low_confusion[suspect]))
    return ImageResult(
        image_id=image_id,
        scores={method: SCORERS[method](stats) for method in methods},
        pixels=stats.pixels,
        low_pixels=low,
        suspect_class=suspect,
        likely_class=likely,
    )


def _prefetched(jobs: Iterable[Callable[[], object]], depth: int) -> Iterator[object]:
    """Run jobs on two threads, at most ``depth`` ahead, yielding results in order."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="segaudit-read") as pool:
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


def score(
    masks: str | Path,
    predictions: str | Path,
    *,
    methods: tuple[str, ...] = ("softmin",),
    temperature: float = 0.1,
    pixel_threshold: float = 0.5,
    ignore_index: Iterable[int] | None = None,
    mask_suffix: str = "",
    palette: str | Path | None = None,
    classes: list[str] | None = None,
    logits: bool | None = None,
    channels_last: bool | None = None,
    allow_missing: bool = False,
    prefetch: int = 4,
    on_image: Callable[[int, int], None] | None = None,
) -> ScoreRun:
    """Score every image of a dataset and rank them worst first.

    Parameters
    ----------
    masks : str or Path
        Directory searched recursively for annotation PNGs (see docs/formats.md).
    predictions : str or Path
        Zarr store of predicted class probabilities (per-image or stacked layout).
    methods : tuple of str
        Methods from :data:`segaudit.methods.METHODS`; the first is the ranking key.
    temperature : float
        Softmin temperature τ > 0.
    pixel_threshold : float
        Pixels whose label likelihood s is below it are counted as ``low_pixels``.
    ignore_index : iterable of int, optional
        Label values that take no part in any score. None means the default 255.
    mask_suffix : str
        Only masks whose file name (without .png) ends with it are used; it is stripped
        from the image id.
    palette : str or Path, optional
        JSON palette mapping colours to classes, needed for RGB/RGBA masks.
    classes : list of str, optional
        Class names, overriding the store's ``classes`` attribute.
    logits, channels_last : bool, optional
        Override the store's ``kind`` and ``channels_last`` attributes.
    allow_missing : bool
        Skip masks without predictions and predictions without masks instead of failing.
    prefetch : int
        How many reads (masks or row blocks) may be in flight ahead of the kernel.
    on_image : callable, optional
        Called as ``on_image(done, total)`` after each image, for progress display.

    Returns
    -------
    ScoreRun
        Results ranked worst first, plus what was skipped and the options used.

    Raises
    ------
    InputError
        For any bad input, before any result is returned.
    """
    methods = check_methods(methods)
    dataset = open_dataset(
        masks, predictions, methods=methods, temperature=temperature, pixel_threshold=pixel_threshold,
        ignore_index=ignore_index, mask_suffix=mask_suffix, palette=palette, classes=classes,
        logits=logits, channels_last=channels_last, allow_missing=allow_missing,
    )
    store, config = dataset.store, dataset.config
    plan = [(mask, image_id, store.row_blocks(image_id)) for mask, image_id in dataset.pairs]

    def jobs():
        for mask, image_id, blocks in plan:
            yield lambda mask=mask: dataset.read_labels(mask)
            for start, stop in blocks:
                yield lambda image_id=image_id, start=start, stop=stop: dataset.read_block(image_id, start, stop)

    results: list[ImageResult] = []
    reads = _prefetched(jobs(), max(1, prefetch))
    try:
        for done, (mask, image_id, blocks) in enumerate(plan, 1):
            labels = next(reads)
            stats = ImageStats(store.n_classes)
            for start, stop in blocks:
                try:
                    accumulate(stats, next(reads), labels[start:stop], config, row_offset=start)
                except BadProbabilities as exc:
                    raise InputError(f"{store.path}/{image_id}: {exc}") from None
            results.append(finish_image(image_id, stats, methods))
            if on_image:
                on_image(done, len(plan))
    finally:
        reads.close()

    return ScoreRun(
        results=rank_results(results, methods[0]),
        methods=methods,
        classes=store.classes,
        options={**dataset.options, "methods": list(methods), "temperature": temperature,
                 "pixel_threshold": pixel_threshold},
        skipped_masks=dataset.skipped_masks,
        skipped_predictions=dataset.skipped_predictions,
    )
