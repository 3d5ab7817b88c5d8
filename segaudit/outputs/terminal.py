"""Rich tables shown on a terminal (the worst images after a run)."""

from __future__ import annotations

import math

from rich.table import Table

from ..results import ScoreRun
from .text import format_score


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
        scores = [format_score(result.scores[m], missing="—", fixed=True) for m in run.methods]
        classes = (
            f"{run.class_name(result.suspect_class)} → {run.class_name(result.likely_class)}"
            if result.low_pixels else ""
        )
        table.add_row(str(rank), result.image_id, *scores, str(result.low_pixels), classes)
    return table


def confusion_table(rows, run: ScoreRun, top: int = 20) -> Table:
    """The class-confusion summary: annotated -> predicted, flagged pixels, images, share."""
    flagged = sum(row.pixels for row in rows)
    table = Table(title=f"class mix-ups among {flagged} flagged pixels (clc, downsample {run.clc.downsample}): "
                        f"top {min(top, len(rows))} of {len(rows)}")
    table.add_column("annotated")
    table.add_column("model sees")
    table.add_column("pixels", justify="right")
    table.add_column("images", justify="right")
    table.add_column("share of class", justify="right")
    for row in rows[:top]:
        share = "—" if math.isnan(row.share) else f"{row.share:.2%}"
        table.add_row(run.class_name(row.annotated), run.class_name(row.predicted), str(row.pixels),
                      str(row.images), share)
    return table


def diff_table(changes, tolerance: float) -> Table:
    """What changed between two rankings."""
    table = Table(title=f"{len(changes.regressed)} regressed (fell by > {tolerance:g}), "
                        f"{len(changes.new_under_gate)} new under the gate, {len(changes.added)} added, "
                        f"{len(changes.removed)} removed (by {changes.method})")
    for name, justify in (("image", "left"), ("change", "left"), ("base", "right"), ("head", "right"),
                          ("delta", "right")):
        table.add_column(name, justify=justify, overflow="fold" if name == "image" else "ellipsis")

    for image_id, change, old, new, delta in changes.rows():
        table.add_row(image_id, change, *(format_score(v, missing="—", fixed=True) for v in (old, new, delta)))
    return table
