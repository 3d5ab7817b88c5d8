"""Error regions on overlays: outlines on the error map where the region is, its number,
a legend line per region, and nothing else changed (an overlay without regions keeps its
bytes)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from segaudit.core.regions import Region, RegionFinder, RegionRule
from segaudit.errors import InputError
from segaudit.results import RegionsRecord, RunRecord
from segaudit.outputs.colours import ERROR_MAP_GREYS, FLAG_CANDIDATES, RESERVED, class_colours, lab_distance
from segaudit.outputs.overlay import (
    LOW_COLOUR, OUTLINE_COLOUR, TEXT, draw_regions, panel_layout, recorded_region_rule, region_legend,
    region_outline, render_overlay,
)
from segaudit.outputs.text import format_region_score, region_line

K = 3
CLASSES = ["ground", "thing", "sky & cloud"]
H, W = 12, 16  # panels of 192 x 256: each pixel a 16 x 16 block


def scene():
    """Labels 0 above row 6 and 1 below; the model sees class 2 in rows 7-10, columns 3-8
    (a 'thing' annotated where there is 'sky & cloud'), so one region, box (3, 7)-(9, 11)."""
    labels = np.zeros((H, W), np.int32)
    labels[6:] = 1
    likely = labels.copy()
    likely[7:11, 3:9] = 2
    wrong = likely != labels
    s = np.where(wrong, 0.05, 0.9)
    p = np.full((H, W), 0.9)
    finder = RegionFinder(labels, K, RegionRule(), keep_ids=True)
    finder.add_block(0, labels, likely, s.astype(np.float32), p.astype(np.float32))
    regions = finder.finish("x")
    return labels, s, likely, regions, finder.region_map


def panel(image: Image.Image, layout, n: int) -> np.ndarray:
    left, top, right, bottom = layout.box(n)
    return np.asarray(image.convert("RGB"))[top:bottom, left:right]


def is_colour(pixels: np.ndarray, colour) -> np.ndarray:
    return np.all(pixels == np.array(colour, np.uint8), axis=-1)


def test_the_scene_has_one_region_where_it_was_made():
    _, _, _, regions, region_map = scene()
    assert len(regions) == 1
    r = regions[0]
    assert (r.region, r.area, (r.x0, r.y0, r.x1, r.y1), r.annotated_class, r.likely_class) == (1, 24, (3, 7, 9, 11), 1, 2)
    assert np.array_equal(region_map == 0, np.pad(np.ones((4, 6), bool), ((7, 1), (3, 7))))


def test_region_outline_is_the_masks_inner_one_pixel_edge():
    mask = np.zeros((6, 7), bool)
    mask[1:5, 2:6] = True
    mask[0, 0] = True  # at the image's corner: the edge counts as outside
    outline = region_outline(mask)
    expected = mask.copy()
    expected[2:4, 3:5] = False
    assert np.array_equal(outline, expected)
    assert not region_outline(np.zeros((3, 3), bool)).any()


def test_outline_is_drawn_on_the_region_boundary_and_the_number_beside_it():
    labels, s, predicted, regions, region_map = scene()
    colours = class_colours(K, CLASSES)
    colour = colours.region_colour
    image = render_overlay(labels, s, predicted, colours, threshold=0.5, regions=regions, region_map=region_map)
    layout = panel_layout(H, W)
    error = panel(image, layout, 2)
    assert error.shape == (192, 256, 3)
    on = is_colour(error, colour)
    # the box (3, 7)-(9, 11) is panel x 48..143, y 112..175: its 1-px edge is the outline
    assert on[112, 48:144].all() and on[175, 48:144].all()
    assert on[112:176, 48].all() and on[112:176, 143].all()
    assert not on[113:175, 49:143].any()  # the inside stays the low colour
    assert not on[176:, :].any() and not on[:, 144:].any() and not on[:, :48].any()
    # the number: a small filled label just above the box's left corner, with dark text
    above = error[:112, 48:80]
    label = is_colour(above, colour)
    assert label.sum() > 50
    assert (np.abs(above.astype(int) - TEXT).sum(axis=-1) < 120).any()
    # the other panels are untouched by regions
    plain = render_overlay(labels, s, predicted, colours, threshold=0.5)
    for n in (0, 1):
        assert np.array_equal(panel(image, layout, n), panel(plain, layout, n))


def test_regions_change_only_the_error_map_and_add_legend_lines_below():
    labels, s, predicted, regions, region_map = scene()
    colours = class_colours(K, CLASSES)
    plain = render_overlay(labels, s, predicted, colours, threshold=0.5)
    drawn = render_overlay(labels, s, predicted, colours, threshold=0.5, regions=regions, region_map=region_map)
    layout = panel_layout(H, W)
    assert drawn.width == plain.width
    assert drawn.height == plain.height + layout.margin // 2 + len(regions) * layout.line
    old, new = np.asarray(plain), np.asarray(drawn)
    changed = np.any(new[:plain.height] != old, axis=-1)
    left, top, right, bottom = layout.box(2)
    allowed = np.zeros_like(changed)
    allowed[top:bottom, left:right] = True  # the error map
    below = plain.height - layout.margin  # where the old caption's bottom margin starts
    allowed[below:] = True
    assert changed[top:bottom, left:right].any() and not (changed & ~allowed).any()
    legend = new[below:]
    assert (legend != 255).any()  # the legend line is drawn there
    assert is_colour(legend, colours.region_colour).any()  # with a swatch in the outline colour


def test_no_regions_renders_byte_identically():
    labels, s, predicted, _, region_map = scene()
    colours = class_colours(K, CLASSES)
    plain = render_overlay(labels, s, predicted, colours, threshold=0.5)
    for regions, map_ in (([], None), (None, None), ([], region_map)):
        again = render_overlay(labels, s, predicted, colours, threshold=0.5, regions=regions, region_map=map_)
        assert again.tobytes() == plain.tobytes() and again.size == plain.size


def test_regions_need_a_region_map_of_the_masks_shape():
    labels, s, predicted, regions, region_map = scene()
    colours = class_colours(K, CLASSES)
    for bad in (None, region_map[:-1]):
        with pytest.raises(ValueError, match="region map"):
            render_overlay(labels, s, predicted, colours, threshold=0.5, regions=regions, region_map=bad)


def test_region_legend_lines_name_the_classes():
    _, _, _, regions, _ = scene()
    colours = class_colours(K, CLASSES)
    assert region_legend(regions, colours.name) == [f"#1 {regions[0].kind}: thing → sky & cloud, 24 px, score 0.99"]
    assert region_line(2, "wrong_class", "sky", "building", 1168, 0.9871) == \
        "#2 wrong_class: sky → building, 1,168 px, score 0.98"
    unnamed = class_colours(K)
    assert region_legend(regions, unnamed.name)[0].startswith(f"#1 {regions[0].kind}: 1 → 2, ")


def test_region_scores_are_cut_not_rounded():
    assert format_region_score(1.0) == "0.99"  # a score in [0, 1) never reads 1.00
    assert format_region_score(0.99999) == "0.99"
    assert format_region_score(0.5) == "0.50"
    assert format_region_score(0.129) == "0.12"
    assert format_region_score(0.0) == "0.00"
    assert format_region_score(float("nan")) == ""


def test_outlines_stay_visible_when_the_panel_is_shrunk():
    height, width = 400, 1200
    labels = np.zeros((height, width), np.int32)
    s = np.full((height, width), 0.9)
    predicted = labels.copy()
    region_map = np.full((height, width), -1, np.int32)
    region_map[201:203, 601:603] = 0  # 2 x 2 pixels, a third of a panel pixel wide
    s[201:203, 601:603] = 0.05
    predicted[201:203, 601:603] = 1
    region = Region(image_id="big", region=1, score=0.8, area=4, x0=601, y0=201, x1=603, y1=203,
                    annotated_class=0, likely_class=1, mean_s=0.05, mean_p_likely=0.9, kind="missing",
                    core_area=4, object_pixels=height * width, mass=3.4)
    colours = class_colours(K, CLASSES)
    image = render_overlay(labels, s, predicted, colours, threshold=0.5, regions=[region], region_map=region_map)
    layout = panel_layout(height, width)
    assert (layout.panel_height, layout.panel_width) == (341, 1024)
    on = is_colour(panel(image, layout, 2), colours.region_colour)
    # 601 * 1024 / 1200 = 512.9, 201 * 341 / 400 = 171.4
    assert on[170:174, 511:515].any()


def test_outlines_stay_one_pixel_wide_when_the_panel_is_enlarged():
    labels, s, predicted, regions, region_map = scene()
    colours = class_colours(K, CLASSES)
    error = panel(render_overlay(labels, s, predicted, colours, threshold=0.5, regions=regions,
                                 region_map=region_map), panel_layout(H, W), 2)
    on = is_colour(error, colours.region_colour)
    assert on[112, 60] and not on[113, 60] and on[175, 60] and not on[174, 60]


def test_draw_regions_skips_regions_with_no_pixel():
    panel_pixels = np.full((20, 30, 3), 100, np.uint8)
    region = SimpleNamespace(region=3)
    out = draw_regions(panel_pixels, np.full((4, 6), -1, np.int32), [region], (0, 255, 255), None)
    assert np.array_equal(out, panel_pixels)


@pytest.mark.parametrize("classes", [None, CLASSES, [f"c{i}" for i in range(40)]])
def test_the_region_colour_is_distinct_from_the_error_maps_colours(classes):
    colours = class_colours(len(classes) if classes else K, classes)
    others = [colours.flag_colour, LOW_COLOUR, OUTLINE_COLOUR, *RESERVED, *ERROR_MAP_GREYS]
    assert lab_distance(np.array(colours.region_colour, float), np.array(others, float)).min() >= 40
    for flag in FLAG_CANDIDATES:  # whichever flag colour a palette gets
        from segaudit.outputs.colours import _region_colour

        assert lab_distance(np.array(_region_colour(flag), float), np.array(flag, float)) >= 40


def test_the_region_rule_comes_from_the_run_record():
    assert recorded_region_rule(RunRecord()) == RegionRule()
    recorded = RunRecord(regions=RegionsRecord(margin=0.3, band=1, band_weight=0.5, regions=4))
    assert recorded_region_rule(recorded) == RegionRule(margin=0.3, band=1, band_weight=0.5)
    read = RunRecord.from_dict({"regions": {"margin": 2.0, "band": 1, "band_weight": 0.5, "regions": 0}})
    with pytest.raises(InputError, match=r"^r\.run\.json: bad 'regions' entry: margin must be in \[0, 1\)"):
        recorded_region_rule(read, "r.run.json")
