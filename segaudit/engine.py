"""The engine: stream a dataset through the fused kernel for the methods asked for.

:func:`scoring` is its one entry: a spec's dataset opened for scoring here or on a Dask
cluster (the only place that chooses), whose runs and later passes are the same calls
either way.

The data flow is one-way: masks and prediction blocks are read ahead on worker threads,
the fused kernel folds each block into that image's accumulators, and each finished
image leaves only its scores behind. The methods declare what they need
(:class:`~segaudit.methods.base.Method`); the engine turns that into the kernel's
configuration, the temperatures each image sums at, the cells to pool and the
dataset-wide passes to run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np

from .core.cells import CELL_FIELDS, CellCache, cell_cache, check_downsample
from .core.dataset import Dataset, open_dataset
from .core.kernel import LABEL, Decoding, ImageStats, KernelConfig, accumulate, check_pixel_threshold, check_temperature
from .core.passes import check_threads, map_images
from .core.pooling import CellGrid, accumulate_and_pool, cell_row, grid_shape
from .core.sanity import ClassSpaceCheck
from .core.slices import SliceTally
from .calibration import (AUTO, CalibrationPlan, ImageCalibration, calibrate, check_calibration_options, image_values,
                          planted_copies, temperatures)
from .calibration.copies import CopyScorer
from .errors import InputError
from .methods import Method, Settings, resolve
from .core.partitions import LocalPartitions, Partitions
from .results import ClcRecord, ImageResult, InputSpec, ScoreRun


def kernel_config(decoding: Decoding, methods: Iterable[Method], pixel_threshold: float = 0.5) -> KernelConfig:
    """What the fused kernel accumulates for ``methods``."""
    return KernelConfig(decoding, pixel_threshold=float(pixel_threshold),
                        want_tccp=any(m.tccp_histograms for m in methods))


def image_stats(n_classes: int, pixels: int, methods: Iterable[Method], settings: Settings,
                calibrating: bool = False) -> ImageStats:
    """Empty accumulators for an image of ``pixels`` pixels, with every softmin temperature
    ``methods`` ask for (and the calibration's candidates, when ``calibrating``)."""
    wanted = [m.temperature(settings, pixels) for m in methods if m.temperature is not None]
    if calibrating:
        wanted += temperatures(settings, pixels)
    return ImageStats(n_classes, image_pixels=pixels, temperatures=wanted)


def rank_results(results: Iterable[ImageResult], key: str) -> list[ImageResult]:
    """Worst first by ``key``; images without a score last; ties by image id."""

    def order(result: ImageResult):
        value = result.scores[key]
        return (math.isnan(value), 0.0 if math.isnan(value) else value, result.image_id)

    return sorted(results, key=order)


def finish_image(image_id: str, stats: ImageStats, methods: Iterable[str | Method],
                 settings: Settings | None = None) -> ImageResult:
    """Turn an image's accumulators into its result row (per-image methods only).

    ``stats`` must hold the softmin temperatures of ``methods`` (see :func:`image_stats`).
    """
    settings = settings or Settings()
    methods = tuple(methods)
    if not all(isinstance(m, Method) for m in methods):
        methods = resolve(m if isinstance(m, str) else m.name for m in methods)
    low = stats.low_pixels
    suspect = likely = None
    if low:
        # Ties go to the lowest class index (np.argmax keeps the first maximum).
        suspect = int(np.argmax(stats.low_confusion.sum(axis=1)))
        # The likely class is another class (the annotated one is no correction): the most
        # common prediction among the suspect class's low pixels predicted otherwise, if any.
        others = stats.low_confusion[suspect].copy()
        others[suspect] = 0
        likely = int(np.argmax(others)) if others.max() > 0 else None
    return ImageResult(
        image_id=image_id,
        scores={m.name: m.finish(stats, settings) for m in methods if m.per_image},
        pixels=stats.pixels,
        low_pixels=low,
        suspect_class=suspect,
        likely_class=likely,
    )


@dataclass
class ImagePiece:
    """What the first pass keeps of one image for what is dataset-wide: small and picklable,
    so that an image scored on a Dask worker is merged exactly as one scored here."""

    result: ImageResult
    class_pixels: np.ndarray  # per class, scored pixels annotated k (full resolution)
    class_space: tuple  # ClassSpaceCheck.piece of its accumulators
    passes: dict[str, object]  # name -> the image_piece of each dataset-wide method
    calibration: ImageCalibration | None = None  # with --method auto: its candidates and planted copies


class FirstPass:
    """The per-image pass's results, merged image by image in dataset order (:meth:`add`)."""

    def __init__(self, n_classes: int, methods: tuple[Method, ...]):
        self.images: list[ImageResult] = []
        # name -> the DatasetPass of each dataset-wide method
        self.dataset_passes = {m.name: m.dataset_pass(n_classes) for m in methods if m.dataset_pass is not None}
        self.class_pixels = np.zeros(n_classes, np.int64)
        self.class_space = ClassSpaceCheck(n_classes)  # do the labels and the predictions share a class space?
        self.calibration: list[ImageCalibration] = []  # with --method auto, per image in dataset order

    def add(self, piece: ImagePiece) -> None:
        """The next image, in dataset order."""
        self.class_pixels[:] += piece.class_pixels
        self.class_space.add_piece(piece.class_space)
        for name, image_piece in piece.passes.items():
            self.dataset_passes[name].add_piece(image_piece)
        if piece.calibration is not None:
            self.calibration.append(piece.calibration)
        self.images.append(piece.result)


def score_images(dataset: Dataset, methods: tuple[Method, ...], settings: Settings, factor: int, prefetch: int,
                 cache: CellCache | None = None, pixel_scores=None, threads: int = 1,
                 plan: CalibrationPlan | None = None):
    """Score every image of ``dataset`` on ``threads`` worker threads: yield (index, piece,
    extra) in dataset order, ``extra`` being (grid, pixels, shape) for the cell cache when
    ``cache`` is given (else None).

    With ``pixel_scores``, image n's s per pixel (NaN where ignored) is written to
    ``pixel_scores[n]``, an (H, W) float64 array. Each image's blocks go in row order into
    its own accumulators, and each dataset-wide method's piece is taken from its own
    cells, so every piece is the same for any number of threads, and wherever it is
    computed.

    With a calibration ``plan`` (``--method auto``), each image's piece also carries its
    candidate values, and the images the plan samples score their planted copies from
    the same blocks (the store is read once).
    """
    n_classes = dataset.store.n_classes
    config = kernel_config(dataset.decoding, methods, settings.pixel_threshold)
    need_cells = any(m.needs_cells for m in methods)
    cell_methods = [m for m in methods if m.cell_score is not None]
    dataset_passes = {m.name: m.dataset_pass(n_classes) for m in methods if m.dataset_pass is not None}
    grids = ("label", "pred", "s") + (("p_pred", "mismatched") if cache is not None or plan is not None else ())
    pixel_dtype = None if cache is None else cache.pixel_dtype

    def score_image(index, image_id, labels, blocks):
        # On a worker thread: this image only.
        stats = image_stats(n_classes, labels.size, methods, settings, plan is not None)
        copies = [] if plan is None else planted_copies(plan, image_id, labels, dataset.decoding.ignore, n_classes)
        # A volume (its tall image): slices known where they matter, the cells and the worst slice.
        slice_rows = dataset.slice_rows(image_id)
        slices = None if slice_rows is None else SliceTally(labels.shape[0] // slice_rows, slice_rows,
                                                            settings.pixel_threshold)
        grid = pixels = None
        if need_cells:
            shape = grid_shape(*labels.shape, factor, slice_rows)
            grid = CellGrid({name: np.empty(shape, CELL_FIELDS[name]) for name in grids},
                            slice_rows=None if slice_rows is None else -(-slice_rows // factor))
            pixels = [] if pixel_dtype is not None else None
        copy_scorer = None
        if copies:
            copy_scorer = CopyScorer(copies, labels, lambda: image_stats(n_classes, labels.size, methods, settings, True),
                                     config, dataset.decoding, factor, slice_rows, need_cells)
            copies = None  # the scorer keeps what it needs of them
        for b in blocks:
            s_out = None if pixel_scores is None else pixel_scores[index][b.start:b.stop]
            if s_out is None and (slices is not None or (copy_scorer is not None and copy_scorer.needs_scores)):
                s_out = np.empty(b.labels.shape)
            if need_cells:  # the cells pooled in the kernel's walk over the block
                cells = accumulate_and_pool(stats, b.probs, b.labels, config, factor, row_offset=b.start,
                                            s_out=s_out, pixel_dtype=pixel_dtype, slice_rows=slice_rows)
            else:
                accumulate(stats, b.probs, b.labels, config, row_offset=b.start, s_out=s_out)
            if slices is not None:
                slices.add(b.start, s_out)
            if need_cells:
                first = cell_row(b.start, factor, slice_rows)
                rows = slice(first, first + cells.label.shape[0])
                for name, values in grid.items():
                    values[rows] = getattr(cells, name)
                if pixels is not None:
                    pixels.append(cells.pixel_pred)
            if copy_scorer is not None:
                copy_scorer.add_block(b, s_out)
        result = finish_image(image_id, stats, methods, settings)
        if slices is not None:
            result.worst_slice = slices.worst()
            result.slices = len(slices.scored)
        passes = {}
        if need_cells:
            for method in cell_methods:
                result.scores[method.name] = method.cell_score(grid)
            passes = {name: p.image_piece(grid) for name, p in dataset_passes.items()}
        calibration = None
        if plan is not None:
            calibration = ImageCalibration(image_values(stats, settings, grid),
                                           [] if copy_scorer is None else copy_scorer.finish(grid, settings, stats))
        piece = ImagePiece(result, stats.class_counts[LABEL].copy(), ClassSpaceCheck.piece(stats), passes,
                           calibration)
        return piece, None if cache is None else (grid, pixels, labels.shape)

    scored = map_images(dataset, score_image, threads=threads, row_alignment=factor if need_cells else 1,
                        prefetch=prefetch)
    try:
        for index, _, (piece, extra) in scored:
            yield index, piece, extra
    finally:
        scored.close()


def _per_image_pass(dataset: Dataset, methods: tuple[Method, ...], settings: Settings, factor: int, prefetch: int,
                    progress, cache: CellCache | None = None, pixel_scores=None, threads: int = 1,
                    plan: CalibrationPlan | None = None) -> FirstPass:
    """The first pass: every per-image method, every cell score, and what dataset-wide methods need of it.

    With ``cache``, each image's cells (and, if the cache keeps them, its pixels' argmax)
    are spilled to it for clc's later passes. ``pixel_scores`` and ``threads``: as for
    :func:`score_images`. Everything dataset-wide (class counts, the class-space check,
    clc's sums, the cache) is merged in dataset order, so the pass gives the same bytes
    for any number of threads.
    """
    first = FirstPass(dataset.store.n_classes, methods)
    scored = score_images(dataset, methods, settings, factor, prefetch, cache, pixel_scores, threads, plan)
    try:
        for index, piece, extra in scored:
            # In dataset order, on this thread.
            first.add(piece)
            if cache is not None:
                grid, pixels, shape = extra
                for rows in pixels or ():
                    cache.add_pixels(rows)
                cache.add_image(*shape, **grid)
            progress("scoring", index + 1, len(dataset.pairs))
    finally:
        scored.close()
    return first


def check_settings(methods: Iterable[str], temperature: float, pixel_threshold: float, downsample: int,
                   baseline: ClcRecord | dict | None, threads: int | None):
    """The run's methods, settings, downsampling, baseline and threads, checked (InputError if one is bad)."""
    names = tuple(methods)
    chosen = resolve(names)
    settings = Settings(temperature=check_temperature(temperature),
                        pixel_threshold=check_pixel_threshold(pixel_threshold))
    if baseline is not None:
        baseline = ClcRecord.coerce(baseline)
        downsample = baseline.downsample
    check_downsample(downsample)
    return names, chosen, settings, downsample, baseline, check_threads(threads)


def calibration_plan(names: tuple[str, ...], dataset: Dataset, seed: int,
                     unlabeled: int | None = None) -> CalibrationPlan | None:
    """The plan of the planted copies when ``auto`` is asked for (else None)."""
    if AUTO not in names:
        if unlabeled is not None:
            raise InputError("--unlabeled is what auto's planted missed objects become: add auto to --method")
        return None
    check_calibration_options(seed, unlabeled, dataset)
    return CalibrationPlan(seed, len(dataset.pairs), unlabeled=unlabeled)


def _calibrated(first: FirstPass, plan: CalibrationPlan, cut: float):
    """Choose the auto ranking; every image's ``auto`` score is set (dataset order). ``cut``:
    the s at or below which the dataset-wide method flagged cells (-inf: none)."""
    calibration = calibrate(plan, first.calibration, [r.flagged_pixels for r in first.images],
                            [r.pixels for r in first.images], cut)
    for result, value in zip(first.images, calibration.scores):
        result.scores[AUTO] = float(value)
    return calibration.record


def finish_run(dataset: Dataset, names: tuple[str, ...], settings: Settings, downsample: int, first: FirstPass,
               parts: Partitions, baseline: ClcRecord | None, plan: CalibrationPlan | None = None) -> ScoreRun:
    """The dataset-wide methods' passes over ``parts``, the calibration (``auto``), then the ranked run."""
    kept: dict[str, object] = {}  # what the dataset-wide methods leave on the run
    cut = -math.inf
    for name, passes in first.dataset_passes.items():
        outcome = passes.finish(parts, downsample, baseline, [result.pixels for result in first.images])
        for result, score, flagged in zip(first.images, outcome.scores, outcome.flagged):
            result.flagged_pixels = int(flagged)
            result.scores[name] = score
        kept.update(outcome.keep)
        cut = max(cut, outcome.cut)
    calibration = None if plan is None else _calibrated(first, plan, cut)
    return ScoreRun(
        results=rank_results(first.images, names[0]),
        methods=names,
        classes=dataset.store.classes,
        options={**dataset.options, "methods": list(names), "temperature": settings.temperature,
                 "pixel_threshold": settings.pixel_threshold, "downsample": downsample},
        skipped_masks=dataset.skipped_masks,
        skipped_predictions=dataset.skipped_predictions,
        **kept,
        class_pixels=first.class_pixels,
        warnings=first.class_space.warnings(dataset.store.classes),
        volumes=any(result.slices is not None for result in first.images),
        calibration=calibration,
    )


def score_dataset(dataset: Dataset, methods: Iterable[str], *, temperature: float = 0.1,
                  pixel_threshold: float = 0.5, downsample: int = 4, prefetch: int = 4,
                  on_progress: Callable[[str, int, int], None] | None = None,
                  baseline: ClcRecord | dict | None = None, cache: CellCache | None = None,
                  pixel_scores=None, threads: int | None = None, calibration_seed: int = 0,
                  unlabeled: int | None = None) -> ScoreRun:
    """Score an opened dataset (see :func:`segaudit.score` for the parameters).

    ``baseline``: the ``clc`` section of an earlier full run's record. clc then flags
    with that run's dataset-wide cut (cells with s at or below it; pixels whose argmax is
    their label unflagged) and its downsampling, instead of counting over this dataset:
    a subset is scored consistently with the full run, in two passes.

    ``cache``: an empty :class:`~segaudit.core.cells.CellCache` of ``dataset`` at this
    downsampling, which clc's passes fill and read, left open for the caller's own passes
    (flag maps, say). By default clc uses a temporary one, removed before returning, so
    the store is read only once (unless the cells would not fit on disk).

    ``pixel_scores``: indexed by image position in ``dataset.pairs``, (H, W) float64
    arrays that receive each pixel's s (NaN where ignored) during the first pass.

    ``threads``: worker threads of the first pass (default: the cores this process may
    use). The result is the same, byte for byte, for any number.

    ``calibration_seed``: with ``auto``, the seed of the planted copies (the sample and
    the errors planted); the same seed gives the same run. ``unlabeled``: with ``auto``, the
    dataset's scored unlabeled (background) class, which a planted missed object becomes.
    """
    names, chosen, settings, downsample, baseline, threads = check_settings(
        methods, temperature, pixel_threshold, downsample, baseline, threads)
    plan = calibration_plan(names, dataset, calibration_seed, unlabeled)
    progress = on_progress or (lambda stage, done, total: None)
    dataset_wide = any(m.dataset_pass is not None for m in chosen)
    with ExitStack() as temporary:
        if cache is None and dataset_wide:
            cache = temporary.enter_context(cell_cache(dataset, downsample))
        first = _per_image_pass(dataset, chosen, settings, downsample, prefetch, progress,
                                cache if dataset_wide else None, pixel_scores, threads, plan)
        parts = LocalPartitions(dataset, cache, prefetch=prefetch, progress=progress)
        return finish_run(dataset, names, settings, downsample, first, parts, baseline, plan)


class Scoring:
    """A dataset opened from its :class:`~segaudit.results.InputSpec`, here or on a Dask
    cluster (see :func:`scoring`): scoring runs (:meth:`score`), then further passes over
    its partitions (:attr:`parts`: regions, flag maps), the same calls either way."""

    def __init__(self, dataset: Dataset, parts: Partitions, stack: ExitStack, *, client=None, shipped=None,
                 prefetch: int = 4, on_progress=None):
        self.dataset, self.parts, self._stack = dataset, parts, stack
        self._client, self._shipped, self._prefetch = client, shipped, prefetch
        self._on_progress = on_progress

    def score(self, methods: Iterable[str], *, temperature: float = 0.1, pixel_threshold: float = 0.5,
              downsample: int = 4, baseline: ClcRecord | dict | None = None, threads: int | None = None,
              calibration_seed: int = 0, unlabeled: int | None = None, keep_cells: bool = False,
              cell_pixels: bool = False) -> ScoreRun:
        """Score the dataset (the parameters are :func:`score_dataset`'s); the same run here
        and on a cluster.

        ``keep_cells``: here, the cell cache (with every pixel's argmax when ``cell_pixels``)
        stays until the :func:`scoring` block ends, and :attr:`parts` reads it (flag maps);
        a cluster keeps no cache, its workers read the store.
        """
        settings = dict(temperature=temperature, pixel_threshold=pixel_threshold, downsample=downsample,
                        prefetch=self._prefetch, on_progress=self._on_progress, baseline=baseline, threads=threads,
                        calibration_seed=calibration_seed, unlabeled=unlabeled)
        if self._client is not None:
            from .distributed import score_dataset_distributed

            return score_dataset_distributed(self._client, self._shipped, methods, dataset=self.dataset,
                                             parts=self.parts, **settings)
        cache = None
        if keep_cells:
            cache = self._stack.enter_context(cell_cache(self.dataset, downsample, pixels=cell_pixels))
        run = score_dataset(self.dataset, methods, cache=cache, **settings)
        self.parts = LocalPartitions(self.dataset, cache, prefetch=self._prefetch, progress=self._on_progress)
        return run


@contextmanager
def scoring(spec: InputSpec, client=None, *, partition_size: int | None = None, prefetch: int = 4,
            on_progress: Callable[[str, int, int], None] | None = None) -> Iterator[Scoring]:
    """The one entry to the engine: ``spec``'s dataset opened for scoring, in this process or,
    with ``client`` (a ``dask.distributed.Client``), on that cluster.

    Parameters
    ----------
    spec : InputSpec
        What to read.
    client : distributed.Client, optional
        Score on this Dask cluster (:mod:`segaudit.distributed`): the dataset is opened here
        and, from the same spec, on the workers, which read their own images. Every output is
        the same, byte for byte, as without.
    partition_size : int, optional
        With ``client``: images per task (default: about 1 GiB of stored predictions).
    prefetch, on_progress
        As for :func:`segaudit.score`.

    Yields
    ------
    Scoring
        Its temporary files (a kept cell cache) are removed when the block ends, on errors too.
    """
    with ExitStack() as stack:
        if client is None:
            dataset = open_dataset(spec)
            parts = LocalPartitions(dataset, prefetch=prefetch, progress=on_progress)
            yield Scoring(dataset, parts, stack, prefetch=prefetch, on_progress=on_progress)
            return
        from .distributed import dask_partitions, dataset_spec

        shipped = dataset_spec(spec)
        dataset = shipped.open()
        parts = dask_partitions(client, shipped, dataset, partition_size, prefetch=prefetch, progress=on_progress)
        yield Scoring(dataset, parts, stack, client=client, shipped=shipped, prefetch=prefetch,
                      on_progress=on_progress)
