"""Drop-ins for cleanlab's ``cleanlab.segmentation`` functions, on in-memory arrays.

- :func:`get_label_quality_scores` for ``cleanlab.segmentation.rank.get_label_quality_scores``;
- :func:`find_label_issues` for ``cleanlab.segmentation.filter.find_label_issues``.

Both run segaudit's streaming kernels over views of the caller's arrays (see
:mod:`segaudit.api`), without cleanlab's (N, K, H, W) temporaries or its per-pixel
Python objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .api import score_array_dataset
from .core.arrays import ArrayDataset, array_dataset
from .core.dataset import check_ignore
from .errors import InputError
from .methods import PER_IMAGE_METHODS

#: Where find_label_issues keeps its cell cache (Linux's tmpfs), if it exists.
SHARED_MEMORY = Path("/dev/shm")

#: cleanlab's method that scores an image by its share of confident-learning flags.
NUM_PIXEL_ISSUES = "num_pixel_issues"


def get_label_quality_scores(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    method: str = "softmin",
    temperature: float = 0.1,
    downsample: int = 1,
    ignore_index: int | Iterable[int] | None = None,
    batch_size: int | None = None,
    n_jobs: int | None = None,
    verbose: bool = False,
    threads: int | None = None,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns a label quality score for each image, as cleanlab does.

    Same arguments and return values as
    ``cleanlab.segmentation.rank.get_label_quality_scores``; the scores agree with
    cleanlab's to ~1e-12, computed by segaudit's streaming kernel without the
    (N, K, H, W) boolean and float64 temporaries.

    Parameters
    ----------
    labels : np.ndarray
        Integer class indices in 0, ..., K-1, shape (N, H, W).
    pred_probs : np.ndarray
        Predicted class probabilities, shape (N, K, H, W).
    method : str
        ``"softmin"`` (cleanlab's default), cleanlab's ``"num_pixel_issues"`` (1 - the
        fraction of the image's pixels that :func:`find_label_issues` flags), or one of
        segaudit's other per-image methods ``"cil"``, ``"ccp"``, ``"tccp"``, ``"iou"``.
    temperature : float
        Softmin temperature (cleanlab takes it through ``**kwargs``; default 0.1).
    downsample : int
        Cell size for ``"num_pixel_issues"`` (cleanlab takes it through ``**kwargs``;
        default 1); unused by the other methods.
    ignore_index : int or iterable of int, optional
        segaudit only (cleanlab has no ignore index): label values that take no part in
        the scores, e.g. ``255``; their pixel scores are NaN. None (the default) ignores
        nothing, as cleanlab does; ``segaudit score`` ignores 255 by default. Not
        available with ``"num_pixel_issues"``.
    batch_size, n_jobs, verbose
        Accepted for compatibility and ignored.
    threads : int, optional
        segaudit only: worker threads that score images at once (default: every core
        this process may use); the scores are the same for any number.
    **kwargs
        None other: an unknown keyword is a TypeError naming it (cleanlab would ignore
        it silently).

    Returns
    -------
    image_scores : np.ndarray
        float64 array of shape (N,), one score in [0, 1] per image; lower = more likely
        mislabeled.
    pixel_scores : np.ndarray
        Array of shape (N, H, W): the predicted probability of each pixel's annotated
        class; float64, or for ``"num_pixel_issues"`` pred_probs' dtype, as in cleanlab.
    """
    if kwargs:
        raise TypeError(f"get_label_quality_scores() got unexpected keyword argument(s) "
                        f"{', '.join(repr(k) for k in sorted(kwargs))}; it takes method, temperature, downsample, "
                        "ignore_index, batch_size, n_jobs, verbose and threads")
    ignore = check_ignore(ignore_index)
    if method == NUM_PIXEL_ISSUES:
        if ignore:
            raise ValueError(f"ignore_index is not available with method={NUM_PIXEL_ISSUES!r} (cleanlab's "
                             "confident learning has no ignored pixels); use method='softmin' or another "
                             "per-image method")
        issues = find_label_issues(labels, pred_probs, downsample=downsample, threads=threads)
        image_scores = 1 - np.mean(issues, axis=(1, 2))
        labels = np.asarray(labels)
        pred_probs = np.asarray(pred_probs)
        pixel_scores = np.take_along_axis(pred_probs, labels[:, None].astype(np.intp), axis=1)[:, 0]
        return image_scores, pixel_scores
    if method not in PER_IMAGE_METHODS:
        raise ValueError(f"method {method!r} is not available; use one of "
                         f"{', '.join(PER_IMAGE_METHODS + (NUM_PIXEL_ISSUES,))}")
    dataset = array_dataset(labels, pred_probs, ignore_index=ignore)
    run, pixel_scores = score_array_dataset(dataset, (method,), temperature=temperature, return_pixel_scores=True,
                                            threads=threads)
    return np.array([r.scores[method] for r in run.results], dtype=np.float64), pixel_scores


def find_label_issues(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    batch_size: int | None = None,
    downsample: int = 1,
    n_jobs: int | None = None,
    verbose: bool = False,
    threads: int | None = None,
    **kwargs,
) -> np.ndarray:
    """A boolean (N, H, W) mask of the pixels with a label issue, as cleanlab finds them.

    The arguments and return value of ``cleanlab.segmentation.filter.find_label_issues``
    (which takes ``downsample`` through ``**kwargs``). Confident learning over every
    cell of the dataset: per-class thresholds t_k (the mean p_k of the cells annotated
    k), the number n of cells whose argmax j is not their label and p_j >= t_j - 1e-6,
    the n cells with the lowest p[label] flagged; then every pixel of a flagged cell is
    flagged unless its own argmax equals its own label.

    At ``downsample`` F > 1 the cells are cleanlab's: the F×F mean of the probabilities,
    renormalised, and the *rounded mean of the class indices* as the cell's label (which
    can be a class none of its pixels has; ``segaudit score`` takes the majority label
    instead, see :mod:`segaudit.core.pooling`).

    Where the flags can still differ from cleanlab's (see docs/performance.md):

    - ties in p[label] at the n-th cell go to the earlier cell (image, then row-major);
      cleanlab's order there is that of numpy's unstable argsort;
    - segaudit pools and averages the thresholds in float64; cleanlab in pred_probs'
      dtype, batch by batch (float16 input gets float16 thresholds), and clips each
      batch's class means at 2e-6 rather than only the total. A cell whose p[pred] or
      p[label] lies within that rounding of a threshold or of another cell can go
      either way.

    Parameters
    ----------
    labels : np.ndarray
        Integer class indices in 0, ..., K-1, shape (N, H, W).
    pred_probs : np.ndarray
        Predicted class probabilities, shape (N, K, H, W); float16/32/64 or quantised
        uint8/uint16.
    downsample : int
        Cell size F (1 = every pixel is a cell). H and W must be multiples of it.
    batch_size, n_jobs, verbose
        Accepted for compatibility and ignored.
    **kwargs
        None other: an unknown keyword is a TypeError naming it (cleanlab would ignore
        a misspelt ``downsampel`` and flag at full resolution).
    threads : int, optional
        segaudit only: worker threads that score images at once (default: every core
        this process may use); the flags are the same for any number.

    Returns
    -------
    label_issues : np.ndarray
        bool (N, H, W), True where a pixel's label is likely wrong.
    """
    from .core.cells import cell_cache
    from .methods.clc import flag_pass

    if kwargs:
        raise TypeError(f"find_label_issues() got unexpected keyword argument(s) "
                        f"{', '.join(repr(k) for k in sorted(kwargs))}; it takes downsample, batch_size, n_jobs, "
                        "verbose and threads")
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs)
    if not isinstance(downsample, (int, np.integer)) or isinstance(downsample, bool) or downsample < 1:
        raise ValueError(f"downsample must be a whole number >= 1, got {downsample!r}")
    factor = int(downsample)
    dataset = array_dataset(labels, pred_probs)
    _check_classes(dataset)
    if factor > 1:
        height, width = dataset.store.image_shape(None)
        if height % factor or width % factor:
            raise ValueError(f"Height {height} and width {width} not divisible by downsample value of "
                             f"{factor}. Set kwarg downsample to 1 to avoid downsampling.")
        # cleanlab's cell labels, exactly as it computes them.
        n_images = labels.shape[0]
        cell_labels = np.round(
            labels.reshape((n_images, height // factor, factor, width // factor, factor)).mean((4, 2))
        ).astype(np.int32)
        dataset = _CellLabels(**{f.name: getattr(dataset, f.name) for f in dataclasses.fields(dataset)},
                              cell_labels=cell_labels, factor=factor)
    issues = np.zeros(labels.shape, bool)
    # The cells and every pixel's argmax stay in a cell cache, so the flag maps need no
    # second pooling of the arrays. The arrays are in memory already, so the cache goes to
    # shared memory (tmpfs) where there is one, not to disk.
    parent = SHARED_MEMORY if SHARED_MEMORY.is_dir() else None
    with cell_cache(dataset, factor, pixels=True, parent=parent) as cache:
        run, _ = score_array_dataset(dataset, ("clc",), downsample=factor, cache=cache, threads=threads)
        if run.clc.selection is None:  # no issue anywhere
            return issues
        if factor == 1:
            def on_image(index, image_id, flag_map, confusion):
                issues[index] = flag_map.view(bool)

            flag_pass(dataset, factor, run.clc.selection, on_image=on_image, cache=cache)
        else:
            _flag_cells(dataset, run.clc.selection, issues, cache)
    return issues


def _check_classes(dataset: ArrayDataset) -> None:
    """cleanlab's labels are classes 0..K-1, with no ignore index."""
    labels, n_classes = dataset.labels, dataset.store.n_classes
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise InputError(f"labels must be class indices 0..{n_classes - 1} (K={n_classes}); "
                         f"got values from {labels.min()} to {labels.max()}")


@dataclass
class _CellLabels(ArrayDataset):
    """Labels read as cleanlab's cell labels, each repeated over its cell's F×F pixels.

    The pooling of :mod:`segaudit.core.pooling` then gives every cell that label (its
    pixels' only one), so thresholds, the issue count and the selection are cleanlab's.
    """

    cell_labels: np.ndarray | None = None
    factor: int = 1

    def read_labels(self, mask: int) -> np.ndarray:
        cells = self.cell_labels[mask]
        return np.repeat(np.repeat(cells, self.factor, axis=0), self.factor, axis=1)


def _flag_cells(dataset: _CellLabels, selection, issues: np.ndarray, cache) -> None:
    """cleanlab's flags at F > 1: the selected cells, then every pixel of them whose own
    argmax is not its own label (the cell's label plays no part here)."""
    if not selection.exact:
        raise AssertionError("confident learning's selection is exact once settled")
    low, take = np.uint64(selection.low), selection.take
    factor = dataset.factor
    for index, s, pixel_pred in _cells_and_argmax(dataset, issues.shape[1:], cache):
        bits = s.view(np.uint64)
        chosen = bits < low
        if take:
            ties = np.flatnonzero(bits.ravel() == low)[:take]  # row-major: dataset order
            chosen.ravel()[ties] = True
            take -= len(ties)
        full = np.repeat(np.repeat(chosen, factor, axis=0), factor, axis=1)
        issues[index] = full & (pixel_pred != dataset.labels[index])


def _cells_and_argmax(dataset: _CellLabels, shape: tuple[int, int], cache):
    """Per image, in order: (index, the cells' s (grid), every pixel's argmax), from the
    cache when there is one, else by pooling the arrays again."""
    from .core.pooling import grid_shape, pool

    grid = grid_shape(*shape, dataset.factor)
    if cache is None:
        for index, image_id in dataset.pairs:
            cells = pool(dataset.read_block(image_id, 0, shape[0]), dataset.read_labels(index),
                         dataset.decoding, dataset.factor)
            yield index, cells.s, cells.pixel_pred
        return
    for first, offsets, cells in cache.chunks(("s",)):
        for i in range(len(offsets) - 1):
            index = first + i
            yield index, cells["s"][offsets[i]:offsets[i + 1]].reshape(grid), cache.pixel_pred(index)
