"""Reading a reviewer's decisions file (``decisions.csv``) and hashing masks.

One row per decision: ``image,region,decision,note,mask_sha256``.

- ``image``: the image id, as in the ranking;
- ``region``: a region number of that image (as in ``regions.csv``), or empty for the
  whole image;
- ``decision``: ``ok`` (the annotation is right), ``fix`` (send it for relabeling) or
  ``skip`` (not decided);
- ``note``: free text;
- ``mask_sha256``: the SHA-256 of the mask file's bytes when the decision was made
  (64 hexadecimal digits), so that a decision about a mask that has changed since is
  known to be stale. Required for a whole-image ``ok`` (what exempts an image from
  the gates), optional otherwise.

The file may also be JSON Lines or JSON (any format :func:`segaudit.io.tables.read_table`
reads). Every problem is an InputError naming the file and the row.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, one_line
from .tables import read_table

DECISION_COLUMNS = ("image", "region", "decision", "note", "mask_sha256")
DECISIONS = ("ok", "fix", "skip")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Decision:
    """One row of a decisions file."""

    image_id: str
    region: int | None  # None: the whole image
    decision: str  # ok, fix or skip
    note: str
    mask_sha256: str  # lower-case hex, '' when not given


def read_decisions(path: str | Path) -> list[Decision]:
    """Read and check a decisions file.

    Parameters
    ----------
    path : str or Path
        A ``decisions.csv`` (or the same columns as JSON Lines / JSON).

    Returns
    -------
    list of Decision
        In file order. InputError, one line naming the file and the row, for a missing
        column, an unknown decision, a bad region number or hash, a whole-image ``ok``
        without a hash, or the same (image, region) decided twice.
    """
    table = read_table(path, "decisions file")
    missing = [c for c in ("image", "decision") if c not in table.header]
    if missing:
        raise InputError(f"{table.path}: not a decisions file: no column {', '.join(missing)} "
                         f"(expected {','.join(DECISION_COLUMNS)})")
    decisions: list[Decision] = []
    seen: dict[tuple[str, int | None], int] = {}
    for index, row in enumerate(table.rows):
        image_id = row.get("image", "").strip()
        if not image_id:
            raise table.error(index, "empty image id")
        region_text = row.get("region", "").strip()
        region = None
        if region_text:
            if not (region_text.isascii() and region_text.isdigit()) or int(region_text) < 1:
                raise table.error(index, f"region must be empty (the whole image) or a region number >= 1, "
                                         f"got {region_text!r}")
            region = int(region_text)
        decision = row.get("decision", "").strip().lower()
        if decision not in DECISIONS:
            raise table.error(index, f"decision must be one of {', '.join(DECISIONS)}, got {row.get('decision', '')!r}")
        sha = row.get("mask_sha256", "").strip().lower()
        if sha and not _SHA256.fullmatch(sha):
            raise table.error(index, f"mask_sha256 must be 64 hexadecimal digits, got {row.get('mask_sha256')!r}")
        if decision == "ok" and region is None and not sha:
            raise table.error(index, "an ok decision about the whole image needs the mask's mask_sha256 (to know "
                                     "when the mask changes)")
        key = (image_id, region)
        if key in seen:
            where = "the whole image" if region is None else f"region {region}"
            raise table.error(index, f"{image_id} {where} is decided twice (also {table.places[seen[key]]})")
        seen[key] = index
        decisions.append(Decision(image_id, region, decision, row.get("note", ""), sha))
    return decisions


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, as lower-case hex; InputError if it cannot be read.

    ``path``: a local file (str or Path), or a remote :class:`~segaudit.io.masks.MaskFile`.
    """
    digest = hashlib.sha256()
    if getattr(path, "fs", None) is not None:  # a MaskFile under a URL, read through fsspec
        from .masks import read_bytes

        digest.update(read_bytes(path))
        return digest.hexdigest()
    try:
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"{path}: cannot read mask to hash it: {one_line(exc)}") from None
    return digest.hexdigest()
