import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segaudit.errors import InputError
from segaudit.io.masks import (
    MaskFile,
    find_masks,
    load_palette,
    mask_palette,
    mask_shape,
    read_mask,
)
from segaudit.io.masks.png import _classes


def save(path: Path, img: Image.Image) -> MaskFile:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return MaskFile(path.stem, path)


def grey(path: Path, arr) -> MaskFile:
    return save(path, Image.fromarray(np.asarray(arr, dtype=np.uint8), mode="L"))


def rgb(path: Path, arr) -> MaskFile:
    return save(path, Image.fromarray(np.asarray(arr, dtype=np.uint8), mode="RGB"))


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


# --- find_masks ------------------------------------------------------------


def test_find_masks_nested_ids_sorted_and_slash_separated(tmp_path):
    for rel in ["b.png", "a.PNG", "city/z/x.png", "city/aachen_1.png"]:
        grey(tmp_path / rel, [[0]])
    (tmp_path / "notes.txt").write_text("x")
    masks = find_masks(tmp_path)
    assert [m.image_id for m in masks] == ["a", "b", "city/aachen_1", "city/z/x"]
    assert masks[3].path == tmp_path / "city" / "z" / "x.png"
    assert all(isinstance(m.path, Path) for m in masks)


def test_find_masks_skips_hidden_files_and_dirs(tmp_path):
    grey(tmp_path / "a.png", [[0]])
    grey(tmp_path / ".hidden.png", [[0]])
    grey(tmp_path / ".cache" / "b.png", [[0]])
    assert [m.image_id for m in find_masks(str(tmp_path))] == ["a"]


def test_find_masks_suffix_filters_and_strips(tmp_path):
    city = tmp_path / "aachen"
    grey(city / "aachen_000000_gtFine_labelIds.png", [[0]])
    grey(city / "aachen_000000_gtFine_color.png", [[0]])
    grey(city / "aachen_000000_gtFine_instanceIds.png", [[0]])
    grey(tmp_path / "bochum" / "bochum_000001_gtFine_labelIds.png", [[0]])
    masks = find_masks(tmp_path, suffix="_gtFine_labelIds")
    assert [m.image_id for m in masks] == ["aachen/aachen_000000", "bochum/bochum_000001"]
    assert masks[0].path.name == "aachen_000000_gtFine_labelIds.png"
    # A suffix written with the extension means the same thing.
    assert find_masks(tmp_path, suffix="_gtFine_labelIds.png") == masks


def test_find_masks_duplicate_id_names_both_paths(tmp_path):
    grey(tmp_path / "a.png", [[0]])
    grey(tmp_path / "a.PNG", [[0]])
    if len(list(tmp_path.iterdir())) < 2:
        pytest.skip("case-insensitive file system")
    with pytest.raises(InputError, match="'a'") as e:
        find_masks(tmp_path)
    assert "a.png" in str(e.value) and "a.PNG" in str(e.value)


def test_find_masks_suffix_skips_unsuffixed_and_bare_suffix(tmp_path):
    grey(tmp_path / "x_lbl.png", [[0]])
    grey(tmp_path / "x.png", [[0]])  # would clash with "x" if it were not skipped
    grey(tmp_path / "_lbl.png", [[0]])  # would get an empty id
    assert [m.image_id for m in find_masks(tmp_path, suffix="_lbl")] == ["x"]


def test_find_masks_missing_dir(tmp_path):
    with pytest.raises(InputError, match="masks directory not found: .*nope"):
        find_masks(tmp_path / "nope")


def test_find_masks_not_a_directory(tmp_path):
    f = tmp_path / "file.png"
    grey(f, [[0]])
    with pytest.raises(InputError, match="not a directory.*file.png"):
        find_masks(f)


def test_find_masks_empty_dir(tmp_path):
    (tmp_path / "x.jpg").write_text("x")
    with pytest.raises(InputError, match="no PNG, TIFF, NIfTI or .npy masks found in") as e:
        find_masks(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_find_masks_no_match_for_suffix_mentions_suffix(tmp_path):
    grey(tmp_path / "a_gtFine_color.png", [[0]])
    with pytest.raises(InputError, match="_gtFine_labelIds") as e:
        find_masks(tmp_path, suffix="_gtFine_labelIds")
    assert "1 other mask files" in str(e.value)


# --- read_mask: modes ------------------------------------------------------


def test_read_L(tmp_path):
    arr = np.array([[0, 1, 2], [255, 7, 0]], dtype=np.uint8)
    out = read_mask(grey(tmp_path / "a.png", arr))
    assert out.dtype == np.int32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr)


def test_read_P_uses_index_not_colour(tmp_path):
    img = Image.new("P", (3, 1))
    # Index 1 is drawn red, index 2 green: the class must be the index.
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    img.putdata([2, 1, 0])
    m = save(tmp_path / "p.png", img)
    out = read_mask(m)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [[2, 1, 0]])
    assert mask_palette(m)[:3] == [(0, 0, 0), (255, 0, 0), (0, 255, 0)]


def test_mask_palette_none_for_non_P(tmp_path):
    assert mask_palette(grey(tmp_path / "a.png", [[1]])) is None
    assert mask_palette(rgb(tmp_path / "b.png", [[[1, 2, 3]]])) is None


def test_read_16bit(tmp_path):
    arr = np.array([[0, 300], [65535, 1000]], dtype=np.uint16)
    m = save(tmp_path / "a.png", Image.fromarray(arr))
    with Image.open(m.path) as img:
        assert img.mode in ("I;16", "I")  # Pillow < 11 opens 16-bit PNGs as "I"
    out = read_mask(m)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, arr.astype(np.int32))


@pytest.mark.parametrize("mode", ["I;16B", "I;16L"])
def test_16bit_variants(mode):
    img = Image.new(mode, (2, 1))
    img.putpixel((0, 0), 3)
    img.putpixel((1, 0), 40000)
    out = _classes(img, MaskFile("m", Path("m.png")), None)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [[3, 40000]])


def test_mode_I_values_and_negative_error():
    # PNG cannot store 32-bit values, but Pillow < 11 opens 16-bit PNGs as "I",
    # so the conversion is tested on an in-memory image.
    mask = MaskFile("m", Path("masks/m.png"))
    ok = Image.fromarray(np.array([[0, 70000]], dtype=np.int32), mode="I")
    np.testing.assert_array_equal(_classes(ok, mask, None), [[0, 70000]])
    bad = Image.fromarray(np.array([[-1, 5], [-3, -1]], dtype=np.int32), mode="I")
    with pytest.raises(InputError) as e:
        _classes(bad, mask, None)
    msg = str(e.value)
    assert "masks/m.png" in msg and "-3" in msg and "3 pixels" in msg


def test_read_mode_1(tmp_path):
    img = Image.new("1", (3, 2))
    img.putpixel((1, 0), 1)
    img.putpixel((2, 1), 1)
    out = read_mask(save(tmp_path / "b.png", img))
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [[0, 1, 0], [0, 0, 1]])


# --- RGB with palette ------------------------------------------------------

RGB_ARR = [[[0, 0, 0], [128, 64, 128]], [[244, 35, 232], [128, 64, 128]]]


def test_rgb_with_list_palette(tmp_path):
    pal = load_palette(write_json(tmp_path / "p.json", [[0, 0, 0], [128, 64, 128], "#f423e8"]))
    assert pal == {(0, 0, 0): 0, (128, 64, 128): 1, (244, 35, 232): 2}
    out = read_mask(rgb(tmp_path / "a.png", RGB_ARR), pal)
    assert out.dtype == np.int32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, [[0, 1], [2, 1]])


def test_rgb_with_mapping_palette_all_spellings(tmp_path):
    path = write_json(tmp_path / "p.json", {"#000000": 7, "128,64,128": 3, " 244, 35, 232 ": 9})
    pal = load_palette(path)
    assert pal == {(0, 0, 0): 7, (128, 64, 128): 3, (244, 35, 232): 9}
    np.testing.assert_array_equal(read_mask(rgb(tmp_path / "a.png", RGB_ARR), pal), [[7, 3], [9, 3]])


def test_rgba_ignores_alpha(tmp_path):
    arr = np.array([[[128, 64, 128, 0], [0, 0, 0, 255]]], dtype=np.uint8)
    m = save(tmp_path / "a.png", Image.fromarray(arr, mode="RGBA"))
    np.testing.assert_array_equal(read_mask(m, {(0, 0, 0): 0, (128, 64, 128): 5}), [[5, 0]])


def test_rgb_unknown_colours_listed_with_counts(tmp_path):
    arr = [[[1, 2, 3], [1, 2, 3], [255, 0, 16], [0, 0, 0], [9, 9, 9], [8, 8, 8], [7, 7, 7]]]
    m = rgb(tmp_path / "a.png", arr)
    with pytest.raises(InputError) as e:
        read_mask(m, {(0, 0, 0): 0})
    msg = str(e.value)
    assert str(m.path) in msg and "\n" not in msg
    assert "#010203 (2 px)" in msg  # most frequent first
    assert msg.count(" px)") == 3 and "and 2 more" in msg


def test_rgb_without_palette(tmp_path):
    m = rgb(tmp_path / "a.png", RGB_ARR)
    for fn in (read_mask, mask_shape):
        with pytest.raises(InputError, match="RGB mask needs --palette FILE") as e:
            fn(m)
        assert str(m.path) in str(e.value)


def test_palette_ignored_for_grey_masks(tmp_path):
    m = grey(tmp_path / "a.png", [[4, 5]])
    np.testing.assert_array_equal(read_mask(m, {(0, 0, 0): 0}), [[4, 5]])


# --- bad files -------------------------------------------------------------


def test_unsupported_mode_LA(tmp_path):
    m = save(tmp_path / "la.png", Image.new("LA", (2, 2)))
    for fn in (read_mask, mask_shape):
        with pytest.raises(InputError) as e:
            fn(m)
        msg = str(e.value)
        assert str(m.path) in msg and "mode LA" in msg and "supported: 1, L, P" in msg


def test_truncated_png(tmp_path):
    rng = np.random.default_rng(0)
    m = grey(tmp_path / "t.png", rng.integers(0, 255, (64, 64)))
    data = m.path.read_bytes()
    m.path.write_bytes(data[: len(data) // 2])
    assert mask_shape(m) == (64, 64)  # the header survives
    with pytest.raises(InputError, match="cannot read mask .*t.png: .*truncated") as e:
        read_mask(m)
    assert "\n" not in str(e.value)


def test_not_a_png(tmp_path):
    m = MaskFile("x", tmp_path / "x.png")
    m.path.write_text("this is not an image\nat all")
    for fn in (read_mask, mask_shape, mask_palette):
        with pytest.raises(InputError, match=r"cannot read mask .*x\.png: not a PNG file$"):
            fn(m)


def test_other_format_named_png(tmp_path):
    m = MaskFile("x", tmp_path / "x.png")
    Image.new("L", (2, 2)).save(m.path, format="BMP")
    with pytest.raises(InputError, match=r"x\.png: not a PNG file \(found BMP\)"):
        read_mask(m)


def test_mask_shape_matches_read_without_decoding(tmp_path, monkeypatch):
    m = grey(tmp_path / "a.png", np.zeros((5, 9)))
    assert read_mask(m).shape == (5, 9)

    def no_load(self):
        raise AssertionError("mask_shape must not decode pixels")

    monkeypatch.setattr(Image.Image, "load", no_load)
    from PIL import PngImagePlugin

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_load)
    assert mask_shape(m) == (5, 9)


# --- load_palette errors ---------------------------------------------------


@pytest.mark.parametrize(
    "content, problem",
    [
        ("[[0,0,0],", "cannot read palette JSON: Expecting value"),
        (b"\xff\xfe[", "cannot read palette JSON"),
        ('"#000000"', "list or mapping"),
        ("[]", "empty"),
        ("[[0,0]]", "malformed colour"),
        ("[[0,0,256]]", "malformed colour"),
        ('["#12345"]', "malformed colour"),
        ('["#gg0000"]', "malformed colour"),
        ('{"1,2": 0}', "malformed colour"),
        ('{"a,b,c": 0}', "malformed colour"),
        ("[[true,0,0]]", "malformed colour"),
        ('{"#000000": 1.5}', "non-negative integer"),
        ('{"#000000": -1}', "non-negative integer"),
        ('{"#000000": "1"}', "non-negative integer"),
        ('{"#000000": 1, "0,0,0": 2}', "mapped to both class 1 and 2"),
        ('[[0,0,0], "#000000"]', "#000000 mapped to both class 0 and 1"),
    ],
)
def test_malformed_palette(tmp_path, content, problem):
    path = tmp_path / "pal.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match=problem) as e:
        load_palette(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_palette_same_colour_same_class_is_fine(tmp_path):
    path = write_json(tmp_path / "p.json", {"#000000": 1, "0,0,0": 1})
    assert load_palette(path) == {(0, 0, 0): 1}


def test_palette_missing_file(tmp_path):
    with pytest.raises(InputError, match="palette file not found: .*nope.json"):
        load_palette(tmp_path / "nope.json")


# --- the format registry: every format reads, and writes like its source --------------------


def _one_of_each(tmp_path):
    """A mask of every format (2-D labels (4, 5); volumes (3, 4, 5)), as {name: (MaskFile, labels)}."""
    import tifffile
    import nibabel

    rng = np.random.default_rng(0)
    flat = rng.integers(0, 6, (4, 5)).astype(np.uint8)
    volume = rng.integers(0, 6, (3, 4, 5)).astype(np.uint16)
    tmp_path.mkdir(parents=True, exist_ok=True)
    made = {}
    Image.fromarray(flat, mode="L").save(tmp_path / "a.png")
    made["a.png"] = flat
    tifffile.imwrite(tmp_path / "b.TIF", flat.astype(np.uint16))
    made["b.TIF"] = flat
    np.save(tmp_path / "c.npy", volume)
    made["c.npy"] = volume
    np.savez_compressed(tmp_path / "d.npz", seg=volume)
    made["d.npz"] = volume
    np.save(tmp_path / "e.npy", flat)  # a 2-D array file
    made["e.npy"] = flat
    nibabel.save(nibabel.Nifti1Image(volume.transpose(2, 1, 0), np.diag([0.5, 0.5, 2.0, 1.0])), tmp_path / "f.nii.gz")
    made["f.nii.gz"] = volume
    return {name: (MaskFile(name.split(".")[0], tmp_path / name), labels) for name, labels in made.items()}


def test_every_format_is_registered_once_and_found():
    from segaudit.io.masks import FORMATS, MASK_EXTENSIONS

    assert [f.name for f in FORMATS] == ["png", "tiff", "volume"]
    extensions = [ext for f in FORMATS for ext in f.extensions]
    assert sorted(extensions) == sorted(set(extensions)) == sorted(MASK_EXTENSIONS)
    assert set(MASK_EXTENSIONS) == {".png", ".tif", ".tiff", ".nii", ".nii.gz", ".npy", ".npz"}


def test_every_format_writes_a_mask_like_its_source(tmp_path):
    from segaudit.io.masks import encode_like, mask_format, suffix_like

    masks = _one_of_each(tmp_path / "in")
    assert [m.image_id for m in find_masks(tmp_path / "in")] == ["a", "b", "c", "d", "e", "f"]
    suffixes = {name: suffix_like(mask) for name, (mask, _) in masks.items()}
    assert suffixes == {"a.png": ".png", "b.TIF": ".TIF", "c.npy": ".npy", "d.npz": ".npz", "e.npy": ".npy",
                        "f.nii.gz": ".nii.gz"}
    (tmp_path / "out").mkdir()
    for name, (mask, labels) in masks.items():
        old = read_mask(mask)
        assert old.shape == (labels.size // labels.shape[-1], labels.shape[-1])  # tall for volumes
        assert mask_shape(mask) == old.shape
        np.testing.assert_array_equal(old, labels.reshape(old.shape))
        new = old.copy()
        new[0, 0] = (new[0, 0] + 1) % 6
        written = MaskFile(mask.image_id, tmp_path / "out" / f"{mask.image_id}{suffixes[name]}")
        written.path.write_bytes(encode_like(mask, old, new, None))
        assert mask_format(written) is mask_format(mask)
        np.testing.assert_array_equal(read_mask(written), new)


def test_issue_masks_are_png_but_for_volumes(tmp_path):
    from segaudit.io.masks import encode_flags, flags_suffix

    masks = _one_of_each(tmp_path)
    assert {name: flags_suffix(mask) for name, (mask, _) in masks.items()} == {
        "a.png": ".png", "b.TIF": ".png", "c.npy": ".npy", "d.npz": ".npy", "e.npy": ".png", "f.nii.gz": ".nii.gz"}
    for name, (mask, labels) in masks.items():
        flags = (read_mask(mask) % 2 * 255).astype(np.uint8)
        data = encode_flags(mask, flags)
        out = tmp_path / f"flags_{mask.image_id}{flags_suffix(mask)}"
        out.write_bytes(data)
        if out.suffix == ".png":
            np.testing.assert_array_equal(np.asarray(Image.open(out)), flags)
        elif out.suffix == ".npy":
            np.testing.assert_array_equal(np.load(out), flags.reshape(labels.shape))
        else:
            import nibabel

            np.testing.assert_array_equal(np.asarray(nibabel.load(out).dataobj).transpose(2, 1, 0),
                                          flags.reshape(labels.shape))
