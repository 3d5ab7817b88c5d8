"""Scoring a dataset: pair masks with predictions, stream blocks through the kernel.

The data flow is one-way: masks and prediction blocks are read ahead on worker threads,
the fused kernel folds each block into that image's accumulators, and each finished
image leaves only its scores behind.
"""

from __future__ import annotations

import ctypes
import math
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import masks as masks_io
from .errors import InputError
from .kernel import MAX_CLASSES, BadProbabilities, ImageStats, KernelConfig, accumulate
from .methods import SCORERS, check_methods
from .predictions import PredictionStore, decoding, open_predictions

DEFAULT_IGNORE_INDEX = (255,)


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


def resolve_ignore(ignore_index: Iterable[int] | None, n_classes: int) -> tuple[int, ...]:
    """The ignore indices in force; the default 255 must not hide a real class."""
    if ignore_index is None:
        if n_classes > DEFAULT_IGNORE_INDEX[0]:
            raise InputError(
                f"the predictions have K={n_classes} classes, so the default ignore index 255 "
                "is a real class; pass --ignore-index N for your unlabeled value, or --no-ignore"
            )
        return DEFAULT_IGNORE_INDEX
    values = tuple(sorted({int(v) for v in ignore_index}))
    if any(v < 0 for v in values):
        raise InputError(f"ignore indices must be >= 0, got {values}")
    return values


def make_config(
    store_dtype: np.dtype, n_classes: int, ignore: tuple[int, ...], logits: bool,
    temperature: float, pixel_threshold: float, methods: tuple[str, ...], sum_tol: float,
) -> KernelConfig:
    if not temperature > 0 or not math.isfinite(temperature):
        raise InputError(f"--temperature must be a positive number, got {temperature}")
    if not 0.0 <= pixel_threshold <= 1.0:
        raise InputError(f"--pixel-threshold must be between 0 and 1, got {pixel_threshold}")
    if n_classes > MAX_CLASSES:
        raise InputError(f"K={n_classes} classes: segaudit supports at most {MAX_CLASSES}")
    ignore_lut = np.zeros(n_classes, np.bool_)
    for value in ignore:
        if value < n_classes:
            ignore_lut[value] = True
    lut, _ = decoding(store_dtype)
    return KernelConfig(
        n_classes=n_classes, lut=lut, ignore=ignore_lut, logits=logits,
        temperature=float(temperature), pixel_threshold=float(pixel_threshold),
        want_tccp="tccp" in methods, sum_tol=sum_tol,
    )


def check_labels(labels: np.ndarray, n_classes: int, ignore: tuple[int, ...], where: str) -> None:
    """Every label value must be a class (< K) or an ignore index."""
    if labels.size == 0 or int(labels.max()) < n_classes:
        return
    bad = labels >= n_classes
    if ignore:
        bad &= ~np.isin(labels, ignore)
    if bad.any():
        values, counts = np.unique(labels[bad], return_counts=True)
        listed = ", ".join(f"{v} ({c} px)" for v, c in zip(values[:3].tolist(), counts[:3].tolist()))
        raise InputError(
            f"{where}: label values not below K={n_classes} and not ignored: {listed}"
            + (f" and {len(values) - 3} more" if len(values) > 3 else "")
        )


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (no-op elsewhere).

    Row blocks are freed and reallocated by several reader threads (ours and zarr's); each
    thread's arena would otherwise keep its own few blocks, and peak memory would grow with
    the thread count instead of staying at the prefetch depth.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


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


def _pair(
    mask_files: list[masks_io.MaskFile], store: PredictionStore, allow_missing: bool
) -> tuple[list[tuple[masks_io.MaskFile, str]], list[str], list[str]]:
    by_id = {m.image_id: m for m in mask_files}
    in_store = set(store.image_ids)
    no_prediction = [i for i in by_id if i not in in_store]
    no_mask = sorted(in_store - by_id.keys())
    if (no_prediction or no_mask) and not allow_missing:
        problems = []
        if no_prediction:
            problems.append(f"{len(no_prediction)} mask(s) with no prediction in {store.path}: "
                            + ", ".join(no_prediction[:3]) + (" ..." if len(no_prediction) > 3 else ""))
        if no_mask:
            problems.append(f"{len(no_mask)} prediction(s) with no mask: "
                            + ", ".join(no_mask[:3]) + (" ..." if len(no_mask) > 3 else ""))
        raise InputError("; ".join(problems) + " (--allow-missing skips them)")
    pairs = [(m, m.image_id) for m in mask_files if m.image_id in in_store]
    if not pairs:
        raise InputError(f"no image id is in both the masks and {store.path}")
    return pairs, no_prediction, no_mask


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
    limit_malloc_arenas()
    mask_files = masks_io.find_masks(masks, mask_suffix)
    colour_map = masks_io.load_palette(palette) if palette else None
    store = open_predictions(predictions, classes=classes, logits=logits, channels_last=channels_last)
    ignore = resolve_ignore(ignore_index, store.n_classes)
    config = make_config(store.dtype, store.n_classes, ignore, store.logits, temperature,
                         pixel_threshold, methods, store.sum_tolerance)
    pairs, no_prediction, no_mask = _pair(mask_files, store, allow_missing)

    # Cheap checks first (PNG headers and array metadata), so a size mismatch in the
    # last image fails before minutes of scoring.
    for mask, image_id in pairs:
        mask_hw = masks_io.mask_shape(mask, colour_map)
        pred_hw = store.image_shape(image_id)
        if tuple(mask_hw) != tuple(pred_hw):
            raise InputError(
                f"{mask.path}: mask is {mask_hw[0]}x{mask_hw[1]} (HxW) but its prediction "
                f"{image_id} is {pred_hw[0]}x{pred_hw[1]}"
            )

    def read_labels(mask: masks_io.MaskFile):
        labels = masks_io.read_mask(mask, colour_map)
        check_labels(labels, store.n_classes, ignore, str(mask.path))
        return labels

    def read_block(image_id: str, start: int, stop: int):
        try:
            return store.read_rows(image_id, start, stop)
        except Exception as exc:  # a corrupt or unreadable chunk: zarr and codecs raise many types
            problem = " ".join(str(exc).split()) or "no details"
            raise InputError(
                f"{store.path}/{image_id}: cannot read rows {start}-{stop}: {type(exc).__name__}: {problem}"
            ) from None

    plan = [(mask, image_id, store.row_blocks(image_id)) for mask, image_id in pairs]

    def jobs():
        for mask, image_id, blocks in plan:
            yield lambda mask=mask: read_labels(mask)
            for start, stop in blocks:
                yield lambda image_id=image_id, start=start, stop=stop: read_block(image_id, start, stop)

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

    options = {
        "masks": str(Path(masks).resolve()),
        "predictions": str(Path(predictions).resolve()),
        "layout": store.layout,
        "methods": list(methods),
        "temperature": temperature,
        "pixel_threshold": pixel_threshold,
        "ignore_index": list(ignore),
        "mask_suffix": mask_suffix,
        "palette": str(Path(palette).resolve()) if palette else None,
        "classes": store.classes,
        "n_classes": store.n_classes,
        "logits": store.logits,
        "channels_last": store.channels_last,
        "allow_missing": allow_missing,
    }
    return ScoreRun(
        results=rank_results(results, methods[0]),
        methods=methods,
        classes=store.classes,
        options=options,
        skipped_masks=no_prediction,
        skipped_predictions=no_mask,
    )
