"""Region-level evaluation: planted regions, AP over a region ranking, kinds, restored pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from datasets import write_masks, write_store
from segaudit.cli import app
from segaudit.core.dataset import open_dataset
from segaudit.core.regions import RegionRule
from segaudit.evaluation.regions import evaluate_regions, planted_regions, region_average_precision, summarise


def brute_ap(scores, matches, n_planted):
    """AP as the textbook defines it: walk the ranking, precision at each first hit."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    seen, hits, total = set(), 0, 0.0
    for position, i in enumerate(order, 1):
        if matches[i] >= 0 and matches[i] not in seen:
            seen.add(matches[i])
            hits += 1
            total += hits / position
    return total / n_planted, len(seen) / n_planted


@settings(max_examples=80, deadline=None)
@given(data=st.data(), n=st.integers(0, 30), n_planted=st.integers(1, 8))
def test_average_precision_matches_the_textbook_walk(data, n, n_planted):
    scores = data.draw(st.lists(st.sampled_from([0.1, 0.3, 0.5, 0.9]), min_size=n, max_size=n))
    matches = data.draw(st.lists(st.integers(-1, n_planted - 1), min_size=n, max_size=n))
    got = region_average_precision(np.array(scores), np.array(matches, np.int64), n_planted)
    assert got == pytest.approx(brute_ap(scores, matches, n_planted))


def test_planted_regions_split_by_class_pair_and_connectivity():
    clean = np.zeros((6, 8), np.int32)
    noisy = clean.copy()
    noisy[0:2, 0:2] = 1  # one region (0 -> 1)
    noisy[0:2, 2:4] = 2  # touching, but another pair: another region
    noisy[4:6, 6:8] = 1  # apart: a third
    noisy[5, 0] = 255  # ignored: not planted
    ids, areas = planted_regions(noisy, clean, 3)
    assert sorted(areas.tolist()) == [4, 4, 4]
    assert len(np.unique(ids[ids >= 0])) == 3
    assert ids[5, 0] == -1


def _scene(tmp_path):
    """Two images: one with a swapped object (annotated 2, truly 1), one clean; a perfect model."""
    clean = np.zeros((24, 24), np.int64)
    clean[4:12, 4:12] = 1
    clean[14:20, 14:22] = 2
    noisy = clean.copy()
    noisy[4:12, 4:12] = 2
    masks = {"a": noisy, "b": clean}
    probs = {}
    for image_id in masks:
        one_hot = np.stack([clean == k for k in range(3)]).astype(np.float64)
        probs[image_id] = one_hot * 0.94 + 0.02
    write_masks(tmp_path / "noisy", masks, mode="L")
    write_masks(tmp_path / "clean", {"a": clean, "b": clean}, mode="L")
    write_store(tmp_path / "p.zarr", probs)
    (tmp_path / "truth.csv").write_text("image,is_error,kind,classes\na,1,swap,1;2\nb,0,,\n")
    return tmp_path


def test_a_planted_swap_is_found_classified_and_restored(tmp_path):
    root = _scene(tmp_path)
    dataset = open_dataset(root / "noisy", root / "p.zarr")
    truth = {"a": (True, "swap"), "b": (False, "")}
    evaluation = evaluate_regions(dataset, root / "clean", truth, RegionRule(band=1))
    summary = summarise(evaluation)
    assert summary["planted"] == 1
    assert summary["regions"] == 1
    assert summary["ap@50"] == 1.0 and summary["recall@50"] == 1.0
    assert summary["kind_accuracy"] == {"swap": (1.0, 1)}
    assert summary["restored"] == 1.0
    assert summary["damaged_per_restored"] == 0.0


def test_no_clean_mask_is_a_clear_error(tmp_path):
    root = _scene(tmp_path)
    (root / "clean" / "b.png").unlink()
    dataset = open_dataset(root / "noisy", root / "p.zarr")
    from segaudit.errors import InputError

    with pytest.raises(InputError, match="no clean mask for b"):
        evaluate_regions(dataset, root / "clean", {"a": (True, "swap"), "b": (False, "")})


def test_evaluate_regions_command(tmp_path):
    root = _scene(tmp_path)
    result = CliRunner().invoke(app, ["evaluate-regions", str(root / "noisy"), str(root / "p.zarr"), "--clean",
                                      str(root / "clean"), "--truth", str(root / "truth.csv"), "--format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ap@50"] == 1.0
    result = CliRunner().invoke(app, ["evaluate-regions", str(root / "noisy"), str(root / "p.zarr"), "--clean",
                                      str(root / "clean"), "--truth", str(root / "truth.csv"), "--min-area", "0"])
    assert result.exit_code == 2 and "--min-area must be at least 1" in result.output
