"""``segaudit report``: the HTML's structure, escaping, the embedded data (images, scores,
thumbnails, mask hashes), the log-scale histogram, the optional class-confusion section and
the command's defaults and errors.

The HTML is checked with the standard library's parser; the page's script is tested in
Chromium by tests/outputs/test_report_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from datasets import FIXTURES
from segaudit.cli import app
from segaudit.outputs.overlay import overlay_name
from segaudit.io.rankings import load_ranking
from segaudit.io.decisions import file_sha256
from segaudit.outputs import report as report_module
from segaudit.outputs.report import build_report, embed_json, histogram_svg, read_embedded_data

EVIL_ID = "<script>x</script>"
AMP_CLASS = "cars & trucks"
VOID = {"meta", "img", "br", "hr", "input", "link", "source", "wbr", "col", "area", "base", "embed", "track"}
SVG_LEAVES = {"line", "rect", "path", "circle"}


def invoke(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


class Page(HTMLParser):
    """Collects tags, attributes and text; checks that every element is closed in order."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if tag == "script":
            self._in_script = False
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)

    def find(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def write_ranking(directory: Path, rows: list[tuple], record: dict | None = None, methods=("softmin",)) -> Path:
    """A ranking CSV by hand: rows of (image, score, pixels, low_pixels, suspect, likely)."""
    directory.mkdir(parents=True, exist_ok=True)
    import csv

    path = directory / "ranking.csv"
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["rank", "image", "score", *methods, "pixels", "low_pixels", "suspect_class", "likely_class"])
        for rank, (image, score, pixels, low, suspect, likely) in enumerate(rows, 1):
            writer.writerow([rank, image, score, *([score] * len(methods)), pixels, low, suspect, likely])
    if record is not None:
        (directory / "ranking.run.json").write_text(json.dumps(record))
    return path


ROWS = [
    (EVIL_ID, 0.01, 100, 60, AMP_CLASS, "road"),
    ("city/a", 0.05, 100, 20, "road", AMP_CLASS),
    ("city/b", 0.4, 100, 2, "road", "road"),
    ("city/c", 0.8, 100, 0, "", ""),
    ("empty", "", 0, 0, "", ""),
]
RECORD = {"command": "score", "masks": "/data/m<asks>", "predictions": "/data/p.zarr", "methods": ["softmin"],
          "temperature": 0.1, "pixel_threshold": 0.5, "classes": ["road", AMP_CLASS], "n_classes": 2}


@pytest.fixture
def ranking(tmp_path):
    return load_ranking(write_ranking(tmp_path / "run", ROWS, RECORD), need_record=False)


def test_structure_and_escaping(ranking):
    text = build_report(ranking, overlays_dir=None, top=3).html
    page = Page(text)
    assert page.errors == [] and page.stack == []
    assert text.startswith("<!DOCTYPE html>")
    # escaping: the id and the class name never appear as they are, in the markup or the data
    assert EVIL_ID not in text and "&lt;script&gt;x&lt;/script&gt;" in text  # the summary's worst image
    assert AMP_CLASS not in text and "cars &amp; trucks" in text
    assert "/data/m&lt;asks&gt;" in text
    scripts = page.find("script")
    assert [s.get("type") for s in scripts] == ["application/json", None]  # the data, then ours
    assert scripts[0]["id"] == "report-data"
    joined = " ".join(page.text)
    assert EVIL_ID in joined and AMP_CLASS in joined  # ... and read back as the original text
    data = read_embedded_data(text)
    assert [i["id"] for i in data["images"]] == [r[0] for r in ROWS]
    assert data["images"][0]["sus"] == AMP_CLASS
    ids = [a.get("id") for t, a in page.tags if t == "section"]
    assert ids == ["summary", "review"]
    for control in ("q", "cls", "side", "kind", "method", "lo", "hi", "dec", "download", "rows", "detail"):
        assert len([a for t, a in page.tags if a.get("id") == control]) == 1, control
    assert page.find("meta", **{"http-equiv": "Content-Security-Policy"})


def test_embedded_json_cannot_close_its_block():
    value = {"s": "</script><!-- <script>&amp; \u2028", "n": [1, None]}
    text = embed_json(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == value
    page = f'<script type="application/json" id="report-data">{text}</script>'
    assert read_embedded_data(page) == value
    with pytest.raises(ValueError):
        embed_json({"score": float("nan")})  # NaN is not JSON: scores travel as null


def test_self_contained(ranking):
    text = build_report(ranking, overlays_dir=None).html
    page = Page(text)
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            if name in attrs:
                assert attrs[name].startswith(("data:", "#")), (tag, attrs)
        assert tag not in ("link", "iframe", "object")
    assert not re.search(r"url\(|@import|https?://(?!www\.w3\.org/2000/svg)", text)
    assert "fetch(" not in text and "XMLHttpRequest" not in text


def test_csp_allows_only_the_inlined_script_and_style_by_hash(ranking):
    text = build_report(ranking, overlays_dir=None).html
    (policy,) = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', text)
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert directives["default-src"] == "'none'" and directives["img-src"] == "data:"
    (script,) = re.findall(r"<script>(.*?)</script>", text, re.S)  # ours (the data block has a type)
    (style,) = re.findall(r"<style>(.*?)</style>", text, re.S)

    def source(content):
        return "'sha256-" + base64.b64encode(hashlib.sha256(content.encode("utf-8")).digest()).decode() + "'"

    assert directives["script-src"] == source(script)
    assert directives["style-src"] == source(style)
    # The inlined text is the package's report.js and report.css, as read as JS and CSS.
    package = Path(report_module.__file__).parent
    assert script.strip() == (package / "report.js").read_text(encoding="utf-8").strip()
    assert style.strip() == (package / "report.css").read_text(encoding="utf-8").strip()


def test_report_assets_are_package_data():
    """A non-editable install carries every non-Python file of the report package."""
    import tomllib

    package = Path(report_module.__file__).parent
    config = tomllib.loads((package.parents[2] / "pyproject.toml").read_text())
    listed = config["tool"]["setuptools"]["package-data"]["segaudit.outputs.report"]
    assets = sorted(p.name for p in package.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc"))
    assert assets == ["report.css", "report.js"] and sorted(listed) == assets


def test_report_js_is_valid_javascript():
    """report.js is read as JS: Node's parser checks it (the page itself runs in Chromium, in
    tests/outputs/test_report_browser.py)."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (Debian: apt-get install nodejs)")
    script = Path(report_module.__file__).parent / "report.js"
    checked = subprocess.run([node, "--check", str(script)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr


def test_summary_counts_and_histogram(ranking):
    text = build_report(ranking, overlays_dir=None, score_threshold=0.1).html
    assert "Images scored</dt><dd>4 (+1 with no scored pixel)" in text
    assert "Scoring below 0.1</dt><dd><b>2</b> image(s) (50.0 %)" in text
    svg = histogram_svg([0.01, 0.05, 0.4, 0.8, float("nan")], 0.1, bins=10)
    assert svg.count("<rect") == 10
    assert svg.count('class="bar low"') == 1  # only the [0, 0.1) bin is left of the line
    assert "0–0.1: 2 image(s)" in svg
    assert 'data-lo="0.0" data-hi="0.1"' in svg  # what the page filters on when the bar is clicked


def bar_heights(svg: str) -> list[float]:
    return [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]


def test_the_histogram_counts_on_a_log_scale():
    # 48 errors among 1,152 clean images: on a linear axis the errors' bar is 4 % of the
    # clean one's height, on the log axis more than half
    scores = [0.02] * 48 + [0.7] * 1152
    heights = bar_heights(histogram_svg(scores, 0.1, bins=10))
    errors, clean = heights[0], heights[7]
    assert clean > 0 and errors / clean == pytest.approx(math.log10(49) / math.log10(1153), rel=1e-3)
    assert errors / clean > 0.5
    assert heights.count(0.0) == 8  # empty bins have no bar
    svg = histogram_svg(scores, 0.1, bins=10)
    labels = re.findall(r'text-anchor="end">([\d,]+)</text>', svg)
    assert labels[:4] == ["0", "1", "10", "100"] and "1,000" in labels and "images (log scale)" in svg
    one = bar_heights(histogram_svg([0.5, 0.7, 0.7], bins=10))
    assert one[5] == pytest.approx(one[7] * math.log10(2) / math.log10(3), rel=1e-3)


def test_the_data_hold_every_image(ranking):
    data = read_embedded_data(build_report(ranking, overlays_dir=None, score_threshold=0.2, hashes={}).html)
    assert data["methods"] == ["softmin"] and data["threshold"] == 0.2 and data["pixel_threshold"] == 0.5
    assert data["columns"] == ["image", "region", "decision", "note", "mask_sha256"]
    assert data["storage_key"] == "segaudit-decisions:/data/m<asks>"  # per masks directory
    assert data["classes"] == sorted(["road", AMP_CLASS])
    first, *_, last = data["images"]
    assert first == {"rank": 1, "id": EVIL_ID, "s": [0.01], "px": 100, "low": 60, "sus": AMP_CLASS, "lik": "road",
                     "nreg": None, "worst": "", "sha": ""}
    assert last["id"] == "empty" and last["s"] == [None]  # no score: null, sorted last by the page
    assert [i["rank"] for i in data["images"]] == [1, 2, 3, 4, 5]


def test_an_earlier_decisions_file_is_embedded_as_the_pages_start(ranking, tmp_path):
    from segaudit.io.decisions import read_decisions

    earlier = tmp_path / "d.csv"
    earlier.write_text("image,region,decision,note,mask_sha256\n" f"{EVIL_ID},,fix,a note,\n" f"{EVIL_ID},2,ok,,\n"
                       f"empty,,skip,,{'a' * 64}\n")
    data = read_embedded_data(build_report(ranking, overlays_dir=None, hashes={},
                                           decisions=read_decisions(earlier)).html)
    assert data["seed"] == {EVIL_ID: {"": {"d": "fix", "note": "a note", "sha": ""}, "2": {"d": "ok", "note": "", "sha": ""}},
                            "empty": {"": {"d": "skip", "note": "", "sha": "a" * 64}}}
    assert read_embedded_data(build_report(ranking, overlays_dir=None, hashes={}).html)["seed"] == {}


def test_mask_hashes_are_those_score_reviewed_checks(tmp_path):
    record = dict(RECORD, masks=str(FIXTURES / "masks"))
    rows = [("city_a/0003", 0.01, 100, 60, "road", "car"), ("city_b/0002", 0.2, 100, 5, "sky", "road"),
            ("gone/1", 0.5, 100, 0, "", "")]
    loaded = load_ranking(write_ranking(tmp_path / "run", rows, record), need_record=False)
    result = build_report(loaded, overlays_dir=None)
    hashes = {i["id"]: i["sha"] for i in read_embedded_data(result.html)["images"]}
    assert hashes == {"city_a/0003": file_sha256(FIXTURES / "masks" / "city_a/0003.png"),
                      "city_b/0002": file_sha256(FIXTURES / "masks" / "city_b/0002.png"), "gone/1": ""}
    assert result.hashed == 2 and "1 ranked image(s) have no mask" in result.hash_note and "gone/1" in result.hash_note
    assert "1 ranked image(s) have no mask" in result.html  # the page says so too
    # no masks directory where the record says: no hashes, a note, still a report
    record["masks"] = str(tmp_path / "moved")
    loaded = load_ranking(write_ranking(tmp_path / "run2", rows, record), need_record=False)
    result = build_report(loaded, overlays_dir=None)
    assert result.hashed == 0 and "masks directory not found" in result.hash_note


def test_overlays_of_the_worst_images_are_embedded_as_png_thumbnails(ranking, tmp_path):
    overlays = tmp_path / "overlays"
    overlays.mkdir()
    Image.new("RGB", (3000, 500), (10, 200, 30)).save(overlays / overlay_name(2, "city/a"))
    Image.new("RGB", (300, 50), (10, 200, 30)).save(overlays / overlay_name(3, "city/b"))
    Image.new("RGB", (300, 50), (10, 200, 30)).save(overlays / overlay_name(4, "city/c"))  # beyond --top
    Image.new("RGB", (30, 5)).save(overlays / "0001_city__other.png")  # not from this ranking
    result = build_report(ranking, overlays_dir=overlays, top=3, thumb_width=1000)
    assert (result.gallery, result.missing_overlays) == (3, 1)  # the evil id has no overlay name
    assert Page(result.html).find("img") == []  # none in the markup: the page decodes the selected one only
    embedded = {i["id"]: i["ov"] for i in read_embedded_data(result.html)["images"] if "ov" in i}
    assert list(embedded) == ["city/a", "city/b"]
    sizes = []
    for src, width, height in embedded.values():
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as img:
            assert img.format == "PNG"
            sizes.append(img.size)
        assert (width, height) == sizes[-1]
    assert sizes == [(1000, 167), (300, 50)]  # scaled down to thumb_width, small ones kept


def test_confusion_section_only_when_given(ranking, tmp_path):
    assert 'id="confusions"' not in build_report(ranking, overlays_dir=None).html
    rows = [(AMP_CLASS, "road", 1200, 3, 0.25), ("<b>", "sky", 5, 1, 0.001)]
    text = build_report(ranking, overlays_dir=None, confusions=rows).html
    page = Page(text)
    assert page.errors == []
    assert [a.get("id") for t, a in page.tags if t == "section"] == ["summary", "confusions", "review"]
    assert "<td>cars &amp; trucks</td><td>road</td>" in text and "<td>&lt;b&gt;</td>" in text
    assert "25.00 %" in text
    assert "optional section: class confusions" in text


# --- the command ---------------------------------------------------------------------------


def test_report_after_score_and_overlay_with_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ok(invoke("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "-q", "--method", "softmin,cil"))
    ok(invoke("overlay", "--top", "5", "-q"))
    result = ok(invoke("report"))
    assert "wrote report.html (12 images, 5 overlay(s), 12 mask hash(es))" in result.stderr
    assert "7 of the 12 worst image(s) have no overlay" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["overlays", "ranking.csv", "ranking.run.json", "report.html"]
    text = (tmp_path / "report.html").read_text()
    page = Page(text)
    assert page.errors == []
    data = read_embedded_data(text)
    assert sum("ov" in i for i in data["images"]) == 5 and all("ov" in i for i in data["images"][:5])
    assert data["methods"] == ["softmin", "cil"]
    assert all(len(i["sha"]) == 64 for i in data["images"])


def test_report_with_confusions_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_ranking(tmp_path, ROWS[:2], RECORD)
    (tmp_path / "conf.csv").write_text("annotated,predicted,pixels,images,share\ncar,road,4,1,0.1\n")
    ok(invoke("report", "--confusions", "conf.csv", "-o", "r.html", "-q"))
    assert 'id="confusions"' in (tmp_path / "r.html").read_text()
    result = invoke("report", "--confusions", "missing.csv", "-o", "r2.html")
    assert result.exit_code == 2 and result.stderr.splitlines() == ["error: confusion summary not found: missing.csv"]


def test_report_without_run_record_still_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_ranking(tmp_path, ROWS)
    result = ok(invoke("report", "--overlays", "nowhere"))
    assert "note: no run record" in result.stderr
    assert "note: no mask hashes (no run record for ranking.csv)" in result.stderr
    assert "no run record found" in (tmp_path / "report.html").read_text()


def test_report_missing_ranking_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("report")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.splitlines() == ["error: ranking not found: ranking.csv (run segaudit score first, or pass --ranking FILE)"]
    assert os.listdir(tmp_path) == []


def test_report_rejects_a_csv_that_is_not_a_ranking(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ranking.csv").write_text("a,b\n1,2\n")
    result = invoke("report")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["error: ranking.csv: not a segaudit ranking (needs the columns rank, image and score)"]
    assert not (tmp_path / "report.html").exists()


def test_report_is_written_atomically(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_ranking(tmp_path, ROWS, RECORD)
    ok(invoke("report", "-q"))
    ok(invoke("report", "-q"))  # replaced in place
    assert sorted(os.listdir(tmp_path)) == ["ranking.csv", "ranking.run.json", "report.html"]


def test_report_never_writes_inside_the_masks_it_hashes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.new("L", (4, 4)).save(masks / "a.png")
    write_ranking(tmp_path, [("a", 0.5, 16, 0, "", "")], dict(RECORD, masks=str(masks)))
    result = invoke("report", "-o", masks / "report.html")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [f"error: --output {masks / 'report.html'} is inside the masks directory "
                                          f"{masks}: refusing to write over an input"]
    assert os.listdir(masks) == ["a.png"]
    ok(invoke("report", "-q"))
    assert read_embedded_data((tmp_path / "report.html").read_text())["images"][0]["sha"] == file_sha256(masks / "a.png")


def test_an_auto_run_shows_its_calibration(tmp_path):
    """The review page of a --method auto ranking says which candidate ranked it and shows
    the table of every candidate's AUPRC per planted kind."""
    import html

    from segaudit.api import score
    from segaudit.outputs.ranking import write_ranking as write_run

    run = score(FIXTURES / "masks", FIXTURES / "preds.zarr", methods=("auto",))
    write_run(run, tmp_path / "ranking.csv")
    text = build_report(load_ranking(tmp_path / "ranking.csv"), overlays_dir=None, top=3).html
    page = Page(text)
    assert page.errors == [] and page.stack == []
    assert page.find("section", id="calibration")
    chosen = run.calibration.chosen
    assert f"chose {html.escape(chosen)}" in text and f"{html.escape(chosen)} (chosen)" in text
    for kind in run.calibration.kinds:
        assert f"<th data-type=\"num\">{kind}</th>" in text


def test_a_regions_run_shows_what_its_regions_find(tmp_path, monkeypatch):
    """The review page of a ``score --regions`` ranking says the calibrated threshold, what it
    finds on planted errors, and which planted kinds the regions rarely find."""
    import segaudit.calibration.regions as calibration_regions
    from segaudit.api import score
    from segaudit.outputs.ranking import write_ranking as write_run

    def page_of(name):
        run = score(FIXTURES / "masks", FIXTURES / "preds.zarr", methods=("rsoftmin",), regions=True)
        write_run(run, tmp_path / name)
        text = build_report(load_ranking(tmp_path / name), overlays_dir=None, top=3).html
        page = Page(text)
        assert page.errors == [] and page.stack == []
        return page, text

    page, text = page_of("ranking.csv")
    assert page.find("section", id="region-calibration")
    assert "planted precision" in text and "few planted errors" not in text
    # Every kind with enough copies asked to be found more often than it can be: one warning.
    monkeypatch.setattr(calibration_regions, "KIND_RECALL_WARNING", 1.01)
    _, text = page_of("warned.csv")
    assert text.count("With this model, few planted errors of these kinds") == 1 and "missed objects (" in text
    # Without --regions: no such section.
    run = score(FIXTURES / "masks", FIXTURES / "preds.zarr", methods=("rsoftmin",))
    write_run(run, tmp_path / "plain.csv")
    assert 'id="region-calibration"' not in build_report(load_ranking(tmp_path / "plain.csv"), overlays_dir=None,
                                                          top=3).html
