"""``segaudit overlay`` and the rendering behind it: panel layout, the error map, class
colours, names in rank order, options, safety and atomic writes.

The error-map tests use a tiny handmade dataset whose s per pixel is known exactly, and
check the highlighted pixels one by one.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from datasets import FIXTURES, write_masks, write_store
from segaudit.cli import app
from segaudit.outputs.colours import CITYSCAPES, DISTINCT, class_colours, distinct_colours, usable_mask_palette
from segaudit.io.rankings import load_ranking
from segaudit.outputs.overlay import (
    FLAG_COLOUR, overlay_name, panel_layout, panel_size, render_overlay, save_png,
)

K = 3
CLASSES = ["ground", "thing", "sky & cloud"]


def invoke(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def assert_one_line_error(result, *fragments):
    """Exit 2, one 'error:' line, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])


# --- a handmade dataset with known s -------------------------------------------------------


def handmade(seed: int, height: int = 6, width: int = 8, low_fraction: float = 0.25):
    """Labels, probabilities and the exact s: the annotated class gets 0.8, except at the
    pixels of ``low`` where it gets 0.1 (and another class 0.8)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, size=(height, width))
    low = rng.random((height, width)) < low_fraction
    probs = np.full((K, height, width), 0.1)
    other = (labels + 1) % K
    winner = np.where(low, other, labels)
    np.put_along_axis(probs, winner[None], 0.8, axis=0)
    s = np.where(low, 0.1, 0.8)
    return labels.astype(np.uint8), probs, s, winner


def highlighted(panel: np.ndarray) -> np.ndarray:
    """Pixels of an error panel drawn in the low colour (pink-red over grey)."""
    rgb = panel.astype(int)
    return (rgb[..., 0] - rgb[..., 1] > 100) & (rgb[..., 2] > rgb[..., 1] + 40)


def flagged_colour(panel: np.ndarray) -> np.ndarray:
    return np.all(panel == FLAG_COLOUR, axis=-1)


def centres(panel: np.ndarray, height: int, width: int) -> np.ndarray:
    """The panel sampled at the centre of each source pixel (panel = whole-factor enlargement)."""
    fy, fx = panel.shape[0] // height, panel.shape[1] // width
    return panel[fy // 2::fy, fx // 2::fx][:height, :width]


def panel_pixels(image: Image.Image, layout, n: int) -> np.ndarray:
    return np.asarray(image.convert("RGB"))[layout.box(n)[1]:layout.box(n)[3], layout.box(n)[0]:layout.box(n)[2]]


# --- panel geometry -----------------------------------------------------------------------------


def test_panel_size_enlarges_small_images_and_caps_wide_ones():
    assert panel_size(6, 8) == (6 * 32, 8 * 32)  # 256 // 8 = 32, a whole factor
    assert panel_size(48, 64) == (192, 256)
    assert panel_size(1024, 2048) == (512, 1024)  # default max width 1024
    assert panel_size(1024, 2048, 500) == (250, 500)
    assert panel_size(1024, 2048, 0) == (1024, 2048)  # 0 = full resolution
    assert panel_size(300, 400, None) == (300, 400)
    assert panel_size(6, 8, 20) == (12, 16)  # enlargement never beyond max width


@pytest.mark.parametrize("with_photo", [False, True])
def test_layout_and_error_panel_highlight_exactly_the_low_pixels(with_photo):
    labels, _, s, predicted = handmade(seed=1)
    colours = class_colours(K, CLASSES)
    photo = np.full((6, 8, 3), 128, np.uint8) if with_photo else None
    image = render_overlay(labels.astype(np.int32), s, predicted.astype(np.int32), colours, threshold=0.5,
                           photo=photo)
    layout = panel_layout(6, 8)
    n_panels = 4 if with_photo else 3
    assert image.mode == "RGB"
    assert image.width == layout.width(n_panels) == 2 * layout.margin + n_panels * 256 + (n_panels - 1) * layout.margin
    assert image.height > layout.top + 192 + 3 * layout.line  # caption strip below the panels
    error = panel_pixels(image, layout, n_panels - 1)
    assert error.shape == (192, 256, 3)
    np.testing.assert_array_equal(highlighted(centres(error, 6, 8)), s < 0.5)
    # the annotation and prediction panels are the class colours (over a grey photo: blended)
    first = 1 if with_photo else 0
    annotation = centres(panel_pixels(image, layout, first), 6, 8)
    prediction = centres(panel_pixels(image, layout, first + 1), 6, 8)
    if not with_photo:
        np.testing.assert_array_equal(annotation, colours.table[labels])
        np.testing.assert_array_equal(prediction, colours.table[predicted])
    else:
        assert not highlighted(annotation).all()
        np.testing.assert_array_equal(centres(panel_pixels(image, layout, 0), 6, 8), photo)


def test_threshold_changes_what_is_highlighted():
    labels, _, s, predicted = handmade(seed=2)
    s = s.copy()
    s[0, 0], s[0, 1] = 0.3, 0.45
    colours = class_colours(K)
    image = render_overlay(labels.astype(np.int32), s, predicted.astype(np.int32), colours, threshold=0.4)
    error = panel_pixels(image, panel_layout(6, 8), 2)
    got = highlighted(centres(error, 6, 8))
    np.testing.assert_array_equal(got, s < 0.4)
    assert got[0, 0] and not got[0, 1]


def test_ignored_pixels_are_never_highlighted_and_get_the_ignore_colour():
    labels, _, s, predicted = handmade(seed=3, low_fraction=1.0)
    labels = labels.astype(np.int32)
    labels[:, :2] = 255
    s = s.copy()
    s[:, :2] = np.nan
    colours = class_colours(K)
    image = render_overlay(labels, s, predicted.astype(np.int32), colours, threshold=0.5)
    layout = panel_layout(6, 8)
    got = highlighted(centres(panel_pixels(image, layout, 2), 6, 8))
    assert not got[:, :2].any() and got[:, 2:].all()
    annotation = centres(panel_pixels(image, layout, 0), 6, 8)
    assert (annotation[:, :2] == colours.colour(K)).all()


def test_downscaling_keeps_a_single_low_pixel_visible():
    height, width = 400, 1200
    labels = np.zeros((height, width), np.int32)
    s = np.full((height, width), 0.9)
    s[201, 777] = 0.01  # one bad pixel in 480 000
    image = render_overlay(labels, s, labels.copy(), class_colours(K), threshold=0.5, max_width=300)
    layout = panel_layout(height, width, 300)
    assert (layout.panel_height, layout.panel_width) == (100, 300)
    error = panel_pixels(image, layout, 2)
    hits = np.argwhere(highlighted(error))
    assert len(hits) == 1
    assert tuple(hits[0]) == (201 * 100 // 400, 777 * 300 // 1200)


def test_flags_are_drawn_where_s_is_not_low():
    labels, _, s, predicted = handmade(seed=4)
    flags = np.zeros(labels.shape, bool)
    flags[2, :] = True
    image = render_overlay(labels.astype(np.int32), s, predicted.astype(np.int32), class_colours(K),
                           threshold=0.5, flags=flags)
    error = centres(panel_pixels(image, panel_layout(6, 8), 2), 6, 8)
    np.testing.assert_array_equal(highlighted(error), s < 0.5)
    np.testing.assert_array_equal(flagged_colour(error), flags & ~(s < 0.5))


def test_caption_legend_lists_only_the_classes_present():
    # The legend is text, so compare two renders: one more class present adds a swatch.
    labels = np.zeros((6, 8), np.int32)
    s = np.full((6, 8), 0.9)
    colours = class_colours(K, CLASSES)
    one = np.asarray(render_overlay(labels, s, labels, colours, threshold=0.5))
    two_labels = labels.copy()
    two_labels[0, 0] = 2
    two = np.asarray(render_overlay(two_labels, s, labels, colours, threshold=0.5))
    swatch = np.all(two == colours.colour(2), axis=-1)
    assert swatch[one.shape[0] - 60:].any()  # class 2's colour appears in the caption strip
    assert not np.all(one == colours.colour(2), axis=-1)[one.shape[0] - 60:].any()


# --- class colours ----------------------------------------------------------------------


def test_colours_prefer_a_real_mask_palette():
    palette = [(0, 0, 0), (200, 10, 10), (10, 200, 10)] + [(255, 255, 255)] * 253
    colours = class_colours(3, mask_palette=palette, ignore=(255,))
    assert colours.source == "mask palette"
    assert colours.table.tolist() == [[0, 0, 0], [200, 10, 10], [10, 200, 10], [255, 255, 255]]


def test_grey_ramp_or_duplicate_palettes_are_not_used():
    ramp = [(i, i, i) for i in range(256)]
    assert not usable_mask_palette(ramp, 5)
    assert not usable_mask_palette([(1, 2, 3)] * 256, 5)
    assert not usable_mask_palette([(1, 2, 3), (4, 5, 6)], 5)  # shorter than K
    assert class_colours(5, mask_palette=ramp).source == "distinct"


def test_palette_file_colours_classes(tmp_path):
    path = tmp_path / "palette.json"
    path.write_text(json.dumps({"#ff0000": 1, "0,0,255": 0, "#ffffff": 255}))
    colours = class_colours(3, palette_file=path, ignore=(255,))
    assert colours.source == "palette file"
    assert colours.colour(0) == (0, 0, 255) and colours.colour(1) == (255, 0, 0)
    assert colours.colour(2) not in {(0, 0, 255), (255, 0, 0)}
    assert colours.colour(3) == (255, 255, 255)  # the ignore colour from the file


def test_cityscapes_classes_get_cityscapes_colours():
    names = ["unlabeled", *[n.replace(" ", "_") for n in CITYSCAPES]]
    colours = class_colours(len(names), names)
    assert colours.source == "cityscapes"
    for k, name in enumerate(names[1:], 1):
        assert colours.colour(k) == CITYSCAPES[name.replace("_", " ")]
    assert colours.colour(0) not in CITYSCAPES.values()


def test_distinct_palette_for_many_classes():
    colours = distinct_colours(150)
    assert len(set(colours)) == 150
    assert colours[:20] == list(DISTINCT)
    assert (0, 0, 0) not in colours and (255, 255, 255) not in colours


# --- names and atomic writes ---------------------------------------------------------------


def test_overlay_names_sort_in_rank_order():
    names = [overlay_name(rank, f"c/{rank}", 4) for rank in (1, 2, 10, 100, 1000)]
    assert names[0] == "0001_c__1.png"
    assert sorted(names) == names
    assert overlay_name(3, "city_a/0003") == "0003_city_a__0003.png"
    assert overlay_name(12345, "x", 5) == "12345_x.png"


@pytest.mark.parametrize("image_id", ["../x", "a/../../x", "/etc/x", "a//b", "./a", "a\\b", ""])
def test_overlay_names_refuse_escaping_ids(image_id):
    from segaudit.errors import InputError

    with pytest.raises(InputError, match="cannot be used as an output file name"):
        overlay_name(1, image_id)


def test_save_png_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    save_png(Image.new("RGB", (4, 3), (1, 2, 3)), path)
    assert os.listdir(tmp_path) == ["a.png"]
    before = path.read_bytes()

    def broken(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(OSError):
        save_png(Image.new("RGB", (4, 3)), path)
    assert os.listdir(tmp_path) == ["a.png"]  # no temporary left
    assert path.read_bytes() == before  # the earlier file is untouched


# --- the command -----------------------------------------------------------------------------


IDS = ["city/a", "city/b", "other/c", "other/d", "e"]


@pytest.fixture
def scored(tmp_path, monkeypatch):
    """Five handmade 6x8 images scored with `segaudit score` in a temp cwd (ranking.csv)."""
    labels, probs, s, predicted = {}, {}, {}, {}
    for n, image_id in enumerate(IDS):
        labels[image_id], probs[image_id], s[image_id], predicted[image_id] = handmade(seed=10 + n)
    data = tmp_path / "data"
    write_masks(data / "masks", labels)
    write_store(data / "preds.zarr", probs, attrs={"classes": CLASSES}, dtype="float32")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    ok(invoke("score", data / "masks", data / "preds.zarr", "-q"))
    with open(work / "ranking.csv", newline="") as stream:
        ranking = list(csv.DictReader(stream))
    return {"dir": work, "data": data, "s": s, "labels": labels, "ranking": ranking}


def expected_names(ranking, ids=None):
    return [overlay_name(int(r["rank"]), r["image"]) for r in ranking if ids is None or r["image"] in ids]


def test_overlay_right_after_score_uses_defaults(scored):
    result = ok(invoke("overlay"))
    out = scored["dir"] / "overlays"
    names = expected_names(scored["ranking"])
    assert sorted(os.listdir(out)) == names  # every image (5 < 20), rank order, no temporaries
    assert names[0].startswith("0001_")
    assert "wrote 5 overlay(s) to overlays" in result.stderr
    # each PNG's error panel highlights exactly the image's low pixels
    layout = panel_layout(6, 8)
    for row in scored["ranking"]:
        image = Image.open(out / overlay_name(int(row["rank"]), row["image"]))
        assert image.size[0] == layout.width(3)
        error = panel_pixels(image, layout, 2)
        np.testing.assert_array_equal(highlighted(centres(error, 6, 8)), scored["s"][row["image"]] < 0.5)


def test_top_and_ids_select_images(scored):
    ok(invoke("overlay", "--top", "2", "--out", "two"))
    assert sorted(os.listdir(scored["dir"] / "two")) == expected_names(scored["ranking"])[:2]
    last, third = scored["ranking"][-1]["image"], scored["ranking"][2]["image"]
    ok(invoke("overlay", "--ids", f"{last},{third}", "--out", "some"))
    assert sorted(os.listdir(scored["dir"] / "some")) == expected_names(scored["ranking"], {last, third})
    ok(invoke("overlay", "--ids", last, "--ids", third, "--out", "rep"))
    assert sorted(os.listdir(scored["dir"] / "rep")) == expected_names(scored["ranking"], {last, third})


def test_unknown_id_is_an_error(scored):
    result = invoke("overlay", "--ids", "nope/x")
    assert_one_line_error(result, "no image 'nope/x' in the ranking")
    assert not (scored["dir"] / "overlays").exists()


def test_max_width_downscales(scored):
    ok(invoke("overlay", "--max-width", "40", "--out", "small"))
    name = expected_names(scored["ranking"])[0]
    image = Image.open(scored["dir"] / "small" / name)
    layout = panel_layout(6, 8, 40)
    assert (layout.panel_height, layout.panel_width) == (30, 40)
    assert image.width == layout.width(3)


def test_pixel_threshold_defaults_to_the_recorded_one(scored, tmp_path):
    # Rescore with --pixel-threshold 0.05: nothing is below it, so nothing is highlighted.
    ok(invoke("score", scored["data"] / "masks", scored["data"] / "preds.zarr", "-q", "--pixel-threshold", "0.05"))
    ok(invoke("overlay", "--out", "strict"))
    layout = panel_layout(6, 8)
    for name in os.listdir(scored["dir"] / "strict"):
        assert not highlighted(panel_pixels(Image.open(scored["dir"] / "strict" / name), layout, 2)).any()
    ok(invoke("overlay", "--out", "loose", "--pixel-threshold", "0.5"))
    assert any(highlighted(panel_pixels(Image.open(scored["dir"] / "loose" / n), layout, 2)).any()
               for n in os.listdir(scored["dir"] / "loose"))


def test_ids_escaping_the_output_directory_are_refused(scored):
    path = scored["dir"] / "ranking.csv"
    text = path.read_text().replace("other/c", "../../evil", 1)
    path.write_text(text)
    result = invoke("overlay")
    assert_one_line_error(result, "'../../evil'", "cannot be used as an output file name")
    assert not (scored["dir"] / "overlays").exists()
    assert not (scored["dir"].parent / "evil.png").exists()


def test_missing_ranking_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("overlay")
    assert_one_line_error(result, "ranking not found: ranking.csv")
    assert os.listdir(tmp_path) == []


def test_missing_run_record_is_one_line_error(scored):
    (scored["dir"] / "ranking.run.json").unlink()
    result = invoke("overlay")
    assert_one_line_error(result, "run record not found: ranking.run.json")
    result = invoke("overlay", "--ranking", scored["dir"] / "elsewhere.csv")
    assert_one_line_error(result, "ranking not found")


def test_ranking_option_points_elsewhere(scored, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ok(invoke("overlay", "--ranking", scored["dir"] / "ranking.csv", "--top", "1", "-q"))
    assert os.listdir(tmp_path / "overlays") == expected_names(scored["ranking"])[:1]


def test_rerun_replaces_files_and_notes_stale_ones(scored):
    ok(invoke("overlay", "--top", "2"))
    out = scored["dir"] / "overlays"
    (out / "0009_gone.png").write_bytes(b"old")
    result = ok(invoke("overlay", "--top", "2"))
    assert sorted(os.listdir(out)) == sorted([*expected_names(scored["ranking"])[:2], "0009_gone.png"])
    assert "1 other overlay PNG(s) in overlays are not from this ranking" in result.stderr


def test_a_rerun_removes_the_staging_folders_of_killed_runs(scored):
    """SIGKILL leaves a run's staging folder in OUT; the next run removes it, but not a live
    process's (nor a folder without a process id in its name)."""
    import subprocess
    import sys

    out = scored["dir"] / "overlays"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    orphan = out / f".segaudit-overlays-{int(dead.stdout)}-abc.tmp"
    live = out / f".segaudit-overlays-{os.getpid()}-def.tmp"
    other = out / ".segaudit-overlays-x.tmp"
    for folder in (orphan, live, other):
        folder.mkdir()
        (folder / "0001_half.png").write_bytes(b"half-drawn")
    ok(invoke("overlay", "--top", "2"))
    assert not orphan.exists() and live.is_dir() and other.is_dir()
    assert sorted(p for p in os.listdir(out) if not p.startswith(".")) == sorted(expected_names(scored["ranking"])[:2])


def test_output_path_that_is_a_file_is_an_error(scored):
    (scored["dir"] / "overlays").write_text("x")
    assert_one_line_error(invoke("overlay"), "not a directory")


def test_photos_add_a_panel(scored, tmp_path):
    photos = tmp_path / "photos"
    for n, image_id in enumerate(IDS[:3]):
        path = photos / f"{image_id}_leftImg8bit.{('png', 'jpg', 'JPEG')[n]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6), (90, 120, 60)).save(path)
    result = ok(invoke("overlay", "--images", photos, "--image-suffix", "_leftImg8bit"))
    layout = panel_layout(6, 8)
    widths = {}
    for row in scored["ranking"]:
        image = Image.open(scored["dir"] / "overlays" / overlay_name(int(row["rank"]), row["image"]))
        widths[row["image"]] = image.width
        panels = 4 if row["image"] in IDS[:3] else 3
        assert image.width == layout.width(panels)
        error = panel_pixels(image, layout, panels - 1)
        np.testing.assert_array_equal(highlighted(centres(error, 6, 8)), scored["s"][row["image"]] < 0.5)
    assert "no photo in" in result.stderr and "for 2 image(s)" in result.stderr


def test_photo_of_the_wrong_size_is_an_error(scored, tmp_path):
    photos = tmp_path / "photos"
    (photos / "city").mkdir(parents=True)
    Image.new("RGB", (9, 6)).save(photos / "city" / "a.png")
    assert_one_line_error(invoke("overlay", "--images", photos), "a.png: photo is 6x9 (HxW) but its mask city/a is 6x8")
    assert_one_line_error(invoke("overlay", "--images", tmp_path / "none"), "photo directory not found")


def test_fixtures_overlays_show_the_planted_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ok(invoke("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "-q"))
    ok(invoke("overlay", "--top", "5", "-q"))
    with open(FIXTURES / "truth.csv", newline="") as stream:
        truth = {r["image"] for r in csv.DictReader(stream) if r["is_error"] == "1"}
    ranking = load_ranking(tmp_path / "ranking.csv")
    layout = panel_layout(48, 64)
    for row in ranking.rows[:5]:
        image = Image.open(tmp_path / "overlays" / overlay_name(row.rank, row.image_id))
        share = highlighted(panel_pixels(image, layout, 2)).mean()
        # planted errors light up (>= 5 % of the panel); the best clean image far less
        assert (share >= 0.05) == (row.image_id in truth), (row.image_id, share)


@pytest.mark.parametrize("args", [["overlay", "--help"], ["report", "--help"]])
def test_review_help_does_not_import_heavy_modules(args):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from segaudit.cli import app\n"
        f"result = CliRunner().invoke(app, {args!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "print(*(m in sys.modules for m in ('numba', 'zarr', 'numpy', 'PIL')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"] * 4


def test_recorded_clc_flags_mark_the_issue_pixels(tmp_path):
    from typer.testing import CliRunner

    from segaudit.cli import app
    from segaudit.core.dataset import open_dataset
    from segaudit.io.rankings import read_run_record
    from segaudit.outputs.overlay import recorded_clc_flags

    fixtures = Path(__file__).resolve().parents[2] / "fixtures"
    result = CliRunner().invoke(app, ["score", str(fixtures / "masks"), str(fixtures / "preds.zarr"),
                                      "-m", "softmin,clc", "-o", str(tmp_path / "r.csv")])
    assert result.exit_code == 0, result.output
    written = CliRunner().invoke(app, ["issues", str(fixtures / "masks"), str(fixtures / "preds.zarr"),
                                       "--out", str(tmp_path / "issues")])
    assert written.exit_code == 0, written.output
    record = read_run_record(tmp_path / "r.run.json")
    dataset = open_dataset(fixtures / "masks", fixtures / "preds.zarr", only=["city_b/0002", "city_a/0001"])
    flags_for = recorded_clc_flags(dataset, record)
    for mask, image_id in dataset.pairs:
        labels, s, predicted, _ = dataset.pixel_maps(mask, image_id)
        flags = flags_for(image_id, labels, s, predicted)
        issue_png = tmp_path / "issues" / f"{image_id}.png"
        expected = np.array(Image.open(issue_png)) > 0 if issue_png.exists() else np.zeros_like(flags)
        np.testing.assert_array_equal(flags, expected)
        assert not flags[predicted == labels].any()


# --- legend and colours (issue 14) ----------------------------------------------------


def colour_present(image, colour) -> bool:
    return bool(np.all(np.asarray(image.convert("RGB")) == colour, axis=-1).any())


def test_legend_lists_only_classes_of_scored_pixels():
    labels = np.zeros((40, 60), np.int32)
    labels[:, :20] = 255  # ignored band
    predicted = np.zeros((40, 60), np.int32)
    predicted[:, :20] = 4  # the model sees class 4 only where nothing is scored
    s = np.where(labels == 255, np.nan, 0.9)
    colours = class_colours(5, ["a", "b", "c", "d", "e"])
    image = render_overlay(labels, s, predicted, colours, threshold=0.5, max_width=None)
    assert not colour_present(image, colours.colour(4))  # neither swatch nor pixel
    assert colour_present(image, colours.colour(0))
    predicted[0, 30] = 4  # now it is predicted on a scored pixel: listed
    image = render_overlay(labels, s, predicted, colours, threshold=0.5, max_width=None)
    assert colour_present(image, colours.colour(4))


def test_the_flag_colour_is_distinct_from_every_class_colour():
    from segaudit.outputs.colours import FLAG_MIN_DISTANCE, RESERVED, lab_distance
    from segaudit.outputs.overlay import LOW_COLOUR

    assert LOW_COLOUR in RESERVED
    # The distinct palette's yellow (class 3, e.g. "road") sits next to amber: not amber then.
    colours = class_colours(5, ["unlabeled", "sky", "building", "road", "car"])
    assert colours.colour(3) == DISTINCT[3]
    flag = colours.flag_colour
    assert lab_distance(np.array(flag, float), colours.table.astype(float)).min() >= FLAG_MIN_DISTANCE
    labels = np.full((40, 60), 3, np.int32)
    flags = np.zeros((40, 60), bool)
    flags[5:10, 5:10] = True
    image = render_overlay(labels, np.full((40, 60), 0.9), labels.copy(), colours, threshold=0.5, flags=flags,
                           max_width=None)
    assert colour_present(image, flag) and not colour_present(image, FLAG_COLOUR)
    for n in (2, 8, 19, 20):
        table = class_colours(n).table.astype(float)
        assert lab_distance(np.array(class_colours(n).flag_colour, float), table).min() >= FLAG_MIN_DISTANCE


def test_many_classes_get_a_perceptually_distinct_deterministic_palette():
    from segaudit.outputs.colours import lab_distance

    colours = distinct_colours(60)
    assert colours == distinct_colours(60) and colours[:20] == list(DISTINCT)
    lab = np.array(colours, float)
    gaps = lab_distance(lab[:, None], lab[None])
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() >= 15  # golden-angle hues gave pairs under 2 apart
    reserved = np.array([(0, 0, 0), (255, 255, 255)], float)
    assert lab_distance(lab[:, None], reserved[None]).min() >= 15
    assert distinct_colours(300)[:60] == colours  # a longer table starts the same


def test_16_bit_photos_are_stretched_as_tiff_photos_are(tmp_path):
    from segaudit.io.photos import stretch
    from segaudit.outputs.overlay import load_photo

    values = (np.arange(60, dtype=np.uint16) * 1000).reshape(6, 10)
    Image.fromarray(values).save(tmp_path / "photo.png")
    got = np.asarray(load_photo(tmp_path / "photo.png"))
    assert got.shape == (6, 10, 3) and got[0, 0, 0] == 0 and got[-1, -1, 0] == 255
    np.testing.assert_array_equal(got, np.repeat(stretch(values)[..., None], 3, axis=2))
