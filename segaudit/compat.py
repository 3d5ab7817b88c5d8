"""A drop-in for cleanlab's ``cleanlab.segmentation.rank.get_label_quality_scores``."""

from __future__ import annotations

import numpy as np

from .arrays import score_arrays
from .methods import PER_IMAGE_METHODS


def get_label_quality_scores(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    method: str = "softmin",
    temperature: float = 0.1,
    batch_size: int | None = None,
    n_jobs: int | None = None,
    verbose: bool = False,
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
        ``"softmin"`` (cleanlab's default), or one of segaudit's other per-image methods
        ``"cil"``, ``"ccp"``, ``"tccp"``, ``"iou"``. cleanlab's ``"num_pixel_issues"`` is
        not available here.
    temperature : float
        Softmin temperature (cleanlab passes it through ``**kwargs``; default 0.1).
    batch_size, n_jobs, verbose, **kwargs
        Accepted for compatibility and ignored.

    Returns
    -------
    image_scores : np.ndarray
        float64 array of shape (N,), one score in [0, 1] per image; lower = more likely
        mislabeled.
    pixel_scores : np.ndarray
        float64 array of shape (N, H, W): the predicted probability of each pixel's
        annotated class.
    """
    if method not in PER_IMAGE_METHODS:
        raise ValueError(
            f"method {method!r} is not available; use one of {', '.join(PER_IMAGE_METHODS)}"
            + (" (confident-learning pixel counts are not implemented yet)" if method == "num_pixel_issues" else "")
        )
    results, pixel_scores = score_arrays(
        labels, pred_probs, methods=(method,), temperature=temperature, return_pixel_scores=True
    )
    return np.array([r.scores[method] for r in results], dtype=np.float64), pixel_scores
