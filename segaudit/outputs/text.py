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


def overlay_name(rank: int, image_id: str, digits: int = 4) -> str:
    """``0001_city_a__0003.png``: zero-padded rank, then the id with ``/`` as ``__``.

    InputError for ids that could write outside the output directory (see
    :func:`segaudit.io.files.safe_relative_path`).
    """
    safe_relative_path(image_id, ".png")
    return f"{rank:0{digits}d}_{image_id.replace('/', '__')}.png"


#: What :func:`overlay_name` names look like (to find stale overlays in a directory).
OVERLAY_NAME = re.compile(r"^\d{4,}_.+\.png$")
