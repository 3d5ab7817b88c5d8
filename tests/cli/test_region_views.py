"""Error regions in ``segaudit overlay`` and ``segaudit report`` on the fixtures, end to end:
score, regions, overlay, report; the options and their errors."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from datasets import FIXTURES
from segaudit.cli import app
from segaudit.outputs.colours import class_colours
from segaudit.outputs.overlay import overlay_name, panel_layout
from segaudit.outputs.report import REGIONS_PER_IMAGE, build_report, read_embedded_data
from segaudit.io.rankings import load_ranking


def invoke(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """The fixtures scored, their regions found (csv and jsonl) and overlays drawn."""
    work = tmp_path_factory.mktemp("regions")
    ranking = work / "ranking.csv"
    ok(invoke("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "-q", "-o", ranking))
    ok(invoke("regions", FIXTURES / "masks", FIXTURES / "preds.zarr", "-q", "-o", work / "regions.csv"))
    ok(invoke("regions", FIXTURES / "masks", FIXTURES / "preds.zarr", "-q", "-o", work / "regions.jsonl",
              "--format", "jsonl"))
    ok(invoke("overlay", "-r", ranking, "-o", work / "overlays", "--top", "12", "-q"))
    ok(invoke("overlay", "-r", ranking, "-o", work / "plain", "--top", "12", "-q", "--max-regions", "0"))
    with open(work / "regions.csv", newline="") as stream:
        regions = list(csv.DictReader(stream))
    with open(ranking, newline="") as stream:
        ranks = {row["image"]: int(row["rank"]) for row in csv.DictReader(stream)}
    import segaudit

    threshold = segaudit.regions(FIXTURES / "masks", FIXTURES / "preds.zarr").threshold  # --min-score's default
    return {"dir": work, "ranking": ranking, "regions": regions, "ranks": ranks, "threshold": threshold}


def fixture_colours():
    """The class colours overlays of the fixtures use: their masks' own palette."""
    from segaudit.core.dataset import open_dataset
    from segaudit.io.masks import mask_palette

    dataset = open_dataset(FIXTURES / "masks", FIXTURES / "preds.zarr")
    colours = class_colours(dataset.store.n_classes, dataset.store.classes,
                            mask_palette=mask_palette(dataset.pairs[0][0]), ignore=dataset.ignore)
    assert colours.source == "mask palette"
    return colours


def png(scored, folder: str, image_id: str) -> Image.Image:
    return Image.open(scored["dir"] / folder / overlay_name(scored["ranks"][image_id], image_id)).convert("RGB")


def test_overlay_outlines_each_region_on_its_box(scored):
    import dataclasses

    from segaudit.core.dataset import open_dataset
    from segaudit.core.regions import find_regions
    from segaudit.outputs.overlay import any_pool, region_outline

    image_id = "city_a/0005"
    rows = [r for r in scored["regions"] if r["image"] == image_id and float(r["score"]) >= scored["threshold"]]
    assert len(rows) == 3
    dataset = open_dataset(FIXTURES / "masks", FIXTURES / "preds.zarr")
    dataset = dataclasses.replace(dataset, pairs=[p for p in dataset.pairs if p[1] == image_id])
    found = {}
    find_regions(dataset, keep_maps=lambda _: True,
                 on_image=lambda i, _, labels, regions, finder: found.update(map=finder.region_map))
    colour = fixture_colours().region_colour
    layout = panel_layout(48, 64)  # 4x enlargement: panels of 192 x 256
    left, top, right, bottom = layout.box(2)  # no photos: the error map is the third panel
    error = np.asarray(png(scored, "overlays", image_id))[top:bottom, left:right]
    on = np.all(error == colour, axis=-1)
    outlines = np.zeros_like(on)
    labels = np.zeros_like(on)
    for row in rows:
        mask = any_pool(found["map"] == int(row["region"]) - 1, 192, 256)
        outline = region_outline(mask)
        assert on[outline].all(), row  # the region's 1-px edge, at the panel's resolution
        assert not on[mask & ~outline].any(), row  # its inside keeps the low colour
        x0, y0, x1, y1 = (4 * int(row[k]) for k in ("x0", "y0", "x1", "y1"))
        assert outline[y0, x0:x1].any() and outline[y1 - 1, x0:x1].any()  # it reaches the box's sides
        outlines |= outline
        labels[max(0, y0 - 2 * layout.font_size):y0, x0:x1] = True  # the number goes above the box
    assert (on & labels).sum() > 3 * 50  # three numbers
    assert not (on & ~outlines & ~labels).any()  # nothing else is in the region colour


def test_overlay_adds_one_legend_line_per_region_under_the_panels(scored):
    layout = panel_layout(48, 64)
    for image_id, shown in (("city_a/0005", 3), ("city_b/0002", 2)):
        drawn, plain = png(scored, "overlays", image_id), png(scored, "plain", image_id)
        assert drawn.width == plain.width
        assert drawn.height == plain.height + layout.margin // 2 + shown * layout.line
        old, new = np.asarray(plain), np.asarray(drawn)
        changed = np.any(new[:plain.height] != old, axis=-1)
        left, top, right, bottom = layout.box(2)
        changed[top:bottom, left:right] = False
        assert not changed[:plain.height - layout.margin].any()


def test_images_without_a_region_at_the_threshold_are_unchanged(scored):
    shown = {r["image"] for r in scored["regions"] if float(r["score"]) >= scored["threshold"]}
    unchanged = [i for i in scored["ranks"] if i not in shown]
    assert "city_a/0002" in unchanged  # it has a region, but scoring 0.05
    for image_id in unchanged:
        drawn = scored["dir"] / "overlays" / overlay_name(scored["ranks"][image_id], image_id)
        plain = scored["dir"] / "plain" / overlay_name(scored["ranks"][image_id], image_id)
        assert drawn.read_bytes() == plain.read_bytes(), image_id


def test_region_options_choose_what_is_outlined(scored, tmp_path):
    ranking = scored["ranking"]
    ok(invoke("overlay", "-r", ranking, "-o", tmp_path / "one", "--ids", "city_a/0005", "-q", "--max-regions", "1"))
    ok(invoke("overlay", "-r", ranking, "-o", tmp_path / "all", "--ids", "city_a/0002", "-q",
              "--region-min-score", "0"))
    layout = panel_layout(48, 64)
    name = overlay_name(scored["ranks"]["city_a/0005"], "city_a/0005")
    one = Image.open(tmp_path / "one" / name)
    plain = Image.open(scored["dir"] / "plain" / name)
    assert one.height == plain.height + layout.margin // 2 + layout.line
    name = overlay_name(scored["ranks"]["city_a/0002"], "city_a/0002")
    low = [r for r in scored["regions"] if r["image"] == "city_a/0002"]
    everything = Image.open(tmp_path / "all" / name)
    assert everything.height == Image.open(scored["dir"] / "plain" / name).height + layout.margin // 2 + \
        min(5, len(low)) * layout.line


@pytest.mark.parametrize("option, value, message", [
    ("--region-min-score", "1.5", "--region-min-score must be between 0 and 1, got 1.5"),
    ("--region-min-score", "-0.1", "--region-min-score must be between 0 and 1"),
    ("--max-regions", "-1", "--max-regions must be >= 0, got -1"),
])
def test_bad_region_options_are_one_line_errors(scored, tmp_path, option, value, message):
    out = tmp_path / "never"
    one_line_error(invoke("overlay", "-r", scored["ranking"], "-o", out, option, value), message)
    assert not out.exists()


def test_report_embeds_each_images_regions(scored, tmp_path):
    out = tmp_path / "report.html"
    result = ok(invoke("report", "-r", scored["ranking"], "--overlays", scored["dir"] / "overlays",
                       "--regions", scored["dir"] / "regions.csv", "-o", out))
    assert "note:" not in result.stderr
    text = out.read_text()
    data = read_embedded_data(text)
    assert data["regions"] == "regions.csv"
    images = {image["id"]: image for image in data["images"]}
    assert len(images) == 12
    by_image: dict[str, list[dict]] = {}
    for row in scored["regions"]:
        by_image.setdefault(row["image"], []).append(row)
    for image_id, rank in scored["ranks"].items():
        image = images[image_id]
        assert image["rank"] == rank
        rows = sorted(by_image.get(image_id, []), key=lambda r: int(r["region"]))
        assert image["reg"] == [[int(r["region"]), r["kind"], r["annotated_class"], r["likely_class"], int(r["area"]),
                                 float(r["score"]), int(r["x0"]), int(r["y0"]), int(r["x1"]), int(r["y1"])]
                                for r in rows]
        assert "more" not in image
    assert data["kinds"] == sorted({r["kind"] for r in scored["regions"]})
    assert f"Error regions</dt><dd>{len(scored['regions'])} in {len(by_image)} image(s)" in text
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)|<link|url\(", text)  # still self-contained
    # the same table read from JSON Lines gives the same report but for the file's name
    ok(invoke("report", "-r", scored["ranking"], "--overlays", scored["dir"] / "overlays", "-q",
              "--regions", scored["dir"] / "regions.jsonl", "-o", tmp_path / "jsonl.html"))
    assert (tmp_path / "jsonl.html").read_text().replace("regions.jsonl", "regions.csv") == text


def test_report_counts_regions_as_the_ranking_does(scored, tmp_path):
    # With score --regions the ranking's regions column counts the regions at or above the
    # calibrated threshold; the report's column is that count, every region still listed.
    ranking = tmp_path / "ranking.csv"
    ok(invoke("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "--regions", "-q", "-o", ranking))
    ok(invoke("report", "-r", ranking, "--regions", scored["dir"] / "regions.csv", "-q", "-o", tmp_path / "r.html"))
    data = read_embedded_data((tmp_path / "r.html").read_text())
    assert data["region_threshold"] == scored["threshold"]
    counted = {row["image"]: int(row["regions"]) for row in csv.DictReader(open(ranking))}
    for image in data["images"]:
        listed = [r for r in scored["regions"] if r["image"] == image["id"]]
        assert image["nreg"] == counted[image["id"]] == sum(float(r["score"]) >= scored["threshold"] for r in listed)
        assert len(image["reg"]) == len(listed)
    assert sum(image["nreg"] for image in data["images"]) < len(scored["regions"])


def test_report_without_regions_has_none(scored, tmp_path):
    ranking = load_ranking(scored["ranking"], need_record=False)
    plain = build_report(ranking, overlays_dir=scored["dir"] / "overlays").html
    assert build_report(ranking, overlays_dir=scored["dir"] / "overlays", regions=None).html == plain
    data = read_embedded_data(plain)
    assert data["regions"] is None and all("reg" not in image for image in data["images"])
    assert "Error regions" not in plain
    ok(invoke("report", "-r", scored["ranking"], "--overlays", scored["dir"] / "overlays", "-q",
              "-o", tmp_path / "r.html"))
    assert (tmp_path / "r.html").read_text() == plain


def test_report_caps_the_regions_per_image_and_notes_strangers(scored, tmp_path):
    header = "rank,image,region,score,area,x0,y0,x1,y1,annotated_class,likely_class,mean_s,mean_p_likely,kind\n"
    many = REGIONS_PER_IMAGE + 2
    lines = [f"{n},city_b/0002,{n},0.5,{n},0,0,1,1,<sky>,road & co,0.1,0.9,boundary\n" for n in range(1, many + 1)]
    lines.append(f"{many + 1},elsewhere/1,1,0.9,5,0,0,2,2,sky,road,0.1,0.9,missing\n")
    (tmp_path / "many.csv").write_text(header + "".join(lines))
    result = ok(invoke("report", "-r", scored["ranking"], "--overlays", scored["dir"] / "overlays",
                       "--regions", tmp_path / "many.csv", "-o", tmp_path / "r.html"))
    assert "note: 1 image(s) of" in result.stderr and "elsewhere/1" in result.stderr
    text = (tmp_path / "r.html").read_text()
    image = {i["id"]: i for i in read_embedded_data(text)["images"]}["city_b/0002"]
    assert [r[0] for r in image["reg"]] == list(range(1, REGIONS_PER_IMAGE + 1)) and image["more"] == 2
    assert image["reg"][0][2:4] == ["<sky>", "road & co"]
    assert "elsewhere/1" not in text
    assert "<sky>" not in text and "road & co" not in text  # in the data block only as \\u escapes


HEADER = "rank,image,region,score,area,x0,y0,x1,y1,annotated_class,likely_class,mean_s,mean_p_likely,kind"


@pytest.mark.parametrize("content, message", [
    ("rank,image,score\n1,a,0.5\n", "bad.csv: missing column(s) region, area, x0"),
    (HEADER + "\n1,a,x,0.5,3,0,0,1,1,sky,road,0.1,0.9,missing\n", "bad.csv line 2: region must be a whole number, got 'x'"),
    (HEADER + "\n1,a,0,0.5,3,0,0,1,1,sky,road,0.1,0.9,missing\n", "bad.csv line 2: region must be >= 1, got 0"),
    (HEADER + "\n1,a,1,1.5,3,0,0,1,1,sky,road,0.1,0.9,missing\n", "bad.csv line 2: score must be between 0 and 1, got 1.5"),
    (HEADER + "\n1,a,1,nan,3,0,0,1,1,sky,road,0.1,0.9,missing\n", "score must be between 0 and 1, got nan"),
    (HEADER + "\n1,a,1,,3,0,0,1,1,sky,road,0.1,0.9,missing\n", "bad.csv line 2: score must be a number, got ''"),
    (HEADER + "\n1,a,1,0.5,3,4,0,1,1,sky,road,0.1,0.9,missing\n", "box x0,y0,x1,y1 = 4,0,1,1 has x1 < x0"),
    (HEADER + "\n1,a,1,0.5,-3,0,0,1,1,sky,road,0.1,0.9,missing\n", "area must be >= 0, got -3"),
    (HEADER + "\n1,,1,0.5,3,0,0,1,1,sky,road,0.1,0.9,missing\n", "bad.csv line 2: no image id"),
    (HEADER + "\n1,a,1,0.5,3,0,0,1,1,sky,road,0.1,0.9,missing\n2,a,1,0.4,3,0,0,1,1,sky,road,0.1,0.9,missing\n",
     "bad.csv line 3: region 1 of image 'a' is listed twice"),
    (HEADER + "\n1,a,1,0.5\n", "bad.csv line 2: 4 fields, the header has 14"),
    ('{"rank": 1, "image": "a"}\n', "bad.csv: missing column(s) region"),
])
def test_bad_region_tables_are_one_line_errors_and_write_nothing(scored, tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    out = tmp_path / "report.html"
    one_line_error(invoke("report", "-r", scored["ranking"], "--regions", tmp_path / "bad.csv", "-o", out), message)
    assert not out.exists()


def test_missing_or_wrong_region_files_are_one_line_errors(scored, tmp_path):
    out = tmp_path / "report.html"
    one_line_error(invoke("report", "-r", scored["ranking"], "--regions", tmp_path / "none.csv", "-o", out),
                   "region table not found:", "none.csv")
    (tmp_path / "folder").mkdir()
    one_line_error(invoke("report", "-r", scored["ranking"], "--regions", tmp_path / "folder", "-o", out),
                   "region table", "folder is a directory")
    # a ranking is not a region table
    one_line_error(invoke("report", "-r", scored["ranking"], "--regions", scored["ranking"], "-o", out),
                   "ranking.csv: missing column(s) region", "as segaudit regions writes")
    assert not out.exists()


def test_the_report_refuses_to_write_over_the_region_table(scored, tmp_path):
    shutil.copy(scored["dir"] / "regions.csv", tmp_path / "regions.csv")
    before = (tmp_path / "regions.csv").read_bytes()
    result = invoke("report", "-r", scored["ranking"], "--regions", tmp_path / "regions.csv",
                    "-o", tmp_path / "regions.csv")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (tmp_path / "regions.csv").read_bytes() == before


def test_overlay_uses_the_region_rule_of_the_run_record(tmp_path):
    """A ranking scored with regions records its rule; overlay finds its regions with it."""
    import segaudit
    from segaudit.core.regions import RegionRule
    from segaudit.outputs.overlay import recorded_region_rule
    from segaudit.outputs.ranking import write_ranking

    strict = RegionRule(margin=0.9, band=1, band_weight=0.5)
    run = segaudit.score(FIXTURES / "masks", FIXTURES / "preds.zarr", regions=strict)
    write_ranking(run, tmp_path / "strict.csv")
    record = load_ranking(tmp_path / "strict.csv", need_record=True).record
    assert recorded_region_rule(record, tmp_path / "strict.run.json") == strict
    ok(invoke("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "-q", "--regions", "-o", tmp_path / "default.csv"))
    assert recorded_region_rule(load_ranking(tmp_path / "default.csv", need_record=True).record) == RegionRule()
    for stem in ("strict", "default"):
        ok(invoke("overlay", "-r", tmp_path / f"{stem}.csv", "-o", tmp_path / stem, "--ids", "city_a/0005", "-q",
                  "--region-min-score", "0"))
    name = overlay_name(2, "city_a/0005")
    # the strict margin keeps fewer suspect pixels: other outlines, other legend lines
    assert (tmp_path / "strict" / name).read_bytes() != (tmp_path / "default" / name).read_bytes()


def test_images_score_counted_without_regions_are_not_read_again(tmp_path, monkeypatch):
    import segaudit.outputs.overlay as overlay

    ok(invoke("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "-q", "--regions", "-o", tmp_path / "r.csv"))
    ranking = load_ranking(tmp_path / "r.csv", need_record=True)
    counted = {row.image_id: row.regions for row in ranking.rows}
    assert 0 < sum(1 for n in counted.values() if n) < len(counted)
    real = overlay.recorded_regions
    asked: list[str] = []

    def spying(dataset, record, source="run record", **options):
        source_of = real(dataset, record, source, **options)

        def spy(image_id):
            asked.append(image_id)
            return source_of(image_id)

        spy.calibration = source_of.calibration
        return spy

    monkeypatch.setattr(overlay, "recorded_regions", spying)
    overlay.write_overlays(ranking, tmp_path / "o", top=12, workers=1)
    assert sorted(asked) == sorted(i for i, n in counted.items() if n)
    asked.clear()
    overlay.write_overlays(ranking, tmp_path / "low", top=12, workers=1, region_min_score=0.2)
    assert len(asked) == 12  # below the column's threshold every image is looked at


def test_regions_outside_the_drawn_rows_are_left_out(scored, tmp_path):
    """A source may give the map of part of the image (a volume's slice): regions with no
    pixel in it get neither an outline nor a legend line; ``rows`` crops the map."""
    import segaudit.outputs.overlay as overlay

    ranking = load_ranking(scored["ranking"], need_record=True)
    seen = {}
    recorded = overlay.recorded_regions

    def source_of(dataset, record, source="run record", **options):
        real = recorded(dataset, record, source, **options)
        seen["cropped"] = real("city_a/0005", rows=(40, 48))[1].shape

        def without_the_worst(image_id):
            found, region_map = real(image_id)
            return found, np.where(region_map == 0, -1, region_map)

        without_the_worst.calibration = real.calibration
        return without_the_worst

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(overlay, "recorded_regions", source_of)
        overlay.write_overlays(ranking, tmp_path / "o", ids=["city_a/0005"], workers=1)
    assert seen["cropped"] == (8, 64)
    name = overlay_name(scored["ranks"]["city_a/0005"], "city_a/0005")
    layout = panel_layout(48, 64)
    plain = Image.open(scored["dir"] / "plain" / name)
    assert Image.open(tmp_path / "o" / name).height == plain.height + layout.margin // 2 + 2 * layout.line
