"""segaudit: find annotation errors in semantic-segmentation datasets.

The public API is imported lazily so that ``segaudit --help`` starts without loading
numba or zarr::

    import segaudit
    run = segaudit.score("masks/", "preds.zarr", methods=("softmin", "cil"))
    run.results[0].image_id            # the image most likely mislabeled
    found = segaudit.regions("masks/", "preds.zarr")
    found.regions[0]                   # the region most likely mislabeled, with its kind
"""

from importlib import import_module

from .core.numba_cache import ensure_numba_cache, load_kernels_without_refresh

__version__ = "0.1.0"

# Before any kernel is compiled: a writable place for Numba's cache (a read-only install
# without a writable HOME has none; see segaudit.core.numba_cache).
ensure_numba_cache()
# Cached kernels load without Numba's registries (0.3 s a run; see load_kernels_without_refresh).
load_kernels_without_refresh()

_LAZY = {
    "score": "segaudit.api",
    "ScoreRun": "segaudit.results",
    "ImageResult": "segaudit.results",
    "score_arrays": "segaudit.api",
    "score_arrays_run": "segaudit.api",
    "get_label_quality_scores": "segaudit.compat",
    "find_label_issues": "segaudit.compat",
    "write_ranking": "segaudit.outputs.ranking",
    "InputError": "segaudit.errors",
    "METHODS": "segaudit.methods",
    "PredictionWriter": "segaudit.io.writer",
    "regions": "segaudit.api",
    "RegionRule": "segaudit.core.regions",
    "Region": "segaudit.core.regions",
    "write_regions": "segaudit.outputs.regions",
    "InputSpec": "segaudit.results",
}

__all__ = [  # noqa: RUF022 (the order of _LAZY)
    "__version__", "score", "ScoreRun", "ImageResult", "score_arrays", "score_arrays_run",
    "get_label_quality_scores",
    "find_label_issues", "write_ranking", "InputError", "METHODS", "PredictionWriter",
    "regions", "RegionRule", "Region", "write_regions", "InputSpec",
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segaudit' has no attribute {name!r}")
