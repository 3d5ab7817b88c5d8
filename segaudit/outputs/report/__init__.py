"""A self-contained, interactive HTML report of a ranking, for reviewers to open in a browser.

One file, no network access (a Content-Security-Policy forbids any fetch and runs only the
page's own script and style sheet, allowed by their SHA-256 hashes), no external JavaScript or
CSS; it works from ``file://``. The script and style sheet are this package's ``report.js`` and
``report.css``, inlined when the page is built:

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
import hashlib
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ...errors import InputError
from ..text import format_score, overlay_name
from ...io.confusions import ConfusionRow
from ...io.decisions import DECISION_COLUMNS, file_sha256
from ...io.masks import find_masks
from ...io.rankings import Ranking
from ...io.regions import RegionTable
from ...results import RunRecord


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
    if ranking.method == "auto" and record.calibration is not None:
        method += f" (chose {esc(record.calibration.chosen)}; see Calibration)"
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
    # The threshold score --regions counted the ranking's regions column from (calibrated).
    region_threshold = record.regions.threshold if record and record.regions else None
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
            if region_threshold is not None:  # one count everywhere: regions at or above the threshold
                image["nreg"] = sum(1 for r in listed if r.score >= region_threshold)
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
        "region_threshold": region_threshold,
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


def _asset(name: str) -> str:
    """A file of this package (report.css, report.js), as the text inlined into the page."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


#: The page's style sheet (report.css).
STYLE = "\n" + _asset("report.css")

#: The page's script (report.js): the sortable confusion table, the review (filters, the
#: virtualised table, the detail, the keys, the decisions in localStorage and their download).
SCRIPT = "\n" + _asset("report.js")


def csp_hash(text: str) -> str:
    """A CSP source allowing exactly the inline ``<script>`` or ``<style>`` whose content is
    ``text``: ``'sha256-<base64 of the SHA-256 of its UTF-8 bytes>'``."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode('utf-8')).digest()).decode('ascii')}'"


#: The page's Content-Security-Policy: nothing fetched (images are data: URIs), and only our
#: own script and style sheet run, allowed by their hashes (no 'unsafe-inline'), so markup
#: that slipped through escaping could neither run a script nor restyle the page.
CSP = f"default-src 'none'; img-src data:; style-src {csp_hash(STYLE)}; script-src {csp_hash(SCRIPT)}"


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
        A region table (:func:`segaudit.io.regions.load_regions`): the page lists each image's regions (the
        worst :data:`REGIONS_PER_IMAGE`), filters on their classes and kinds and takes a
        decision per region.
    hashes : dict, optional
        Each image's mask SHA-256; by default :func:`mask_hashes` (the masks the run record
        names). ``{}`` embeds none (the page then refuses whole-image ``ok`` decisions).
    decisions : list of Decision, optional
        An earlier decisions file's rows (:func:`segaudit.io.decisions.read_decisions`): the
        page starts from them; the browser's own later decisions win where both decided.
    """
    from ... import __version__

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
    if ranking.record is not None and ranking.record.calibration is not None:  # --method auto: how it chose
        from ..calibration import calibration_html

        parts.append(calibration_html(ranking.record.calibration))
    if ranking.record is not None and ranking.record.regions is not None \
            and ranking.record.regions.calibration is not None:  # score --regions: what the regions find
        from ...calibration.regions import RegionCalibration
        from ..calibration import region_calibration_html

        parts.append(region_calibration_html(RegionCalibration.from_dict(ranking.record.regions.calibration,
                                                                          str(ranking.path))))
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
    from ...io.files import atomic_write_all

    result = build_report(ranking, **options)
    atomic_write_all({Path(output): result.html})
    return result
