"""The terminal tables fit the terminal."""

from __future__ import annotations

from rich.console import Console

from datasets import FIXTURES
from segaudit import score
from segaudit.methods import METHODS
from segaudit.outputs.terminal import worst_table


def render(table, width):
    console = Console(width=width, record=True, color_system=None, legacy_windows=False)
    console.print(table)
    return console.export_text()


def test_worst_table_of_every_method_fits_80_columns_with_ids_and_scores_whole():
    run = score(FIXTURES / "masks", FIXTURES / "preds.zarr", methods=tuple(METHODS))
    text = render(worst_table(run, 10, width=80), 80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    for result in run.results[:10]:  # each id on one line, with its ranking score in full
        line = next(l for l in lines if f" {result.image_id} " in l)
        assert f"{result.scores[run.methods[0]]:.4f}" in line
    assert "…" not in text
    assert "not shown (too narrow): " in text
    # A wide terminal shows every method and no note.
    wide = render(worst_table(run, 10, width=200), 200)
    header = next(l for l in wide.splitlines() if "rank" in l)
    assert all(m in header for m in run.methods) and "not shown" not in wide
