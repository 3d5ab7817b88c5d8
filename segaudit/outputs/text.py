"""How scores, classes and overlay files are named for people: shared by the overlay
captions, the HTML report, the terminal tables and the Markdown summary.

Light on purpose (no numpy, no Pillow), so that the report need not import the overlay
renderer.
"""

from __future__ import annotations

import math
import re

from ..io.files import safe_relative_path


def format_score(value: float | None, *, missing: str = "", fixed: bool = False) -> str:
    """A score for people: 4 decimals, tiny ones (below 1e-3) in e-notation unless
    ``fixed`` (table columns, which line up); ``missing`` when there is none (None or NaN)."""
    if value is None or math.isnan(value):
        return missing
    if not fixed and 0 < abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4f}"


def class_phrase(suspect: str, likely: str, quote: tuple[str, str] = ("“", "”")) -> str:
    """How the ranking's suspect and likely classes read in a caption ('' when none)."""
    if not suspect:
        return ""
    q0, q1 = quote
    if suspect == likely:
        return f"low pixels mostly {q0}{suspect}{q1}, which the model also predicts (unsure, not contradicting)"
    return f"annotated {q0}{suspect}{q1}, looks like {q0}{likely}{q1}"


def format_region_score(value: float) -> str:
    """A region's score for people: 2 decimals, cut rather than rounded, so that a score in
    [0, 1) never reads 1.00 (a score of 0.9996 reads 0.99)."""
    if math.isnan(value):
        return ""
    return f"{min(math.floor(value * 100) / 100, 0.99):.2f}"


def region_line(number: int, kind: str, annotated: str, likely: str, area: int, score: float) -> str:
    """One region as a legend line: ``#1 wrong_class: sky → building, 1,168 px, score 0.99``.

    Parameters
    ----------
    number : int
        The region's number within its image (1 = worst).
    kind : str
        Its kind hint (missing, wrong_class, boundary, spurious).
    annotated, likely : str
        The annotated class and the class the model sees there (names, or indices as text).
    area : int
        Its pixels.
    score : float
        Its score in [0, 1), written by :func:`format_region_score`.
    """
    return f"#{number} {kind}: {annotated} → {likely}, {area:,} px, score {format_region_score(score)}"


def overlay_name(rank: int, image_id: str, digits: int = 4) -> str:
    """``0001_city_a__0003.png``: zero-padded rank, then the id with ``/`` as ``__``.

    InputError for ids that could write outside the output directory (see
    :func:`segaudit.io.files.safe_relative_path`).
    """
    safe_relative_path(image_id, ".png")
    return f"{rank:0{digits}d}_{image_id.replace('/', '__')}.png"


#: What :func:`overlay_name` names look like (to find stale overlays in a directory).
OVERLAY_NAME = re.compile(r"^\d{4,}_.+\.png$")
