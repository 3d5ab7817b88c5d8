"""Error regions in ``segaudit overlay`` on the fixtures, end to end: score, regions,
overlay; the options and their errors."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from datasets import FIXTURES
from segaudit.cli import app
from segaudit.outputs.colours import class_colours
from segaudit.outputs.overlay import overlay_name, panel_layout


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
    return {"dir": work, "ranking": ranking, "regions": regions, "ranks": ranks}


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
    rows = [r for r in scored["regions"] if r["image"] == image_id and float(r["score"]) >= 0.5]
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
    shown = {r["image"] for r in scored["regions"] if float(r["score"]) >= 0.5}
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
