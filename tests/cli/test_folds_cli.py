"""``segaudit folds`` and the fold checks of ``segaudit info --folds`` and ``segaudit score --folds``."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from datasets import make_dataset, write_masks
from segaudit import PredictionWriter
from segaudit.cli import app


def run(*args):
    return CliRunner().invoke(app, list(map(str, args)))


def sequences(directory, n=4, frames=3):
    rng = np.random.default_rng(0)
    return write_masks(directory, {f"s{s}/f{f}": rng.integers(0, 3, (5, 6)).astype(np.uint8)
                                   for s in range(n) for f in range(frames)})


def test_folds_writes_a_deterministic_table_with_groups_kept_together(tmp_path):
    masks = sequences(tmp_path / "masks")
    result = run("folds", masks, "-k", "2", "--group-by", "^([^/]+)/", "-o", tmp_path / "folds.csv")
    assert result.exit_code == 0, result.output
    assert "12 images in 4 groups into 2 folds of 6, 6 images" in result.stderr
    text = (tmp_path / "folds.csv").read_text()
    rows = [line.split(",") for line in text.splitlines()[1:]]
    assert text.startswith("image,fold\n") and len(rows) == 12
    by_sequence = {}
    for image_id, fold in rows:
        by_sequence.setdefault(image_id.split("/")[0], set()).add(fold)
    assert all(len(folds) == 1 for folds in by_sequence.values())
    again = run("folds", masks, "-k", "2", "--group-by", "^([^/]+)/", "-o", "-", "-q")
    assert again.exit_code == 0 and again.stdout == text


def test_folds_refuses_bad_input_in_one_line(tmp_path):
    masks = sequences(tmp_path / "masks", n=2)
    result = run("folds", masks, "-k", "3", "--group-by", "^([^/]+)/", "-o", tmp_path / "folds.csv")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: cannot split 2 groups into 3 folds"
    assert not (tmp_path / "folds.csv").exists()
    result = run("folds", tmp_path / "nowhere", "-o", tmp_path / "folds.csv")
    assert result.exit_code == 2 and "not found" in result.stderr
    result = run("folds", masks, "-o", tmp_path / "no" / "folds.csv")
    assert result.exit_code == 2 and "output directory does not exist" in result.stderr


def _out_of_fold_store(ds, folds: dict[str, int]):
    with PredictionWriter(ds.store, overwrite=True) as writer:
        for image_id, probs in ds.probs.items():
            writer.write(image_id, probs, fold=folds[image_id])


def test_info_and_score_check_the_folds(tmp_path):
    ds = make_dataset(tmp_path / "data")
    _out_of_fold_store(ds, {"city/a": 0, "city/b": 1, "other/c": 1})
    good, bad = tmp_path / "folds.csv", tmp_path / "leaky.csv"
    good.write_text("image,fold\ncity/a,0\ncity/b,1\nother/c,1\n")
    bad.write_text("image,fold\ncity/a,1\ncity/b,1\nother/c,1\n")

    info = run("info", ds.store)
    assert info.exit_code == 0 and "folds          recorded for 3 of 3 images (fold: images 0: 1, 1: 2)" in info.stdout
    described = json.loads(run("info", ds.store, "--json").stdout)
    assert (described["folds_recorded"], described["fold_images"]) == (3, {"0": 1, "1": 2})
    checked = run("info", ds.store, "--folds", good)
    assert checked.exit_code == 0, checked.output
    assert "3 of 3 recorded image(s) predicted by their own fold's model" in checked.stdout
    refused = run("info", ds.store, "--folds", bad)
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (f"error: {ds.store}: not out-of-fold according to {bad}: 1 image(s) predicted "
                                      "by a model that trained on them: city/a (predicted by fold 0, in fold 1)")

    scored = run("score", ds.masks, ds.store, "--folds", good, "-o", tmp_path / "ranking.csv", "-q")
    assert scored.exit_code == 0, scored.output
    assert (tmp_path / "ranking.csv").exists()
    refused = run("score", ds.masks, ds.store, "--folds", bad, "-o", tmp_path / "leaky-ranking.csv", "-q")
    assert refused.exit_code == 2 and "city/a (predicted by fold 0, in fold 1)" in refused.stderr
    assert not (tmp_path / "leaky-ranking.csv").exists()


def test_a_store_without_provenance_still_scores(tmp_path):
    ds = make_dataset(tmp_path / "data")
    (tmp_path / "folds.csv").write_text("image,fold\ncity/a,0\n")
    assert "folds          not recorded" in run("info", ds.store).stdout
    scored = run("score", ds.masks, ds.store, "--folds", tmp_path / "folds.csv", "-o", tmp_path / "r.csv", "-q")
    assert scored.exit_code == 0, scored.output


def test_rgb_masks_need_and_take_a_palette(tmp_path):
    from PIL import Image

    (tmp_path / "masks").mkdir()
    colours = [[0, 0, 0], [255, 0, 0]]
    for n in range(4):
        rgb = np.zeros((4, 5, 3), np.uint8)
        rgb[: n + 1] = colours[1]
        Image.fromarray(rgb, "RGB").save(tmp_path / "masks" / f"{n}.png")
    (tmp_path / "palette.json").write_text(json.dumps(colours))
    refused = run("folds", tmp_path / "masks", "-k", "2", "-o", tmp_path / "folds.csv")
    assert refused.exit_code == 2 and "palette" in refused.stderr
    result = run("folds", tmp_path / "masks", "-k", "2", "--palette", tmp_path / "palette.json",
                 "-o", tmp_path / "folds.csv", "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "folds.csv").read_text().count("\n") == 5
