"""``--reviewed decisions.csv``: images a reviewer accepted are exempt from the gates.

An image is exempt while its whole-image decision is ``ok`` and its mask file still has
the SHA-256 recorded with the decision. An ``ok`` whose mask has changed since is *stale*:
the image is judged again (the gates apply) until it is reviewed anew. Decisions about one
region, ``fix`` and ``skip`` exempt nothing. Exempt images stay in the ranking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io.decisions import Decision, file_sha256, read_decisions
from ..io.masks import find_masks
from ..results import ReviewRecord


@dataclass
class Review:
    """What a decisions file says about the images of one run."""

    decisions: Path
    exempt: set[str] = field(default_factory=set)  # ok, mask unchanged
    stale: list[str] = field(default_factory=list)  # ok, but the mask changed since (sorted)
    not_found: list[str] = field(default_factory=list)  # ok for an image the run does not have (sorted)

    def record(self) -> ReviewRecord:
        """The run record's ``reviewed`` section."""
        return ReviewRecord(decisions=str(self.decisions.resolve()), exempted=len(self.exempt), stale=len(self.stale),
                            not_found=len(self.not_found))

    def notes(self) -> list[str]:
        """One line each: how many images are exempt, how many decisions went stale."""
        lines = [f"{len(self.exempt)} image(s) marked ok in {self.decisions} with unchanged masks are "
                 "exempt from the gates"]
        if self.stale:
            shown = ", ".join(self.stale[:3]) + (" ..." if len(self.stale) > 3 else "")
            lines.append(f"{len(self.stale)} ok decision(s) are stale (the mask changed since), judged again: {shown}")
        if self.not_found:
            lines.append(f"{len(self.not_found)} ok decision(s) name images this run does not have")
        return lines


def review(decisions: str | Path, masks: dict[str, Path], rows: list[Decision] | None = None) -> Review:
    """Which images of a run a decisions file exempts.

    Parameters
    ----------
    decisions : str or Path
        The decisions file (:func:`segaudit.io.decisions.read_decisions`).
    masks : dict
        The run's images: id to mask file. Only the masks of images marked ``ok`` are hashed.
    rows : list of Decision, optional
        The file's rows when already read (the file is read otherwise).
    """
    result = Review(Path(decisions))
    for decision in read_decisions(decisions) if rows is None else rows:
        if decision.region is not None or decision.decision != "ok":
            continue
        path = masks.get(decision.image_id)
        if path is None:
            result.not_found.append(decision.image_id)
        elif file_sha256(path) == decision.mask_sha256:
            result.exempt.add(decision.image_id)
        else:
            result.stale.append(decision.image_id)
    result.stale.sort()
    result.not_found.sort()
    return result


def review_masks(decisions: str | Path, masks_dir: str | Path, mask_suffix: str = "",
                 image_ids=None, rows: list[Decision] | None = None, storage_options: dict | None = None) -> Review:
    """:func:`review` for the masks under ``masks_dir`` (as ``segaudit score`` finds them),
    restricted to ``image_ids`` when given (the images a run scored); ``storage_options`` for
    masks at a URL."""
    found = {m.image_id: m.path if m.fs is None else m
             for m in find_masks(masks_dir, mask_suffix, storage_options)}
    if image_ids is not None:
        keep = set(image_ids)
        found = {i: p for i, p in found.items() if i in keep}
    return review(decisions, found, rows)


def review_ranking(decisions: str | Path, ranking, storage_options: dict | None = None) -> Review:
    """:func:`review` for the images of a ranking (:class:`segaudit.io.rankings.Ranking`),
    their masks found through its run record (``storage_options`` for masks at a URL);
    InputError without one."""
    record = ranking.record
    if record is None or record.masks is None:
        raise InputError(f"--reviewed needs the masks of {ranking.path}: its run record {ranking.record_path} "
                         "is missing or names no masks directory")
    return review_masks(decisions, record.masks, record.mask_suffix or "", [r.image_id for r in ranking.rows],
                        storage_options=storage_options)
