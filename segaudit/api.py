"""Scoring in-memory numpy arrays, for users who already hold (N, K, H, W) predictions.

The arrays are wrapped in an :class:`ArrayDataset`, a :class:`~segaudit.core.dataset.Dataset`
whose masks and prediction store live in memory, so every method, the dataset-wide clc
and coco included, runs through the same passes as ``segaudit score`` on a store
(:func:`segaudit.engine.score_dataset`). Nothing is copied: each image is handed to the
kernels as a view of the caller's array (float16 as its uint16 view).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .core.dataset import Dataset, check_labels, make_config
from .errors import InputError
from .methods import DEFAULT_METHOD, check_methods
from .io.predictions import check_dtype, sum_tolerance
from .engine import score_dataset
from .results import ImageResult, ScoreRun

#: What stands for the store's path in messages ("pred_probs/<image id>: ...").
ARRAY_PATH = "pred_probs"


@dataclass
class ArrayStore:
    """The in-memory stand-in for :class:`~segaudit.io.predictions.PredictionStore`.

    ``stored`` holds the values as the kernels read them, indexed [image, class, row,
    column] (float16 viewed as uint16). Each image is one block: a view, never a copy.
    """

    stored: np.ndarray
    image_ids: list[str]
    n_classes: int
    classes: list[str] | None
    logits: bool
    dtype: np.dtype
    path: str = ARRAY_PATH
    layout: str = "arrays"
    channels_last: bool = False
    _index: dict = field(repr=False, default_factory=dict)

    def __post_init__(self):
        self._index = {image_id: n for n, image_id in enumerate(self.image_ids)}

    @property
    def sum_tolerance(self) -> float:
        return sum_tolerance(self.dtype, self.n_classes)

    def image_shape(self, image_id: str) -> tuple[int, int]:
        return tuple(self.stored.shape[2:])

    def row_blocks(self, image_id: str, block_bytes: int | None = None, align: int = 1) -> list[tuple[int, int]]:
        """One block per image: the whole image starts at row 0, so any alignment holds."""
        height = self.stored.shape[2]
        return [(0, height)] if height else []

    def read_rows(self, image_id: str, start: int, stop: int) -> np.ndarray:
        image = self.stored[self._index[image_id]]
        return image if (start, stop) == (0, image.shape[1]) else image[:, start:stop]


@dataclass
class ArrayDataset(Dataset):
    """(N, H, W) labels and (N, K, H, W) predictions in memory, as a Dataset.

    ``pairs`` are (image index, image id): the "mask" of an image is its index into
    ``labels``. Use :func:`array_dataset` to make one.
    """

    labels: np.ndarray | None = None

    def read_labels(self, mask: int) -> np.ndarray:
        labels = self.labels[mask]
        where = f"labels of image {self.pairs[mask][1]}"
        if labels.dtype.kind != "b" and labels.size and labels.min() < 0:
            raise InputError(f"{where}: negative label values")
        check_labels(labels, self.store.n_classes, self.ignore, where)
        return np.ascontiguousarray(labels, dtype=np.int32)

    def read_block(self, image_id: str, start: int, stop: int) -> np.ndarray:
        return self.store.read_rows(image_id, start, stop)


def array_dataset(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    methods: Iterable[str] = (DEFAULT_METHOD,),
    temperature: float = 0.1,
    pixel_threshold: float = 0.5,
    ignore_index: Iterable[int] = (),
    logits: bool = False,
    channels_last: bool = False,
    image_ids: list[str] | None = None,
    classes: list[str] | None = None,
) -> ArrayDataset:
    """Wrap in-memory arrays as a dataset that :func:`segaudit.engine.score_dataset` walks.

    Arguments as for :func:`score_arrays`. Shapes, dtypes and ids are checked here; label
    values are checked image by image as the passes read them.
    """
    methods = check_methods(methods)
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs)
    if labels.ndim != 3 or pred_probs.ndim != 4:
        raise InputError(f"labels must be (N, H, W) and pred_probs (N, K, H, W); got {labels.shape} and {pred_probs.shape}")
    if labels.dtype.kind not in "iub":
        raise InputError(f"labels must hold integer class indices, not {labels.dtype}")
    dtype = check_dtype(pred_probs.dtype, "pred_probs")
    if not dtype.isnative:
        dtype = dtype.newbyteorder("=")
        pred_probs = pred_probs.astype(dtype)
    if channels_last:
        pred_probs = np.moveaxis(pred_probs, -1, 1)
    n_images, n_classes, height, width = pred_probs.shape
    if labels.shape != (n_images, height, width):
        raise InputError(f"labels {labels.shape} do not match pred_probs {(n_images, n_classes, height, width)} (N, K, H, W)")
    if image_ids is None:
        image_ids = [str(n) for n in range(n_images)]
    image_ids = [str(i) for i in image_ids]
    if len(image_ids) != n_images:
        raise InputError(f"{len(image_ids)} image ids for {n_images} images")
    if len(set(image_ids)) != n_images:
        raise InputError("image_ids must be unique")
    if classes is not None and len(classes) != n_classes:
        raise InputError(f"{len(classes)} class names for K={n_classes} classes")
    ignore = tuple(sorted({int(v) for v in ignore_index}))
    if any(v < 0 for v in ignore):
        raise InputError(f"ignore indices must be >= 0, got {ignore}")
    config = make_config(dtype, n_classes, ignore, logits, temperature, pixel_threshold, methods,
                         sum_tolerance(dtype, n_classes))
    stored = pred_probs.view(np.uint16) if dtype == np.float16 else pred_probs
    store = ArrayStore(stored=stored, image_ids=image_ids, n_classes=int(n_classes),
                       classes=None if classes is None else [str(c) for c in classes],
                       logits=bool(logits), dtype=dtype)
    options = {
        "masks": None,
        "predictions": None,
        "layout": store.layout,
        "ignore_index": list(ignore),
        "classes": store.classes,
        "n_classes": store.n_classes,
        "logits": store.logits,
        "channels_last": bool(channels_last),
    }
    return ArrayDataset(pairs=list(enumerate(image_ids)), store=store, config=config, ignore=ignore,
                        colour_map=None, options=options, labels=labels)


def score_array_dataset(dataset: ArrayDataset, methods: Iterable[str], *, downsample: int = 4,
                        return_pixel_scores: bool = False, cache=None) -> tuple[ScoreRun, np.ndarray | None]:
    """Score an :class:`ArrayDataset`: results in input order, not ranked.

    The dataset goes through :func:`segaudit.engine.score_dataset`, exactly as a store
    would: one pass for the per-image methods and coco (pixel scores included), and clc's
    passes over a cell cache (``run.clc`` then holds confident learning's selection;
    ``cache``, a :class:`~segaudit.methods.clc.CellCache`, is filled and left open for the
    caller's passes).
    """
    n_images = len(dataset.pairs)
    height, width = dataset.store.stored.shape[2:]
    pixel_scores = np.empty((n_images, height, width)) if return_pixel_scores else None
    run = score_dataset(dataset, check_methods(methods), downsample=downsample, cache=cache,
                        pixel_scores=pixel_scores)
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
    ignore_index: Iterable[int] = (),
    logits: bool = False,
    channels_last: bool = False,
    image_ids: list[str] | None = None,
    return_pixel_scores: bool = False,
    downsample: int = 4,
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
        ``clc`` and ``coco`` included.
    temperature, pixel_threshold : float
        As for :func:`segaudit.score`.
    ignore_index : iterable of int
        Label values that take no part in any score (none by default, like cleanlab).
    logits, channels_last : bool
        How ``pred_probs`` is stored.
    image_ids : list of str, optional
        Unique names for the results; default "0", "1", ...
    return_pixel_scores : bool
        Also return s = p[label] per pixel as float64 (N, H, W), NaN where ignored.
    downsample : int
        Cell size F of the F×F grid of clc and coco (1 = full resolution), as for
        :func:`segaudit.score`; unused by the per-image methods.

    Returns
    -------
    results : list of ImageResult
        In input order (not ranked); ``flagged_pixels`` is set when clc was computed.
    pixel_scores : np.ndarray or None
    """
    dataset = array_dataset(labels, pred_probs, methods=methods, temperature=temperature,
                            pixel_threshold=pixel_threshold, ignore_index=ignore_index, logits=logits,
                            channels_last=channels_last, image_ids=image_ids)
    run, pixel_scores = score_array_dataset(dataset, methods, downsample=downsample,
                                            return_pixel_scores=return_pixel_scores)
    return run.results, pixel_scores
