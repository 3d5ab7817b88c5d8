"""The dataset-level check after scoring: labels and predictions in different class spaces
(core/sanity.py), its warning on stderr and in the run record, and ``--fail-on-warning``."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from datasets import FIXTURES, make_dataset, write_masks, write_store
from segaudit.api import score
from segaudit.core.arrays import array_dataset
from segaudit.engine import score_dataset
from segaudit.cli import app
from segaudit.io.rankings import read_run_record

K = 6


def confident(rng, truth: np.ndarray, n_classes: int = K) -> np.ndarray:
    """(K, H, W) probabilities: 0.75 on the true class, the rest spread at random."""
    rest = rng.random((n_classes, *truth.shape))
    rest[truth, *np.indices(truth.shape)] = 0
    probs = 0.25 * rest / rest.sum(axis=0)
    probs[truth, *np.indices(truth.shape)] = 0.75
    return probs


def blocks(rng, classes, size=(24, 24), block=6) -> np.ndarray:
    """A class per block x block tile."""
    tiles = rng.choice(classes, size=(size[0] // block, size[1] // block))
    return np.kron(tiles, np.ones((block, block), int))


def standin(root, ids=("a", "b", "c"), seed=0):
    """ADE20K-style masks for a K-channel model: value k is class k - 1, 0 is "other" (the model
    predicts anything there). Value K never occurs, so nothing stops the run."""
    rng = np.random.default_rng(seed)
    labels, probs = {}, {}
    for image_id in ids:
        truth = blocks(rng, np.arange(K - 1))
        probs[image_id] = confident(rng, truth)
        value = truth + 1
        value[:, :4] = 0  # "other"
        labels[image_id] = value.astype(np.uint8)
    write_masks(root / "masks", labels, "L")
    write_store(root / "preds.zarr", probs)
    return root / "masks", root / "preds.zarr"


def run_cli(*args):
    return CliRunner().invoke(app, ["score", *map(str, args)])


def test_an_ade20k_style_offset_warns_and_names_the_fix(tmp_path):
    masks, store = standin(tmp_path)
    run = score(masks, store)
    (warning,) = run.warnings
    assert warning.startswith("the mask values look offset by -1 from the predictions' classes")
    assert "--label-map ade20k" in warning and re.search(r"pixel accuracy \d%", warning)


def test_the_cli_warns_records_and_fails_on_warning(tmp_path):
    masks, store = standin(tmp_path)
    result = run_cli(masks, store, "-o", tmp_path / "r.csv", "-m", "rsoftmin")
    assert result.exit_code == 0, result.output
    assert "warning: the mask values look offset by -1" in result.stderr and "--label-map ade20k" in result.stderr
    record = json.loads((tmp_path / "r.run.json").read_text())
    assert list(record)[-1] == "warnings" and record["warnings"][0].startswith("the mask values look offset")
    assert read_run_record(tmp_path / "r.run.json").warnings == tuple(record["warnings"])

    result = run_cli(masks, store, "-o", tmp_path / "gated.csv", "--fail-on-warning", "-q")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("gate failed: --fail-on-warning: the mask values look offset by -1")
    assert (tmp_path / "gated.csv").exists()  # outputs written, as for every gate


def test_the_fix_silences_the_warning_and_the_record_has_no_warnings_field(tmp_path):
    masks, store = standin(tmp_path)
    result = run_cli(masks, store, "-o", tmp_path / "r.csv", "--label-map", "ade20k", "--fail-on-warning")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    assert "warnings" not in json.loads((tmp_path / "r.run.json").read_text())


def test_a_permutation_warns_about_the_class_space(tmp_path):
    rng = np.random.default_rng(1)
    permutation = np.array([3, 0, 4, 1, 5, 2])
    labels, probs = {}, {}
    for image_id in ("a", "b"):
        truth = blocks(rng, np.arange(K))
        probs[image_id] = confident(rng, truth)
        labels[image_id] = permutation[truth].astype(np.uint8)
    write_masks(tmp_path / "masks", labels, "L")
    write_store(tmp_path / "preds.zarr", probs, attrs={"classes": list("abcdef")})
    (warning,) = score(tmp_path / "masks", tmp_path / "preds.zarr").warnings
    assert warning.startswith("the labels and the predictions do not look like the same class space")
    assert "--label-map" in warning and "--ignore-index" in warning and "-> class 1 (b)" in warning


@pytest.mark.parametrize("flip", [0.0, 0.3, 0.6])
def test_agreeing_or_noisy_labels_do_not_warn(tmp_path, flip):
    ds = make_dataset(tmp_path / "d", flip_fraction=flip, n_classes=5, size=(20, 20))
    assert score(ds.masks, ds.store).warnings == []


def test_the_fixtures_and_a_model_predicting_one_class_do_not_warn(tmp_path):
    assert score(FIXTURES / "masks", FIXTURES / "preds.zarr", methods=("softmin", "clc")).warnings == []
    rng = np.random.default_rng(2)
    labels = np.stack([blocks(rng, np.arange(K)) for _ in range(3)])
    probs = np.stack([confident(rng, np.zeros_like(lab)) for lab in labels])  # everything is class 0
    assert score_dataset(array_dataset(labels, probs), ("cil",)).warnings == []


def test_a_warning_in_one_image_only_is_not_a_dataset_problem(tmp_path):
    # One big offset image among agreeing ones: the offset must hold in most images.
    rng = np.random.default_rng(4)
    labels, probs = {}, {}
    for n, image_id in enumerate("abcde"):
        truth = blocks(rng, np.arange(K - 1), size=(48, 48) if n == 0 else (12, 12))
        probs[image_id] = confident(rng, truth)
        labels[image_id] = (truth + 1 if n == 0 else truth).astype(np.uint8)
    write_masks(tmp_path / "masks", labels, "L")
    write_store(tmp_path / "preds.zarr", probs)
    assert score(tmp_path / "masks", tmp_path / "preds.zarr").warnings == []


def test_predictions_for_other_images_warn_that_agreement_is_far_below_confidence(tmp_path):
    # Confident predictions paired with the wrong images (ids shuffled): no label is moved to
    # one other class, but the argmax agrees at chance level while the model is sure.
    rng = np.random.default_rng(5)
    ids = [f"i{n}" for n in range(6)]
    truths = {image_id: blocks(rng, np.arange(K)) for image_id in ids}
    labels = {image_id: truths[image_id].astype(np.uint8) for image_id in ids}
    probs = {image_id: confident(rng, truths[ids[(n + 1) % len(ids)]]) for n, image_id in enumerate(ids)}
    write_masks(tmp_path / "masks", labels, "L")
    write_store(tmp_path / "preds.zarr", probs)
    (warning,) = score(tmp_path / "masks", tmp_path / "preds.zarr").warnings
    assert warning.startswith("the argmax agrees with the label on ")
    assert "model's own confidence implies (75% on average)" in warning
    assert "--label-map" in warning and "--ids" in warning
    result = run_cli(tmp_path / "masks", tmp_path / "preds.zarr", "-o", tmp_path / "r.csv", "--fail-on-warning", "-q")
    assert result.exit_code == 1 and "gate failed: --fail-on-warning: the argmax agrees" in result.stderr
    # Paired right, the same predictions agree as confidently as they claim.
    write_store(tmp_path / "right.zarr", {image_id: confident(rng, truths[image_id]) for image_id in ids})
    assert score(tmp_path / "masks", tmp_path / "right.zarr").warnings == []


def test_summary_md_summary_and_check_show_the_warning(tmp_path):
    masks, store = standin(tmp_path)
    runner = CliRunner()
    result = run_cli(masks, store, "-o", tmp_path / "r.csv", "--summary-md", tmp_path / "s.md", "-q")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "s.md").read_text()
    assert "### Warnings" in text and "⚠️ the mask values look offset by \\-1" in text

    result = runner.invoke(app, ["summary", str(masks), str(store)])
    assert result.exit_code == 0, result.output
    assert "warning: the mask values look offset by -1" in result.stderr
    assert "warning" not in runner.invoke(app, ["summary", str(masks), str(store), "-q"]).stderr

    result = runner.invoke(app, ["check", str(masks), str(store)])
    assert result.exit_code == 0, result.output
    assert "warning: the mask values look offset by -1" in result.stderr and "ok: 3 images paired" in result.stderr
    result = runner.invoke(app, ["check", str(masks), str(store), "--fail-on-warning", "-q"])
    assert result.exit_code == 1
    assert result.stderr.startswith("gate failed: --fail-on-warning: the mask values look offset by -1")
    fixed = runner.invoke(app, ["check", str(masks), str(store), "--label-map", "ade20k", "--fail-on-warning"])
    assert fixed.exit_code == 0 and "warning" not in fixed.stderr


def test_a_run_without_warnings_has_no_warnings_section(tmp_path):
    result = run_cli(FIXTURES / "masks", FIXTURES / "preds.zarr", "-o", tmp_path / "r.csv",
                     "--summary-md", tmp_path / "s.md", "-q")
    assert result.exit_code == 0, result.output
    assert "Warnings" not in (tmp_path / "s.md").read_text()
