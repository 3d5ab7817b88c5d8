"""``segaudit diff``: what changed between two rankings (a base branch and a pull request)."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import InputError
from ..io.rankings import Ranking, load_ranking

DIFF_COLUMNS = ["image", "change", "base_score", "head_score", "delta", "base_percentile", "head_percentile"]

#: How a change of score is judged: ``percentile``, the image's rank percentile among the base
#: ranking's other images (a fall from the middle to the worst tenth is a fall whatever the
#: scores' spread); ``score``, the score itself.
SCALES = ("percentile", "score")
#: --tolerance by scale: 10 percentile points, or 0.05 of score.
DEFAULT_TOLERANCE = {"percentile": 0.1, "score": 0.05}


def read_ranking(path: str | Path) -> Ranking:
    """A ranking written by ``segaudit score`` in any of its formats (no run record needed)."""
    ranking = load_ranking(path, need_record=False)
    if not ranking.methods:
        raise InputError(f"{path}: not a segaudit ranking (no method column after 'score')")
    return ranking


class BasePercentiles:
    """Where a score stands among the base ranking's other images: the fraction of them scoring
    lower (ties count half), from 0 (below every other) to 1 (above every other)."""

    def __init__(self, base_scores: dict[str, float]):
        self.sorted = sorted(v for v in base_scores.values() if not math.isnan(v))

    def of(self, score: float, own: float) -> float | None:
        """The percentile of ``score`` among the other images, ``own`` being this image's base
        score (left out); None when there is no other image or a score is nan."""
        others = len(self.sorted) - 1
        if others < 1 or math.isnan(score) or math.isnan(own):
            return None
        below = bisect.bisect_left(self.sorted, score)
        equal = bisect.bisect_right(self.sorted, score) - below
        rank = below + 0.5 * equal - (1.0 if own < score else 0.5 if own == score else 0.0)
        return rank / others


@dataclass
class RankingDiff:
    method: str
    regressed: list[tuple[str, float, float]] = field(default_factory=list)  # (id, base, head)
    #: Images whose score rose by more than the tolerance (they do not fail the diff), best gain first.
    improved: list[tuple[str, float, float]] = field(default_factory=list)
    scale: str = "percentile"
    #: (base, head) rank percentile of each compared image, on the percentile scale.
    percentiles: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
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
        """One row per change (:data:`DIFF_COLUMNS`): regressed, new under the gate, exempted,
        improved, added, removed."""
        out = [[i, "regressed", b, h, h - b] for i, b, h in self.regressed]
        out += [[i, "new under gate", None, h, None] for i, h in self.new_under_gate]
        out += [[i, "new under gate, reviewed ok" if b is None else "regressed, reviewed ok", b, h,
                 None if b is None else h - b] for i, b, h in self.exempted]
        out += [[i, "improved", b, h, h - b] for i, b, h in self.improved]
        exempt = {i for i, _, _ in self.exempted}
        out += [[i, "added", None, h, None] for i, h in self.added
                if (i, h) not in self.new_under_gate and i not in exempt]
        out += [[i, "removed", b, None, None] for i, b in self.removed]
        return [row + list(self.percentiles.get(row[0], (None, None))) for row in out]


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


def diff_rankings(base: Ranking, head: Ranking, *, tolerance: float | None = None,
                  fail_under: float | None = None, exempt=frozenset(), scale: str = "percentile") -> RankingDiff:
    """Images whose score fell (or rose) by more than ``tolerance``, new images under
    ``fail_under``, added and removed images.

    ``scale`` (:data:`SCALES`) says what the tolerance measures: with ``percentile`` (the
    default) an image's base and head scores are placed among the base ranking's other
    images (:class:`BasePercentiles`), so a fall from rank 61 to rank 12 of 120 is a fall of
    about 0.41 whether the scores spread over [0, 1] or over [0.04, 0.25]; with ``score``, the
    scores are compared directly. ``tolerance`` defaults to :data:`DEFAULT_TOLERANCE` of the
    scale.

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
    if scale not in SCALES:
        raise InputError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    tolerance = DEFAULT_TOLERANCE[scale] if tolerance is None else tolerance
    if not 0 <= tolerance < math.inf:
        raise InputError(f"--tolerance must be a number >= 0, got {tolerance}")
    if scale == "percentile" and tolerance >= 1:
        raise InputError(f"--tolerance must be below 1 on the percentile scale (a fraction of the images), "
                         f"got {tolerance:g}")
    diff = RankingDiff(head.method, outside_subset=outside, scale=scale)
    percentiles = BasePercentiles(base_scores)
    for image_id in sorted(head_scores):
        new = head_scores[image_id]
        if image_id in base_scores:
            old = base_scores[image_id]
            if math.isnan(old) or math.isnan(new):
                continue
            if scale == "percentile":
                where = (percentiles.of(old, old), percentiles.of(new, old))
                diff.percentiles[image_id] = where
                change = None if None in where else where[1] - where[0]
            else:
                change = new - old
            if change is not None and -change > tolerance:
                diff.regressed.append((image_id, old, new))
            elif change is not None and change > tolerance:
                diff.improved.append((image_id, old, new))
        else:
            diff.added.append((image_id, new))
            if fail_under is not None and not math.isnan(new) and new < fail_under:
                diff.new_under_gate.append((image_id, new))
    diff.removed = [(i, base_scores[i]) for i in sorted(base_scores) if i not in head_scores]

    def change(row):  # on the diff's scale
        if scale == "score":
            return row[2] - row[1]
        before, after = diff.percentiles[row[0]]
        return after - before

    diff.regressed.sort(key=lambda r: (change(r), r[0]))  # the worst fall first
    diff.improved.sort(key=lambda r: (-change(r), r[0]))  # the best gain first
    kept = {r[0] for r in diff.regressed + diff.improved}
    diff.percentiles = {i: p for i, p in diff.percentiles.items() if i in kept}
    if exempt:
        diff.exempted = sorted([(i, b, h) for i, b, h in diff.regressed if i in exempt]
                               + [(i, None, h) for i, h in diff.new_under_gate if i in exempt])
        diff.regressed = [r for r in diff.regressed if r[0] not in exempt]
        diff.new_under_gate = [r for r in diff.new_under_gate if r[0] not in exempt]
    return diff
