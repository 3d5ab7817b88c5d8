"""``segaudit pack`` over several folders: nnU-Net's ``fold_*/validation`` merged into one
store, a case found twice refused, ``--masks`` naming the cases without prediction, and the
fold of each case recorded (``--fold``, or the ``fold_N`` folder names)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import segaudit
from segaudit.cli import app
from segaudit.io.folds import recorded_folds

SPACING = [2.5, 0.7, 0.8]  # (Z, Y, X)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def nnunet_results(root: Path, folds=((0, 1), (2, 3), (4,)), seed=0) -> Path:
    """``nnUNet_results/.../fold_k/validation/case_xxxxx.npz`` (+ ``.pkl``) for 5 cases of K=3
    and ``labelsTr/case_xxxxx.npy`` masks agreeing with the argmax."""
    rng = np.random.default_rng(seed)
    trainer = root / "nnUNet_results" / "Dataset001_Toy" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (root / "labelsTr").mkdir(parents=True)
    for fold, cases in enumerate(folds):
        validation = trainer / f"fold_{fold}" / "validation"
        validation.mkdir(parents=True)
        for case in cases:
            raw = rng.gamma(0.3, size=(3, 4, 6, 5))
            probs = (raw / raw.sum(axis=0)).astype(np.float32)
            np.savez_compressed(validation / f"case_{case:05d}.npz", probabilities=probs)
            (validation / f"case_{case:05d}.pkl").write_bytes(pickle.dumps({"spacing": SPACING}))
            np.save(root / "labelsTr" / f"case_{case:05d}.npy", probs.argmax(axis=0).astype(np.uint8))
    return trainer


def test_fold_folders_merge_into_one_store_with_their_folds(tmp_path):
    trainer = nnunet_results(tmp_path)
    folders = sorted(trainer.glob("fold_*/validation"))
    result = run("pack", *folders, "--masks", tmp_path / "labelsTr", "-o", tmp_path / "preds.zarr")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stderr and "(5 images" in result.stderr and "warning" not in result.stderr
    assert recorded_folds(tmp_path / "preds.zarr") == {"case_00000": 0, "case_00001": 0, "case_00002": 1,
                                                      "case_00003": 1, "case_00004": 2}
    import zarr

    assert zarr.open_group(str(tmp_path / "preds.zarr"), mode="r")["case_00003"].attrs["spacing"] == SPACING
    (tmp_path / "folds.csv").write_text("image,fold\n" + "".join(f"case_{c:05d},{f}\n" for c, f in
                                                                  ((0, 0), (1, 0), (2, 1), (3, 1), (4, 2))))
    checked = run("score", tmp_path / "labelsTr", tmp_path / "preds.zarr", "--folds", tmp_path / "folds.csv",
                  "-o", tmp_path / "ranking.csv", "-q")
    assert checked.exit_code == 0, checked.output
    run_ = segaudit.score(tmp_path / "labelsTr", tmp_path / "preds.zarr", methods=("softmin",))
    assert [r.image_id for r in sorted(run_.results, key=lambda r: r.image_id)] == [f"case_{c:05d}" for c in range(5)]


def test_a_case_in_two_folds_is_refused_naming_it_and_both_folders(tmp_path):
    trainer = nnunet_results(tmp_path, folds=((0, 1), (1, 2)))
    first, second = trainer / "fold_0" / "validation", trainer / "fold_1" / "validation"
    result = run("pack", first, second, "-o", tmp_path / "preds.zarr")
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: case 'case_00001' is in two folders: {first} (case_00001.npz) and "
                                     f"{second} (case_00001.npz); each case must come from one fold")
    assert not (tmp_path / "preds.zarr").exists()
    assert not list(tmp_path.glob(".preds.zarr*"))


def test_masks_name_the_cases_without_prediction(tmp_path):
    trainer = nnunet_results(tmp_path)
    folders = [trainer / "fold_0" / "validation", trainer / "fold_2" / "validation"]  # fold 1 never finished
    result = run("pack", *folders, "--masks", tmp_path / "labelsTr", "-o", tmp_path / "preds.zarr")
    assert result.exit_code == 0, result.output
    assert (f"warning: 2 mask(s) without prediction in {tmp_path / 'labelsTr'}: case_00002, case_00003"
            in result.stderr)


def test_fold_option_records_one_fold_and_is_refused_for_several_folders(tmp_path):
    trainer = nnunet_results(tmp_path)
    source = tmp_path / "plain"
    (trainer / "fold_1" / "validation").rename(source)
    result = run("pack", source, "--fold", 3, "-o", tmp_path / "one.zarr")
    assert result.exit_code == 0, result.output
    assert set(recorded_folds(tmp_path / "one.zarr").values()) == {3}
    unnamed = run("pack", source, "-o", tmp_path / "none.zarr")
    assert unnamed.exit_code == 0 and set(recorded_folds(tmp_path / "none.zarr").values()) == {None}
    several = run("pack", trainer / "fold_0" / "validation", source, "--fold", 1, "-o", tmp_path / "two.zarr")
    assert several.exit_code == 2 and "--fold names the fold of one source" in several.stderr
    twice = run("pack", source, source, "-o", tmp_path / "two.zarr")
    assert twice.exit_code == 2 and "a source directory is given twice" in twice.stderr
