"""Scoring a dataset: pair masks with predictions, stream blocks through the kernel.

The data flow is one-way: masks and prediction blocks are read ahead on worker threads,
the fused kernel folds each block into that image's accumulators, and each finished
image leaves only its scores behind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .methods.clc import (
    CELL_FIELDS,
    CellCache,
    _threshold_sums,
    cell_cache,
    clc_from_baseline,
    confident_learning,
)
from .methods.coco import coco_score
from .results import ClcState, ImageResult, ScoreRun
from .core.dataset import Dataset, open_dataset
from .core.pooling import grid_shape, pool
from .errors import InputError
from .core.kernel import LABEL, ImageStats, accumulate
from .methods import DEFAULT_METHOD, SCORERS, check_methods
from .core.passes import walk


def rank_results(results: Iterable[ImageResult], key: str) -> list[ImageResult]:
    """Worst first by ``key``; images without a score last; ties by image id."""

    def order(result: ImageResult):
        value = result.scores[key]
        return (math.isnan(value), 0.0 if math.isnan(value) else value, result.image_id)

    return sorted(results, key=order)


def finish_image(image_id: str, stats: ImageStats, methods: tuple[str, ...]) -> ImageResult:
    """Turn an image's accumulators into its result row (per-image methods only)."""
    low = stats.low_pixels
    suspect = likely = None
    if low:
        # Ties go to the lowest class index (np.argmax keeps the first maximum).
        suspect = int(np.argmax(stats.low_confusion.sum(axis=1)))
        likely = int(np.argmax(stats.low_confusion[suspect]))
    return ImageResult(
        image_id=image_id,
        scores={method: SCORERS[method](stats) for method in methods if method in SCORERS},
        pixels=stats.pixels,
        low_pixels=low,
        suspect_class=suspect,
        likely_class=likely,
    )


@dataclass
class _PerImagePass:
    images: list[ImageResult]
    threshold_sums: np.ndarray  # clc: per class, sum of s over cells annotated k
    threshold_counts: np.ndarray  # clc: per class, cells annotated k
    class_pixels: np.ndarray  # per class, scored pixels annotated k (full resolution)


def _per_image_pass(dataset: Dataset, methods, factor: int, prefetch: int, progress,
                    cache: CellCache | None = None, pixel_scores=None) -> _PerImagePass:
    """The first pass: every per-image method, coco, and clc's class thresholds.

    With ``cache``, each image's cells (and, if the cache keeps them, its pixels' argmax)
    are spilled to it for clc's later passes. With ``pixel_scores``, image n's s per pixel
    (NaN where ignored) is written to ``pixel_scores[n]``, an (H, W) float64 array.
    """
    n_classes, config = dataset.store.n_classes, dataset.config
    need_cells = "clc" in methods or "coco" in methods
    grids = ("label", "pred", "s") + (("p_pred", "mismatched") if cache is not None else ())
    pixel_dtype = None if cache is None else cache.pixel_dtype
    sums, counts = np.zeros(n_classes), np.zeros(n_classes, np.int64)
    class_pixels = np.zeros(n_classes, np.int64)
    images: list[ImageResult] = []
    state = {}

    def start(index, image_id, labels):
        state["stats"] = ImageStats(n_classes, image_pixels=labels.size)
        state["shape"] = labels.shape
        if need_cells:
            shape = grid_shape(*labels.shape, factor)
            state["grid"] = {name: np.empty(shape, CELL_FIELDS[name]) for name in grids}

    def block(index, image_id, b):
        s_out = None if pixel_scores is None else pixel_scores[index][b.start:b.stop]
        accumulate(state["stats"], b.probs, b.labels, config, row_offset=b.start, s_out=s_out)
        if need_cells:
            cells = pool(b.probs, b.labels, config, factor, pixel_dtype=pixel_dtype)
            rows = slice(b.start // factor, b.start // factor + cells.label.shape[0])
            for name, grid in state["grid"].items():
                grid[rows] = getattr(cells, name)
            if pixel_dtype is not None:
                cache.add_pixels(cells.pixel_pred)

    def end(index, image_id):
        result = finish_image(image_id, state["stats"], methods)
        class_pixels[:] += state["stats"].class_counts[LABEL]
        if need_cells:
            grid = state["grid"]
            if "coco" in methods:
                result.scores["coco"] = coco_score(grid["label"], grid["pred"], grid["s"])
            if "clc" in methods:
                _threshold_sums(grid["label"], grid["s"], sums, counts)
            if cache is not None:
                cache.add_image(*state["shape"], **grid)
        images.append(result)
        progress("scoring", index + 1, len(dataset.pairs))

    walk(dataset, block, on_image_start=start, on_image_end=end,
         row_alignment=factor if need_cells else 1, prefetch=prefetch)
    return _PerImagePass(images, sums, counts, class_pixels)


def score(
    masks: str | Path,
    predictions: str | Path,
    *,
    methods: tuple[str, ...] = (DEFAULT_METHOD,),
    temperature: float = 0.1,
    pixel_threshold: float = 0.5,
    ignore_index: Iterable[int] | None = None,
    mask_suffix: str = "",
    palette: str | Path | None = None,
    classes: list[str] | None = None,
    logits: bool | None = None,
    channels_last: bool | None = None,
    allow_missing: bool = False,
    downsample: int = 4,
    only: list[str] | None = None,
    baseline: dict | None = None,
    prefetch: int = 4,
    on_progress: Callable[[str, int, int], None] | None = None,
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
    downsample : int
        Cell size F of the F×F grid that the dataset-wide methods clc and coco use
        (1 = full resolution).
    only : list of str, optional
        Score only these images: ids or mask paths (see :func:`segaudit.io.subset.resolve_only`).
    baseline : dict, optional
        The ``clc`` section of a full run's record, reused for clc (see :func:`score_dataset`).
    on_progress : callable, optional
        Called as ``on_progress(stage, done, total)`` after each image of each pass over
        the dataset (one pass, plus two or more for clc), for progress display.

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
        logits=logits, channels_last=channels_last, allow_missing=allow_missing, only=only,
    )
    return score_dataset(dataset, methods, downsample=downsample, prefetch=prefetch, on_progress=on_progress,
                         baseline=baseline)


def _passes(dataset: Dataset, methods, factor: int, prefetch: int, progress, baseline: dict | None,
            cache: CellCache | None, pixel_scores) -> tuple[_PerImagePass, ClcState | None]:
    """The per-image pass, then clc's passes (over ``cache`` when there is one)."""
    clc = "clc" in methods
    results = _per_image_pass(dataset, methods, factor, prefetch, progress, cache if clc else None, pixel_scores)
    if clc and baseline is not None:
        return results, clc_from_baseline(dataset, baseline, prefetch=prefetch, progress=progress, cache=cache)
    if clc:
        return results, confident_learning(dataset, factor, results.threshold_sums, results.threshold_counts,
                                           prefetch=prefetch, progress=progress, cache=cache)
    return results, None


def score_dataset(dataset: Dataset, methods: tuple[str, ...], *, downsample: int = 4, prefetch: int = 4,
                  on_progress: Callable[[str, int, int], None] | None = None,
                  baseline: dict | None = None, cache: CellCache | None = None,
                  pixel_scores=None) -> ScoreRun:
    """Score an opened dataset (see :func:`score`; the kernel settings come with it).

    ``baseline``: the ``clc`` section of an earlier full run's record. clc then flags
    with that run's dataset-wide cut (cells with s at or below it; pixels whose argmax is
    their label unflagged) and its downsampling, instead of counting over this dataset:
    a subset is scored consistently with the full run, in two passes.

    ``cache``: an empty :class:`~segaudit.methods.clc.CellCache` of ``dataset`` at this
    downsampling, which clc's passes fill and read, left open for the caller's own passes
    (flag maps, say). By default clc uses a temporary one, removed before returning, so
    the store is read only once (unless the cells would not fit on disk).

    ``pixel_scores``: indexed by image position in ``dataset.pairs``, (H, W) float64
    arrays that receive each pixel's s (NaN where ignored) during the first pass.
    """
    if baseline is not None:
        downsample = int(baseline["downsample"])
    methods = check_methods(methods)
    if not isinstance(downsample, int) or isinstance(downsample, bool) or downsample < 1:
        raise InputError(f"--downsample must be a whole number >= 1, got {downsample}")
    progress = on_progress or (lambda stage, done, total: None)
    with ExitStack() as temporary:
        if cache is None and "clc" in methods:
            cache = temporary.enter_context(cell_cache(dataset, downsample))
        results, clc_state = _passes(dataset, methods, downsample, prefetch, progress, baseline, cache,
                                     pixel_scores)
    if clc_state is not None:
        for result, flagged in zip(results.images, clc_state.flagged):
            result.flagged_pixels = int(flagged)
            result.scores["clc"] = 1.0 - int(flagged) / result.pixels if result.pixels else math.nan
    config = dataset.config
    return ScoreRun(
        results=rank_results(results.images, methods[0]),
        methods=methods,
        classes=dataset.store.classes,
        options={**dataset.options, "methods": list(methods), "temperature": config.temperature,
                 "pixel_threshold": config.pixel_threshold, "downsample": downsample},
        skipped_masks=dataset.skipped_masks,
        skipped_predictions=dataset.skipped_predictions,
        clc=clc_state,
        class_pixels=results.class_pixels,
    )
