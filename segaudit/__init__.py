"""segaudit: find annotation errors in semantic-segmentation datasets.

The public API is imported lazily so that ``segaudit --help`` starts without loading
numba or zarr::

    import segaudit
    run = segaudit.score("masks/", "preds.zarr", methods=("softmin", "cil"))
    run.results[0].image_id            # the image most likely mislabeled
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "score": "segaudit.scoring",
    "ScoreRun": "segaudit.scoring",
    "ImageResult": "segaudit.scoring",
    "score_arrays": "segaudit.arrays",
    "get_label_quality_scores": "segaudit.compat",
    "write_ranking": "segaudit.output",
    "InputError": "segaudit.errors",
    "METHODS": "segaudit.methods",
    "PredictionWriter": "segaudit.writer",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segaudit' has no attribute {name!r}")
