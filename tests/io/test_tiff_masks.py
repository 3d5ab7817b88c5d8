"""TIFF / GeoTIFF masks: found beside PNGs, read with tifffile (an optional dependency)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datasets import make_dataset
from segaudit.cli import app
from segaudit.errors import InputError
from segaudit.io.masks import MaskFile, find_masks, mask_palette, mask_shape, read_mask

tifffile = pytest.importorskip("tifffile")


def write_tiff(path: Path, arr) -> MaskFile:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.asarray(arr))
    return MaskFile(path.stem, path)


def score_csv(masks: Path, store: Path, out: Path) -> str:
    result = CliRunner().invoke(app, ["score", str(masks), str(store), "-o", str(out), "-m", "all"])
    assert result.exit_code == 0, result.output
    return out.read_text()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_masks_score_exactly_like_png(tmp_path, dtype):
    mode = "L" if dtype == np.uint8 else "I;16"
    ds = make_dataset(tmp_path / "data", mask_mode=mode, dtype="float32")
    tiffs = tmp_path / "tiffs"
    for i, (image_id, labels) in enumerate(ds.labels.items()):
        ext = ".tif" if i % 2 else ".TIFF"
        write_tiff(tiffs / f"{image_id}{ext}", labels.astype(dtype))
    masks = find_masks(tiffs)
    assert [m.image_id for m in masks] == sorted(ds.labels)
    for m in masks:
        assert mask_shape(m) == ds.labels[m.image_id].shape
        out = read_mask(m)
        assert out.dtype == np.int32 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, ds.labels[m.image_id])
        assert mask_palette(m) is None
    png = score_csv(ds.masks, ds.store, tmp_path / "png.csv")
    tif = score_csv(tiffs, ds.store, tmp_path / "tif.csv")
    assert tif == png


def test_find_masks_tiff_suffix(tmp_path):
    write_tiff(tmp_path / "a_lbl.tif", np.zeros((2, 2), np.uint8))
    write_tiff(tmp_path / "a_color.tif", np.zeros((2, 2), np.uint8))
    assert [m.image_id for m in find_masks(tmp_path, suffix="_lbl")] == ["a"]
    assert [m.image_id for m in find_masks(tmp_path, suffix="_lbl.tif")] == ["a"]


def test_multiband_tiff_refused(tmp_path):
    m = write_tiff(tmp_path / "rgb.tif", np.zeros((4, 5, 3), np.uint8))
    for read in (mask_shape, read_mask):
        with pytest.raises(InputError) as e:
            read(m)
        msg = str(e.value)
        assert "\n" not in msg and "rgb.tif" in msg and "single band" in msg and "(4, 5, 3)" in msg


def test_float_tiff_refused(tmp_path):
    m = write_tiff(tmp_path / "f.tif", np.zeros((4, 5), np.float32))
    for read in (mask_shape, read_mask):
        with pytest.raises(InputError) as e:
            read(m)
        msg = str(e.value)
        assert "\n" not in msg and "f.tif" in msg and "float32" in msg


def test_negative_tiff_values_refused(tmp_path):
    m = write_tiff(tmp_path / "n.tif", np.array([[0, -2]], np.int16))
    with pytest.raises(InputError, match=r"n\.tif: negative class value -2 in 1 pixels"):
        read_mask(m)


def test_corrupt_tiff_is_one_line_error(tmp_path):
    path = tmp_path / "bad.tif"
    path.write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match=r"cannot read mask .*bad\.tif: ") as e:
        mask_shape(MaskFile("bad", path))
    assert "\n" not in str(e.value)


def test_png_and_tiff_with_same_id_refused(tmp_path):
    from PIL import Image

    (tmp_path / "city").mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "city" / "a.png")
    write_tiff(tmp_path / "city" / "a.tif", np.zeros((2, 2), np.uint8))
    with pytest.raises(InputError, match="'city/a'") as e:
        find_masks(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "a.png" in msg and "a.tif" in msg


def test_missing_tifffile_says_how_to_install(tmp_path, monkeypatch):
    m = write_tiff(tmp_path / "a.tif", np.zeros((2, 2), np.uint8))
    monkeypatch.setitem(sys.modules, "tifffile", None)  # makes `import tifffile` fail
    expected = r"a\.tif: reading TIFF masks needs tifffile: pip install 'segaudit\[tiff\]'$"
    for call in (find_masks, lambda _: mask_shape(m), lambda _: read_mask(m)):
        with pytest.raises(InputError, match=expected):
            call(tmp_path)
