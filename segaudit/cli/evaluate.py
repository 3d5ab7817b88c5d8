"""``segaudit evaluate``: how well a ranking finds the errors ``segaudit corrupt`` planted."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import dash_is_stdout, exit_on_error, refuse_overwriting_inputs, require_parent_dirs, stderr


class Format(str, Enum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"
    json = "json"


def command(
    ranking: Annotated[Path, typer.Argument(help="Ranking written by segaudit score (CSV, JSON or JSONL; --method all gives every method); every column but rank, image, pixels, low_pixels, suspect_class, likely_class, regions, worst_region is a score, lower = more likely error.")],
    truth: Annotated[Path, typer.Argument(help="CSV image,is_error,kind,classes (segaudit corrupt --truth writes it).")],
    output_format: Annotated[Optional[Format], typer.Option("--format", help="table (best per metric in bold), or csv, jsonl, json with the columns method,auroc,auprc,lift_at_t,lift_at_100,images,errors,top. Default: table on a terminal, csv otherwise.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout ('-' = stdout).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No notes on stderr; errors only.")] = False,
) -> None:
    """AUROC, AUPRC, Lift@T (T = number of true errors) and Lift@100 of every score column.

    Exit codes: 0 evaluated; 2 bad input or options.
    """
    from ..evaluation.evaluate import evaluate as evaluate_ranking
    from ..evaluation.evaluate import evaluation_table, evaluation_text

    output = dash_is_stdout(output)
    require_parent_dirs(output)
    refuse_overwriting_inputs({"ranking": ranking, "truth file": truth}, {"--output": output})
    with exit_on_error():
        result = evaluate_ranking(ranking, truth)
    if output_format is None:
        output_format = Format.table if output is None and sys.stdout.isatty() else Format.csv
    if output_format is Format.table:
        from rich.console import Console

        if output is None:
            Console(highlight=False).print(evaluation_table(result))
            text = None
        else:
            import io

            console = Console(record=True, file=io.StringIO(), width=120, highlight=False)
            console.print(evaluation_table(result))
            text = console.export_text()
    else:
        text = evaluation_text(result, output_format.value)
    if text is not None:
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            from ..io.files import atomic_write_all

            with exit_on_error(str(output)):
                atomic_write_all({output: text})
    if not quiet and result.truth_only:
        stderr.print(f"note: {len(result.truth_only)} truth row(s) have no ranking row and were left out "
                     f"(e.g. {result.truth_only[0]})", soft_wrap=True)
