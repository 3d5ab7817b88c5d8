"""Rich tables shown on a terminal (the worst images after a run)."""

from __future__ import annotations

import math

from rich.table import Table

from .scoring import ScoreRun


def worst_table(run: ScoreRun, rows: int = 10) -> Table:
    """A rich table of the ``rows`` worst-ranked images."""
    table = Table(title=f"{min(rows, len(run.results))} worst of {len(run.results)} images (by {run.methods[0]})")
    table.add_column("rank", justify="right")
    table.add_column("image", overflow="fold")
    for method in run.methods:
        table.add_column(method, justify="right")
    table.add_column("low px", justify="right")
    table.add_column("suspect → likely")
    for rank, result in enumerate(run.results[:rows], 1):
        scores = ["—" if math.isnan(result.scores[m]) else f"{result.scores[m]:.4f}" for m in run.methods]
        classes = (
            f"{run.class_name(result.suspect_class)} → {run.class_name(result.likely_class)}"
            if result.low_pixels else ""
        )
        table.add_row(str(rank), result.image_id, *scores, str(result.low_pixels), classes)
    return table
