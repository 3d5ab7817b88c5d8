"""Reading a region table (``segaudit regions``): the columns of
:data:`segaudit.results.REGION_COLUMNS`, in any of the ``--format``s it writes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..results import REGION_COLUMNS, REGION_NEWER_COLUMNS
from .tables import read_table


@dataclass(frozen=True)
class RegionRow:
    """One row of a region table, as the report shows it."""

    region: int  # 1-based number within the image, 1 = worst
    score: float
    area: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1 and y1 exclusive
    annotated: str
    likely: str
    kind: str


@dataclass
class RegionTable:
    """A region table read by :func:`load_regions`: each image's regions, by number."""

    path: Path
    by_image: dict[str, list[RegionRow]]

    @property
    def count(self) -> int:
        return sum(len(rows) for rows in self.by_image.values())


def load_regions(path: str | Path) -> RegionTable:
    """Read a region table (the columns of :data:`segaudit.results.REGION_COLUMNS`) in any
    of the ``--format``s ``segaudit regions`` writes.

    Parameters
    ----------
    path : str or Path
        The table.

    Returns
    -------
    RegionTable
        Each image's regions, ordered by their number within the image.

    Raises
    ------
    InputError
        One line naming the file (and the line or row): a missing or unreadable file, a
        missing column, a value that is not a number where one is needed, a score outside
        [0, 1], a box that is not x0 <= x1, y0 <= y1 (all >= 0), or a region listed twice.
    """
    table = read_table(path, "region table")
    missing = [c for c in REGION_COLUMNS if c not in table.header and c not in REGION_NEWER_COLUMNS]
    if missing:
        raise InputError(f"{table.path}: missing column(s) {', '.join(missing)} "
                         f"(expected {','.join(REGION_COLUMNS)}, as segaudit regions writes)")
    by_image: dict[str, list[RegionRow]] = {}
    seen: set[tuple[str, int]] = set()
    for index, row in enumerate(table.rows):

        def whole(name: str, low: int = 0) -> int:
            try:
                value = int(row[name])
            except ValueError:
                raise table.error(index, f"{name} must be a whole number, got {row[name]!r}") from None
            if value < low:
                raise table.error(index, f"{name} must be >= {low}, got {value}")
            return value

        image = row["image"]
        if not image:
            raise table.error(index, "no image id")
        number = whole("region", 1)
        try:
            score = float(row["score"])
        except ValueError:
            raise table.error(index, f"score must be a number, got {row['score']!r}") from None
        if not 0.0 <= score <= 1.0:  # NaN fails too
            raise table.error(index, f"score must be between 0 and 1, got {row['score']}")
        x0, y0, x1, y1 = (whole(name) for name in ("x0", "y0", "x1", "y1"))
        if x1 < x0 or y1 < y0:
            raise table.error(index, f"box x0,y0,x1,y1 = {x0},{y0},{x1},{y1} has x1 < x0 or y1 < y0")
        if (image, number) in seen:
            raise table.error(index, f"region {number} of image {image!r} is listed twice")
        seen.add((image, number))
        by_image.setdefault(image, []).append(RegionRow(
            region=number, score=score, area=whole("area"), box=(x0, y0, x1, y1),
            annotated=row["annotated_class"], likely=row["likely_class"], kind=row["kind"]))
    for rows in by_image.values():
        rows.sort(key=lambda r: r.region)
    return RegionTable(path=table.path, by_image=by_image)
