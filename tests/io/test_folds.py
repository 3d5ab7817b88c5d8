"""``segaudit.io.folds``: deterministic k-fold splits that keep groups together, the folds
table, and the check that a store's images were predicted by their own fold's model."""

from __future__ import annotations

import numpy as np
import pytest

from datasets import random_probs, write_masks
from segaudit import PredictionWriter
from segaudit.errors import InputError
from segaudit.io.folds import (FOLD_ATTR, assign_folds, check_folds, check_store_folds, make_folds, read_folds,
                               recorded_folds, write_folds)


def scenes(directory, n_sequences=6, frames=5, seed=0):
    """Masks ``seqS_fF`` of 4 classes; class 3 (rare) only in sequences 0 and 1."""
    rng = np.random.default_rng(seed)
    labels = {}
    for s in range(n_sequences):
        for f in range(frames):
            lab = rng.integers(0, 3, (6, 8)).astype(np.uint8)
            if s < 2:
                lab[0, 0] = 3
            lab[5, 7] = 255  # ignored: no class
            labels[f"seq{s}_f{f}"] = lab
    return write_masks(directory, labels)


def test_the_split_is_deterministic_and_seeded(tmp_path):
    masks = scenes(tmp_path / "masks")
    first = make_folds(masks, 3, seed=0)
    assert make_folds(masks, 3, seed=0) == first
    assert sorted(first) == sorted(f"seq{s}_f{f}" for s in range(6) for f in range(5))
    assert sorted(set(first.values())) == [0, 1, 2]
    assert sorted(np.bincount(list(first.values()))) == [10, 10, 10]
    assert any(make_folds(masks, 3, seed=seed) != first for seed in (1, 2, 3))


def test_groups_stay_in_one_fold(tmp_path):
    masks = scenes(tmp_path / "masks")
    folds = make_folds(masks, 3, seed=5, group_by=r"^(seq\d+)_")
    for s in range(6):
        assert len({folds[f"seq{s}_f{f}"] for f in range(5)}) == 1
    assert sorted(np.bincount(list(folds.values()))) == [10, 10, 10]  # two sequences per fold


def test_a_rare_class_is_spread_over_the_folds(tmp_path):
    masks = scenes(tmp_path / "masks")
    grouped = make_folds(masks, 2, group_by=r"^(seq\d+)_")
    assert grouped["seq0_f0"] != grouped["seq1_f0"]  # the two sequences holding class 3 split
    plain = make_folds(masks, 5)
    holders = [plain[f"seq{s}_f{f}"] for s in range(2) for f in range(5)]
    assert sorted(np.bincount(holders, minlength=5)) == [2, 2, 2, 2, 2]


def test_assign_folds_balances_class_presence():
    presence = {f"a{n}": {0} for n in range(8)} | {f"b{n}": {0, 1} for n in range(4)}
    folds = assign_folds({i: [i] for i in presence}, presence, 4, seed=3)
    assert sorted(np.bincount([folds[f"b{n}"] for n in range(4)], minlength=4)) == [1, 1, 1, 1]
    assert sorted(np.bincount(list(folds.values()))) == [3, 3, 3, 3]


def test_bad_splits_are_refused_in_one_line(tmp_path):
    masks = scenes(tmp_path / "masks", n_sequences=2)
    with pytest.raises(InputError, match="cannot split 2 groups into 3 folds"):
        make_folds(masks, 3, group_by=r"^(seq\d+)_")
    with pytest.raises(InputError, match="-k must be at least 2"):
        make_folds(masks, 1)
    with pytest.raises(InputError, match=r"--group-by 'city\(' is not a regular expression"):
        make_folds(masks, 2, group_by="city(")
    with pytest.raises(InputError, match="does not match image id 'seq0_f0'"):
        make_folds(masks, 2, group_by=r"^patient(\d+)")


def test_the_table_round_trips_and_bad_tables_are_named(tmp_path):
    write_folds({"b": 1, "a/x": 0}, tmp_path / "folds.csv")
    assert (tmp_path / "folds.csv").read_text() == "image,fold\na/x,0\nb,1\n"
    assert read_folds(tmp_path / "folds.csv") == {"a/x": 0, "b": 1}
    (tmp_path / "bad.csv").write_text("image,fold\na,0\nb,two\n")
    with pytest.raises(InputError, match=r"bad.csv line 3: fold 'two' of 'b' is not a non-negative integer"):
        read_folds(tmp_path / "bad.csv")
    (tmp_path / "twice.csv").write_text("image,fold\na,0\na,1\n")
    with pytest.raises(InputError, match="image 'a' is listed twice"):
        read_folds(tmp_path / "twice.csv")
    (tmp_path / "cols.csv").write_text("image,split\na,0\n")
    with pytest.raises(InputError, match="has no 'fold' column"):
        read_folds(tmp_path / "cols.csv")


def _store(path, folds_by_image, k=3):
    rng = np.random.default_rng(0)
    with PredictionWriter(path) as writer:
        for image_id, fold in folds_by_image.items():
            writer.write(image_id, random_probs(rng, k, 4, 5), fold=fold)
    return path


def test_the_writer_records_each_images_fold(tmp_path):
    rng = np.random.default_rng(1)
    with PredictionWriter(tmp_path / "p.zarr", fold=2) as writer:
        writer.write("a", random_probs(rng, 3, 4, 5))
        writer.write_batch(["b", "c"], np.stack([random_probs(rng, 3, 4, 5)] * 2), fold=0)
        writer.write_volume("v", np.stack([random_probs(rng, 3, 4, 5)] * 2, axis=1), {"spacing": [1, 1, 1]})
    assert recorded_folds(tmp_path / "p.zarr") == {"a": 2, "b": 0, "c": 0, "v": 2}
    import zarr

    assert zarr.open_group(str(tmp_path / "p.zarr"), mode="r")["v"].attrs["spacing"] == [1, 1, 1]
    with pytest.raises(InputError, match="fold must be a non-negative integer, got -1"):
        PredictionWriter(tmp_path / "q.zarr", fold=-1)
    with PredictionWriter(tmp_path / "r.zarr") as writer:
        with pytest.raises(InputError, match="fold must be a non-negative integer, got True"):
            writer.write("a", random_probs(rng, 3, 4, 5), fold=True)
        writer.write("b", random_probs(rng, 3, 4, 5))
    assert recorded_folds(tmp_path / "r.zarr") == {"b": None}  # no provenance: nothing recorded
    import zarr

    assert FOLD_ATTR not in zarr.open_group(str(tmp_path / "r.zarr"), mode="r")["b"].attrs


def test_the_check_catches_an_image_predicted_by_the_wrong_fold(tmp_path):
    store = _store(tmp_path / "p.zarr", {"a": 0, "b": 1, "c": 1, "d": 2})
    (tmp_path / "folds.csv").write_text("image,fold\na,0\nb,1\nc,1\nd,2\n")
    check = check_store_folds(store, tmp_path / "folds.csv")
    assert (check.images, check.recorded, check.matching) == (4, 4, 4) and check.ok
    (tmp_path / "leaky.csv").write_text("image,fold\na,0\nb,0\nc,1\nd,0\n")
    with pytest.raises(InputError) as caught:
        check_store_folds(store, tmp_path / "leaky.csv")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{store}: not out-of-fold according to {tmp_path / 'leaky.csv'}: 2 image(s) "
                              "predicted by a model that trained on them: b (predicted by fold 1, in fold 0), "
                              "d (predicted by fold 2, in fold 0)")


def test_unlisted_and_unrecorded_images(tmp_path):
    result = check_folds({"a": 0, "b": None, "c": 3}, {"a": 0})
    assert (result.recorded, result.matching, result.unlisted, result.ok) == (2, 1, [("c", 3)], False)
    assert "1 image(s) not in the folds table: c (fold 3)" in result.problem()
    many = check_folds({f"i{n}": 1 for n in range(5)}, {f"i{n}": 0 for n in range(5)})
    assert many.problem().endswith("i2 (predicted by fold 1, in fold 0) and 2 more")
    assert check_folds({"a": None}, {"a": 0}).describe().startswith("not recorded")
