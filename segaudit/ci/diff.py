"""``segaudit diff``: what changed between two rankings (a base branch and a pull request)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

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
    #: Images of the other ranking left out because a subset ranking (``--only``) did not
    #: score them: they are neither added nor removed.
    outside_subset: int = 0
    #: Regressed or new-under-gate images a reviewer accepted (``--reviewed``): reported,
    #: but they do not fail the diff. (id, base score or None for a new image, head score), by id.
    exempted: list[tuple[str, float | None, float]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.regressed or self.new_under_gate)

    def rows(self) -> list[list]:
        out = [[i, "regressed", b, h, h - b] for i, b, h in self.regressed]
        out += [[i, "new under gate", None, h, None] for i, h in self.new_under_gate]
        out += [[i, "new under gate, reviewed ok" if b is None else "regressed, reviewed ok", b, h,
                 None if b is None else h - b] for i, b, h in self.exempted]
        exempt = {i for i, _, _ in self.exempted}
        out += [[i, "added", None, h, None] for i, h in self.added
                if (i, h) not in self.new_under_gate and i not in exempt]
        out += [[i, "removed", b, None, None] for i, b in self.removed]
        return out


def subset_scope(ranking: Ranking, other_ids) -> set[str] | None:
    """The images a subset ranking speaks for, or None for a full ranking.

    A ranking whose run record has ``only`` (``segaudit score --only``) scored the listed
    images alone: its scope is those images and the masks ``--only`` listed as deleted
    (matched to ids of ``other_ids``, the other ranking's images, by path).
    """
    record = ranking.record
    if record is None or record.only is None:
        return None
    scope = set(record.only) | {row.image_id for row in ranking.rows}
    suffix = record.mask_suffix or ""
    for entry in record.only_deleted or ():
        stem = PurePosixPath(entry.replace("\\", "/")).with_suffix("").as_posix()
        if suffix and stem.endswith(suffix):
            stem = stem[: -len(suffix)]
        matches = [i for i in other_ids if stem == i or stem.endswith("/" + i)]
        if matches:
            scope.add(max(matches, key=len))  # the id with the most of the path
    return scope


def diff_rankings(base: Ranking, head: Ranking, *, tolerance: float = 0.05,
                  fail_under: float | None = None, exempt=frozenset()) -> RankingDiff:
    """Images whose score fell by more than ``tolerance``, new images under ``fail_under``,
    added and removed images.

    ``exempt``: image ids a reviewer accepted (``--reviewed``, :mod:`segaudit.ci.review`):
    they neither regress nor count as new under the gate, and are listed in ``exempted``.

    A subset ranking (its run record says ``--only``, as a pull request's run does) is
    compared on its own images only: the images it did not score are not "removed" (or,
    for a subset base, "added"); a mask it lists as deleted is removed.
    """
    base_scores = {row.image_id: row.score for row in base.rows}
    head_scores = {row.image_id: row.score for row in head.rows}
    outside = 0
    for ranking, scores in ((head, base_scores), (base, head_scores)):
        scope = subset_scope(ranking, scores)
        if scope is not None:
            left_out = [i for i in scores if i not in scope]
            outside += len(left_out)
            for image_id in left_out:
                del scores[image_id]
    if base.method != head.method:
        raise InputError(f"the rankings use different methods: {base.method} (base) and {head.method} (head)")
    if tolerance < 0:
        raise InputError(f"--tolerance must be >= 0, got {tolerance}")
    diff = RankingDiff(head.method, outside_subset=outside)
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
    if exempt:
        diff.exempted = sorted([(i, b, h) for i, b, h in diff.regressed if i in exempt]
                               + [(i, None, h) for i, h in diff.new_under_gate if i in exempt])
        diff.regressed = [r for r in diff.regressed if r[0] not in exempt]
        diff.new_under_gate = [r for r in diff.new_under_gate if r[0] not in exempt]
    return diff
