"""``segaudit evaluate``: the paper's metrics (checked against scikit-learn, ties included) and the command."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from datasets import FIXTURES
from segaudit.cli import app
from segaudit.errors import InputError
from segaudit.evaluation.evaluate import auroc, average_precision, evaluate, lift_at, precision_at
from segaudit.io.rankings import read_score_columns


def invoke(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


# --- metrics against scikit-learn ------------------------------------------------------------


@st.composite
def labelled_scores(draw):
    n = draw(st.integers(2, 60))
    is_error = draw(st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda v: 0 < sum(v) < len(v)))
    distinct = draw(st.integers(1, 8))  # few distinct values: many ties
    levels = draw(st.lists(st.floats(0, 1), min_size=distinct, max_size=distinct))
    scores = draw(st.lists(st.sampled_from(levels), min_size=n, max_size=n))
    return np.array(is_error), np.array(scores)


@settings(max_examples=300, deadline=None)
@given(labelled_scores())
def test_auroc_and_auprc_equal_scikit_learn_with_ties(data):
    is_error, scores = data
    # Lower score = more likely an error, so scikit-learn gets -score.
    assert auroc(is_error, scores) == pytest.approx(roc_auc_score(is_error, -scores), abs=1e-12)
    assert average_precision(is_error, scores) == pytest.approx(average_precision_score(is_error, -scores), abs=1e-12)


def test_metrics_on_continuous_scores_equal_scikit_learn():
    rng = np.random.default_rng(0)
    is_error = rng.random(500) < 0.2
    scores = rng.random(500) - 0.3 * is_error
    assert auroc(is_error, scores) == pytest.approx(roc_auc_score(is_error, -scores), abs=1e-12)
    assert average_precision(is_error, scores) == pytest.approx(average_precision_score(is_error, -scores), abs=1e-12)


def test_perfect_and_reversed_rankings():
    is_error = np.array([1, 1, 0, 0, 0], bool)
    good = np.array([0.1, 0.2, 0.5, 0.6, 0.7])
    assert auroc(is_error, good) == 1.0 and average_precision(is_error, good) == 1.0
    assert auroc(is_error, -good) == 0.0
    assert lift_at(is_error, good, 2) == pytest.approx(2.5)  # precision 1 / prevalence 0.4
    assert lift_at(is_error, -good, 2) == 0.0
    assert lift_at(is_error, good, 100) == pytest.approx(1.0)  # T capped at the 5 images: precision = prevalence


def test_lift_breaks_ties_at_the_cut_evenly():
    is_error = np.array([1, 0, 1, 0, 0, 0], bool)
    scores = np.array([0.1, 0.3, 0.3, 0.3, 0.9, 0.9])  # one sure error, then 3 tied images holding 1 error
    # Top 2: the sure error, and one of the 3 tied images (an error with chance 1/3).
    assert precision_at(is_error, scores, 2) == pytest.approx((1 + 1 / 3) / 2)
    assert lift_at(is_error, scores, 2) == pytest.approx((1 + 1 / 3) / 2 / (2 / 6))
    assert precision_at(is_error, scores, 4) == pytest.approx(2 / 4)
    # Every image tied: precision is the prevalence whatever T.
    assert lift_at(is_error, np.full(6, 0.5), 3) == pytest.approx(1.0)


def test_empty_scores_count_as_least_suspicious():
    is_error = np.array([1, 0, 0], bool)
    assert auroc(is_error, np.array([0.2, np.nan, 0.5])) == 1.0
    assert auroc(is_error, np.array([np.nan, 0.2, 0.5])) == 0.0


def test_undefined_without_both_classes():
    assert math.isnan(auroc(np.zeros(3, bool), np.arange(3.0)))
    assert math.isnan(average_precision(np.zeros(3, bool), np.arange(3.0)))
    assert math.isnan(lift_at(np.zeros(3, bool), np.arange(3.0), 2))


# --- reading rankings and truth ----------------------------------------------------------------


def write(path, text):
    path.write_text(text)
    return path


TRUTH = "image,is_error,kind,classes\na,1,drop,car\nb,0,,\nc,0,,\nd,1,swap,sky;road\n"


def test_score_columns_and_the_redundant_score_column(tmp_path):
    ranking = write(tmp_path / "r.csv", "rank,image,score,softmin,cil,pixels,low_pixels,suspect_class,likely_class\n"
                                        "1,a,0.1,0.1,0.5,10,2,car,road\n2,b,0.4,0.4,,10,0,,\n")
    ids, columns = read_score_columns(ranking)
    assert ids == ["a", "b"] and list(columns) == ["softmin", "cil"]
    assert math.isnan(columns["cil"][1])
    ids, columns = read_score_columns(write(tmp_path / "s.csv", "image,score\na,0.3\nb,0.1\n"))
    assert list(columns) == ["score"]


def test_a_volume_rankings_worst_slice_is_not_a_score(tmp_path):
    """A volume ranking ends with worst_slice (a slice index): evaluate scores the methods only."""
    ranking = write(tmp_path / "r.csv", "rank,image,score,softmin,pixels,low_pixels,suspect_class,likely_class,"
                                        "regions,worst_region,worst_slice\n"
                                        "1,a,0.1,0.1,10,2,car,road,1,swap,3\n2,d,0.2,0.2,10,0,,,0,,0\n"
                                        "3,b,0.4,0.4,10,0,,,0,,7\n")
    ids, columns = read_score_columns(ranking)
    assert list(columns) == ["softmin"]
    assert list(evaluate(ranking, write(tmp_path / "t.csv", TRUTH)).scores) == ["softmin"]


def test_every_column_score_writes_but_the_methods_is_not_a_score():
    from segaudit.results import RANKING_NOT_SCORES, ranking_columns

    columns = ranking_columns(("rsoftmin", "clc"), regions=True, volumes=True)
    assert [c for c in columns if c not in RANKING_NOT_SCORES] == ["score", "rsoftmin", "clc"]


def test_evaluate_counts_and_truth_rows_left_out(tmp_path):
    ranking = write(tmp_path / "r.csv", "image,m1,m2\na,0.1,0.9\nb,0.5,0.1\nd,0.2,0.5\n")
    result = evaluate(ranking, write(tmp_path / "t.csv", TRUTH))
    assert (result.images, result.errors, result.top) == (3, 2, 3)
    assert result.truth_only == ["c"]
    assert result.kinds == {"drop": 1, "swap": 1}
    assert result.scores["m1"]["auroc"] == 1.0 and result.scores["m2"]["auroc"] == 0.0
    assert result.best("auroc") == {"m1"}


@pytest.mark.parametrize("ranking, truth, message", [
    ("image,m\na,0.1\nz,0.2\n", TRUTH, "no truth row for 1 ranked image(s): z"),
    ("image,m\nb,0.1\nc,0.2\n", TRUTH, "no ranked image is an error"),
    ("image,m\na,0.1\nd,0.2\n", TRUTH, "every ranked image is an error"),
    ("image,m\na,0.1\nb,x\n", TRUTH, "column 'm' is not a number: 'x'"),
    ("image,m\na,0.1\na,0.2\n", TRUTH, "image 'a' is listed twice"),
    ("name,m\na,0.1\n", TRUTH, "has no 'image' column"),
    ("image,rank\na,1\n", TRUTH, "has no score column"),
    ("image,m\na,0.1\nb,0.2\n", "image,is_error\na,yes\nb,0\n", "is_error must be 0 or 1"),
    ("image,m\na,0.1\nb,0.2\n", "image,kind\na,drop\n", "no 'is_error' column"),
])
def test_bad_input(tmp_path, ranking, truth, message):
    with pytest.raises(InputError, match=re.escape(message)):
        evaluate(write(tmp_path / "r.csv", ranking), write(tmp_path / "t.csv", truth))
    result = invoke(tmp_path / "r.csv", tmp_path / "t.csv")
    assert result.exit_code == 2 and message.split(":")[0] in result.stderr


def test_missing_files_exit_2(tmp_path):
    result = invoke(tmp_path / "nope.csv", FIXTURES / "truth.csv")
    assert result.exit_code == 2 and "ranking not found" in result.stderr


# --- the command on the fixtures --------------------------------------------------------------


@pytest.fixture(scope="module")
def ranking(tmp_path_factory):
    path = tmp_path_factory.mktemp("ranking") / "ranking.csv"
    result = CliRunner().invoke(app, ["score", str(FIXTURES / "masks"), str(FIXTURES / "preds.zarr"), "-m", "all",
                                      "-o", str(path), "-q"])
    assert result.exit_code == 0, result.output
    return path


def test_csv_on_the_fixtures(ranking):
    result = ok(invoke(ranking, FIXTURES / "truth.csv", "--format", "csv"))
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["method"] for r in rows] == ["rsoftmin", "softmin", "cil", "ccp", "tccp", "iou", "clc", "coco"]
    assert list(rows[0]) == ["method", "auroc", "auprc", "lift_at_t", "lift_at_100", "images", "errors", "top"]
    # The 4 planted errors are ranks 1-4 for rsoftmin and softmin: perfect detection; 12 images,
    # prevalence 1/3.
    for row in rows[:2]:
        assert (row["auroc"], row["auprc"], row["lift_at_t"], row["lift_at_100"]) == ("1.0", "1.0", "3.0", "1.0")
        assert (row["images"], row["errors"], row["top"]) == ("12", "4", "12")
    # csv is the default when stdout is not a terminal.
    assert ok(invoke(ranking, FIXTURES / "truth.csv")).stdout == result.stdout


def test_json_jsonl_and_file_output(ranking, tmp_path):
    document = json.loads(ok(invoke(ranking, FIXTURES / "truth.csv", "--format", "json")).stdout)
    assert document["columns"][:3] == ["method", "auroc", "auprc"]
    assert document["rows"][0]["method"] == "rsoftmin" and document["rows"][0]["auroc"] == 1.0
    lines = ok(invoke(ranking, FIXTURES / "truth.csv", "--format", "jsonl")).stdout.splitlines()
    assert [json.loads(line)["method"] for line in lines] == [row["method"] for row in document["rows"]]
    result = ok(invoke(ranking, FIXTURES / "truth.csv", "--format", "json", "-o", tmp_path / "e.json"))
    assert result.stdout == "" and json.loads((tmp_path / "e.json").read_text()) == document


def test_rankings_written_as_json_or_jsonl_evaluate_the_same(ranking, tmp_path):
    expected = ok(invoke(ranking, FIXTURES / "truth.csv", "--format", "csv")).stdout
    for fmt in ("json", "jsonl"):
        path = tmp_path / f"ranking.{fmt}"
        ok(CliRunner().invoke(app, ["score", str(FIXTURES / "masks"), str(FIXTURES / "preds.zarr"), "-m", "all",
                                    "--format", fmt, "-o", str(path), "-q"]))
        assert ok(invoke(path, FIXTURES / "truth.csv", "--format", "csv")).stdout == expected


def test_table_highlights_the_best_per_metric(ranking, tmp_path):
    from rich.console import Console

    from segaudit.evaluation.evaluate import evaluation_table

    result = evaluate(ranking, FIXTURES / "truth.csv")
    console = Console(record=True, file=io.StringIO(), width=100, color_system="truecolor", force_terminal=True)
    console.print(evaluation_table(result))
    text = console.export_text(styles=False, clear=False)
    assert "12 images, 4 errors (prevalence 33.3%)" in text
    assert all(name in text for name in ("softmin", "coco", "AUROC", "AUPRC", "Lift@T", "Lift@100"))
    styled = console.export_text(styles=True)
    assert re.search(r"\x1b\[1;32m *1\.000", styled)  # a best value, bold green
    assert re.search(r"\x1b\[1;32m *0\.938", styled) is None  # coco is not the best
    ok(invoke(ranking, FIXTURES / "truth.csv", "--format", "table", "-o", tmp_path / "t.txt"))
    assert "softmin" in (tmp_path / "t.txt").read_text()


def test_note_for_truth_rows_without_ranking(tmp_path):
    ranking = write(tmp_path / "r.csv", "image,m\na,0.1\nb,0.5\n")
    result = ok(invoke(ranking, write(tmp_path / "t.csv", TRUTH), "--format", "csv"))
    assert "note: 2 truth row(s) have no ranking row and were left out (e.g. c)" in result.stderr
    assert "note" not in ok(invoke(ranking, tmp_path / "t.csv", "--format", "csv", "-q")).stderr
