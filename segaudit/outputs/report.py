"""A self-contained HTML report of a ranking, for reviewers to open in a browser.

One file, no network access (a Content-Security-Policy forbids any fetch), no external
JavaScript or CSS:

- a summary: images scored, the method, how many score below a threshold, how many have
  low-quality pixels, the inputs from the run record, and a score histogram (inline SVG);
- optionally, the class-confusion summary (rows of annotated class, class seen instead,
  pixels, images, share), when one is given;
- a gallery of the worst N images, with their overlays (written by ``segaudit overlay``)
  embedded as base64 PNG thumbnails and, when a region table (``segaudit regions``) is
  given, a small table of each image's error regions;
- a table of every image, sortable by any column (a few lines of inline JavaScript).

Every string that comes from a file (image ids, class names, paths) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .text import class_phrase, format_region_score, format_score, overlay_name
from ..io.rankings import RankedImage, Ranking
from ..io.tables import read_table
from ..results import CONFUSION_COLUMNS, REGION_COLUMNS, RunRecord

#: One row of the class-confusion summary: (annotated, seen instead, pixels, images, share).
ConfusionRow = tuple[str, str, int, int, float]


@dataclass
class ReportResult:
    """What went into the report."""

    html: str
    gallery: int  # images in the gallery
    missing_overlays: int  # gallery images without an overlay PNG
    unmatched_region_images: list[str] = field(default_factory=list)  # in the region table, not the ranking


def esc(value: object) -> str:
    """HTML-escape any value for text and attribute positions."""
    return html.escape(str(value), quote=True)


def load_confusions(path: str | Path) -> list[ConfusionRow]:
    """Read a class-confusion summary (columns annotated,predicted,pixels,images,share) in
    any of the ``--format``s ``segaudit summary`` writes."""
    table = read_table(path, "confusion summary")
    missing = [c for c in CONFUSION_COLUMNS if c not in table.header]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} "
                         f"(expected {','.join(CONFUSION_COLUMNS)})")
    rows = []
    for index, row in enumerate(table.rows):
        try:
            rows.append((row["annotated"], row["predicted"], int(row["pixels"]), int(row["images"]),
                         float(row["share"])))
        except ValueError as exc:
            raise table.error(index, str(exc)) from None
    return rows


#: Regions listed per gallery card; the rest are counted under the table.
REGIONS_PER_CARD = 10


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
    missing = [c for c in REGION_COLUMNS if c not in table.header]
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


def _number(value: float, digits: str = ".4g") -> str:
    return "" if math.isnan(value) else format(value, digits)


def _count(value: int | None) -> str | None:
    return None if value is None else f"{value:,}"


def _percent(part: int | None, whole: int | None) -> float:
    return 100.0 * part / whole if part is not None and whole else math.nan


# --- the score histogram --------------------------------------------------------------------


def histogram_svg(scores: Sequence[float], threshold: float | None = None, bins: int = 20,
                  width: int = 520, height: int = 190) -> str:
    """An inline SVG histogram of the scores over [0, 1] (wider if scores fall outside)."""
    finite = [v for v in scores if not math.isnan(v)]
    low = min([0.0, *finite])
    high = max([1.0, *finite])
    span = (high - low) or 1.0
    counts = [0] * bins
    for value in finite:
        counts[min(bins - 1, int((value - low) / span * bins))] += 1
    peak = max(counts) or 1
    left, right, top, bottom = 44, 12, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    bar_w = plot_w / bins
    parts = [(f'<svg class="histogram" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
              f'viewBox="0 0 {width} {height}" role="img" aria-label="histogram of image scores">')]
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" class="axis"/>')
    for n, count in enumerate(counts):
        start = low + span * n / bins
        end = low + span * (n + 1) / bins
        bar_h = plot_h * count / peak
        below = threshold is not None and end <= threshold + 1e-12
        parts.append(
            f'<rect x="{left + n * bar_w + 1:.1f}" y="{top + plot_h - bar_h:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{bar_h:.1f}" class="{"bar low" if below else "bar"}">'
            f'<title>{start:.3g}–{end:.3g}: {count} image(s)</title></rect>'
        )
    for tick in range(5):
        value = low + span * tick / 4
        x = left + plot_w * tick / 4
        parts.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle">{value:.3g}</text>')
    parts.append(f'<text x="{left - 6}" y="{top + 10}" text-anchor="end">{peak}</text>')
    parts.append(f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>')
    if threshold is not None and low <= threshold <= high:
        x = left + plot_w * (threshold - low) / span
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" class="threshold"/>')
        parts.append(f'<text x="{x + 4:.1f}" y="{top + 10}" class="threshold-label">{threshold:g}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- pieces of the page -------------------------------------------------------------------------


def _thumbnail(path: Path, thumb_width: int) -> tuple[str, int, int] | None:
    """A PNG as base64 (scaled down to ``thumb_width``), with its size; None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            image = img.convert("RGB")
    except Exception:  # a missing or broken overlay: the card says so instead
        return None
    if image.width > thumb_width:
        height = max(1, round(image.height * thumb_width / image.width))
        image = image.resize((thumb_width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii"), image.width, image.height


def _facts(row: RankedImage, method: str, pixel_threshold: float | None) -> str:
    if row.low_pixels is None:
        low = ""
    elif not row.pixels:
        low = " · no scored pixels"
    else:
        which = "low" if pixel_threshold is None else f"with s &lt; {esc(f'{pixel_threshold:g}')}"
        low = (f" · {row.low_pixels:,} of {row.pixels:,} px {which}"
               f" ({_percent(row.low_pixels, row.pixels):.1f} %)")
    classes = class_phrase(esc(row.suspect), esc(row.likely), ("<b>", "</b>"))
    return f'{esc(method)} <b>{esc(format_score(row.score) or "none")}</b>{low}' + (f" · {classes}" if classes else "")


def _summary(ranking: Ranking, score_threshold: float, regions: RegionTable | None = None) -> str:
    rows = ranking.rows
    record = ranking.record or RunRecord()
    scores = [r.score for r in rows]
    scored = [v for v in scores if not math.isnan(v)]
    below = sum(v < score_threshold for v in scored)
    with_low = sum(1 for r in rows if r.low_pixels)
    pixels = sum(r.pixels or 0 for r in rows)
    low_pixels = sum(r.low_pixels or 0 for r in rows)
    pixel_threshold = record.pixel_threshold
    method = esc(ranking.method)
    if ranking.method in ("softmin", "rsoftmin") and record.temperature is not None:
        method += f" (temperature {esc(record.temperature)})"
    others = [m for m in ranking.methods[1:]]
    items = [
        ("Images scored", f"{len(scored)}" + (f" (+{len(rows) - len(scored)} with no scored pixel)"
                                              if len(rows) > len(scored) else "")),
        ("Ranked by", method + (f"; also {esc(', '.join(others))}" if others else "")),
        (f"Scoring below {esc(f'{score_threshold:g}')}",
         f"<b>{below}</b> image(s)" + (f" ({100 * below / len(scored):.1f} %)" if scored else "")),
        ("Images with low-quality pixels",
         f"{with_low} (pixels"
         + ("" if pixel_threshold is None else f" with s &lt; {esc(f'{pixel_threshold:g}')}")
         + f": {low_pixels:,} of {pixels:,}" + (f", {100 * low_pixels / pixels:.2f} %)" if pixels else ")")),
    ]
    if rows and not math.isnan(rows[0].score):
        worst = (f'<a href="#r{rows[0].rank}"><code>{esc(rows[0].image_id)}</code></a> '
                 f"({esc(format_score(rows[0].score))})")
        items.append(("Worst image", worst))
    if regions is not None:
        items.append(("Error regions", f"{regions.count:,} in {len(regions.by_image):,} image(s), from "
                                       f"<code>{esc(regions.path)}</code>"))
    if record.classes:
        items.append(("Classes", f"{len(record.classes)}: " + ", ".join(esc(c) for c in record.classes)))
    elif record.n_classes:
        items.append(("Classes", esc(record.n_classes)))
    for path, label in ((record.masks, "Masks"), (record.predictions, "Predictions")):
        if path:
            items.append((label, f"<code>{esc(path)}</code>"))
    items.append(("Ranking", f"<code>{esc(ranking.path)}</code>"
                  + ("" if ranking.record else " (no run record found)")))
    listing = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in items)
    return (
        '<section id="summary"><h2>Summary</h2><div class="summary">'
        f'<dl>{listing}</dl>'
        f'<figure>{histogram_svg(scores, score_threshold)}'
        f'<figcaption>Image scores ({esc(ranking.method)}; lower = more likely mislabeled). '
        f'Bars left of the dashed line at {esc(f"{score_threshold:g}")} are below the threshold.</figcaption>'
        "</figure></div></section>"
    )


def _confusion_section(rows: Sequence[ConfusionRow]) -> str:
    """OPTIONAL SECTION: the class-confusion summary, rendered only when rows are given."""
    body = "".join(
        f"<tr><td>{esc(annotated)}</td><td>{esc(predicted)}</td>"
        f'<td class="num" data-v="{pixels}">{pixels:,}</td><td class="num" data-v="{images}">{images:,}</td>'
        f'<td class="num" data-v="{share!r}">{100 * share:.2f} %</td></tr>'
        for annotated, predicted, pixels, images, share in rows
    )
    return (
        "<!-- optional section: class confusions (only when a confusion summary is given) -->"
        '<section id="confusions"><h2>Class confusions</h2>'
        "<p>Flagged pixels by the class they are annotated as and the class the model sees instead; "
        "share = those pixels as a fraction of all scored pixels annotated with that class.</p>"
        '<table class="sortable"><thead><tr><th>annotated</th><th>seen instead</th>'
        '<th data-type="num">pixels</th><th data-type="num">images</th><th data-type="num">share</th>'
        f"</tr></thead><tbody>{body}</tbody></table></section>"
        "<!-- end of optional section: class confusions -->"
    )


def _region_table(rows: Sequence[RegionRow], source: Path) -> str:
    """OPTIONAL PART OF A CARD: the image's error regions, the worst :data:`REGIONS_PER_CARD`."""
    if not rows:
        return f'<p class="no-regions">no error regions in <code>{esc(source.name)}</code></p>'
    shown = rows[:REGIONS_PER_CARD]
    body = "".join(
        f'<tr><td class="num" data-v="{r.region}">#{r.region}</td><td>{esc(r.kind)}</td>'
        f"<td>{esc(r.annotated)} → {esc(r.likely)}</td>"
        f'<td class="num" data-v="{r.area}">{r.area:,}</td>'
        f'<td class="num" data-v="{r.score!r}">{esc(format_region_score(r.score))}</td>'
        f"<td><code>{r.box[0]},{r.box[1]}–{r.box[2]},{r.box[3]}</code></td></tr>"
        for r in shown
    )
    more = (f'<p class="more-regions">and {len(rows) - len(shown):,} more region(s) in '
            f"<code>{esc(source.name)}</code></p>" if len(rows) > len(shown) else "")
    return (
        '<table class="regions"><thead><tr><th class="num">region</th><th>kind</th><th>annotated → likely</th>'
        '<th class="num">area (px)</th><th class="num">score</th>'
        '<th title="in pixels; x1 and y1 exclusive">box x0,y0–x1,y1</th>'
        f"</tr></thead><tbody>{body}</tbody></table>{more}"
    )


def _gallery(ranking: Ranking, overlays_dir: Path | None, top: int, thumb_width: int,
             regions: RegionTable | None = None) -> tuple[str, int, int]:
    pixel_threshold = ranking.record.pixel_threshold if ranking.record else None
    cards = []
    missing = 0
    chosen = ranking.rows[:top]
    for row in chosen:
        thumb = None
        if overlays_dir is not None:
            try:
                name = overlay_name(row.rank, row.image_id, ranking.digits)
            except InputError:
                name = None
            if name is not None and (overlays_dir / name).is_file():
                thumb = _thumbnail(overlays_dir / name, thumb_width)
        if thumb is None:
            missing += 1
            picture = '<p class="missing">no overlay (run <code>segaudit overlay</code>)</p>'
        else:
            data, width, height = thumb
            picture = (f'<img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
                       f'alt="overlay of {esc(row.image_id)}" loading="lazy">')
        if regions is not None:
            picture += _region_table(regions.by_image.get(row.image_id, []), regions.path)
        cards.append(
            f'<article class="card" id="r{row.rank}"><h3><span class="rank">#{row.rank}</span> '
            f"<code>{esc(row.image_id)}</code></h3>"
            f'<p class="facts">{_facts(row, ranking.method, pixel_threshold)}</p>{picture}</article>'
        )
    intro = ("<p>Each overlay shows, left to right: the photo (when <code>--images</code> was given), the "
             "annotation, the model's prediction (argmax), and the error map: pixels whose probability of "
             "their annotated class is low, in pink-red over a dimmed grey copy of the image. "
             "The legend under each overlay names the classes that appear.</p>")
    if regions is not None:
        intro += ("<p>The table under each overlay lists the image's error regions (from "
                  f"<code>{esc(regions.path.name)}</code>, written by <code>segaudit regions</code>), worst first: "
                  "connected pixels that the model sees as another class, the annotated and the likely class, "
                  "their pixels, a score in [0, 1) (higher = more likely an annotation error) and their box in "
                  "pixels. The overlays outline the same regions, numbered alike, when they were found with the "
                  "same rule.</p>")
    section = (f'<section id="gallery"><h2>The {len(chosen)} worst images</h2>{intro}'
               + "".join(cards) + "</section>")
    return section, len(chosen), missing


def _table(ranking: Ranking, top: int, score_threshold: float) -> str:
    methods = ranking.methods
    extra = methods[1:]
    head = ("<tr><th data-type=\"num\">rank</th><th>image</th>"
            f'<th data-type="num">score ({esc(ranking.method)})</th>'
            + "".join(f'<th data-type="num">{esc(m)}</th>' for m in extra)
            + '<th data-type="num">pixels</th><th data-type="num">low pixels</th>'
              '<th data-type="num">low %</th><th>suspect class</th><th>likely class</th></tr>')
    in_gallery = {row.rank for row in ranking.rows[:top]}
    body = []
    for row in ranking.rows:
        link = (f'<a href="#r{row.rank}"><code>{esc(row.image_id)}</code></a>' if row.rank in in_gallery
                else f"<code>{esc(row.image_id)}</code>")
        flag = ' class="below"' if not math.isnan(row.score) and row.score < score_threshold else ""
        share = _percent(row.low_pixels, row.pixels)

        def cell(value: float | None, text: str | None = None) -> str:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return '<td class="num" data-v=""></td>'
            return f'<td class="num" data-v="{value!r}">{esc(text if text is not None else value)}</td>'

        body.append(
            f"<tr{flag}>{cell(row.rank)}<td>{link}</td>{cell(row.score, format_score(row.score))}"
            + "".join(cell(row.scores.get(m, math.nan), format_score(row.scores.get(m, math.nan))) for m in extra)
            + f"{cell(row.pixels, _count(row.pixels))}{cell(row.low_pixels, _count(row.low_pixels))}"
            + f"{cell(share, _number(share, '.1f'))}"
            f"<td>{esc(row.suspect)}</td><td>{esc(row.likely)}</td></tr>"
        )
    return (f'<section id="all-images"><h2>All {len(ranking.rows)} images</h2>'
            "<p>Click a column heading to sort; click again to reverse. Rows scoring below "
            f"{esc(f'{score_threshold:g}')} are tinted.</p>"
            f'<table class="sortable" id="ranking"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
            "</section>")


STYLE = """
:root { --ink: #1d1d1f; --muted: #5f6368; --line: #d9dce1; --low: #ff006e; --accent: #2b6cb0; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: #f5f6f8; }
header, main, footer { max-width: 1360px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 20px; }
h1 { margin: 0 0 2px; font-size: 26px; }
h2 { margin: 28px 0 10px; font-size: 20px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { margin: 0 0 4px; font-size: 16px; }
h3 code { font-size: 15px; }
.sub { margin: 0; color: var(--muted); }
code { font: 13px/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: anywhere; }
a { color: var(--accent); }
.summary { display: flex; flex-wrap: wrap; gap: 16px 40px; align-items: flex-start; }
.summary dl { margin: 0; display: grid; grid-template-columns: max-content minmax(0, 420px); gap: 4px 16px; }
.summary dt { color: var(--muted); }
.summary dd { margin: 0; overflow-wrap: anywhere; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
figcaption { color: var(--muted); font-size: 13px; max-width: 520px; }
svg.histogram text { font: 11px system-ui, sans-serif; fill: var(--muted); }
svg.histogram .axis { stroke: #888; }
svg.histogram .bar { fill: #7a8ca3; }
svg.histogram .bar.low { fill: var(--low); }
svg.histogram .threshold { stroke: var(--ink); stroke-dasharray: 4 3; }
svg.histogram .threshold-label { fill: var(--ink); }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px;
        margin: 0 0 14px; }
.card img { display: block; max-width: 100%; height: auto; image-rendering: auto; margin-top: 6px; }
.card .facts { margin: 0; color: var(--muted); }
.card .facts b { color: var(--ink); }
.rank { color: var(--low); }
.missing { color: var(--muted); font-style: italic; }
table { border-collapse: collapse; background: #fff; border: 1px solid var(--line); font-size: 14px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eceef1; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
thead th { position: sticky; top: 0; background: #eef1f5; cursor: pointer; user-select: none;
           white-space: nowrap; }
thead th:hover { background: #e2e7ee; }
thead th[aria-sort="ascending"]::after { content: " ▲"; }
thead th[aria-sort="descending"]::after { content: " ▼"; }
tr.below td { background: #fff0f5; }
footer { color: var(--muted); font-size: 13px; padding: 24px 20px 40px; }
"""

SCRIPT = """
(function () {
  function key(cell, numeric) {
    var v = cell.getAttribute('data-v');
    if (v === null) v = cell.textContent;
    if (!numeric) return v.toLowerCase();
    return v === '' ? NaN : parseFloat(v);
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      function sort() {
        var ascending = th.getAttribute('aria-sort') !== 'ascending';
        var numeric = th.getAttribute('data-type') === 'num';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col], numeric), y = key(b.cells[col], numeric);
          if (numeric) {
            if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);  /* empty cells last */
            return ascending ? x - y : y - x;
          }
          return ascending ? x.localeCompare(y) : y.localeCompare(x);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener('click', sort);
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sort(); } });
    });
  });
})();
"""

#: Styles added only when the report has region tables (so reports without keep their bytes).
REGION_STYLE = """
table.regions { margin-top: 8px; font-size: 13px; }
table.regions thead th { position: static; cursor: default; }
table.regions thead th:hover { background: #eef1f5; }
table.regions th.num { text-align: right; }
.no-regions, .more-regions { margin: 6px 0 0; color: var(--muted); font-size: 13px; }
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def build_report(
    ranking: Ranking,
    *,
    overlays_dir: str | Path | None = "overlays",
    top: int = 20,
    score_threshold: float = 0.1,
    confusions: Sequence[ConfusionRow] | None = None,
    thumb_width: int = 1600,
    regions: RegionTable | None = None,
) -> ReportResult:
    """The report's HTML text and what went into it.

    Parameters
    ----------
    ranking : Ranking
        From :func:`segaudit.io.rankings.load_ranking`.
    overlays_dir : path, optional
        Where ``segaudit overlay`` wrote its PNGs; found by name (rank and id), so PNGs
        from another ranking are not picked up.
    top : int
        Images in the gallery.
    score_threshold : float
        The summary counts images scoring below it; the histogram marks it.
    confusions : sequence of (annotated, seen instead, pixels, images, share), optional
        The class-confusion summary (share is a fraction in [0, 1]); the section is left
        out when None.
    thumb_width : int
        Overlays wider than this are scaled down for embedding.
    regions : RegionTable, optional
        A region table (:func:`load_regions`): each gallery card gets a table of its
        image's regions. None leaves the report exactly as without regions.
    """
    from .. import __version__

    overlays = Path(overlays_dir) if overlays_dir is not None else None
    gallery, shown, missing = _gallery(ranking, overlays, top, thumb_width, regions)
    title = f"segaudit report: {ranking.path.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{STYLE}{REGION_STYLE if regions is not None else ''}</style>"
        "</head><body>",
        (f'<header><h1>segaudit report</h1><p class="sub"><code>{esc(ranking.path.name)}</code> · '
         f"{len(ranking.rows)} images ranked by {esc(ranking.method)}, most likely mislabeled first</p></header>"),
        "<main>",
        _summary(ranking, score_threshold, regions),
    ]
    if confusions is not None:
        parts.append(_confusion_section(confusions))
    parts += [
        gallery,
        _table(ranking, top, score_threshold),
        "</main>",
        (f"<footer>Made by segaudit {esc(__version__)}. Scores are in [0, 1]; lower means more likely "
         "mislabeled. s is the model's probability of the annotated class at a pixel.</footer>"),
        f"<script>{SCRIPT}</script>",
        "</body></html>",
        "",
    ]
    ranked = {row.image_id for row in ranking.rows}
    unmatched = sorted(set(regions.by_image) - ranked) if regions is not None else []
    return ReportResult(html="\n".join(parts), gallery=shown, missing_overlays=missing,
                        unmatched_region_images=unmatched)


def write_report(ranking: Ranking, output: str | Path, **options) -> ReportResult:
    """Build the report and write it atomically to ``output``; options as :func:`build_report`."""
    from ..io.files import atomic_write_all

    result = build_report(ranking, **options)
    atomic_write_all({Path(output): result.html})
    return result
