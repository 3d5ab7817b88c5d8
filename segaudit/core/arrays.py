"""In-memory numpy arrays as a dataset, for users who already hold (N, K, H, W) predictions.

An :class:`ArrayDataset` is a :class:`~segaudit.core.dataset.Dataset` whose masks and
prediction store live in memory, so every method, the dataset-wide clc and coco
included, runs through the same passes as ``segaudit score`` on a store. Nothing is
copied: each image is handed to the kernels as a view of the caller's array (float16 as
its uint16 view).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ..errors import InputError
from ..io.predictions import PredictionStore, check_dtype, sum_tolerance
from .dataset import Dataset, Remedies, Remedy, check_ignore, check_labels, make_decoding


#: What stands for the store's path in messages ("pred_probs/<image id>: ...").
ARRAY_PATH = "pred_probs"

#: :func:`segaudit.score_arrays`'s advice: its own arguments.
ARRAY_REMEDIES = Remedies(logits=Remedy("if pred_probs are logits, pass logits=True"),
                          channels_last=Remedy("pass channels_last=True"))


@njit(cache=True, nogil=True)
def _narrow(labels, out):
    """Copy integer labels (H, W) into int32 ``out``; return their smallest and largest value."""
    low = labels[0, 0]
    high = labels[0, 0]
    for r in range(labels.shape[0]):
        for c in range(labels.shape[1]):
            v = labels[r, c]
            low = min(low, v)
            high = max(high, v)
            out[r, c] = v
    return low, high


@dataclass
class ArrayStore(PredictionStore):
    """A :class:`~segaudit.io.predictions.PredictionStore` in memory.

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

    def image_shape(self, image_id: str) -> tuple[int, int]:
        return tuple(self.stored.shape[2:])

    def volume_shape(self, image_id: str) -> None:
        """Arrays in memory are 2-D images, never volumes."""
        return None

    def slice_rows(self, image_id: str) -> None:
        return None

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
        if labels.dtype.kind == "b" or labels.dtype.itemsize > 8:
            labels = labels.astype(np.int64)
        # One pass: the int32 copy the kernels read, and the smallest and largest value.
        narrowed = np.empty(labels.shape, np.int32)
        low, high = _narrow(labels, narrowed) if labels.size else (0, -1)
        if low < 0:
            raise InputError(f"{where}: negative label values")
        if high >= self.store.n_classes:
            check_labels(labels, self.store.n_classes, self.ignore, where)
        if high > np.iinfo(np.int32).max:
            raise InputError(f"{where}: label value {high} is too large")
        return narrowed

    def read_block(self, image_id: str, start: int, stop: int) -> np.ndarray:
        return self.store.read_rows(image_id, start, stop)


def array_dataset(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    ignore_index: Iterable[int] = (),
    logits: bool = False,
    channels_last: bool = False,
    image_ids: list[str] | None = None,
    classes: list[str] | None = None,
    remedies: Remedies = ARRAY_REMEDIES,
) -> ArrayDataset:
    """Wrap in-memory arrays as a dataset that :func:`segaudit.engine.score_dataset` walks.

    Arguments as for :func:`segaudit.api.score_arrays`. Shapes, dtypes and ids are checked
    here; label values are checked image by image as the passes read them. ``remedies``:
    what errors about the predictions advise, in the caller's words.
    """
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
    ignore = check_ignore(ignore_index)
    decoding = make_decoding(dtype, n_classes, ignore, logits, sum_tolerance(dtype, n_classes))
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
    return ArrayDataset(pairs=list(enumerate(image_ids)), store=store, decoding=decoding, ignore=ignore,
                        colour_map=None, options=options, remedies=remedies, labels=labels)
