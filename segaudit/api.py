"""The Python API: score a dataset on disk, or arrays held in memory.

:func:`score` opens masks and a prediction store; :func:`score_arrays` wraps in-memory
arrays (:mod:`segaudit.core.arrays`) and :func:`score_arrays_run` does the same but returns a
ranked :class:`ScoreRun` that :func:`segaudit.write_ranking` writes. All go through the
same engine (:func:`segaudit.engine.score_dataset`) and return the same result types.

Ignored labels: :func:`score` (like the CLI) ignores 255 unless told otherwise; the
in-memory functions ignore nothing unless told (like cleanlab, which has no ignore index).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path

import numpy as np

from .core.arrays import ArrayDataset, array_dataset
from .core.dataset import open_dataset
from .core.kernel import check_pixel_threshold, check_temperature
from .core.passes import check_threads
from .core.partitions import Partitions
from .engine import rank_results, score_dataset, scoring
from .methods import DEFAULT_METHOD, check_methods
from .core.regions import RegionRule, RegionRun, rank_regions
from .results import ImageResult, InputSpec, RegionsRecord, ScoreRun


def score(
    masks: str | Path | None = None,
    predictions: str | Path | None = None,
    *,
    spec: InputSpec | None = None,
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
    label_map: str | Path | dict | None = None,
    baseline: dict | None = None,
    regions: RegionRule | bool | None = None,
    prefetch: int = 4,
    on_progress: Callable[[str, int, int], None] | None = None,
    threads: int | None = None,
    storage_options: dict | str | None = None,
    client=None,
    partition_size: int | None = None,
    calibration_seed: int = 0,
    unlabeled: int | None = None,
) -> ScoreRun:
    """Score every image of a dataset and rank them worst first.

    Parameters
    ----------
    masks : str or Path
        Directory searched recursively for annotation PNGs (see docs/formats.md), or a URL
        (``s3://bucket/masks``, anything fsspec lists) of PNG or TIFF masks.
    predictions : str or Path
        Zarr store of predicted class probabilities (per-image or stacked layout), or a URL
        (``s3://bucket/preds.zarr``, ``gs://``, ``https://`` ...), read chunk by chunk.
    spec : InputSpec, optional
        The masks, the predictions and every input option in one
        (:class:`segaudit.InputSpec`; ``InputSpec.from_record`` reopens a run's), instead of
        ``masks``, ``predictions`` and the input keywords below (``ignore_index`` to
        ``label_map``, ``storage_options``), which build one.
    methods : tuple of str
        Methods from :data:`segaudit.methods.METHODS`, or ``"auto"``; the first is the
        ranking key. Default ``("auto",)``: rsoftmin unless errors planted into copies of
        the masks show surely that another candidate score finds them better (the run's
        ``calibration`` says which and how sure; docs/methods.md).
    temperature : float
        Softmin temperature τ > 0.
    pixel_threshold : float
        Pixels whose label likelihood s is below it are counted as ``low_pixels``.
    ignore_index : int or iterable of int, optional
        Label values that take no part in any score. None means 255, as on the command
        line (``--ignore-index``); ``()`` ignores nothing. (The in-memory
        :func:`score_arrays` ignores nothing by default.)
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
    label_map : str, Path or dict, optional
        Mask values -> class indices, applied as masks are read: a built-in name
        (``"cityscapes"``, ``"ade20k"``, ``"coco-stuff"``), a JSON or CSV file, or a dict
        ``{value: class or None}`` (None = ignored). Every mask value must be covered
        (see docs/formats.md).
    baseline : dict, optional
        The ``clc`` section of a full run's record, reused for clc (see :func:`score_dataset`).
    regions : RegionRule or bool, optional
        Also find each image's error regions (one more pass over the store; True = the
        default :class:`~segaudit.core.regions.RegionRule`): each result's ``regions`` is
        its count of regions scoring at least the calibrated threshold (regions' scores are
        calibrated on errors planted into a sample of the masks, as ``segaudit regions``
        does) and ``worst_region`` the kind of the worst of them, and ``run.regions``
        records the rule, the threshold and the calibration.
    on_progress : callable, optional
        Called as ``on_progress(stage, done, total)`` after each image of each pass over
        the dataset (one pass, plus two or more for clc), for progress display.
    threads : int, optional
        Worker threads that score images at once (default: every core this process may
        use). The results are the same, byte for byte, for any number. With ``client``:
        threads per task on a worker (default 1).
    client : distributed.Client, optional
        Score on this Dask cluster instead (:func:`segaudit.distributed.score_dataset_distributed`):
        workers read their own images from the masks and the store, and the run is the
        same, byte for byte in every output, as without (``regions`` included: the workers
        find their images' regions).
    partition_size : int, optional
        With ``client``: images per task (default: about 1 GiB of stored predictions).
    calibration_seed : int
        With ``auto`` (the default method): the seed of the planted copies it calibrates
        on (which images, which errors). The same seed gives the same run, byte for byte,
        on any number of threads or partitions; ``run.calibration`` holds the table.
    unlabeled : int, optional
        With ``auto``: the dataset's unlabeled (background) class, when it is a scored class
        (not an ignore index): the planted missed objects are annotated as it, as real missed
        objects are. Default: a missed object keeps the class around it.
    storage_options : dict or str, optional
        Options of the fsspec filesystem of masks or predictions given as URLs (a dict or its
        JSON text: ``{"endpoint_url": ..., "anon": true, "profile": ...}``). Credentials are
        best left to the environment (``AWS_*``, ``~/.aws``); the options are never recorded.

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
    check_temperature(temperature)
    check_pixel_threshold(pixel_threshold)
    check_threads(threads)
    spec = _input_spec(masks, predictions, spec, dict(
        ignore_index=ignore_index, mask_suffix=mask_suffix, palette=palette, classes=classes, logits=logits,
        channels_last=channels_last, allow_missing=allow_missing, only=only, label_map=label_map,
        storage_options=storage_options))
    if regions:  # before any pass: the region calibration's seed
        from .calibration.regions import check_calibration_options

        check_calibration_options(calibration_seed)
    with scoring(spec, client, partition_size=partition_size, prefetch=prefetch, on_progress=on_progress) as engine:
        run = engine.score(methods, temperature=temperature, pixel_threshold=pixel_threshold, downsample=downsample,
                           baseline=baseline, threads=threads, calibration_seed=calibration_seed, unlabeled=unlabeled)
        if regions:  # on a cluster, each worker finds its images' regions; the counts are the same
            add_regions(run, engine.parts, RegionRule() if regions is True else regions,
                        calibration_seed=calibration_seed, unlabeled=unlabeled)
    return run


def _input_spec(masks, predictions, spec: InputSpec | None, keywords: dict) -> InputSpec:
    """``spec``, or the spec that ``masks``, ``predictions`` and the input ``keywords`` make;
    TypeError when a spec comes with masks, predictions or an input keyword not at its default."""
    if spec is None:
        return InputSpec.of(masks, predictions, **keywords)
    changed = {name: value for name, value in keywords.items()
               if not (value is _INPUT_DEFAULTS[name] or (isinstance(value, (str, bool))
                                                          and value == _INPUT_DEFAULTS[name]))}
    return InputSpec.of(masks, predictions, spec, **changed)


_INPUT_DEFAULTS = {f.name: f.default for f in fields(InputSpec)}


def regions(masks: str | Path | None = None, predictions: str | Path | None = None, *, rule: RegionRule | None = None,
            prefetch: int = 4, on_progress: Callable[[str, int, int], None] | None = None,
            spec: InputSpec | None = None, calibration_seed: int = 0, unlabeled: int | None = None,
            **inputs) -> RegionRun:
    """The error regions of every image, ranked over the dataset, worst first.

    Parameters
    ----------
    masks, predictions : str or Path
        As :func:`score`.
    rule : RegionRule, optional
        Which pixels are suspect, how regions score and which kind they get
        (:class:`segaudit.RegionRule`; the defaults chosen on the benchmarks when None).
    prefetch, on_progress
        As :func:`score`.
    spec : InputSpec, optional
        The inputs in one, instead of ``masks``, ``predictions`` and ``inputs`` (as :func:`score`).
    calibration_seed, unlabeled
        The seed of the errors planted into a sample of the masks that the region scores
        are calibrated on, and the dataset's scored unlabeled class (what a planted missed
        object becomes; None: its surroundings).
    **inputs
        The input keywords of :func:`score` (the fields of :class:`segaudit.InputSpec`):
        ``ignore_index``, ``mask_suffix``, ``palette``, ``classes``, ``logits``,
        ``channels_last``, ``allow_missing``, ``only``, ``label_map``, ``storage_options``.

    Returns
    -------
    RegionRun
        ``regions`` (:class:`segaudit.Region`, worst first, ``score`` calibrated and
        ``raw_score`` the rule's), the per-image counts, the class names, the rule and the
        ``calibration`` (its ``threshold``: from which a region counts).
        :func:`segaudit.write_regions` writes the table.
    """
    from .calibration.regions import calibrated_regions

    dataset = open_dataset(InputSpec.of(masks, predictions, spec, **inputs))
    return calibrated_regions(dataset, rule, seed=calibration_seed, unlabeled=unlabeled, prefetch=prefetch,
                              progress=on_progress)[0]


def add_regions(run: ScoreRun, parts: Partitions, rule: RegionRule, *, calibration_seed: int = 0,
                unlabeled: int | None = None) -> None:
    """Find the regions of the dataset of ``parts`` (scored as ``run``), calibrate their
    scores, and add each image's count of regions at or above the calibrated threshold and
    its worst kind (:meth:`segaudit.engine.Scoring.parts`: here, or on a Dask cluster's
    workers, which find their images' regions and plant the copies; the fit is made here on
    every partition's samples in dataset order, so the counts are the same)."""
    from .calibration.regions import calibrated_regions_part, check_calibration_options, fit_region_calibration

    check_calibration_options(calibration_seed)  # unlabeled was checked with auto (it needs it)
    pieces = parts.map("regions", calibrated_regions_part,
                       [(rule, calibration_seed, unlabeled, parts.n_images)] * parts.count)
    found = [region for regions, _ in pieces for region in regions]
    calibration = fit_region_calibration([image for _, samples in pieces for image in samples], calibration_seed)
    calibration.apply(found)
    ranked = rank_regions(found)
    counted: dict[str, list] = {}
    for region in ranked:  # worst first
        if region.score >= calibration.threshold:
            counted.setdefault(region.image_id, []).append(region)
    for result in run.results:
        mine = counted.get(result.image_id, [])
        result.regions = len(mine)
        result.worst_region = mine[0].kind if mine else None
    run.regions = RegionsRecord(margin=rule.margin, band=rule.band, band_weight=rule.band_weight,
                                regions=sum(len(v) for v in counted.values()), threshold=calibration.threshold,
                                calibration=calibration.to_dict())


def score_array_dataset(dataset: ArrayDataset, methods: Iterable[str], *, temperature: float = 0.1,
                        pixel_threshold: float = 0.5, downsample: int = 4, return_pixel_scores: bool = False,
                        cache=None, threads: int | None = None) -> tuple[ScoreRun, np.ndarray | None]:
    """Score an :class:`ArrayDataset`: results in input order, not ranked.

    The dataset goes through :func:`segaudit.engine.score_dataset`, exactly as a store
    would: one pass for the per-image methods and coco (pixel scores included), and clc's
    passes over a cell cache (``run.clc`` then holds confident learning's selection;
    ``cache``, a :class:`~segaudit.core.cells.CellCache`, is filled and left open for the
    caller's passes). ``threads``: as for :func:`score`.
    """
    n_images = len(dataset.pairs)
    height, width = dataset.store.stored.shape[2:]
    pixel_scores = np.empty((n_images, height, width)) if return_pixel_scores else None
    run = score_dataset(dataset, check_methods(methods), temperature=temperature, pixel_threshold=pixel_threshold,
                        downsample=downsample, cache=cache, pixel_scores=pixel_scores, threads=threads)
    position = {image_id: n for n, (_, image_id) in enumerate(dataset.pairs)}
    run.results.sort(key=lambda result: position[result.image_id])
    return run, pixel_scores


def score_arrays(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    methods: Iterable[str] = (DEFAULT_METHOD,),
    temperature: float = 0.1,
    pixel_threshold: float = 0.5,
    ignore_index: int | Iterable[int] | None = (),
    logits: bool = False,
    channels_last: bool = False,
    image_ids: list[str] | None = None,
    return_pixel_scores: bool = False,
    downsample: int = 4,
    threads: int | None = None,
) -> tuple[list[ImageResult], np.ndarray | None]:
    """Score images held in memory, with the same kernels and passes as :func:`segaudit.score`.

    Parameters
    ----------
    labels : np.ndarray
        Integer class indices, shape (N, H, W).
    pred_probs : np.ndarray
        Probabilities (or logits with ``logits=True``), shape (N, K, H, W), or
        (N, H, W, K) with ``channels_last=True``; float16/32/64 or uint8/uint16
        quantised probabilities.
    methods : iterable of str
        Methods to compute (see :data:`segaudit.methods.METHODS`), the dataset-wide
        ``clc`` and ``coco`` included, or ``"auto"`` (the default, as in :func:`score`).
    temperature, pixel_threshold : float
        As for :func:`segaudit.score`.
    ignore_index : int or iterable of int, optional
        Label values that take no part in any score, e.g. ``255`` or ``(0, 255)``.
        **The default ignores nothing** (like cleanlab, which has no ignore index),
        unlike :func:`score` and the command line, which ignore 255 by default: pass
        ``ignore_index=255`` for the same scores as ``segaudit score``.
    logits, channels_last : bool
        How ``pred_probs`` is stored.
    image_ids : list of str, optional
        Unique names for the results; default "0", "1", ...
    return_pixel_scores : bool
        Also return s = p[label] per pixel as float64 (N, H, W), NaN where ignored.
    downsample : int
        Cell size F of the F×F grid of clc and coco (1 = full resolution), as for
        :func:`segaudit.score`; unused by the per-image methods.
    threads : int, optional
        Worker threads that score images at once (default: every core this process may
        use); the results are the same for any number. The arrays are read in place.

    Returns
    -------
    results : list of ImageResult
        In input order (not ranked); ``flagged_pixels`` is set when clc was computed.
    pixel_scores : np.ndarray or None

    See Also
    --------
    score_arrays_run : the same scores as a ranked :class:`ScoreRun`, for
        :func:`segaudit.write_ranking`.
    """
    methods = check_methods(methods)
    dataset = array_dataset(labels, pred_probs, ignore_index=ignore_index, logits=logits,
                            channels_last=channels_last, image_ids=image_ids)
    run, pixel_scores = score_array_dataset(dataset, methods, temperature=temperature,
                                            pixel_threshold=pixel_threshold, downsample=downsample,
                                            return_pixel_scores=return_pixel_scores, threads=threads)
    return run.results, pixel_scores


def score_arrays_run(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    methods: Iterable[str] = (DEFAULT_METHOD,),
    temperature: float = 0.1,
    pixel_threshold: float = 0.5,
    ignore_index: int | Iterable[int] | None = (),
    logits: bool = False,
    channels_last: bool = False,
    image_ids: list[str] | None = None,
    classes: list[str] | None = None,
    downsample: int = 4,
    threads: int | None = None,
) -> ScoreRun:
    """Score images held in memory and rank them worst first, as :func:`score` does.

    Arguments as for :func:`score_arrays` (``ignore_index`` ignores nothing by default),
    plus ``classes``, the K class names written in the ranking (and ``threads``). The run is what
    :func:`score` returns: :func:`segaudit.write_ranking` writes its CSV and run record,
    and ``segaudit report`` reads them. Its run record has ``masks`` and ``predictions``
    null (there are no files), so ``segaudit overlay`` refuses it with a message saying
    that overlays need masks and a store on disk.
    """
    methods = check_methods(methods)
    check_temperature(temperature)
    check_pixel_threshold(pixel_threshold)
    dataset = array_dataset(labels, pred_probs, ignore_index=ignore_index, logits=logits,
                            channels_last=channels_last, image_ids=image_ids, classes=classes)
    run, _ = score_array_dataset(dataset, methods, temperature=temperature, pixel_threshold=pixel_threshold,
                                 downsample=downsample, threads=threads)
    run.results = rank_results(run.results, methods[0])
    return run
