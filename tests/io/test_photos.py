"""TIFF / GeoTIFF photos for overlays: any band count and bit depth (tifffile)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segaudit.cli import app
from segaudit.errors import InputError
from segaudit.io.photos import read_tiff_photo, stretch, tiff_photo_size
from segaudit.outputs.overlay import load_photo, panel_layout, photo_size

tifffile = pytest.importorskip("tifffile")


def test_stretch_maps_the_percentiles_to_0_and_255():
    values = np.linspace(0, 1000, 10001)
    out = stretch(values)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    low, high = np.percentile(values, (0.5, 99.5))
    np.testing.assert_array_equal(out, np.clip((values - low) / (high - low) * 255, 0, 255).astype(np.uint8))
    assert not stretch(np.full(4, np.nan)).any()


@pytest.mark.parametrize("planar", [False, True])
def test_multiband_uint16_uses_the_first_three_bands(tmp_path, planar):
    rng = np.random.default_rng(0)
    bands = rng.integers(0, 4000, size=(5, 6, 7), dtype=np.uint16)  # 5 bands, 6 x 7
    data = bands if planar else np.moveaxis(bands, 0, -1)
    path = tmp_path / "tile.tif"
    tifffile.imwrite(path, data, planarconfig="separate" if planar else "contig", photometric="minisblack")
    assert tiff_photo_size(path) == photo_size(path) == (6, 7)
    rgb = read_tiff_photo(path)
    assert rgb.shape == (6, 7, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, stretch(np.moveaxis(bands[:3], 0, -1)))
    assert load_photo(path).size == (7, 6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_one_band_is_grey(tmp_path, dtype):
    values = (np.arange(42).reshape(6, 7) * 3).astype(dtype)
    path = tmp_path / "grey.tiff"
    tifffile.imwrite(path, values)
    rgb = read_tiff_photo(path)
    assert rgb.shape == (6, 7, 3)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    np.testing.assert_array_equal(rgb[..., 0], stretch(values))


def test_8bit_rgb_is_kept_as_it_is(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    np.testing.assert_array_equal(read_tiff_photo(tmp_path / "rgb.tif"), rgb)


def test_a_stack_of_images_and_a_corrupt_file_are_one_line_errors(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((2, 3, 6, 7), np.uint16), photometric="minisblack")
    with pytest.raises(InputError, match="stack.tif.*more than one image"):
        read_tiff_photo(tmp_path / "stack.tif")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(InputError, match="cannot read photo .*bad.tif"):
        photo_size(tmp_path / "bad.tif")


def geo_tags(n):
    """GeoTIFF tags of tile n: 10 m pixels, a UTM 33N tie point (GeoKeys: projected, EPSG:32633)."""
    return [(33550, "d", 3, (10.0, 10.0, 0.0), False),
            (33922, "d", 6, (0.0, 0.0, 0.0, 500000.0 + 80 * n, 4000000.0, 0.0), False),
            (34735, "H", 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633), False)]


def test_geotiff_tiles_overlay_with_their_photos(tmp_path):
    """A GeoTIFF tile set: single-band uint8 masks and 4-band uint16 photos, end to end."""
    from datasets import write_store

    rng = np.random.default_rng(2)
    (tmp_path / "masks").mkdir()
    (tmp_path / "images").mkdir()
    probs = {}
    for n in range(3):
        raw = rng.gamma(0.5, size=(3, 6, 8))
        probs[f"tile_{n}"] = raw / raw.sum(axis=0)
        tifffile.imwrite(tmp_path / "masks" / f"tile_{n}.tif", probs[f"tile_{n}"].argmax(axis=0).astype(np.uint8),
                         extratags=geo_tags(n))
        photo = np.zeros((6, 8, 4), np.uint16)
        photo[..., 0] = 1000 + 2000 * n  # red band bright, per tile
        photo[..., 3] = 60000  # near-infrared, not drawn
        photo[0, 0, :3] = 10
        tifffile.imwrite(tmp_path / "images" / f"tile_{n}.tif", photo, photometric="minisblack", planarconfig="contig",
                         extratags=geo_tags(n))
    write_store(tmp_path / "preds.zarr", probs)
    runner = CliRunner()
    result = runner.invoke(app, ["score", str(tmp_path / "masks"), str(tmp_path / "preds.zarr"),
                                 "-o", str(tmp_path / "r.csv"), "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["overlay", "-r", str(tmp_path / "r.csv"), "--images", str(tmp_path / "images"),
                                 "-o", str(tmp_path / "ov"), "-q"])
    assert result.exit_code == 0, result.output
    layout = panel_layout(6, 8)
    for png in (tmp_path / "ov").iterdir():
        with Image.open(png) as image:
            assert image.width == layout.width(4)  # photo, annotation, prediction, error map
            left, top, right, bottom = layout.box(0)
            panel = np.asarray(image.convert("RGB"))[top:bottom, left:right]
        centre = panel[panel.shape[0] // 2, panel.shape[1] // 2]
        assert centre[0] == 255 and centre[1] == 0  # the red band, stretched; the fourth band unused
