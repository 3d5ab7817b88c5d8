"""How well a ranking finds known errors: ``segaudit evaluate`` (the paper's section 4.3).

Lower scores mean "more likely mislabeled", so an image is ranked above another when its
score is lower. For every score column of a ranking CSV and the true error labels of a
``truth.csv`` (``image,is_error,kind,classes``):

- **AUROC**: the probability that a random mislabeled image scores lower than a random
  clean one, ties counting one half (the area under the ROC curve, as scikit-learn's
  ``roc_auc_score`` computes it);
- **AUPRC**: average precision, sum over the distinct score values of
  (recall_n - recall_n-1) * precision_n (scikit-learn's ``average_precision_score``);
- **Lift@T**: precision among the T lowest-scoring images divided by the error prevalence,
  with T = the number of true errors, and **Lift@100** with T = 100 (or every image, when
  there are fewer). Images tied at the cut share the remaining places evenly: the lift is
  its expected value when ties are broken at random.

An image with an empty score (no scored pixel) counts as the least suspicious.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.rankings import read_score_columns
from ..io.tables import read_image_table, render

#: The metrics, in table order: key -> heading.
METRICS = {"auroc": "AUROC", "auprc": "AUPRC", "lift_at_t": "Lift@T", "lift_at_100": "Lift@100"}
LIFT_TOP = 100


# --- metrics on arrays -----------------------------------------------------------


def _suspicion(is_error: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(truth as bool, -score with NaN as -inf): higher = more suspicious."""
    truth = np.asarray(is_error, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 1:
        raise ValueError(f"is_error and scores must be 1-D and the same length, got {truth.shape} and {scores.shape}")
    return truth, np.where(np.isnan(scores), -np.inf, -scores)


def auroc(is_error, scores) -> float:
    """Area under the ROC curve of detecting ``is_error`` by low ``scores`` (ties count 1/2).

    NaN when all images are errors or none is.
    """
    truth, suspicion = _suspicion(is_error, scores)
    positives = int(truth.sum())
    negatives = truth.size - positives
    if positives == 0 or negatives == 0:
        return math.nan
    # Mann-Whitney U from mid-ranks: every tie contributes one half.
    order = np.argsort(suspicion, kind="stable")
    ordered = suspicion[order]
    _, first, counts = np.unique(ordered, return_index=True, return_counts=True)
    midrank = first + (counts + 1) / 2.0  # 1-based mid-rank of each distinct value
    ranks = np.empty(truth.size)
    ranks[order] = np.repeat(midrank, counts)
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(is_error, scores) -> float:
    """Average precision (area under the precision-recall step curve); NaN without errors."""
    truth, suspicion = _suspicion(is_error, scores)
    positives = int(truth.sum())
    if positives == 0:
        return math.nan
    order = np.argsort(-suspicion, kind="stable")
    ordered, hits = suspicion[order], truth[order]
    # One point per distinct value: the last position of each run of equal values.
    last = np.r_[np.flatnonzero(np.diff(ordered) != 0), ordered.size - 1]
    true_pos = np.cumsum(hits)[last]
    precision = true_pos / (last + 1)
    recall = true_pos / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_at(is_error, scores, top: int) -> float:
    """Expected precision among the ``top`` most suspicious images, ties at the cut broken at random."""
    truth, suspicion = _suspicion(is_error, scores)
    top = min(int(top), truth.size)
    if top <= 0:
        return math.nan
    cut = np.sort(suspicion)[::-1][top - 1]
    above = suspicion > cut
    tied = suspicion == cut
    places = top - int(above.sum())
    expected = truth[above].sum() + places * truth[tied].sum() / tied.sum()
    return float(expected / top)


def lift_at(is_error, scores, top: int) -> float:
    """Precision in the ``top`` most suspicious images divided by the error prevalence."""
    truth = np.asarray(is_error, dtype=bool)
    prevalence = truth.mean() if truth.size else 0.0
    if prevalence == 0:
        return math.nan
    return float(precision_at(truth, scores, top) / prevalence)


# --- reading the inputs ------------------------------------------------------------


def _text(value: str | None) -> str:
    return "" if value is None else value.strip()


def load_truth(path: str | Path) -> dict[str, tuple[bool, str]]:
    """``truth.csv`` -> {image: (is_error, kind)}; ``is_error`` is 0/1 (or false/true)."""
    path = Path(path)
    table = read_image_table(path, "truth file")
    if "is_error" not in table.header:
        raise InputError(f"{path}: truth file has no 'is_error' column (header: {','.join(table.header)})")
    truth = {}
    for index, row in enumerate(table.rows):
        value = _text(row["is_error"]).lower()
        if value not in ("0", "1", "true", "false"):
            raise table.error(index, f"is_error must be 0 or 1, got {row['is_error']!r}")
        truth[row["image"]] = (value in ("1", "true"), _text(row.get("kind")))
    return truth


# --- the evaluation ------------------------------------------------------------------


@dataclass
class Evaluation:
    """Every metric of every score column, and the counts behind them."""

    ranking: str
    truth: str
    images: int
    errors: int
    top: int  # the T of Lift@100: 100, or every image when there are fewer
    scores: dict[str, dict[str, float]]  # column -> metric -> value
    kinds: dict[str, int] = field(default_factory=dict)  # error kind -> number of errors
    truth_only: list[str] = field(default_factory=list)  # truth rows without a ranking row

    @property
    def prevalence(self) -> float:
        return self.errors / self.images

    def best(self, metric: str) -> set[str]:
        """The column(s) with the highest value of ``metric``."""
        values = {name: row[metric] for name, row in self.scores.items() if not math.isnan(row[metric])}
        if not values:
            return set()
        top = max(values.values())
        return {name for name, value in values.items() if value == top}

    def record(self) -> dict:
        return {
            "ranking": self.ranking,
            "truth": self.truth,
            "images": self.images,
            "errors": self.errors,
            "prevalence": self.prevalence,
            "t": self.errors,
            "top": self.top,
            "error_kinds": self.kinds,
            "truth_rows_not_ranked": len(self.truth_only),
            "methods": self.scores,
            "best": {metric: sorted(self.best(metric)) for metric in METRICS},
        }


def evaluate(ranking: str | Path, truth: str | Path) -> Evaluation:
    """Score every score column of ``ranking`` against ``truth`` (see the module docstring).

    Every ranked image must have a truth row; truth rows without a ranking row (images
    not scored) are left out and listed in ``truth_only``. InputError when the ranked
    images hold no error or nothing but errors.
    """
    image_ids, columns = read_score_columns(ranking)
    labels = load_truth(truth)
    missing = [image for image in image_ids if image not in labels]
    if missing:
        raise InputError(f"{truth}: no truth row for {len(missing)} ranked image(s): "
                         + ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else ""))
    ranked = set(image_ids)
    is_error = np.array([labels[image][0] for image in image_ids])
    errors = int(is_error.sum())
    if errors == 0 or errors == len(image_ids):
        state = "no" if errors == 0 else "every"
        raise InputError(f"{truth}: {state} ranked image is an error; AUROC and AUPRC need both errors "
                         "and clean images")
    top = min(LIFT_TOP, len(image_ids))
    scores = {
        name: {
            "auroc": auroc(is_error, values),
            "auprc": average_precision(is_error, values),
            "lift_at_t": lift_at(is_error, values, errors),
            "lift_at_100": lift_at(is_error, values, top),
        }
        for name, values in columns.items()
    }
    kinds = Counter(labels[image][1] or "?" for image in image_ids if labels[image][0])
    return Evaluation(ranking=str(ranking), truth=str(truth), images=len(image_ids), errors=errors, top=top,
                      scores=scores, kinds=dict(sorted(kinds.items())),
                      truth_only=sorted(image for image in labels if image not in ranked))


# --- output ----------------------------------------------------------------------------


#: Columns of the machine-readable output, one row per score column.
EVALUATION_COLUMNS = ["method", *METRICS, "images", "errors", "top"]


def evaluation_rows(evaluation: Evaluation) -> list[list]:
    """One row per score column, in :data:`EVALUATION_COLUMNS` order."""
    return [[name, *(row[m] for m in METRICS), evaluation.images, evaluation.errors, evaluation.top]
            for name, row in evaluation.scores.items()]


def evaluation_text(evaluation: Evaluation, fmt: str = "csv") -> str:
    """The evaluation as csv, jsonl or json (:mod:`segaudit.io.tables`, like every ``--format``)."""
    return render(EVALUATION_COLUMNS, evaluation_rows(evaluation), fmt)


def evaluation_table(evaluation: Evaluation):
    """A rich Table: one row per score column, the best value of each metric in bold green."""
    from rich.table import Table
    from rich.text import Text

    title = f"{evaluation.images} images, {evaluation.errors} errors (prevalence {evaluation.prevalence:.1%})"
    table = Table(title=title, title_justify="left", min_width=72,
                  caption=f"Lower score = more likely error. Lift@T: T = {evaluation.errors} (the true errors); "
                          f"Lift@100: T = {evaluation.top}. Best per metric in bold.",
                  caption_justify="left")
    table.add_column("method")
    for heading in METRICS.values():
        table.add_column(heading, justify="right")
    # Highlight by the values as shown, so that equal-looking values look equal.
    shown = {name: {m: "" if math.isnan(v) else f"{v:.3f}" for m, v in row.items()}
             for name, row in evaluation.scores.items()}
    best = {m: max((texts[m] for texts in shown.values() if texts[m]), key=float, default=None) for m in METRICS}
    for name, texts in shown.items():
        cells = [Text(texts[m], style="bold green" if texts[m] and texts[m] == best[m] else "") for m in METRICS]
        table.add_row(Text(name), *cells)
    return table
