"""Builders for small on-disk datasets: annotation PNGs and zarr prediction stores.

Used by test_predictions.py and test_cli.py. Everything is written with Pillow and
zarr-python's public API, so the files look like what a user would produce.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
from PIL import Image

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


# --- synthetic images ------------------------------------------------------


def random_probs(rng: np.random.Generator, n_classes: int, height: int, width: int) -> np.ndarray:
    """Peaked float64 probabilities (K, H, W) summing to 1 per pixel."""
    raw = rng.gamma(0.3, size=(n_classes, height, width)) + 1e-9
    return raw / raw.sum(axis=0)


def random_labels(rng, n_classes, height, width, *, ignore_fraction=0.1, ignore_value=255) -> np.ndarray:
    """uint8 labels (H, W) in [0, K), some set to ``ignore_value``."""
    labels = rng.integers(0, n_classes, size=(height, width))
    labels[rng.random((height, width)) < ignore_fraction] = ignore_value
    return labels.astype(np.uint8)


def agreeing_labels(rng, probs: np.ndarray, flip_fraction: float) -> np.ndarray:
    """Labels = argmax of ``probs`` with ``flip_fraction`` of the pixels set to another class."""
    n_classes = probs.shape[0]
    labels = probs.argmax(axis=0)
    flip = rng.random(labels.shape) < flip_fraction
    labels[flip] = (labels[flip] + 1 + rng.integers(0, n_classes - 1, size=flip.sum())) % n_classes
    return labels.astype(np.uint8)


#: The stored dtypes the kernel reads.
DTYPES = ["float16", "float32", "float64", "uint8", "uint16"]


def random_image(rng, n_classes, height, width, dtype, *, logits=False, ignore_fraction=0.2,
                 ignore_value=255, exact_fraction=0.2):
    """Labels and stored predictions (K, H, W) of the given dtype, with edge cases mixed in."""
    labels = rng.integers(0, n_classes, size=(height, width))
    labels[rng.random((height, width)) < ignore_fraction] = ignore_value
    if logits:
        stored = rng.normal(0, 3, size=(n_classes, height, width)).astype(dtype)
        return labels.astype(np.int32), stored
    # Peaked probabilities, some pixels exactly one-hot (0 and 1), some uniform (ties).
    raw = rng.gamma(rng.uniform(0.05, 2.0), size=(n_classes, height, width))
    probs = raw / raw.sum(axis=0)
    onehot = rng.random((height, width)) < exact_fraction
    hot = rng.integers(0, n_classes, size=(height, width))
    probs[:, onehot] = 0.0
    probs[hot[onehot], np.nonzero(onehot)[0], np.nonzero(onehot)[1]] = 1.0
    uniform = rng.random((height, width)) < 0.05
    probs[:, uniform] = 1.0 / n_classes
    if dtype == "uint8":
        stored = np.round(probs * 255).astype(np.uint8)
    elif dtype == "uint16":
        stored = np.round(probs * 65535).astype(np.uint16)
    else:
        stored = probs.astype(dtype)
    return labels.astype(np.int32), stored


def quantise(probs: np.ndarray, dtype) -> np.ndarray:
    """Probabilities as they are stored in ``dtype`` (uint8/uint16 = round(p * max))."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        return np.round(probs * np.iinfo(dtype).max).astype(dtype)
    return probs.astype(dtype)


# --- masks -----------------------------------------------------------------


def write_mask(path: Path, labels, mode: str = "P") -> Path:
    """Write ``labels`` (H, W) as a PNG in ``mode``: "P" (with a grey palette), "L" or "I;16".

    For "RGB", ``labels`` must already be (H, W, 3) colours.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(labels)
    if mode == "P":
        img = Image.frombytes("P", arr.shape[::-1], np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
        img.putpalette([v for i in range(256) for v in (i, i, i)])
    elif mode == "L":
        img = Image.fromarray(arr.astype(np.uint8))
    elif mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16))
    elif mode == "RGB":
        img = Image.fromarray(arr.astype(np.uint8))
    else:
        raise ValueError(mode)
    assert img.mode == mode, (img.mode, mode)
    img.save(path, format="PNG")
    return path


def write_masks(directory: Path, labels: dict[str, np.ndarray], mode: str = "P", suffix: str = "") -> Path:
    """One PNG per image id (``city/a`` -> ``directory/city/a<suffix>.png``)."""
    for image_id, lab in labels.items():
        write_mask(Path(directory) / f"{image_id}{suffix}.png", lab, mode)
    return Path(directory)


# --- prediction stores -----------------------------------------------------


def write_store(
    path: Path,
    probs: dict[str, np.ndarray],
    *,
    layout: str = "per-image",
    zarr_format: int = 3,
    dtype=None,
    channels_last: bool = False,
    row_chunk: int | None = None,
    attrs: dict | None = None,
    image_ids: list[str] | None = None,
) -> Path:
    """Write (K, H, W) arrays as a zarr store in one of segaudit's two layouts.

    ``dtype`` converts (uint8/uint16 quantise); by default each array keeps its dtype.
    ``channels_last`` stores (H, W, K) / (N, H, W, K) and does NOT set the attribute
    (pass ``attrs={"channels_last": True}`` for that). ``row_chunk`` sets the chunk
    length along the row axis. ``image_ids`` overrides the stacked ``image_ids``
    attribute (default: the dict's keys in order); pass ``image_ids=[]`` to omit it.
    """
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    if attrs:
        group.attrs.update(attrs)
    stored = {i: (p if dtype is None else quantise(p, dtype)) for i, p in probs.items()}
    if channels_last:
        stored = {i: np.ascontiguousarray(np.moveaxis(p, 0, -1)) for i, p in stored.items()}
    row_axis = 0 if channels_last else 1
    if layout == "per-image":
        for image_id, arr in stored.items():
            chunks = list(arr.shape)
            if row_chunk:
                chunks[row_axis] = row_chunk
            z = group.create_array(name=image_id, shape=arr.shape, chunks=tuple(chunks), dtype=arr.dtype)
            z[...] = arr
    elif layout == "stacked":
        arrays = list(stored.values())
        stack = np.stack(arrays).astype(arrays[0].dtype, copy=False)  # np.stack drops the byte order
        chunks = [1, *stack.shape[1:]]
        if row_chunk:
            chunks[row_axis + 1] = row_chunk
        z = group.create_array(name="probs", shape=stack.shape, chunks=tuple(chunks), dtype=stack.dtype)
        z[...] = stack
        ids = list(stored) if image_ids is None else image_ids
        if ids:
            group.attrs["image_ids"] = ids
    else:
        raise ValueError(layout)
    return Path(path)


@dataclass
class Dataset:
    """A masks directory and a prediction store, plus the arrays they were made from."""

    masks: Path
    store: Path
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # float64 (K, H, W)


def make_dataset(
    root: Path,
    ids=("city/a", "city/b", "other/c"),
    *,
    n_classes: int = 4,
    size=(10, 7),
    sizes: dict[str, tuple[int, int]] | None = None,
    seed: int = 0,
    flip_fraction: float = 0.2,
    mask_mode: str = "P",
    **store_options,
) -> Dataset:
    """Random images with mostly-agreeing labels, written to ``root/masks`` and ``root/preds.zarr``.

    ``sizes`` gives some images their own (H, W); ``store_options`` go to :func:`write_store`.
    """
    rng = np.random.default_rng(seed)
    labels, probs = {}, {}
    for image_id in ids:
        height, width = (sizes or {}).get(image_id, size)
        probs[image_id] = random_probs(rng, n_classes, height, width)
        labels[image_id] = agreeing_labels(rng, probs[image_id], flip_fraction)
        labels[image_id][rng.random((height, width)) < 0.05] = 255
    root = Path(root)
    write_masks(root / "masks", labels, mask_mode)
    write_store(root / "preds.zarr", probs, **store_options)
    return Dataset(root / "masks", root / "preds.zarr", labels, probs)


def read_csv(text: str) -> list[dict[str, str]]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))
