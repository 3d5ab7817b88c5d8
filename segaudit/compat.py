"""Drop-ins for cleanlab's ``cleanlab.segmentation`` functions, on in-memory arrays.

- :func:`get_label_quality_scores` for ``cleanlab.segmentation.rank.get_label_quality_scores``;
- :func:`find_label_issues` for ``cleanlab.segmentation.filter.find_label_issues``.

Both run segaudit's streaming kernels over views of the caller's arrays (see
:mod:`segaudit.api`), without cleanlab's (N, K, H, W) temporaries or its per-pixel
Python objects.

They check every argument cleanlab documents as cleanlab does, and raise an exception of
the type cleanlab raises (where cleanlab fails by accident, an error that is both that
type and a ValueError, with a message that says what is wrong). What they refuse that
cleanlab takes, unnormalised ``pred_probs`` first, is listed in docs/cleanlab.md.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .api import score_array_dataset
from .core.arrays import ArrayDataset, array_dataset
from .core.dataset import Remedies, Remedy, check_ignore
from .core.kernel import check_temperature
from .errors import InputError
from .methods import PER_IMAGE_METHODS

#: Where find_label_issues keeps its cell cache (Linux's tmpfs), if it exists.
SHARED_MEMORY = Path("/dev/shm")

#: cleanlab's method that scores an image by its share of confident-learning flags.
NUM_PIXEL_ISSUES = "num_pixel_issues"

#: What the drop-ins advise for pred_probs that are not probabilities: they take no
#: ``logits`` or ``channels_last`` argument (cleanlab's signatures), so the remedy is the
#: caller's, or segaudit's own array API.
COMPAT_REMEDIES = Remedies(
    logits=Remedy("pred_probs must be probabilities: normalise each pixel's K values to sum to 1, "
                  "e.g. a softmax over axis 1 if they are logits, or pass the logits to "
                  "segaudit.score_arrays(labels, logits, logits=True)"),
    channels_last=Remedy("move the class axis first: np.moveaxis(pred_probs, -1, 1)"),
)


class LabelIndexError(InputError, IndexError):
    """labels that are not class indices 0..K-1: an InputError (a ValueError), as segaudit
    refuses bad input, and the IndexError cleanlab's indexing by the labels raises."""


class ZeroDownsampleError(InputError, ZeroDivisionError):
    """``downsample=0``: an InputError (a ValueError), as for any bad downsample, and the
    ZeroDivisionError cleanlab's ``H % downsample`` raises."""


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
    (N, K, H, W) boolean and float64 temporaries. Every argument is checked as cleanlab
    checks it, with the exception type cleanlab raises.

    Unlike cleanlab, ``pred_probs`` must be probabilities: each scored pixel's K values
    finite, >= 0 and summing to 1 (within the dtype's rounding). Arrays that are not (raw
    logits, scores, NaN) are refused with a ValueError naming the image and pixel, where
    cleanlab would score them as given and return numbers that mean nothing. Normalise
    them (a softmax over axis 1 for logits), or score logits with
    ``segaudit.score_arrays(labels, logits, logits=True)``. Every difference from cleanlab
    is listed in docs/cleanlab.md.

    Parameters
    ----------
    labels : np.ndarray
        Integer class indices in 0, ..., K-1, shape (N, H, W). Float labels, or values
        outside 0..K-1 (negative ones included, which cleanlab reads from the end) that
        ``ignore_index`` does not name, raise an error that is both a ValueError and
        cleanlab's IndexError.
    pred_probs : np.ndarray
        Predicted class probabilities, shape (N, K, H, W); float16/32/64, or uint8/uint16
        read as quantised probabilities (value / 255 or / 65535). Must sum to 1 per
        pixel (see above).
    method : str
        ``"softmin"`` (cleanlab's default), cleanlab's ``"num_pixel_issues"`` (1 - the
        fraction of the image's pixels that :func:`find_label_issues` flags), or one of
        segaudit's other per-image methods ``"rsoftmin"``, ``"cil"``, ``"ccp"``,
        ``"tccp"``, ``"iou"``. Anything else is a ValueError.
    temperature : float
        Softmin temperature (cleanlab takes it through ``**kwargs``; default 0.1), for
        ``"softmin"`` and ``"rsoftmin"``; ignored by ``"num_pixel_issues"``, as in
        cleanlab. Must be a positive finite number: 0 is an error, as in cleanlab, and
        so are negative, infinite and NaN temperatures (which cleanlab computes with); a
        value that is not a number is a TypeError.
    downsample : int
        Cell size for ``"num_pixel_issues"`` (cleanlab takes it through ``**kwargs``;
        default 1), checked as in :func:`find_label_issues`. The other methods do not
        downsample, and warn (a UserWarning, as cleanlab's) when it is not 1.
    ignore_index : int or iterable of int, optional
        segaudit only (cleanlab has no ignore index): label values that take no part in
        the scores, e.g. ``255``; their pixel scores are NaN. None (the default) ignores
        nothing, as cleanlab does; ``segaudit score`` ignores 255 by default. Not
        available with ``"num_pixel_issues"``.
    batch_size : int, optional
        Checked as cleanlab checks it, and otherwise unused (segaudit streams image by
        image): a number <= 0 is cleanlab's ValueError, anything but a number a
        TypeError; with ``"num_pixel_issues"`` it must be a whole number, as there.
    n_jobs : int, optional
        Unused: segaudit's ``threads`` sets its parallelism. With ``"num_pixel_issues"``
        it is checked as cleanlab's process pool checks it (None, or a whole number >=
        1: a ValueError below 1, a TypeError for anything else); ``"softmin"`` ignores it,
        as in cleanlab.
    verbose : bool
        Accepted and ignored: nothing is printed.
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
        issues = find_label_issues(labels, pred_probs, batch_size=batch_size, downsample=downsample, n_jobs=n_jobs,
                                   threads=threads)
        image_scores = 1 - np.mean(issues, axis=(1, 2))
        labels = np.asarray(labels)
        pred_probs = np.asarray(pred_probs)
        pixel_scores = np.take_along_axis(pred_probs, labels[:, None].astype(np.intp), axis=1)[:, 0]
        return image_scores, pixel_scores
    # cleanlab checks batch_size whatever the method, and ignores n_jobs here.
    _check_batch_size(batch_size, whole=False)
    if method not in PER_IMAGE_METHODS:
        raise ValueError(f"method {method!r} is not available; use one of "
                         f"{', '.join(PER_IMAGE_METHODS + (NUM_PIXEL_ISSUES,))}")
    if not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a positive number, got {temperature!r}")
    check_temperature(temperature)
    if downsample != 1:
        warnings.warn(f"downsample={downsample!r} is ignored: only method={NUM_PIXEL_ISSUES!r} downsamples, "
                      f"not {method!r}", UserWarning, stacklevel=2)
    dataset = _dataset(labels, pred_probs, ignore)
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
    (which takes ``downsample`` through ``**kwargs``), each checked as cleanlab checks it,
    with the exception type cleanlab raises. Confident learning over every
    cell of the dataset: per-class thresholds t_k (the mean p_k of the cells annotated
    k), the number n of cells whose argmax j is not their label and p_j >= t_j - 1e-6,
    the n cells with the lowest p[label] flagged; then every pixel of a flagged cell is
    flagged unless its own argmax equals its own label.

    Unlike cleanlab, ``pred_probs`` must be probabilities: each pixel's K values finite,
    >= 0 and summing to 1 (within the dtype's rounding). Arrays that are not (raw logits,
    scores, NaN) are refused with a ValueError naming the image and pixel, where cleanlab
    would threshold them as given. Normalise them (a softmax over axis 1 for logits).
    Every difference from cleanlab is listed in docs/cleanlab.md.

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
        Integer class indices in 0, ..., K-1, shape (N, H, W). Float labels, or values
        outside 0..K-1 (negative ones included), raise an error that is both a
        ValueError (cleanlab's, for values >= K) and an IndexError.
    pred_probs : np.ndarray
        Predicted class probabilities, shape (N, K, H, W); float16/32/64 or quantised
        uint8/uint16 (value / 255 or / 65535). Must sum to 1 per pixel (see above).
    batch_size : int, optional
        Checked as cleanlab checks it, and otherwise unused (segaudit streams image by
        image): None, or a whole number > 0 (cleanlab's ValueError for <= 0, a
        TypeError for anything but a whole number).
    downsample : int
        Cell size F (1 = every pixel is a cell). H and W must be multiples of it (a
        ValueError, cleanlab's message); a number that is not a whole one is a
        TypeError, a negative one a ValueError, and 0 a ValueError that is also
        cleanlab's ZeroDivisionError. Any value equal to 1 means no downsampling, as in
        cleanlab.
    n_jobs : int, optional
        Unused (``threads`` sets segaudit's parallelism), but checked as cleanlab's
        process pool checks it: None, or a whole number >= 1 (a ValueError below 1, a
        TypeError for anything else).
    verbose : bool
        Accepted and ignored: nothing is printed.
    threads : int, optional
        segaudit only: worker threads that score images at once (default: every core
        this process may use); the flags are the same for any number.
    **kwargs
        None other: an unknown keyword is a TypeError naming it (cleanlab would ignore
        a misspelt ``downsampel`` and flag at full resolution).

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
    _check_batch_size(batch_size, whole=True)
    _check_n_jobs(n_jobs)
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs)
    dataset = _dataset(labels, pred_probs, ())
    height, width = labels.shape[1:]
    factor = _check_downsample(downsample, height, width)
    if factor > 1:
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


def _dataset(labels, pred_probs, ignore: tuple[int, ...]) -> ArrayDataset:
    """The arrays as a dataset, shapes checked (cleanlab's ValueError), then the labels:
    integer class indices 0..K-1 or ignored values (cleanlab's IndexError, see
    :class:`LabelIndexError`); a refusal of pred_probs advises what the drop-ins' caller
    can do (:data:`COMPAT_REMEDIES`)."""
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.dtype.kind not in "iub":
        raise LabelIndexError(f"labels must hold integer class indices, not {labels.dtype} "
                              "(cast them with labels.astype(int) if they are whole numbers)")
    dataset = array_dataset(labels, pred_probs, ignore_index=ignore, remedies=COMPAT_REMEDIES)
    n_classes = dataset.store.n_classes
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        outside = np.unique(labels[(labels < 0) | (labels >= n_classes)])
        outside = outside[~np.isin(outside, ignore)]
        if outside.size:
            shown = ", ".join(str(v) for v in outside[:3]) + (f" and {outside.size - 3} more" if outside.size > 3 else "")
            named = f" or an ignore_index ({', '.join(map(str, ignore))})" if ignore else ""
            raise LabelIndexError(f"labels must be class indices 0..{n_classes - 1} (K={n_classes}){named}; "
                                  f"got {shown}")
    return dataset


def _check_batch_size(batch_size, *, whole: bool) -> None:
    """cleanlab's check (``segmentation_utils._get_valid_optional_params``): None, or a
    number > 0; ``whole`` where cleanlab counts images with it (confident learning)."""
    if batch_size is None:
        return
    if not isinstance(batch_size, numbers.Real):
        raise TypeError(f"batch_size must be a whole number > 0 or None, got {batch_size!r}")
    if batch_size <= 0:
        raise ValueError(f"Batch size must be greater than 0, got {batch_size} (batch_size only sizes cleanlab's "
                         "batches: None is fine)")
    if whole and not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size must be a whole number > 0 or None, got {batch_size!r}")


def _check_n_jobs(n_jobs) -> None:
    """cleanlab's: None or 1 run in this process; else the processes of a pool, which
    must be a whole number >= 1 (multiprocessing's checks, in its order)."""
    if n_jobs is None or (isinstance(n_jobs, numbers.Real) and n_jobs == 1):
        return
    if not isinstance(n_jobs, numbers.Real):
        raise TypeError(f"n_jobs must be a whole number >= 1 or None, got {n_jobs!r}")
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be at least 1 (or None), got {n_jobs}; segaudit ignores it: "
                         "threads= sets its worker threads")
    if not isinstance(n_jobs, numbers.Integral):
        raise TypeError(f"n_jobs must be a whole number >= 1 or None, got {n_jobs!r}")


def _check_downsample(downsample, height: int, width: int) -> int:
    """The cell size, checked in the order cleanlab's arithmetic fails on it: any value
    equal to 1 is no downsampling; then H % F and W % F (by zero: ZeroDivisionError; not
    0: cleanlab's ValueError); then a whole number (TypeError), not negative (ValueError)."""
    if isinstance(downsample, numbers.Real) and downsample == 1:
        return 1
    wrong = f"downsample must be a whole number >= 1, got {downsample!r}"
    if not isinstance(downsample, numbers.Real):
        raise TypeError(wrong)
    if downsample == 0:
        raise ZeroDownsampleError(wrong)
    if height % downsample or width % downsample:
        raise ValueError(f"Height {height} and width {width} not divisible by downsample value of "
                         f"{downsample}. Set kwarg downsample to 1 to avoid downsampling.")
    if not isinstance(downsample, numbers.Integral):
        raise TypeError(wrong)
    if downsample < 0:
        raise ValueError(wrong)
    return int(downsample)


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
