"""Rich tables shown on a terminal (the worst images after a run)."""

from __future__ import annotations

import math

from rich.table import Table

from ..results import ScoreRun
from .text import format_score


def worst_table(run: ScoreRun, rows: int = 10, width: int | None = None) -> Table:
    """A rich table of the ``rows`` worst-ranked images.

    With ``width`` (the terminal's columns), the table fits it: the rank, the image id and
    the ranking score always show in full; then the low-pixel count, the classes and the
    other methods' columns, each only if it fits (the caption names those left out; the
    CSV has them all).
    """
    shown = run.results[:rows]
    classes = [
        f"{run.class_name(r.suspect_class)} → {run.class_name(r.likely_class)}" if r.low_pixels else ""
        for r in shown
    ]
    scores = {m: [format_score(r.scores[m], missing="—", fixed=True) for r in shown] for m in run.methods}
    id_width = max([len("image"), *(len(r.image_id) for r in shown)])
    if width is not None:
        id_width = min(id_width, max(12, width // 3))

    def need(header: str, cells) -> int:
        return max([len(header), *(len(c) for c in cells)])

    # (key, width) in priority order; a column costs its width plus 3 (padding, rule).
    columns = [("rank", need("rank", [str(len(shown))])), ("image", id_width),
               (run.methods[0], need(run.methods[0], scores[run.methods[0]]))]
    optional = [("low px", need("low px", [str(r.low_pixels) for r in shown])),
                ("classes", need("suspect → likely", classes))]
    optional += [(m, need(m, scores[m])) for m in run.methods[1:]]
    kept = {key for key, _ in columns}
    left_out = []
    used = 1 + sum(w + 3 for _, w in columns)
    for key, w in optional:
        if width is None or used + w + 3 <= width:
            kept.add(key)
            used += w + 3
        else:
            left_out.append(key)
    methods = [m for m in run.methods if m in kept]
    table = Table(title=f"{len(shown)} worst of {len(run.results)} images (by {run.methods[0]})",
                  caption=f"not shown (too narrow): {', '.join(left_out)}" if left_out else None)
    table.add_column("rank", justify="right", no_wrap=True)
    table.add_column("image", overflow="fold", min_width=id_width)
    for method in methods:
        table.add_column(method, justify="right", no_wrap=True)
    if "low px" in kept:
        table.add_column("low px", justify="right", no_wrap=True)
    if "classes" in kept:
        table.add_column("suspect → likely", overflow="fold")
    for rank, (result, phrase) in enumerate(zip(shown, classes), 1):
        row = [str(rank), result.image_id, *(scores[m][rank - 1] for m in methods)]
        if "low px" in kept:
            row.append(str(result.low_pixels))
        if "classes" in kept:
            row.append(phrase)
        table.add_row(*row)
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
    scale = changes.scale
    measure = "in rank percentile" if scale == "percentile" else "in score"
    table = Table(title=f"{len(changes.regressed)} regressed (fell by > {tolerance:g} {measure}), "
                        f"{len(changes.improved)} improved, "
                        f"{len(changes.new_under_gate)} new under the gate, {len(changes.added)} added, "
                        f"{len(changes.removed)} removed (by {changes.method})")
    columns = [("image", "left"), ("change", "left"), ("base", "right"), ("head", "right"), ("delta", "right")]
    if scale == "percentile":
        columns += [("base %", "right"), ("head %", "right")]
    for name, justify in columns:
        table.add_column(name, justify=justify, overflow="fold" if name == "image" else "ellipsis")

    for image_id, change, old, new, delta, base_pct, head_pct in changes.rows():
        cells = [format_score(v, missing="—", fixed=True) for v in (old, new, delta)]
        if scale == "percentile":
            cells += ["—" if v is None else f"{100 * v:.0f}" for v in (base_pct, head_pct)]
        table.add_row(image_id, change, *cells)
    return table
