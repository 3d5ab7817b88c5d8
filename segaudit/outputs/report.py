"""A self-contained, interactive HTML report of a ranking, for reviewers to open in a browser.

One file, no network access (a Content-Security-Policy forbids any fetch), no external
JavaScript or CSS; it works from ``file://``:

- a summary: images scored, the method, how many score below a threshold, how many have
  low-quality pixels, the inputs from the run record, and a score histogram (inline SVG,
  log-scale counts);
- optionally, the class-confusion summary, when one is given;
- the review: every image in a virtualised table (only the visible rows are in the
  document), searched by id, filtered by class, region kind, score range of a chosen method
  and decision, sorted by any column; the selected image's overlay (from ``segaudit
  overlay``, embedded as a base64 PNG and decoded only when shown), its error regions (from
  a ``segaudit regions`` table) and the reviewer's decisions (``ok``, ``fix``, ``skip``, per
  image and per region), kept in the browser's localStorage and downloaded as the
  ``decisions.csv`` that ``score --reviewed`` and ``export --decisions`` read, with each
  image's mask SHA-256 (:func:`segaudit.io.decisions.file_sha256`).

The data travel as JSON in a ``<script type="application/json">`` block (``<``, ``>`` and
``&`` written as ``\\u`` escapes, so no string can close it); the inline script builds the
page from it with ``textContent`` only, so no string from a file is ever parsed as HTML.
Strings the server side writes into the HTML (paths, class names) are HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .text import format_score, overlay_name
from ..io.decisions import DECISION_COLUMNS, file_sha256
from ..io.masks import find_masks
from ..io.rankings import Ranking
from ..io.tables import read_table
from ..results import CONFUSION_COLUMNS, REGION_COLUMNS, RunRecord

#: One row of the class-confusion summary: (annotated, seen instead, pixels, images, share).
ConfusionRow = tuple[str, str, int, int, float]


@dataclass
class ReportResult:
    """What went into the report."""

    html: str
    gallery: int  # the worst images whose overlays were looked for (--top)
    missing_overlays: int  # of those, the ones without an overlay PNG
    unmatched_region_images: list[str] = field(default_factory=list)  # in the region table, not the ranking
    hashed: int = 0  # images whose mask SHA-256 is embedded (what a whole-image ok needs)
    hash_note: str = ""  # why some or all images have no hash ('' when every one has)


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


# --- the score histogram --------------------------------------------------------------------


def histogram_svg(scores: Sequence[float], threshold: float | None = None, bins: int = 20,
                  width: int = 520, height: int = 190) -> str:
    """An inline SVG histogram of the scores over [0, 1] (wider if scores fall outside).

    The count axis is logarithmic (a bar's height is proportional to log(1 + count)), so
    that a few dozen errors stay visible beside a thousand clean images. Each bar carries
    its range as ``data-lo``/``data-hi`` and its index as ``data-bin`` (the SVG its
    ``data-low``, ``data-span`` and ``data-bins``): a click filters the page to exactly the
    bar's images, binned as here (a score on an edge belongs to the upper bar, 1.0 to the last).
    """
    finite = [v for v in scores if not math.isnan(v)]
    low = min([0.0, *finite])
    high = max([1.0, *finite])
    span = (high - low) or 1.0
    counts = [0] * bins
    for value in finite:
        counts[min(bins - 1, int((value - low) / span * bins))] += 1
    peak = max(counts) or 1
    left, right, top, bottom = 44, 12, 22, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    bar_w = plot_w / bins
    scale = math.log10(1 + peak)

    def y_of(count: float) -> float:
        return top + plot_h - plot_h * math.log10(1 + count) / scale

    parts = [(f'<svg class="histogram" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
              f'viewBox="0 0 {width} {height}" role="img" aria-label="histogram of image scores, log-scale counts" '
              f'data-low="{low!r}" data-span="{span!r}" data-bins="{bins}">')]
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" class="axis"/>')
    ticks = [0] + [10 ** e for e in range(0, int(math.log10(peak)) + 1)]
    if peak not in ticks and y_of(ticks[-1]) - y_of(peak) >= 11:  # room for the peak's own label
        ticks.append(peak)
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="{left - 3}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" class="axis"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:,}</text>')
    for n, count in enumerate(counts):
        start = low + span * n / bins
        end = low + span * (n + 1) / bins
        bar_top = y_of(count)
        below = threshold is not None and end <= threshold + 1e-12
        parts.append(
            f'<rect x="{left + n * bar_w + 1:.1f}" y="{bar_top:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{top + plot_h - bar_top:.1f}" class="{"bar low" if below else "bar"}" '
            f'data-lo="{start!r}" data-hi="{end!r}" data-bin="{n}">'
            f'<title>{start:.3g}–{end:.3g}: {count} image(s)</title></rect>'
        )
    for tick in range(5):
        value = low + span * tick / 4
        x = left + plot_w * tick / 4
        parts.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle">{value:.3g}</text>')
    parts.append(f'<text x="{left - 6}" y="{top - 10}" class="axis-note">images (log scale)</text>')
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
        f'Bars left of the dashed line at {esc(f"{score_threshold:g}")} are below the threshold. '
        'Counts on a log scale; click a bar to review its images.</figcaption>'
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


# --- the review: data for the page's script ---------------------------------------------------


#: Regions embedded per image, the worst first; the page counts the rest.
REGIONS_PER_IMAGE = 50


def mask_hashes(ranking: Ranking) -> tuple[dict[str, str], str]:
    """Each ranked image's mask SHA-256, found as ``score --reviewed`` finds it: the masks
    directory and ``--mask-suffix`` of the run record, hashed by
    :func:`segaudit.io.decisions.file_sha256`.

    Returns the hashes by image id and a note ('' when every image has one) saying why
    some have none: no run record, no masks directory in it, the directory gone, or
    images without a mask there. A mask that is found but cannot be read is an InputError.
    """
    record = ranking.record
    if record is None or not record.masks:
        why = "no run record" if record is None else "its run record names no masks directory"
        return {}, (f"no mask hashes ({why} for {ranking.path.name}): the page cannot record whole-image ok "
                    "decisions, which score --reviewed needs")
    try:
        found = {m.image_id: m.path for m in find_masks(record.masks, record.mask_suffix or "")}
    except InputError as exc:
        return {}, f"no mask hashes ({exc}): the page cannot record whole-image ok decisions"
    hashes = {row.image_id: file_sha256(found[row.image_id]) for row in ranking.rows if row.image_id in found}
    absent = [row.image_id for row in ranking.rows if row.image_id not in found]
    note = (f"{len(absent)} ranked image(s) have no mask in {record.masks} (e.g. {absent[0]}): the page cannot "
            "record whole-image ok decisions for them" if absent else "")
    return hashes, note


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def _overlays(ranking: Ranking, overlays_dir: Path | None, top: int,
              thumb_width: int) -> tuple[dict[str, list], int, int]:
    """The overlays of the ``top`` worst images as [data URI, width, height] by image id."""
    found: dict[str, list] = {}
    chosen = ranking.rows[:top]
    for row in chosen:
        if overlays_dir is None:
            continue
        try:
            name = overlay_name(row.rank, row.image_id, ranking.digits)
        except InputError:
            continue
        if (overlays_dir / name).is_file():
            thumb = _thumbnail(overlays_dir / name, thumb_width)
            if thumb is not None:
                data, width, height = thumb
                found[row.image_id] = [f"data:image/png;base64,{data}", width, height]
    return found, len(chosen), len(chosen) - len(found)


def _seed(decisions) -> dict:
    """Decisions of a decisions.csv in the page's own shape (see its script's ``store``)."""
    seed: dict[str, dict] = {}
    for d in decisions:
        key = "" if d.region is None else str(d.region)
        seed.setdefault(d.image_id, {})[key] = {"d": d.decision, "note": d.note, "sha": d.mask_sha256}
    return seed


def report_data(ranking: Ranking, *, overlays: dict[str, list], hashes: dict[str, str], score_threshold: float,
                top: int, regions: RegionTable | None = None, decisions=None) -> dict:
    """What the page's script shows: every image of the ranking, with its scores, classes,
    mask hash, overlay and regions; the lists the filters offer; where decisions are kept;
    and ``decisions`` (:class:`~segaudit.io.decisions.Decision` rows of an earlier
    decisions.csv) as the page's starting decisions."""
    methods = list(ranking.methods) or [ranking.method]
    record = ranking.record
    classes: set[str] = set(record.classes or ()) if record else set()
    kinds: set[str] = set()
    images = []
    for row in ranking.rows:
        scores = [_finite(row.score)] + [_finite(row.scores.get(m, math.nan)) for m in methods[1:]]
        image = {"rank": row.rank, "id": row.image_id, "s": scores, "px": row.pixels, "low": row.low_pixels,
                 "sus": row.suspect, "lik": row.likely, "nreg": row.regions, "worst": row.worst_region,
                 "sha": hashes.get(row.image_id, "")}
        classes.update(c for c in (row.suspect, row.likely) if c)
        if row.worst_region:
            kinds.add(row.worst_region)
        if row.image_id in overlays:
            image["ov"] = overlays[row.image_id]
        if regions is not None:
            listed = regions.by_image.get(row.image_id, [])
            image["reg"] = [[r.region, r.kind, r.annotated, r.likely, r.area, r.score, *r.box]
                            for r in listed[:REGIONS_PER_IMAGE]]
            if len(listed) > REGIONS_PER_IMAGE:
                image["more"] = len(listed) - REGIONS_PER_IMAGE
            for r in listed:
                classes.update(c for c in (r.annotated, r.likely) if c)
                if r.kind:
                    kinds.add(r.kind)
        images.append(image)
    # decisions are kept per dataset (the masks), so that a report made again keeps them
    place = record.masks if record and record.masks else str(ranking.path.resolve())
    return {
        "format": 1,
        "ranking": ranking.path.name,
        "storage_key": f"segaudit-decisions:{place}",
        # {image id: {"" or region number: {d, note, sha}}}, the store's own shape
        "seed": _seed(decisions or ()),
        "methods": methods,
        "threshold": score_threshold,
        "pixel_threshold": record.pixel_threshold if record else None,
        "top": top,
        "regions": regions.path.name if regions is not None else None,
        "columns": list(DECISION_COLUMNS),
        "classes": sorted(classes),
        "kinds": sorted(kinds),
        "images": images,
    }


def embed_json(data: object) -> str:
    """JSON for a ``<script type="application/json">`` block: ``<``, ``>`` and ``&`` are
    written as ``\\u`` escapes (inside strings, where alone they can occur), so that no
    string can end the block or open a comment; the text still parses as the same JSON."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def read_embedded_data(text: str) -> dict:
    """The data block of a report written by :func:`build_report` (for tests and tools)."""
    start_tag = '<script type="application/json" id="report-data">'
    start = text.index(start_tag) + len(start_tag)
    return json.loads(text[start:text.index("</script>", start)])


KEYS = (
    ("j / ↓", "next image"), ("k / ↑", "previous image"),
    ("n / p", "next / previous undecided image"),
    ("o", "ok: the annotation is right"), ("f", "fix: send for relabeling"), ("s", "skip: not decided"),
    ("u", "clear the decision"), ("1 … 9", "decide about region #1 … #9 instead of the whole image"),
    ("0 / Esc", "back to the whole image"), ("e", "edit the note"), ("/", "search by image id"),
)


def _review_section(data: dict, hash_note: str) -> str:
    keys = "".join(f"<dt><kbd>{esc(k)}</kbd></dt><dd>{esc(v)}</dd>" for k, v in KEYS)
    note = f'<p class="hash-note">{esc(hash_note)}.</p>' if hash_note else ""
    return (
        '<section id="review"><h2>Review</h2>'
        '<noscript><p class="missing">The review needs JavaScript (inline, no network).</p></noscript>'
        '<div class="toolbar" role="search">'
        '<label>image <input id="q" type="search" placeholder="id contains …" autocomplete="off"></label>'
        '<label>class <select id="cls"><option value="">any</option></select></label>'
        '<label>as <select id="side"><option value="either">annotated or likely</option>'
        '<option value="annotated">annotated</option><option value="likely">likely</option></select></label>'
        '<label>region kind <select id="kind"><option value="">any</option></select></label>'
        '<label>method <select id="method"></select></label>'
        '<label>score <input id="lo" type="number" step="any" placeholder="min"></label>'
        '<label>to <input id="hi" type="number" step="any" placeholder="max"></label>'
        '<label>decision <select id="dec"><option value="all">any</option><option value="undecided">undecided'
        '</option><option value="ok">ok</option><option value="fix">fix</option><option value="skip">skip</option>'
        '<option value="decided">decided</option></select></label>'
        '<button id="reset" type="button">clear filters</button>'
        '<button id="download" type="button" class="primary">download decisions.csv</button>'
        '</div>'
        '<p id="status" class="status" role="status" aria-live="polite"></p>'
        f"{note}"
        '<div id="grid" class="grid" role="grid" aria-label="images">'
        '<div id="head" class="row head" role="row"></div>'
        '<div id="rows" class="rows" tabindex="0"><div id="body" class="body"></div></div></div>'
        '<div id="detail" class="detail" aria-live="polite"></div>'
        f'<details class="keys"><summary>Keys</summary><dl>{keys}</dl>'
        "<p>Decisions are kept in this browser (localStorage) until you download them as "
        "<code>decisions.csv</code>: columns <code>image,region,decision,note,mask_sha256</code> "
        "(region empty for the whole image), for <code>segaudit score --reviewed decisions.csv</code> and "
        "<code>segaudit export --decisions decisions.csv</code>.</p></details>"
        "</section>"
    )


STYLE = """
:root { --ink: #1d1d1f; --muted: #5f6368; --line: #d9dce1; --low: #ff006e; --accent: #2b6cb0;
        --ok: #1f8a4c; --fix: #c2410c; --skip: #6b7280; }
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
code, kbd { font: 13px/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: anywhere; }
kbd { border: 1px solid var(--line); border-bottom-width: 2px; border-radius: 3px; padding: 0 4px; background: #fff; }
a { color: var(--accent); }
.summary { display: flex; flex-wrap: wrap; gap: 16px 40px; align-items: flex-start; }
.summary dl { margin: 0; display: grid; grid-template-columns: max-content minmax(0, 420px); gap: 4px 16px; }
.summary dt { color: var(--muted); }
.summary dd { margin: 0; overflow-wrap: anywhere; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
figcaption { color: var(--muted); font-size: 13px; max-width: 520px; }
svg.histogram text { font: 11px system-ui, sans-serif; fill: var(--muted); }
svg.histogram .axis { stroke: #888; }
svg.histogram .bar { fill: #7a8ca3; cursor: pointer; }
svg.histogram .bar:hover { fill: #4a5d78; }
svg.histogram .bar.low { fill: var(--low); }
svg.histogram .threshold { stroke: var(--ink); stroke-dasharray: 4 3; }
svg.histogram .threshold-label { fill: var(--ink); }
.missing, .hash-note { color: var(--muted); font-style: italic; }
table { border-collapse: collapse; background: #fff; border: 1px solid var(--line); font-size: 14px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eceef1; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable thead th { position: sticky; top: 0; background: #eef1f5; cursor: pointer; user-select: none;
                          white-space: nowrap; }
thead th[aria-sort="ascending"]::after { content: " ▲"; }
thead th[aria-sort="descending"]::after { content: " ▼"; }
.toolbar { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; background: #fff;
           border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; font-size: 14px; }
.toolbar label { color: var(--muted); white-space: nowrap; }
.toolbar input, .toolbar select, .toolbar button, .detail button, .detail input {
  font: inherit; font-size: 14px; padding: 2px 6px; border: 1px solid #b8bec7; border-radius: 4px; background: #fff;
  color: var(--ink); }
.toolbar input[type=number] { width: 6.5em; }
.toolbar input[type=search] { width: 14em; }
button { cursor: pointer; }
button.primary { background: var(--accent); color: #fff; border-color: var(--accent); }
.toolbar .primary { margin-left: auto; }
.status { margin: 6px 0; color: var(--muted); font-size: 14px; min-height: 1.4em; }
.grid { background: #fff; border: 1px solid var(--line); border-radius: 6px; overflow: hidden; }
.row { display: grid; align-items: center; height: 28px; padding: 0 6px; border-bottom: 1px solid #eceef1;
       font-size: 13.5px; white-space: nowrap; }
.row > span { overflow: hidden; text-overflow: ellipsis; padding: 0 6px; }
.row > .num { text-align: right; font-variant-numeric: tabular-nums; }
.head { background: #eef1f5; font-weight: 600; }
.head > span { cursor: pointer; user-select: none; }
.head > span:hover { color: var(--accent); }
.head > span[aria-sort="ascending"]::after { content: " ▲"; }
.head > span[aria-sort="descending"]::after { content: " ▼"; }
.rows { height: 336px; overflow-y: auto; position: relative; outline: none; }
.body { position: relative; }
.body .row { position: absolute; left: 0; right: 0; cursor: pointer; }
.body .row:hover { background: #f3f6fa; }
.row.below { background: #fff0f5; }
.row.current, .row.current:hover { background: #dbe8f8; box-shadow: inset 3px 0 0 var(--accent); }
.badge { display: inline-block; min-width: 2.6em; text-align: center; border-radius: 3px; color: #fff;
         font-size: 12px; line-height: 18px; padding: 0 4px; }
.badge.ok { background: var(--ok); } .badge.fix { background: var(--fix); } .badge.skip { background: var(--skip); }
.badge.stale { background: #fff; color: var(--fix); border: 1px dashed var(--fix); }
.badge.part { background: #fff; color: var(--ink); border: 1px solid var(--muted); }
.detail { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; margin-top: 12px;
          min-height: 120px; }
.detail .facts { margin: 0 0 6px; color: var(--muted); }
.detail .facts b { color: var(--ink); }
.rank { color: var(--low); }
.decide { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 6px 0; }
.decide .target { font-weight: 600; margin-right: 4px; }
.decide button.on { color: #fff; }
.decide button.ok.on { background: var(--ok); border-color: var(--ok); }
.decide button.fix.on { background: var(--fix); border-color: var(--fix); }
.decide button.skip.on { background: var(--skip); border-color: var(--skip); }
.decide input.note { width: 22em; }
.detail img { display: block; max-width: 100%; height: auto; margin-top: 6px; }
table.regions { margin-top: 8px; font-size: 13px; }
table.regions tr { cursor: pointer; }
table.regions tr.target td { background: #dbe8f8; }
.no-regions { margin: 6px 0 0; color: var(--muted); font-size: 13px; }
.keys { margin-top: 12px; font-size: 14px; }
.keys dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0; }
.keys dd { margin: 0; }
footer { color: var(--muted); font-size: 13px; padding: 24px 20px 40px; }
"""

#: The page's script: the sortable confusion table, the review (filters, the virtualised
#: table, the detail, the keys, the decisions in localStorage and their download).
SCRIPT = r"""
(function () {
  'use strict';
  /* the confusion table: a small sorter over its few rows */
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
        function key(cell) {
          var v = cell.getAttribute('data-v');
          if (v === null) v = cell.textContent;
          return numeric ? (v === '' ? NaN : parseFloat(v)) : v.toLowerCase();
        }
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          if (numeric) {
            if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);
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

  var D = JSON.parse(document.getElementById('report-data').textContent);
  var IM = D.images, METHODS = D.methods, ROW = 28;
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmtScore(v) {
    if (v === null || v === undefined) return '';
    if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(2);
    return v.toFixed(4);
  }
  function fmtRegionScore(v) { return Math.min(Math.floor(v * 100) / 100, 0.99).toFixed(2); }
  function fmtInt(v) { return v === null || v === undefined ? '' : v.toLocaleString('en-US'); }
  function lowShare(im) { return im.low === null || im.low === undefined || !im.px ? null : 100 * im.low / im.px; }

  /* --- decisions: {image id: {'': whole image, '3': region 3}: {d, note, sha}} in localStorage --- */
  var store = {};
  try { store = JSON.parse(localStorage.getItem(D.storage_key) || '{}') || {}; } catch (e) { store = {}; }
  var message = '';
  function save() {
    try { localStorage.setItem(D.storage_key, JSON.stringify(store)); }
    catch (e) { message = 'could not save in this browser (' + e.name + '): download decisions.csv to keep them'; }
  }
  /* report --decisions: an earlier decisions.csv starts the review; what this browser decided since wins */
  var seeded = 0;
  Object.keys(D.seed || {}).forEach(function (id) {
    var given = D.seed[id], s = store[id] || {};
    Object.keys(given).forEach(function (k) { if (!(k in s)) { s[k] = given[k]; seeded++; } });
    if (Object.keys(s).length) store[id] = s;
  });
  if (seeded) save();
  function keyOf(region) { return region === null || region === undefined ? '' : String(region); }
  function decisionOf(id, region) { var s = store[id]; return s ? s[keyOf(region)] : undefined; }
  function decide(im, region, d) {
    if (d === 'ok' && region === null && !im.sha) {
      message = 'no mask hash for ' + im.id + ': a whole-image ok needs it (make the report from a ranking ' +
                'whose run record names the masks)';
      return false;
    }
    var s = store[im.id] || (store[im.id] = {});
    var k = keyOf(region), old = s[k];
    if (d === null) { delete s[k]; if (!Object.keys(s).length) delete store[im.id]; }
    else s[k] = {d: d, note: old ? old.note : ($('note') ? $('note').value : ''), sha: im.sha};
    message = '';
    save();
    return true;
  }
  function setNote(im, region, note) {
    var r = decisionOf(im.id, region);
    if (r) { r.note = note; save(); }
  }
  function csvField(v) {
    v = v === null || v === undefined ? '' : String(v);
    return /[",\r\n]/.test(v) || /^\s|\s$/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  }
  function decisionsCsv() {
    var lines = [D.columns.join(',')], done = {};
    function add(id) {
      var s = store[id];
      if (!s || done[id]) return;
      done[id] = true;
      Object.keys(s).sort(function (a, b) { return a === '' ? -1 : b === '' ? 1 : a - b; }).forEach(function (k) {
        var r = s[k];
        lines.push([id, k, r.d, r.note || '', r.sha || ''].map(csvField).join(','));
      });
    }
    IM.forEach(function (im) { add(im.id); });
    Object.keys(store).sort().forEach(add);  /* decided in another report of the same masks */
    return lines.join('\n') + '\n';
  }
  function download() {
    var blob = new Blob([decisionsCsv()], {type: 'text/csv'});
    var a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = 'decisions.csv';
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  /* --- filters, sorting, the view (indices into IM) --- */
  var S = {q: '', cls: '', side: 'either', kind: '', m: 0, lo: NaN, hi: NaN, bin: null, dec: 'all', sort: 'rank', asc: true};
  var view = [], cur = -1, target = null;
  function score(im) { var v = im.s[S.m]; return v === null || v === undefined ? NaN : v; }
  function hasClass(im, c, side) {
    var a = side !== 'likely', l = side !== 'annotated';
    if ((a && im.sus === c) || (l && im.lik === c)) return true;
    return !!im.reg && im.reg.some(function (r) { return (a && r[2] === c) || (l && r[3] === c); });
  }
  function matches(im) {
    if (S.q && im.id.toLowerCase().indexOf(S.q) < 0) return false;
    if (S.cls && !hasClass(im, S.cls, S.side)) return false;
    if (S.kind && im.worst !== S.kind && !(im.reg && im.reg.some(function (r) { return r[1] === S.kind; }))) return false;
    var v = score(im);
    if (S.bin) {
      if (isNaN(v) || Math.min(S.bin.bins - 1, Math.floor((v - S.bin.low) / S.bin.span * S.bin.bins)) !== S.bin.n) return false;
    } else {
      if (!isNaN(S.lo) && !(v >= S.lo)) return false;
      if (!isNaN(S.hi) && !(v <= S.hi)) return false;
    }
    if (S.dec !== 'all') {
      var d = decisionOf(im.id, null), any = !!store[im.id];
      if (S.dec === 'undecided' && any) return false;
      if (S.dec === 'decided' && !any) return false;
      if (S.dec !== 'undecided' && S.dec !== 'decided' && !(d && d.d === S.dec)) return false;
    }
    return true;
  }
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: 'base'});
  var COLUMNS = [{key: 'rank', label: 'rank', num: true, get: function (im) { return im.rank; }, show: function (im) { return im.rank; }},
                 {key: 'id', label: 'image', get: function (im) { return im.id; }, show: function (im) { return im.id; }}];
  METHODS.forEach(function (m, i) {
    COLUMNS.push({key: 'm' + i, label: m, num: true, method: i,
                  get: function (im) { var v = im.s[i]; return v === null ? NaN : v; },
                  show: function (im) { return fmtScore(im.s[i]); }});
  });
  COLUMNS.push({key: 'px', label: 'pixels', num: true, get: function (im) { return im.px === null ? NaN : im.px; }, show: function (im) { return fmtInt(im.px); }},
               {key: 'lowp', label: 'low %', num: true, get: function (im) { var v = lowShare(im); return v === null ? NaN : v; },
                show: function (im) { var v = lowShare(im); return v === null ? '' : v.toFixed(1); }},
               {key: 'sus', label: 'annotated', get: function (im) { return im.sus; }, show: function (im) { return im.sus; }},
               {key: 'lik', label: 'likely', get: function (im) { return im.lik; }, show: function (im) { return im.lik; }},
               {key: 'nreg', label: 'regions', num: true,
                get: function (im) { var n = im.reg ? im.reg.length + (im.more || 0) : im.nreg; return n === null || n === undefined ? NaN : n; },
                show: function (im) { var n = im.reg ? im.reg.length + (im.more || 0) : im.nreg; return n === null || n === undefined ? '' : n; }},
               {key: 'dec', label: 'decision', get: function (im) { var d = decisionOf(im.id, null); return d ? d.d : (store[im.id] ? '~' : '~~'); }});
  var TEMPLATE = '64px minmax(160px, 2.2fr)' + ' 84px'.repeat(METHODS.length) + ' 76px 60px minmax(80px, 1fr) minmax(80px, 1fr) 72px 84px';
  function column(key) { return COLUMNS.filter(function (c) { return c.key === key; })[0]; }
  function refilter(keep) {
    var id = keep && cur >= 0 ? IM[view[cur]].id : null;
    view = [];
    for (var i = 0; i < IM.length; i++) if (matches(IM[i])) view.push(i);
    var c = column(S.sort), sign = S.asc ? 1 : -1;
    if (c && c.key !== 'rank') {
      view.sort(function (a, b) {
        var x = c.get(IM[a]), y = c.get(IM[b]), r;
        if (c.num) {
          if (isNaN(x) || isNaN(y)) r = isNaN(x) - isNaN(y);  /* empty cells last */
          else r = sign * (x - y);
        } else r = sign * collator.compare(x, y);
        return r || IM[a].rank - IM[b].rank;
      });
    } else if (!S.asc) view.reverse();
    cur = -1;
    if (id !== null) for (var p = 0; p < view.length; p++) if (IM[view[p]].id === id) { cur = p; break; }
    $('body').style.height = view.length * ROW + 'px';
    if (cur < 0) { target = null; if (view.length) cur = 0; }
    renderHead();
    renderRows();
    renderDetail();
  }

  /* --- the virtualised table: only the rows in view (and a few around) are in the document --- */
  function renderHead() {
    var head = $('head');
    head.style.gridTemplateColumns = TEMPLATE;
    head.replaceChildren();
    COLUMNS.forEach(function (c) {
      var h = el('span', c.num ? 'num' : '', c.label);
      h.setAttribute('role', 'columnheader');
      h.setAttribute('data-key', c.key);
      h.tabIndex = 0;
      if (c.method === S.m) h.title = 'the score the range filters';
      if (S.sort === c.key) h.setAttribute('aria-sort', S.asc ? 'ascending' : 'descending');
      head.appendChild(h);
    });
  }
  function badge(im) {
    var d = decisionOf(im.id, null), span = el('span');
    if (d) {
      var stale = d.sha && d.sha !== im.sha;
      span.className = 'badge ' + (stale ? 'stale' : d.d);
      span.textContent = d.d;
      if (stale) span.title = 'decided about another version of the mask';
    } else if (store[im.id]) {
      span.textContent = 'regions';
      span.className = 'badge part';
      span.title = 'decisions about regions only';
    }
    return span;
  }
  function rowEl(p) {
    var im = IM[view[p]], r = el('div', 'row');
    r.setAttribute('role', 'row');
    r.setAttribute('data-pos', p);
    r.setAttribute('data-id', im.id);
    r.style.top = p * ROW + 'px';
    r.style.gridTemplateColumns = TEMPLATE;
    var v = im.s[0];
    if (v !== null && v < D.threshold) r.className += ' below';
    if (p === cur) r.className += ' current';
    COLUMNS.forEach(function (c) {
      var cell;
      if (c.key === 'dec') cell = badge(im);
      else {
        cell = el('span', c.num ? 'num' : '', c.show(im));
        if (c.key === 'id') cell.title = im.id;
      }
      cell.setAttribute('role', 'gridcell');
      r.appendChild(cell);
    });
    return r;
  }
  var pending = false;
  function renderRows() {
    var box = $('rows'), top = box.scrollTop, h = box.clientHeight || 336;
    var first = Math.max(0, Math.floor(top / ROW) - 6), last = Math.min(view.length, Math.ceil((top + h) / ROW) + 6);
    var frag = document.createDocumentFragment();
    for (var p = first; p < last; p++) frag.appendChild(rowEl(p));
    $('body').replaceChildren(frag);
    status();
  }
  function status() {
    var counts = {ok: 0, fix: 0, skip: 0}, regions = 0;
    Object.keys(store).forEach(function (id) {
      Object.keys(store[id]).forEach(function (k) { if (k === '') counts[store[id][k].d]++; else regions++; });
    });
    $('status').textContent = view.length.toLocaleString('en-US') + ' of ' + IM.length.toLocaleString('en-US') +
      ' images shown · decided: ' + counts.ok + ' ok, ' + counts.fix + ' fix, ' + counts.skip + ' skip, ' +
      regions + ' region(s)' + (message ? ' · ' + message : '');
  }
  function scrollToCurrent() {
    var box = $('rows'), h = box.clientHeight || 336;
    if (cur * ROW < box.scrollTop) box.scrollTop = cur * ROW;
    else if ((cur + 1) * ROW > box.scrollTop + h) box.scrollTop = (cur + 1) * ROW - h;
  }
  function select(p, keepTarget) {
    if (p < 0 || p >= view.length) return;
    if (p !== cur || !keepTarget) target = null;
    cur = p;
    scrollToCurrent();
    renderRows();
    renderDetail();
    if (history.replaceState) history.replaceState(null, '', '#r' + IM[view[p]].rank);
  }

  /* --- the selected image: facts, decisions, overlay, regions --- */
  function renderDetail() {
    var box = $('detail');
    box.replaceChildren();
    if (cur < 0 || cur >= view.length) { box.appendChild(el('p', 'missing', 'No image matches the filters.')); return; }
    var im = IM[view[cur]];
    var h = el('h3');
    h.appendChild(el('span', 'rank', '#' + im.rank + ' '));
    h.appendChild(el('code', '', im.id));
    box.appendChild(h);
    var facts = el('p', 'facts');
    METHODS.forEach(function (m, i) {
      if (i) facts.appendChild(document.createTextNode(' · '));
      facts.appendChild(document.createTextNode(m + ' '));
      facts.appendChild(el('b', '', fmtScore(im.s[i]) || 'none'));
    });
    if (im.low !== null && im.low !== undefined && im.px)
      facts.appendChild(document.createTextNode(' · ' + fmtInt(im.low) + ' of ' + fmtInt(im.px) + ' px low (' +
                                                lowShare(im).toFixed(1) + ' %)'));
    if (im.sus) {
      facts.appendChild(document.createTextNode(' · annotated '));
      facts.appendChild(el('b', '', im.sus));
      facts.appendChild(document.createTextNode(im.lik && im.lik !== im.sus ? ', looks like ' : ', unsure'));
      if (im.lik && im.lik !== im.sus) facts.appendChild(el('b', '', im.lik));
    }
    facts.appendChild(document.createTextNode(' · mask ' + (im.sha ? 'sha256 ' + im.sha.slice(0, 12) + '…' : 'not hashed')));
    box.appendChild(facts);

    var bar = el('div', 'decide'), d = decisionOf(im.id, target);
    var what = target === null ? 'whole image' : 'region #' + target;
    bar.appendChild(el('span', 'target', what + ':'));
    [['ok', 'o'], ['fix', 'f'], ['skip', 's']].forEach(function (b) {
      var btn = el('button', b[0] + (d && d.d === b[0] ? ' on' : ''), b[0] + ' (' + b[1] + ')');
      btn.type = 'button';
      btn.setAttribute('data-decision', b[0]);
      if (b[0] === 'ok' && target === null && !im.sha) { btn.disabled = true; btn.title = 'no mask hash in this report'; }
      btn.addEventListener('click', function () { act(b[0]); });
      bar.appendChild(btn);
    });
    var clear = el('button', '', 'clear (u)');
    clear.type = 'button';
    clear.addEventListener('click', function () { act(null); });
    bar.appendChild(clear);
    var note = el('input', 'note');
    note.id = 'note';
    note.placeholder = 'note (e)';
    note.value = d ? d.note || '' : '';
    note.addEventListener('input', function () { setNote(im, target, note.value); });
    note.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === 'Escape') { note.blur(); e.preventDefault(); } });
    bar.appendChild(note);
    if (d && d.sha && d.sha !== im.sha) bar.appendChild(el('span', 'badge stale', 'stale: the mask changed since'));
    box.appendChild(bar);

    if (im.ov) {
      var img = el('img');  /* decoded only now, for the selected image */
      img.width = im.ov[1];
      img.height = im.ov[2];
      img.alt = 'overlay of ' + im.id;
      img.src = im.ov[0];
      box.appendChild(img);
    } else {
      box.appendChild(el('p', 'missing', im.rank <= D.top ? 'no overlay (run segaudit overlay --top ' + D.top + ')'
                                                       : 'no overlay (beyond --top ' + D.top + ')'));
    }
    if (im.reg) {
      if (!im.reg.length) box.appendChild(el('p', 'no-regions', 'no error regions in ' + D.regions));
      else box.appendChild(regionTable(im));
    } else if (im.nreg) {
      box.appendChild(el('p', 'no-regions', im.nreg + ' region(s) scoring ≥ 0.5' + (im.worst ? ' (worst: ' + im.worst + ')' : '') +
                                             '; pass --regions regions.csv to list them and decide about each'));
    }
  }
  function regionTable(im) {
    var t = el('table', 'regions'), head = el('tr');
    ['region', 'kind', 'annotated → likely', 'area (px)', 'score', 'box x0,y0–x1,y1', 'decision'].forEach(function (h, i) {
      head.appendChild(el('th', i === 0 || i === 3 || i === 4 ? 'num' : '', h));
    });
    var thead = el('thead'); thead.appendChild(head); t.appendChild(thead);
    var body = el('tbody');
    im.reg.forEach(function (r) {
      var tr = el('tr', target === r[0] ? 'target' : '');
      tr.setAttribute('data-region', r[0]);
      tr.appendChild(el('td', 'num', '#' + r[0]));
      tr.appendChild(el('td', '', r[1]));
      tr.appendChild(el('td', '', r[2] + ' → ' + r[3]));
      tr.appendChild(el('td', 'num', fmtInt(r[4])));
      tr.appendChild(el('td', 'num', fmtRegionScore(r[5])));
      var box = el('td'); box.appendChild(el('code', '', r[6] + ',' + r[7] + '–' + r[8] + ',' + r[9])); tr.appendChild(box);
      var dd = decisionOf(im.id, r[0]), cell = el('td');
      if (dd) cell.appendChild(el('span', 'badge ' + dd.d, dd.d));
      tr.appendChild(cell);
      tr.addEventListener('click', function () { target = target === r[0] ? null : r[0]; renderDetail(); });
      body.appendChild(tr);
    });
    t.appendChild(body);
    if (im.more) {
      var wrap = el('div');
      wrap.appendChild(t);
      wrap.appendChild(el('p', 'no-regions', 'and ' + im.more + ' more region(s) in ' + D.regions));
      return wrap;
    }
    return t;
  }
  function act(d) {
    if (cur < 0) return;
    var im = IM[view[cur]], whole = target === null;
    if (!decide(im, target, d)) { status(); return; }
    if (whole && d !== null && cur + 1 < view.length) { select(cur + 1); return; }  /* on to the next image */
    renderRows();
    renderDetail();
  }
  function nextUndecided(step) {
    for (var p = cur + step; p >= 0 && p < view.length; p += step) if (!store[IM[view[p]].id]) { select(p); return; }
  }

  /* --- controls --- */
  var methodSelect = $('method');
  METHODS.forEach(function (m, i) { var o = el('option', '', m); o.value = i; methodSelect.appendChild(o); });
  D.classes.forEach(function (c) { var o = el('option', '', c); o.value = c; $('cls').appendChild(o); });
  D.kinds.forEach(function (k) { var o = el('option', '', k); o.value = k; $('kind').appendChild(o); });
  function number(id) { var v = $(id).value.trim(); return v === '' ? NaN : parseFloat(v); }
  function readControls() {
    S.q = $('q').value.trim().toLowerCase();
    S.cls = $('cls').value; S.side = $('side').value; S.kind = $('kind').value;
    S.lo = number('lo'); S.hi = number('hi'); S.dec = $('dec').value;
    S.bin = null;  /* typed bounds: inclusive at both ends */
  }
  var timer = null;
  $('q').addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(function () { readControls(); refilter(true); }, 80); });
  ['cls', 'side', 'kind', 'lo', 'hi', 'dec'].forEach(function (id) {
    $(id).addEventListener('change', function () { readControls(); refilter(true); });
  });
  methodSelect.addEventListener('change', function () {
    S.m = parseInt(methodSelect.value, 10); S.sort = 'm' + S.m; S.asc = true;
    S.bin = null;  /* a bar's bins are the first method's: the range boxes apply, inclusive */
    refilter(true);
  });
  $('reset').addEventListener('click', function () {
    ['q', 'lo', 'hi'].forEach(function (id) { $(id).value = ''; });
    $('cls').value = ''; $('side').value = 'either'; $('kind').value = ''; $('dec').value = 'all';
    readControls(); refilter(true);
  });
  $('download').addEventListener('click', download);
  function sortBy(key) {
    if (S.sort === key) S.asc = !S.asc; else { S.sort = key; S.asc = true; }
    refilter(true);
  }
  $('head').addEventListener('click', function (e) { var k = e.target.getAttribute('data-key'); if (k) sortBy(k); });
  $('head').addEventListener('keydown', function (e) {
    var k = e.target.getAttribute('data-key');
    if (k && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); sortBy(k); }
  });
  $('rows').addEventListener('scroll', function () {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; renderRows(); });
  });
  $('body').addEventListener('click', function (e) {
    var r = e.target.closest('.row');
    if (r) select(parseInt(r.getAttribute('data-pos'), 10));
  });
  document.querySelectorAll('svg.histogram rect[data-lo]').forEach(function (bar) {
    bar.addEventListener('click', function () {
      $('lo').value = bar.getAttribute('data-lo'); $('hi').value = bar.getAttribute('data-hi');
      methodSelect.value = '0'; S.m = 0; readControls();
      var svg = bar.ownerSVGElement;  /* exactly the bar's images, binned as the histogram bins them */
      S.bin = {n: parseInt(bar.getAttribute('data-bin'), 10), low: parseFloat(svg.getAttribute('data-low')),
               span: parseFloat(svg.getAttribute('data-span')), bins: parseInt(svg.getAttribute('data-bins'), 10)};
      refilter(false);
      $('review').scrollIntoView();
    });
  });
  function fromHash() {
    var m = /^#r(\d+)$/.exec(location.hash);
    if (!m) return false;
    var rank = parseInt(m[1], 10);
    for (var p = 0; p < view.length; p++) if (IM[view[p]].rank === rank) { select(p); $('review').scrollIntoView(); return true; }
    return false;
  }
  window.addEventListener('hashchange', fromHash);
  document.addEventListener('keydown', function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var tag = e.target.tagName;
    if (tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA') {
      if (e.key === 'Escape') e.target.blur();
      return;
    }
    if (tag === 'BUTTON' && (e.key === 'Enter' || e.key === ' ')) return;
    var k = e.key, handled = true;
    if (k === 'j' || k === 'ArrowDown') select(cur + 1);
    else if (k === 'k' || k === 'ArrowUp') select(cur - 1);
    else if (k === 'n') nextUndecided(1);
    else if (k === 'p') nextUndecided(-1);
    else if (k === 'o') act('ok');
    else if (k === 'f') act('fix');
    else if (k === 's') act('skip');
    else if (k === 'u' || k === 'Delete' || k === 'Backspace') act(null);
    else if (k === 'e') { if ($('note')) $('note').focus(); }
    else if (k === '/') $('q').focus();
    else if (k === 'Escape' || k === '0') { target = null; renderDetail(); }
    else if (/^[1-9]$/.test(k) && cur >= 0) {
      var im = IM[view[cur]], n = parseInt(k, 10);
      if (im.reg && im.reg.some(function (r) { return r[0] === n; })) { target = n; renderDetail(); }
    } else handled = false;
    if (handled) e.preventDefault();
  });
  readControls();
  refilter(false);
  fromHash();
  document.documentElement.setAttribute('data-ready', IM.length);
  if (window.performance && performance.mark) performance.mark('segaudit-ready');  /* benchmarks/report_load.py */
})();
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
    hashes: dict[str, str] | None = None,
    decisions=None,
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
        The worst images whose overlays are embedded.
    score_threshold : float
        The summary counts images scoring below it; the histogram marks it and the table
        tints their rows.
    confusions : sequence of (annotated, seen instead, pixels, images, share), optional
        The class-confusion summary (share is a fraction in [0, 1]); the section is left
        out when None.
    thumb_width : int
        Overlays wider than this are scaled down for embedding.
    regions : RegionTable, optional
        A region table (:func:`load_regions`): the page lists each image's regions (the
        worst :data:`REGIONS_PER_IMAGE`), filters on their classes and kinds and takes a
        decision per region.
    hashes : dict, optional
        Each image's mask SHA-256; by default :func:`mask_hashes` (the masks the run record
        names). ``{}`` embeds none (the page then refuses whole-image ``ok`` decisions).
    decisions : list of Decision, optional
        An earlier decisions file's rows (:func:`segaudit.io.decisions.read_decisions`): the
        page starts from them; the browser's own later decisions win where both decided.
    """
    from .. import __version__

    if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)) \
            or not 0.0 <= score_threshold <= 1.0:  # nan and inf too: the page's JSON has no place for them
        raise InputError(f"--score-threshold must be a number from 0 to 1 (scores are in [0, 1]), got {score_threshold}")
    overlays = Path(overlays_dir) if overlays_dir is not None else None
    found, looked, missing = _overlays(ranking, overlays, top, thumb_width)
    hash_note = ""
    if hashes is None:
        hashes, hash_note = mask_hashes(ranking)
    elif not hashes and ranking.rows:
        hash_note = "no mask hashes: the page cannot record whole-image ok decisions"
    data = report_data(ranking, overlays=found, hashes=hashes, score_threshold=score_threshold, top=top,
                       regions=regions, decisions=decisions)
    title = f"segaudit report: {ranking.path.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{STYLE}</style>"
        "</head><body>",
        (f'<header><h1>segaudit report</h1><p class="sub"><code>{esc(ranking.path.name)}</code> · '
         f"{len(ranking.rows)} images ranked by {esc(ranking.method)}, most likely mislabeled first</p></header>"),
        "<main>",
        _summary(ranking, score_threshold, regions),
    ]
    if confusions is not None:
        parts.append(_confusion_section(confusions))
    parts += [
        _review_section(data, hash_note),
        "</main>",
        (f"<footer>Made by segaudit {esc(__version__)}. Scores are in [0, 1]; lower means more likely "
         "mislabeled. s is the model's probability of the annotated class at a pixel.</footer>"),
        f'<script type="application/json" id="report-data">{embed_json(data)}</script>',
        f"<script>{SCRIPT}</script>",
        "</body></html>",
        "",
    ]
    ranked = {row.image_id for row in ranking.rows}
    unmatched = sorted(set(regions.by_image) - ranked) if regions is not None else []
    return ReportResult(html="\n".join(parts), gallery=looked, missing_overlays=missing,
                        unmatched_region_images=unmatched, hashed=len(hashes), hash_note=hash_note)


def write_report(ranking: Ranking, output: str | Path, **options) -> ReportResult:
    """Build the report and write it atomically to ``output``; options as :func:`build_report`."""
    from ..io.files import atomic_write_all

    result = build_report(ranking, **options)
    atomic_write_all({Path(output): result.html})
    return result
