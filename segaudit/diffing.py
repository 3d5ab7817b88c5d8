"""``segaudit diff``: what changed between two rankings (a base branch and a pull request)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

DIFF_COLUMNS = ["image", "change", "base_score", "head_score", "delta"]


@dataclass
class Ranking:
    method: str  # the method that filled the 'score' column
    scores: dict[str, float]  # image id -> score (NaN when empty)


def _json_document(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None  # several lines: JSON Lines


def read_ranking(path: str | Path) -> Ranking:
    """A ranking written by ``segaudit score`` in any of its formats."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"ranking not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read ranking {path}: {exc}") from None
    try:
        if text.lstrip().startswith("{"):
            document = _json_document(text)
            if isinstance(document, dict) and "columns" in document:  # --format json
                columns, rows = document["columns"], document["rows"]
            else:  # --format jsonl
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
                columns = list(rows[0]) if rows else []
        else:
            reader = csv.DictReader(text.splitlines())
            columns, rows = reader.fieldnames or [], list(reader)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a segaudit ranking ({exc})") from None
    if columns[:3] != ["rank", "image", "score"] or len(columns) < 4:
        raise InputError(f"{path}: not a segaudit ranking (expected columns rank,image,score,<method>,...)")

    def number(value) -> float:
        return math.nan if value in (None, "") else float(value)

    try:
        scores = {str(row["image"]): number(row["score"]) for row in rows}
    except ValueError as exc:
        raise InputError(f"{path}: bad score value ({exc})") from None
    return Ranking(method=columns[3], scores=scores)


@dataclass
class RankingDiff:
    method: str
    regressed: list[tuple[str, float, float]] = field(default_factory=list)  # (id, base, head)
    new_under_gate: list[tuple[str, float]] = field(default_factory=list)
    added: list[tuple[str, float]] = field(default_factory=list)
    removed: list[tuple[str, float]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.regressed or self.new_under_gate)

    def rows(self) -> list[list]:
        out = [[i, "regressed", b, h, h - b] for i, b, h in self.regressed]
        out += [[i, "new under gate", None, h, None] for i, h in self.new_under_gate]
        out += [[i, "added", None, h, None] for i, h in self.added if (i, h) not in self.new_under_gate]
        out += [[i, "removed", b, None, None] for i, b in self.removed]
        return out


def diff_rankings(base: Ranking, head: Ranking, *, tolerance: float = 0.05,
                  fail_under: float | None = None) -> RankingDiff:
    """Images whose score fell by more than ``tolerance``, new images under ``fail_under``,
    added and removed images."""
    if base.method != head.method:
        raise InputError(f"the rankings use different methods: {base.method} (base) and {head.method} (head)")
    if tolerance < 0:
        raise InputError(f"--tolerance must be >= 0, got {tolerance}")
    diff = RankingDiff(head.method)
    for image_id in sorted(head.scores):
        new = head.scores[image_id]
        if image_id in base.scores:
            old = base.scores[image_id]
            if not math.isnan(old) and not math.isnan(new) and old - new > tolerance:
                diff.regressed.append((image_id, old, new))
        else:
            diff.added.append((image_id, new))
            if fail_under is not None and not math.isnan(new) and new < fail_under:
                diff.new_under_gate.append((image_id, new))
    diff.removed = [(i, base.scores[i]) for i in sorted(base.scores) if i not in head.scores]
    diff.regressed.sort(key=lambda r: (r[2] - r[1], r[0]))
    return diff
