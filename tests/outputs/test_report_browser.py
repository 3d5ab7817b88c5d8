"""``segaudit report`` in a real browser (headless Chromium, see tests/browser.py): search,
filters, sorting, the keys, decisions kept in localStorage and downloaded, and the
downloaded ``decisions.csv`` fed back to ``segaudit score --reviewed``.

Skipped, with the reason, without Selenium, Chromium or chromedriver; ``.ci/run`` installs them.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from browser import start_chromium, stop_chromium, wait_for
from datasets import FIXTURES
from segaudit.cli import app
from segaudit.io.decisions import file_sha256, read_decisions

PLANTED = ["city_a/0003", "city_a/0005", "city_b/0002", "city_b/0004"]


def invoke(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The fixtures scored (softmin, cil), their regions found, 5 overlays, the report."""
    work = tmp_path_factory.mktemp("report-browser")
    ok(invoke("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "-q", "-m", "softmin,cil", "-o",
              work / "ranking.csv"))
    ok(invoke("regions", FIXTURES / "masks", FIXTURES / "preds.zarr", "-q", "-o", work / "regions.csv"))
    ok(invoke("overlay", "-r", work / "ranking.csv", "-o", work / "overlays", "--top", "5", "-q"))
    ok(invoke("report", "-r", work / "ranking.csv", "--overlays", work / "overlays", "--regions",
              work / "regions.csv", "-o", work / "report.html", "-q"))
    with open(work / "ranking.csv", newline="") as stream:
        ranking = list(csv.DictReader(stream))
    with open(work / "regions.csv", newline="") as stream:
        regions = list(csv.DictReader(stream))
    return {"dir": work, "page": work / "report.html", "ranking": ranking, "regions": regions}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    downloads = tmp_path_factory.mktemp("downloads")
    driver = start_chromium(downloads)
    driver.downloads = downloads
    yield driver
    stop_chromium(driver)


def open_page(driver, path: Path, fresh: bool = True):
    if fresh:  # every test starts without decisions
        # Cleared in the browser's own store (DevTools), before the page loads: a page's
        # localStorage.clear() reaches that store asynchronously, and a reload right after it
        # could still read the previous test's decisions (seen in CI).
        driver.get("about:blank")
        driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": "file://", "storageTypes": "local_storage"})
    driver.get(path.resolve().as_uri())
    wait_for(lambda: driver.execute_script("return document.documentElement.getAttribute('data-ready')"),
             what="the report's script")


def shown_ids(driver) -> list[str]:
    """The ids of the table's rows in the document, in table order."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#body .row'))"
        ".sort(function (a, b) { return a.offsetTop - b.offsetTop; })"
        ".map(function (r) { return r.getAttribute('data-id'); })")


def set_control(driver, control_id: str, value: str):
    """Set an input or select as a person would (the page listens to input / change)."""
    driver.execute_script(
        "var e = document.getElementById(arguments[0]); e.value = arguments[1];"
        "e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true}));",
        control_id, value)


def press(driver, *keys: str):
    from selenium.webdriver.common.action_chains import ActionChains

    driver.execute_script("document.activeElement && document.activeElement.blur()")
    chain = ActionChains(driver)
    for key in keys:
        chain.send_keys(key)
    chain.perform()


def current_id(driver) -> str:
    return driver.execute_script("var r = document.querySelector('#body .row.current'); return r && r.getAttribute('data-id')")


def severe_logs(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_the_page_shows_every_image_in_rank_order_without_errors(made, browser):
    open_page(browser, made["page"])
    ranked = [row["image"] for row in made["ranking"]]
    assert shown_ids(browser) == ranked
    assert browser.execute_script("return document.getElementById('status').textContent").startswith("12 of 12 images")
    # the worst image is selected: its overlay is decoded now, and only its
    detail = browser.find_element("id", "detail")
    assert ranked[0] in detail.text
    images = browser.execute_script("return Array.from(document.images).map(function (i) { return [i.naturalWidth, i.alt]; })")
    assert len(images) == 1 and images[0][0] > 0 and images[0][1] == f"overlay of {ranked[0]}"
    # its regions, from regions.csv
    numbers = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.regions tr[data-region]')).map(function (r) { return r.cells[0].textContent; })")
    assert numbers == [f"#{r['region']}" for r in made["regions"] if r["image"] == ranked[0]]
    assert severe_logs(browser) == []  # no script error, no Content-Security-Policy violation


def test_search_and_filters(made, browser):
    open_page(browser, made["page"])
    ranked = made["ranking"]
    set_control(browser, "q", "CITY_A/")  # case-insensitive, part of the id
    wait_for(lambda: shown_ids(browser) == [r["image"] for r in ranked if "city_a/" in r["image"]], what="search")
    set_control(browser, "q", "")
    # the class, as annotated or as likely, in the ranking or in a region
    regions = made["regions"]
    set_control(browser, "cls", "car")
    set_control(browser, "side", "likely")
    expected = [r["image"] for r in ranked
                if r["likely_class"] == "car" or any(g["image"] == r["image"] and g["likely_class"] == "car" for g in regions)]
    assert expected and len(expected) < len(ranked)
    wait_for(lambda: shown_ids(browser) == expected, what="the class filter")
    set_control(browser, "side", "annotated")
    expected = [r["image"] for r in ranked if r["suspect_class"] == "car"
                or any(g["image"] == r["image"] and g["annotated_class"] == "car" for g in regions)]
    wait_for(lambda: shown_ids(browser) == expected, what="the class filter, annotated")
    set_control(browser, "cls", "")
    # the region kind
    set_control(browser, "kind", "missing")
    expected = [r["image"] for r in ranked if any(g["image"] == r["image"] and g["kind"] == "missing" for g in regions)]
    assert expected and len(expected) < len(ranked)
    wait_for(lambda: shown_ids(browser) == expected, what="the kind filter")
    set_control(browser, "kind", "")
    # the score range of the chosen method
    set_control(browser, "lo", "0")
    set_control(browser, "hi", "0.1")
    wait_for(lambda: sorted(shown_ids(browser)) == PLANTED, what="the score range")
    set_control(browser, "method", "1")  # cil: none of them scores below 0.1
    wait_for(lambda: shown_ids(browser) == [], what="the range on cil")
    assert "No image matches" in browser.find_element("id", "detail").text
    set_control(browser, "lo", "0.3")
    set_control(browser, "hi", "0.8")
    expected = sorted((r for r in ranked if 0.3 <= float(r["cil"]) <= 0.8), key=lambda r: float(r["cil"]))
    assert expected
    wait_for(lambda: shown_ids(browser) == [r["image"] for r in expected], what="the range on cil, sorted by cil")
    browser.find_element("id", "reset").click()
    wait_for(lambda: len(shown_ids(browser)) == 12, what="clear filters")


def test_clicking_a_histogram_bar_filters_its_range(made, browser):
    open_page(browser, made["page"])
    browser.execute_script("document.querySelector('svg.histogram rect.bar.low').dispatchEvent(new MouseEvent('click'))")
    wait_for(lambda: sorted(shown_ids(browser)) == PLANTED, what="the bar's images")


def test_each_bar_shows_exactly_its_own_images(tmp_path, browser):
    # Scores on the bars' edges (0.05 steps, 0 and 1 included): each belongs to one bar only,
    # the one the histogram counted it in.
    scores = [round(0.05 * k, 2) for k in range(21)] + [0.0, 0.5, 0.5, 1.0, 0.37]
    lines = ["rank,image,score,softmin,pixels,low_pixels,suspect_class,likely_class"]
    lines += [f"{i + 1},img/{i:03d},{v},{v},100,0,,"
              for i, v in enumerate(sorted(scores))]
    (tmp_path / "ranking.csv").write_text("\n".join(lines) + "\n")
    ok(invoke("report", "-r", tmp_path / "ranking.csv", "-o", tmp_path / "r.html", "--overlays", tmp_path / "none", "-q"))
    open_page(browser, tmp_path / "r.html")
    counts = browser.execute_script(
        "return Array.from(document.querySelectorAll('svg.histogram rect[data-bin]')).map(function (b) {"
        " return parseInt(b.querySelector('title').textContent.split(': ')[1], 10); })")
    seen = []
    for n, count in enumerate(counts):
        browser.execute_script("document.querySelector('svg.histogram rect[data-bin=\"' + arguments[0] + '\"]')"
                               ".dispatchEvent(new MouseEvent('click'))", n)
        wait_for(lambda: browser.find_element("id", "status").text.startswith(f"{count} of {len(scores)} images"),
                 what=f"bar {n}'s {count} image(s)")
        seen += shown_ids(browser)  # a few rows each: all in the document
    assert sorted(seen) == sorted(f"img/{i:03d}" for i in range(len(scores)))  # every image once


def test_sorting_by_a_column_and_back(made, browser):
    open_page(browser, made["page"])
    ranked = made["ranking"]

    def heading(key):
        return browser.find_element("css selector", f'#head [data-key="{key}"]')

    heading("m1").click()  # cil, ascending
    by_cil = [r["image"] for r in sorted(ranked, key=lambda r: (float(r["cil"]), int(r["rank"])))]
    wait_for(lambda: shown_ids(browser) == by_cil, what="sort by cil")
    assert heading("m1").get_attribute("aria-sort") == "ascending"
    heading("m1").click()
    wait_for(lambda: shown_ids(browser) == [r["image"] for r in sorted(ranked, key=lambda r: (-float(r["cil"]), int(r["rank"])))],
             what="sort by cil, descending")
    heading("lowp").click()
    low = [r["image"] for r in sorted(ranked, key=lambda r: (int(r["low_pixels"]) / int(r["pixels"]), int(r["rank"])))]
    wait_for(lambda: shown_ids(browser) == low, what="sort by low %")
    heading("rank").click()
    wait_for(lambda: shown_ids(browser) == [r["image"] for r in ranked], what="back to rank order")


def test_keys_decisions_download_and_score_reviewed(made, browser, tmp_path):
    open_page(browser, made["page"])
    ranked = [row["image"] for row in made["ranking"]]
    assert current_id(browser) == ranked[0]
    press(browser, "j", "j")
    assert current_id(browser) == ranked[2]
    press(browser, "k")
    assert current_id(browser) == ranked[1]
    press(browser, "k")
    # rank 1: ok (the page moves on to the next image), rank 2: fix, rank 3: a region fixed, then skipped
    press(browser, "o")
    assert current_id(browser) == ranked[1]
    press(browser, "f")
    assert current_id(browser) == ranked[2]
    first_region = min(int(r["region"]) for r in made["regions"] if r["image"] == ranked[2])
    press(browser, str(first_region), "f")
    assert current_id(browser) == ranked[2]  # a region's decision stays on the image
    press(browser, "e")
    browser.switch_to.active_element.send_keys('needs "care", really')
    press(browser, "0")  # back to the whole image
    press(browser, "s")
    assert current_id(browser) == ranked[3]
    # n: the next undecided image, p: the previous one (ranks 1-3 are decided)
    press(browser, "j", "p")
    assert current_id(browser) == ranked[3]
    press(browser, "k", "k", "n")
    assert current_id(browser) == ranked[3]
    badges = browser.execute_script(
        "return Array.from(document.querySelectorAll('#body .row')).slice(0, 4).map(function (r) { return r.lastChild.textContent; })")
    assert badges == ["ok", "fix", "skip", ""]
    # the decisions survive a reload (localStorage)
    open_page(browser, made["page"], fresh=False)
    wait_for(lambda: "decided: 1 ok, 1 fix, 1 skip, 1 region(s)" in browser.find_element("id", "status").text,
             what="the decisions after a reload")
    # only decided images
    set_control(browser, "dec", "decided")
    wait_for(lambda: shown_ids(browser) == ranked[:3], what="the decision filter")
    # download decisions.csv
    target = browser.downloads / "decisions.csv"
    if target.exists():
        target.unlink()
    browser.find_element("id", "download").click()
    wait_for(lambda: target.is_file() and target.stat().st_size > 0, what="decisions.csv to download")
    text = target.read_text()
    rows = list(csv.reader(io.StringIO(text)))
    masks = FIXTURES / "masks"

    def sha(image_id):
        return file_sha256(masks / f"{image_id}.png")

    assert rows == [
        ["image", "region", "decision", "note", "mask_sha256"],
        [ranked[0], "", "ok", "", sha(ranked[0])],
        [ranked[1], "", "fix", "", sha(ranked[1])],
        [ranked[2], "", "skip", "", sha(ranked[2])],
        [ranked[2], str(first_region), "fix", 'needs "care", really', sha(ranked[2])],
    ]
    decisions = read_decisions(target)  # the reader of score --reviewed takes it as it is
    assert [(d.image_id, d.region, d.decision) for d in decisions] == [
        (ranked[0], None, "ok"), (ranked[1], None, "fix"), (ranked[2], None, "skip"), (ranked[2], first_region, "fix")]
    # score --reviewed: the image marked ok is exempt from the gate, the others still fail it
    reviewed = tmp_path / "decisions.csv"
    reviewed.write_bytes(target.read_bytes())
    result = invoke("score", masks, FIXTURES / "preds.zarr", "-o", tmp_path / "r.csv", "-m", "rsoftmin",
                    "--fail-under", "0.1", "--reviewed", reviewed)
    assert result.exit_code == 1
    (gate,) = [line for line in result.stderr.splitlines() if line.startswith("gate failed")]
    failing = sorted(set(PLANTED) - {ranked[0]})
    assert f"{len(failing)} image(s)" in gate and ranked[0] not in gate
    assert "1 image(s) marked ok" in result.stderr
    record = json.loads((tmp_path / "r.run.json").read_text())
    assert record["reviewed"]["exempted"] == 1 and record["reviewed"]["stale"] == 0


def test_an_earlier_decisions_file_starts_the_review(made, browser, tmp_path):
    ranked = [row["image"] for row in made["ranking"]]
    sha = file_sha256(FIXTURES / "masks" / f"{ranked[0]}.png")
    earlier = tmp_path / "earlier.csv"
    earlier.write_text("image,region,decision,note,mask_sha256\n"
                       f"{ranked[0]},,ok,seen,{sha}\n"
                       f"{ranked[1]},,ok,old mask,{'0' * 64}\n"  # about another version of the mask: stale
                       f"{ranked[2]},,fix,,\n")
    page = tmp_path / "report.html"
    ok(invoke("report", "-r", made["dir"] / "ranking.csv", "--overlays", made["dir"] / "overlays", "--regions",
              made["dir"] / "regions.csv", "--decisions", earlier, "-o", page, "-q"))
    open_page(browser, page)  # localStorage cleared: the page starts from the file
    badges = browser.execute_script(
        "return Array.from(document.querySelectorAll('#body .row')).slice(0, 4).map(function (r) {"
        " return r.lastChild.className; })")
    assert badges == ["badge ok", "badge stale", "badge fix", ""]
    # this browser's own decision wins over the file's, and the download holds both
    press(browser, "j", "j", "s")
    open_page(browser, page, fresh=False)
    target = browser.downloads / "decisions.csv"
    if target.exists():
        target.unlink()
    browser.find_element("id", "download").click()
    wait_for(lambda: target.is_file() and target.stat().st_size > 0, what="decisions.csv to download")
    rows = list(csv.reader(io.StringIO(target.read_text())))
    assert rows[1:] == [[ranked[0], "", "ok", "seen", sha], [ranked[1], "", "ok", "old mask", "0" * 64],
                        [ranked[2], "", "skip", "", file_sha256(FIXTURES / "masks" / f"{ranked[2]}.png")]]
    assert severe_logs(browser) == []


def test_a_malformed_decisions_file_is_a_one_line_error(made, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("image,region,decision,note,mask_sha256\ncity_a/0003,,maybe,,\n")
    result = invoke("report", "-r", made["dir"] / "ranking.csv", "--decisions", bad, "-o", tmp_path / "r.html")
    assert result.exit_code == 2 and not (tmp_path / "r.html").exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0], result.stderr


def test_a_whole_image_ok_needs_a_mask_hash(tmp_path, browser):
    (tmp_path / "ranking.csv").write_text("rank,image,score,softmin,pixels,low_pixels,suspect_class,likely_class\n"
                                          "1,a,0.01,0.01,10,5,sky,road\n2,b,0.5,0.5,10,0,,\n")
    result = ok(invoke("report", "-r", tmp_path / "ranking.csv", "-o", tmp_path / "r.html", "--overlays", tmp_path / "none"))
    assert "no mask hashes" in result.stderr
    open_page(browser, tmp_path / "r.html")
    press(browser, "o")
    assert current_id(browser) == "a"  # not decided: no hash to record
    assert "no mask hash for a" in browser.find_element("id", "status").text
    assert browser.find_element("css selector", '#detail button[data-decision="ok"]').get_attribute("disabled")
    press(browser, "f")  # fix needs no hash
    assert current_id(browser) == "b"


def test_strings_from_files_are_text_never_markup(tmp_path, browser):
    evil = '<img src=x onerror="window.__pwned=1">'
    quoted = '"' + evil.replace('"', '""') + '"'
    (tmp_path / "ranking.csv").write_text("rank,image,score,softmin,pixels,low_pixels,suspect_class,likely_class\n"
                                          f"1,{quoted},0.01,0.01,10,5,</script><b>x,road\n")
    ok(invoke("report", "-r", tmp_path / "ranking.csv", "-o", tmp_path / "r.html", "--overlays", tmp_path / "none", "-q"))
    open_page(browser, tmp_path / "r.html")
    assert shown_ids(browser) == [evil]
    assert browser.execute_script("return window.__pwned") is None
    assert browser.execute_script("return document.querySelectorAll('#detail b img, #body img').length") == 0
    assert evil in browser.find_element("id", "detail").text
    assert "</script><b>x" in browser.find_element("id", "detail").text


def test_only_the_visible_rows_are_in_the_document(tmp_path, browser):
    n = 3000
    lines = ["rank,image,score,softmin,pixels,low_pixels,suspect_class,likely_class"]
    lines += [f"{i},img/{i:05d},{i / n:.6f},{i / n:.6f},100,{n - i},c{i % 7},c{(i + 1) % 7}" for i in range(1, n + 1)]
    (tmp_path / "ranking.csv").write_text("\n".join(lines) + "\n")
    ok(invoke("report", "-r", tmp_path / "ranking.csv", "-o", tmp_path / "r.html", "--overlays", tmp_path / "none", "-q"))
    open_page(browser, tmp_path / "r.html")
    assert browser.find_element("id", "status").text.startswith("3,000 of 3,000 images")
    first = shown_ids(browser)
    assert first[0] == "img/00001" and 10 < len(first) < 60
    browser.execute_script("var b = document.getElementById('rows'); b.scrollTop = b.scrollHeight;")
    wait_for(lambda: shown_ids(browser)[-1:] == [f"img/{n:05d}"], what="the last rows after scrolling")
    assert len(shown_ids(browser)) < 60
    press(browser, "End")  # not a key of the page: nothing happens
    set_control(browser, "cls", "c3")
    wait_for(lambda: browser.find_element("id", "status").text.startswith(f"{sum(1 for i in range(1, n + 1) if i % 7 == 3 or (i + 1) % 7 == 3):,} of"),
             what="the class filter on 3,000 images")


def test_regions_below_the_threshold_are_listed_on_demand(made, browser, tmp_path):
    # With score --regions, the page counts and lists the regions at or above the recorded
    # threshold; a click lists the others, another hides them again.
    import json

    work = tmp_path / "counted"
    work.mkdir()
    ok(invoke("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "-q", "--regions", "-o", work / "ranking.csv"))
    ok(invoke("report", "-r", work / "ranking.csv", "--regions", made["dir"] / "regions.csv", "-o",
              work / "report.html", "-q"))
    threshold = json.loads((work / "ranking.run.json").read_text())["regions"]["threshold"]
    image = "city_a/0003"
    mine = [r for r in made["regions"] if r["image"] == image]
    above = [f"#{r['region']}" for r in mine if float(r["score"]) >= threshold]
    assert 0 < len(above) < len(mine)
    open_page(browser, work / "report.html")
    browser.execute_script("document.querySelector('#body .row[data-id=\"' + arguments[0] + '\"]').click()", image)

    def listed():
        return browser.execute_script("return Array.from(document.querySelectorAll('table.regions tr[data-region]'))"
                                      ".map(function (r) { return r.cells[0].textContent; })")

    wait_for(lambda: listed() == above, what="the regions at or above the threshold")
    toggle = browser.find_element("css selector", ".show-all")
    assert f"show {len(mine) - len(above)} more region(s) below the threshold {threshold:.3f}" in toggle.text
    toggle.click()
    wait_for(lambda: listed() == [f"#{r['region']}" for r in sorted(mine, key=lambda r: int(r["region"]))],
             what="every region")
    browser.find_element("css selector", ".show-all").click()
    wait_for(lambda: listed() == above, what="the regions at or above the threshold again")
    assert severe_logs(browser) == []
