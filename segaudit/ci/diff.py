"""``segaudit diff``: what changed between two rankings (a base branch and a pull request)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io.rankings import Ranking, load_ranking

DIFF_COLUMNS = ["image", "change", "base_score", "head_score", "delta"]


def read_ranking(path: str | Path) -> Ranking:
    """A ranking written by ``segaudit score`` in any of its formats (no run record needed)."""
    ranking = load_ranking(path, need_record=False)
    if not ranking.methods:
        raise InputError(f"{path}: not a segaudit ranking (no method column after 'score')")
    return ranking


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
    base_scores = {row.image_id: row.score for row in base.rows}
    head_scores = {row.image_id: row.score for row in head.rows}
    if base.method != head.method:
        raise InputError(f"the rankings use different methods: {base.method} (base) and {head.method} (head)")
    if tolerance < 0:
        raise InputError(f"--tolerance must be >= 0, got {tolerance}")
    diff = RankingDiff(head.method)
    for image_id in sorted(head_scores):
        new = head_scores[image_id]
        if image_id in base_scores:
            old = base_scores[image_id]
            if not math.isnan(old) and not math.isnan(new) and old - new > tolerance:
                diff.regressed.append((image_id, old, new))
        else:
            diff.added.append((image_id, new))
            if fail_under is not None and not math.isnan(new) and new < fail_under:
                diff.new_under_gate.append((image_id, new))
    diff.removed = [(i, base_scores[i]) for i in sorted(base_scores) if i not in head_scores]
    diff.regressed.sort(key=lambda r: (r[2] - r[1], r[0]))
    return diff
