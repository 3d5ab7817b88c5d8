"""Volumes end to end: an nnU-Net ``labelsTr`` + ``--save_probabilities`` stand-in (pack ->
score -> overlay), NIfTI masks with .npy predictions, and the one-line errors."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import naive
from segaudit.cli import app

nib = pytest.importorskip("nibabel")

SHAPES = [(6, 10, 12), (4, 12, 9), (5, 8, 8)]  # (Z, Y, X)
SPACING = (0.8, 0.7, 2.5)  # SimpleITK's (x, y, z)
ORIGIN = (10.0, -5.0, 3.0)


def affine_of(spacing=SPACING, origin=ORIGIN):
    """The NIfTI (RAS) affine of a SimpleITK image with identity direction (LPS)."""
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-spacing[0], -spacing[1], spacing[2]])
    affine[:3, 3] = [-origin[0], -origin[1], origin[2]]
    return affine


def save_nifti(path: Path, labels: np.ndarray, affine=None):
    """labels (Z, Y, X) as NIfTI voxels (X, Y, Z), as SimpleITK and nnU-Net write them."""
    nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0), affine_of() if affine is None else affine), str(path))


def nnunet_standin(root: Path, seed=0, bad_slice=(1, 2)):
    """labelsTr/case_xxxxx.nii.gz and predictions/case_xxxxx.npz (+ .pkl, + the argmax
    .nii.gz nnU-Net also writes), 3 volumes of K=3; one slice of one volume mislabelled."""
    rng = np.random.default_rng(seed)
    (root / "labelsTr").mkdir(parents=True)
    (root / "predictions").mkdir()
    truth = {}
    for n, shape in enumerate(SHAPES):
        case = f"case_{n:05d}"
        raw = rng.gamma(0.3, size=(3, *shape))
        probs = (raw / raw.sum(axis=0)).astype(np.float32)
        labels = probs.argmax(axis=0).astype(np.uint8)
        if n == bad_slice[0]:
            labels[bad_slice[1]] = (labels[bad_slice[1]] + 1) % 3
        save_nifti(root / "labelsTr" / f"{case}.nii.gz", labels)
        np.savez_compressed(root / "predictions" / f"{case}.npz", probabilities=probs)
        properties = {"sitk_stuff": {"spacing": SPACING, "origin": ORIGIN, "direction": (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)},
                      "spacing": list(SPACING[::-1]), "shape_before_cropping": shape}
        (root / "predictions" / f"{case}.pkl").write_bytes(pickle.dumps(properties))
        save_nifti(root / "predictions" / f"{case}.nii.gz", probs.argmax(axis=0).astype(np.uint8))
        truth[case] = (labels.astype(np.int32), probs)
    return truth


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def fails(result, *parts):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for part in parts:
        assert str(part) in lines[0], lines[0]
    return lines[0]


def flag_volume(path):
    """An issue mask written as NIfTI, as (Z, Y, X) uint8 (NIfTI's axes are X, Y, Z)."""
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj).transpose(2, 1, 0)


def rows(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_nnunet_folder_pack_score_overlay(tmp_path):
    truth = nnunet_standin(tmp_path)
    store = tmp_path / "preds.zarr"
    ok(run("pack", tmp_path / "predictions", "-o", store, "--dtype", "float32"))
    import zarr

    attrs = dict(zarr.open_array(str(store / "case_00000")).attrs)
    np.testing.assert_allclose(attrs["affine"], affine_of())
    assert attrs["spacing"] == pytest.approx(SPACING[::-1])

    described = ok(run("info", store)).output
    assert "3 (3 volumes)" in described and "(3, 4-6, 8-12, 8-12)  K,Z,Y,X" in described and "K=3" in described

    ranking = tmp_path / "ranking.csv"
    ok(run("score", tmp_path / "labelsTr", store, "--method", "all", "-o", ranking))
    got = rows(ranking)
    assert [r["image"] for r in got][0] == "case_00001"  # the volume with a mislabelled slice
    assert list(got[0])[-1] == "worst_slice" and got[0]["worst_slice"] == "2"
    for row in got:
        labels, probs = truth[row["image"]]
        tall_labels, tall_probs = labels.reshape(-1, labels.shape[2]), probs.reshape(3, -1, labels.shape[2])
        want = naive.image_scores(tall_labels, tall_probs, ignore=(255,))
        assert float(row["cil"]) == pytest.approx(want["cil"], rel=1e-6)
        assert int(row["pixels"]) == labels.size
        assert int(row["worst_slice"]) == naive.worst_slice(labels, probs)
        label, pred, s, _ = naive.downsample_3d(labels, probs, 4)
        assert float(row["coco"]) == pytest.approx(naive.coco_3d(label, pred, s), rel=1e-6)

    out = tmp_path / "overlays"
    ok(run("overlay", "-r", ranking, "-o", out, "--top", "3"))
    drawn = sorted(p.name for p in out.iterdir())
    assert drawn == ["0001_case_00001.png", "0002_" + got[1]["image"] + ".png", "0003_" + got[2]["image"] + ".png"]
    with Image.open(out / drawn[0]) as image:  # one slice of 12 x 9, enlarged, panels side by side
        assert image.width > image.height

    # clc's issue masks (flag maps from the cell cache, 3-D cells) against the reference.
    ok(run("issues", tmp_path / "labelsTr", store, "--out", tmp_path / "clc"))
    want = dict(zip(truth, naive.clc_flags_3d(list(truth.values()), 4)))
    assert any(flags.any() for flags in want.values())
    # A NIfTI mask's issue mask is a NIfTI image with the mask's geometry (viewers overlay it).
    for case, flags in want.items():
        path = tmp_path / "clc" / f"{case}.nii.gz"
        got = flag_volume(path) if path.exists() else np.zeros(flags.shape, np.uint8)
        np.testing.assert_array_equal(got, np.where(flags, 255, 0).astype(np.uint8))
    written = sorted((tmp_path / "clc").iterdir())
    assert written and all(p.name.endswith(".nii.gz") for p in written)
    import nibabel as nib

    image = nib.load(str(written[0]))
    np.testing.assert_allclose(image.affine, nib.load(str(tmp_path / "labelsTr" / written[0].name)).affine)
    assert image.get_data_dtype() == np.uint8

    ok(run("issues", tmp_path / "labelsTr", store, "--out", tmp_path / "issues", "--method", "threshold"))
    flagged = flag_volume(tmp_path / "issues" / "case_00001.nii.gz")
    labels, probs = truth["case_00001"]
    assert flagged.shape == labels.shape and flagged.dtype == np.uint8
    s = naive.image_scores(labels.reshape(-1, 9), probs.reshape(3, -1, 9), ignore=(255,))["s"]
    np.testing.assert_array_equal(flagged, np.where(s < 0.5, 255, 0).reshape(labels.shape))


def test_nifti_masks_with_npy_predictions(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "masks" / "site").mkdir(parents=True)
    (tmp_path / "npy" / "site").mkdir(parents=True)
    volumes = {}
    for n, shape in enumerate(SHAPES[:2]):
        raw = rng.gamma(0.5, size=(4, *shape))
        probs = raw / raw.sum(axis=0)
        labels = probs.argmax(axis=0).astype(np.int16)
        labels[rng.random(labels.shape) < 0.2] = 255
        save_nifti(tmp_path / "masks" / "site" / f"v{n}.nii", labels)
        np.save(tmp_path / "npy" / "site" / f"v{n}.npy", probs)
        volumes[f"site/v{n}"] = (labels.astype(np.int32), probs)
    ok(run("pack", tmp_path / "npy", "-o", tmp_path / "p.zarr", "--dtype", "float32"))
    ok(run("score", tmp_path / "masks", tmp_path / "p.zarr", "--method", "all", "--downsample", "2",
           "-o", tmp_path / "r.csv"))
    got = {r["image"]: r for r in rows(tmp_path / "r.csv")}
    assert set(got) == set(volumes)
    for image_id, (labels, probs) in volumes.items():
        want = naive.image_scores(labels.reshape(-1, labels.shape[2]), probs.reshape(4, -1, labels.shape[2]),
                                  ignore=(255,))
        for method in ("softmin", "cil", "ccp", "iou"):
            assert float(got[image_id][method]) == pytest.approx(want[method], rel=1e-5)
        label, pred, s, _ = naive.downsample_3d(labels, probs, 2)
        assert float(got[image_id]["coco"]) == pytest.approx(naive.coco_3d(label, pred, s), rel=1e-5)
    ok(run("overlay", "-r", tmp_path / "r.csv", "-o", tmp_path / "ov", "--top", "2"))
    assert len(list((tmp_path / "ov").iterdir())) == 2


def test_two_d_rankings_have_no_worst_slice_column(tmp_path):
    from datasets import make_dataset

    ds = make_dataset(tmp_path, ids=("a", "b"), n_classes=3, size=(6, 5))
    ok(run("score", ds.masks, ds.store, "-o", tmp_path / "r.csv"))
    assert "worst_slice" not in rows(tmp_path / "r.csv")[0]


# --- one-line errors -------------------------------------------------------------------


def packed(tmp_path, **changes):
    nnunet_standin(tmp_path)
    ok(run("pack", tmp_path / "predictions", "-o", tmp_path / "preds.zarr"))
    return tmp_path / "labelsTr", tmp_path / "preds.zarr"


def test_4d_nifti_mask(tmp_path):
    masks, store = packed(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((12, 10, 6, 2), np.uint8), affine_of()), str(masks / "case_00000.nii.gz"))
    fails(run("score", masks, store, "-o", tmp_path / "r.csv"), "case_00000.nii.gz", "3-D volume", "(12, 10, 6, 2)")
    assert not (tmp_path / "r.csv").exists()


def test_mismatched_volume_shape(tmp_path):
    masks, store = packed(tmp_path)
    save_nifti(masks / "case_00002.nii.gz", np.zeros((5, 8, 7), np.uint8))
    fails(run("score", masks, store, "-o", tmp_path / "r.csv"), "case_00002.nii.gz", "5x8x7 (ZxYxX)", "5x8x8")
    # Same voxel count, other shape: the tall images agree, the volumes do not.
    save_nifti(masks / "case_00002.nii.gz", np.zeros((5, 4, 16), np.uint8))
    fails(run("score", masks, store, "-o", tmp_path / "r.csv"), "5x4x16 (ZxYxX)")


def test_mismatched_affine(tmp_path):
    masks, store = packed(tmp_path)
    labels = np.zeros(SHAPES[1], np.uint8)
    save_nifti(masks / "case_00001.nii.gz", labels, affine_of(spacing=(0.8, 0.7, 5.0)))
    fails(run("score", masks, store, "-o", tmp_path / "r.csv"), "case_00001.nii.gz", "affine")


def test_volume_against_a_2d_prediction(tmp_path):
    from datasets import write_store

    (tmp_path / "masks").mkdir()
    save_nifti(tmp_path / "masks" / "a.nii.gz", np.zeros((2, 3, 4), np.uint8))
    write_store(tmp_path / "p.zarr", {"a": np.full((2, 6, 4), 0.5)})
    fails(run("score", tmp_path / "masks", tmp_path / "p.zarr", "-o", tmp_path / "r.csv"),
          "a.nii.gz", "2x3x4 (ZxYxX) volume", "2-D image")


def test_npz_without_the_probabilities_key(tmp_path):
    (tmp_path / "preds").mkdir()
    np.savez(tmp_path / "preds" / "case.npz", softmax=np.full((2, 2, 3, 3), 0.5), other=np.zeros(3))
    fails(run("pack", tmp_path / "preds", "-o", tmp_path / "p.zarr"), "case.npz", "'probabilities'")
    assert not (tmp_path / "p.zarr").exists()


def test_unreadable_nifti_and_pkl(tmp_path):
    masks, store = packed(tmp_path)
    (masks / "case_00000.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    fails(run("score", masks, store, "-o", tmp_path / "r.csv"), "case_00000.nii.gz")
    (tmp_path / "predictions" / "case_00000.pkl").write_bytes(b"garbage")
    fails(run("pack", tmp_path / "predictions", "-o", tmp_path / "q.zarr"), "case_00000.pkl")


def test_pkl_with_code_is_refused(tmp_path):
    nnunet_standin(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled",))

    (tmp_path / "predictions" / "case_00000.pkl").write_bytes(pickle.dumps({"spacing": Evil()}))
    fails(run("pack", tmp_path / "predictions", "-o", tmp_path / "q.zarr"), "case_00000.pkl", "refusing")


def test_fractional_and_negative_mask_values(tmp_path):
    masks, store = packed(tmp_path)
    values = np.zeros(SHAPES[0], np.float32)
    values[0, 0, 0] = 1.5
    save_nifti(masks / "case_00000.nii.gz", values)
    fails(run("score", masks, store, "-o", tmp_path / "r.csv"), "case_00000.nii.gz", "not a whole number")
    values[0, 0, 0] = -1
    save_nifti(masks / "case_00000.nii.gz", values)
    fails(run("score", masks, store, "-o", tmp_path / "r.csv"), "case_00000.nii.gz", "negative")


def test_bad_probabilities_name_the_slice(tmp_path):
    (tmp_path / "preds").mkdir()
    probs = np.full((2, 3, 2, 2), 0.5)
    probs[:, 2, 1, 0] = 0.9
    np.save(tmp_path / "preds" / "v.npy", probs)
    fails(run("pack", tmp_path / "preds", "-o", tmp_path / "p.zarr"), "v.npy", "slice 2", "row 1, column 0")


def test_corrupt_refuses_volumes_in_one_line(tmp_path):
    masks, _ = packed(tmp_path)
    fails(run("corrupt", masks, "--out", tmp_path / "c", "--kind", "swap", "--rate", "0.5", "--truth",
              tmp_path / "t.csv"), "case_00000.nii.gz", "PNG masks only")
    assert not (tmp_path / "c").exists()


def test_only_takes_volume_mask_paths(tmp_path, monkeypatch):
    masks, store = packed(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "changed.txt").write_text("labelsTr/case_00001.nii.gz\nlabelsTr/deleted.nii.gz\ncase_00002\n")
    result = ok(run("score", masks, store, "--only", tmp_path / "changed.txt", "-o", tmp_path / "pr.csv"))
    assert [r["image"] for r in rows(tmp_path / "pr.csv")] == ["case_00001", "case_00002"]
    assert "deleted" in result.output


def test_issue_masks_of_volumes_follow_their_masks_format(tmp_path):
    from segaudit.io.volumes import encode_flag_volume, flag_volume_suffix

    flags = np.zeros((2, 3, 4), np.uint8)
    flags[1, 2, 3] = 255
    assert [flag_volume_suffix(n) for n in ("a.nii.gz", "b.NII", "c.npy", "d.npz")] == [".nii.gz", ".nii", ".npy", ".npy"]
    for name in ("m.nii.gz", "m.nii"):
        source = tmp_path / name
        save_nifti(source, np.ones((2, 3, 4), np.int16), affine_of(spacing=(0.5, 0.6, 3.0)))
        out = tmp_path / f"flags{flag_volume_suffix(source)}"
        out.write_bytes(encode_flag_volume(source, flags))
        np.testing.assert_array_equal(flag_volume(out), flags)
        import nibabel as nib

        np.testing.assert_allclose(nib.load(str(out)).affine, affine_of(spacing=(0.5, 0.6, 3.0)))
    np.save(tmp_path / "m.npy", np.ones((2, 3, 4), np.int16))
    (tmp_path / "flags.npy").write_bytes(encode_flag_volume(tmp_path / "m.npy", flags))
    got = np.load(tmp_path / "flags.npy")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, flags)


def test_overlays_of_volumes_draw_their_scans_slice(tmp_path):
    from segaudit.io.photos import read_scan_slice, stretch

    truth = nnunet_standin(tmp_path)
    store = tmp_path / "preds.zarr"
    ok(run("pack", tmp_path / "predictions", "-o", store))
    ranking = tmp_path / "ranking.csv"
    ok(run("score", tmp_path / "labelsTr", store, "-o", ranking))
    # Scans as nnU-Net keeps them (imagesTr/<case>_0000.nii.gz), here the labels times 100 plus
    # a ramp along X, so that a slice read in the wrong orientation would not match.
    (tmp_path / "imagesTr").mkdir()
    scans = {}
    for case, (labels, _) in truth.items():
        scan = (labels * 100 + np.arange(labels.shape[2])[None, None, :]).astype(np.int16)
        save_nifti(tmp_path / "imagesTr" / f"{case}_0000.nii.gz", scan)
        scans[case] = scan
    z = int(rows(ranking)[0]["worst_slice"])
    case = rows(ranking)[0]["image"]
    got = read_scan_slice(tmp_path / "imagesTr" / f"{case}_0000.nii.gz", z)
    np.testing.assert_array_equal(got[..., 0], stretch(scans[case][z].astype(np.float64)))
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()

    plain, with_scans = tmp_path / "plain", tmp_path / "scans"
    ok(run("overlay", "-r", ranking, "-o", plain, "--top", "3"))
    result = ok(run("overlay", "-r", ranking, "-o", with_scans, "--top", "3", "--images", tmp_path / "imagesTr",
                    "--image-suffix", "_0000"))
    assert "no photo" not in result.stderr
    for name in sorted(p.name for p in plain.iterdir()):
        with Image.open(plain / name) as a, Image.open(with_scans / name) as b:
            assert b.width > a.width  # a fourth panel: the scan
    # A scan of another size is a one-line error naming it; a 4-D scan too.
    save_nifti(tmp_path / "imagesTr" / f"{case}_0000.nii.gz", np.zeros((2, 3, 4), np.int16))
    fails(run("overlay", "-r", ranking, "-o", tmp_path / "bad", "--top", "1", "--images", tmp_path / "imagesTr",
              "--image-suffix", "_0000"), f"{case}_0000.nii.gz", "2x3x4 (ZxYxX)")
    nib.save(nib.Nifti1Image(np.zeros((4, 3, 2, 2), np.int16), affine_of()),
             str(tmp_path / "imagesTr" / f"{case}_0000.nii.gz"))
    fails(run("overlay", "-r", ranking, "-o", tmp_path / "bad", "--top", "1", "--images", tmp_path / "imagesTr",
              "--image-suffix", "_0000"), f"{case}_0000.nii.gz", "not one 3-D volume")
