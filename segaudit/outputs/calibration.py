"""How the calibration of ``--method auto`` is told: the terminal, the summaries, the report.

One table (each candidate's AUPRC at finding each planted kind) and one plain sentence per
kind that even the chosen score finds poorly, so the user knows how far to trust the
ranking with this model.
"""

from __future__ import annotations

from ..calibration import CONFIDENCE, PRIOR
from ..calibration.kinds import phrase
from ..results import CalibrationRecord

#: Candidates shown besides the chosen one: the best others, then these for reference.
SHOWN_BEST = 3
REFERENCE = ("rsoftmin", "clc")


def _value(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def shown_rows(record: CalibrationRecord) -> list[int]:
    """The candidates a short table shows: the chosen, the best others, rsoftmin and clc."""
    order = sorted(range(len(record.candidates)),
                   key=lambda c: (-(record.mean_log_odds[c] if record.mean_log_odds[c] is not None else -1e9), c))
    chosen = record.candidates.index(record.chosen)
    rows = [chosen] + [c for c in order if c != chosen][:SHOWN_BEST]
    rows += [record.candidates.index(name) for name in REFERENCE
             if name in record.candidates and record.candidates.index(name) not in rows]
    return rows


def _sentence(text: str) -> str:
    """A warning as a sentence of its own: capitalised, with a full stop."""
    return text[0].upper() + text[1:] + "."


def summary_sentence(record: CalibrationRecord) -> str:
    if not record.calibrated:
        return (f"auto: too few images to calibrate on ({record.images} clean-looking); ranked by "
                f"{record.chosen}")
    planted = (f"{sum(record.copies)} errors planted into {record.images} clean-looking images "
               f"({record.set_aside} set aside as suspicious; seed {record.seed})")
    if record.best is not None and record.best != record.chosen:
        return (f"auto: ranked by {record.chosen}, its prior; {record.best} found the {planted} best, but not "
                f"surely (better in {record.confidence:.0%} of resamples, {CONFIDENCE:.0%} needed)")
    if record.confidence is not None:
        return (f"auto: ranked by {record.chosen}, surely better than {PRIOR} (in {record.confidence:.0%} of "
                f"resamples) at finding the {planted}")
    return f"auto: ranked by {record.chosen}, the best of {len(record.candidates)} candidate scores at finding the {planted}"


def hard_sentences(record: CalibrationRecord) -> list[str]:
    """One plain sentence per kind the chosen score finds poorly."""
    chosen = record.chosen_auprc
    return [f"with this model, {phrase(kind)} are hard to detect (AUPRC {_value(chosen[record.kinds.index(kind)])} "
            f"on planted ones); a stronger model would help" for kind in record.hard_kinds]


def table_rows(record: CalibrationRecord) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the short table (AUPRC per kind and the mean)."""
    header = ["candidate", *record.kinds, "mean"]
    rows = []
    for c in shown_rows(record):
        name = record.candidates[c] + (" (chosen)" if record.candidates[c] == record.chosen else "")
        rows.append([name, *(_value(v) for v in record.auprc[c]), _value(record.mean_auprc[c])])
    rows.append(["planted copies", *(str(n) for n in record.copies), str(sum(record.copies))])
    return header, rows


def calibration_lines(record: CalibrationRecord) -> list[str]:
    """The calibration as plain text lines for the terminal."""
    lines = [summary_sentence(record)]
    if record.calibrated:
        header, rows = table_rows(record)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines.append("  AUPRC on planted errors:")
        for row in [header, *rows]:
            lines.append("    " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                                            for i, (cell, w) in enumerate(zip(row, widths))))
    lines += [f"warning: {sentence}" for sentence in hard_sentences(record)]
    return lines


def calibration_markdown(record: CalibrationRecord) -> list[str]:
    """The calibration as Markdown lines (``--summary-md``, ``summary``)."""
    lines = [summary_sentence(record) + ".", ""]
    if record.calibrated:
        header, rows = table_rows(record)
        lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    lines += [f"**{_sentence(sentence)}**" for sentence in hard_sentences(record)]
    return lines


def region_calibration_markdown(calibration, counted: int) -> list[str]:
    """The region scores' calibration (``score --regions``) as Markdown lines (``--summary-md``):
    the threshold, what it finds on planted errors, ``counted`` regions at or above it, and the
    kinds regions rarely find."""
    lines = [f"{calibration.describe()}; {counted} region(s) at or above it.", ""]
    return lines + [f"**{_sentence(s)}**" for s in calibration.hard_sentences()]


def region_calibration_html(calibration) -> str:
    """The region scores' calibration (``score --regions``) as a section of the review page:
    the threshold, what it finds on planted errors, and the kinds regions rarely find."""
    from html import escape

    warnings = "".join(f"<p><b>{escape(_sentence(s))}</b></p>" for s in calibration.hard_sentences())
    return ('<section id="region-calibration"><h2>Error regions</h2>'
            f"<p>{escape(calibration.describe())}.</p>" + warnings + "</section>")


def calibration_html(record: CalibrationRecord) -> str:
    """The calibration as a section of the review page (every candidate, the chosen first)."""
    from html import escape

    header, rows = table_rows(record) if record.calibrated else ([], [])
    if record.calibrated:
        order = [record.candidates.index(record.chosen)] + [c for c in range(len(record.candidates))
                                                            if record.candidates[c] != record.chosen]
        rows = [[record.candidates[c] + (" (chosen)" if record.candidates[c] == record.chosen else ""),
                 *(_value(v) for v in record.auprc[c]), _value(record.mean_auprc[c])] for c in order]
        rows.append(["planted copies", *(str(n) for n in record.copies), str(sum(record.copies))])
    number_header, number_cell = ' data-type="num"', ' class="num"'
    head = "".join(f"<th{'' if i == 0 else number_header}>{escape(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{'' if i == 0 else number_cell}>{escape(cell)}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    table = (f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
             if rows else "")
    warnings = "".join(f"<p><b>{escape(_sentence(s))}</b></p>" for s in hard_sentences(record))
    return ('<section id="calibration"><h2>Calibration (--method auto)</h2>'
            f"<p>{escape(summary_sentence(record))}. AUPRC of each candidate at finding the errors planted "
            "into copies of the masks (higher is better).</p>" + warnings + table + "</section>")
