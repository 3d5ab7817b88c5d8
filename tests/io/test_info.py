"""``segaudit info``: what a prediction store holds, from its metadata, on both layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from datasets import FIXTURES, random_probs, write_store
from segaudit import PredictionWriter
from segaudit.cli import app
from segaudit.io.info import format_info, inspect_store


def invoke(*args):
    return CliRunner().invoke(app, ["info", *map(str, args)])


def info_json(path) -> dict:
    result = invoke(path, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def lines(result) -> dict[str, str]:
    assert result.exit_code == 0, result.output
    return {line[:14].strip(): line[15:] for line in result.stdout.splitlines()}


def probs(seed, k=4, h=10, w=7, n=1):
    rng = np.random.default_rng(seed)
    return [random_probs(rng, k, h, w) for _ in range(n)]


def test_per_image_store_written_by_the_writer(tmp_path):
    with PredictionWriter(tmp_path / "p.zarr", classes=["road", "sky", "car", "tree"], codec="lz4") as writer:
        for n, p in enumerate(probs(0, n=3, h=64, w=48)):
            writer.write(f"city/{n}", p)
    described = info_json(tmp_path / "p.zarr")
    assert described | {"bytes_on_disk": None} == {
        "path": str(tmp_path / "p.zarr"), "zarr_format": 3, "layout": "per-image", "images": 3,
        "n_classes": 4, "classes": ["road", "sky", "car", "tree"], "axes": "K,H,W", "shape": [4, 64, 48],
        "shape_min": None, "shape_max": None, "dtype": "float16", "chunks": [4, 64, 48], "chunks_vary": False,
        "chunk_bytes": 4 * 64 * 48 * 2, "shards": None, "codec": "blosc(cname=lz4, clevel=5, shuffle=shuffle)",
        "bytes_on_disk": None, "bytes_stored": 3 * 4 * 64 * 48 * 2, "kind": "probabilities", "channels_last": False,
        "complete": True, "incomplete_reason": None, "writer": "segaudit 0.1.0 PredictionWriter",
        "readable": True, "problem": None, "folds_recorded": 0, "fold_images": {},
    }
    assert described["bytes_on_disk"] > 0
    text = lines(invoke(tmp_path / "p.zarr"))
    assert list(text) == ["store", "layout", "images", "classes", "shape", "dtype", "chunks", "codec",
                          "size on disk", "kind", "channels_last", "complete", "folds", "readable"]
    assert text["folds"] == "not recorded"
    assert text["layout"] == "per-image"
    assert text["images"] == "3"
    assert text["classes"] == "K=4: road, sky, car, tree"
    assert text["shape"] == "(4, 64, 48)  K,H,W"
    assert text["chunks"] == "(4, 64, 48) = 24.6 kB"
    assert text["complete"] == "yes (written by segaudit 0.1.0 PredictionWriter)"
    assert text["size on disk"].endswith(f"(uncompressed 73.7 kB, ratio {73728 / described['bytes_on_disk']:.2f})")


def test_stacked_fixture():
    text = lines(invoke(FIXTURES / "preds_stacked.zarr"))
    assert text["layout"] == "stacked"
    assert text["images"] == "12"
    assert text["classes"] == "K=5: unlabeled, sky, building, road, car"
    assert text["shape"] == "(5, 48, 64)  K,H,W"
    assert text["dtype"] == "uint8"
    assert text["chunks"] == "(1, 5, 48, 64) = 15.4 kB"
    assert text["codec"].startswith("zstd(")
    assert text["complete"] == "unknown (not written by segaudit)"
    assert text["readable"] == "yes"


def test_per_image_fixture():
    described = info_json(FIXTURES / "preds.zarr")
    assert (described["layout"], described["images"], described["n_classes"], described["dtype"]) == (
        "per-image", 12, 5, "float16")


def test_zarr_v2_stacked_store_with_big_endian_values(tmp_path):
    images = {f"img{n}": p.astype(">f4") for n, p in enumerate(probs(1, n=3))}
    write_store(tmp_path / "v2.zarr", images, layout="stacked", zarr_format=2, row_chunk=4)
    described = info_json(tmp_path / "v2.zarr")
    assert (described["zarr_format"], described["layout"], described["images"], described["dtype"]) == (
        2, "stacked", 3, "float32")
    assert described["chunks"] == [1, 4, 4, 7]
    assert described["readable"] is True


def test_varying_sizes_and_channels_last(tmp_path):
    images = {"a": probs(2, h=10, w=7)[0], "b": probs(3, h=12, w=5)[0], "c": probs(4, h=11, w=7)[0]}
    write_store(tmp_path / "p.zarr", images, channels_last=True, attrs={"channels_last": True})
    described = info_json(tmp_path / "p.zarr")
    assert described["shape"] is None
    assert (described["shape_min"], described["shape_max"]) == ([10, 5, 4], [12, 7, 4])
    assert (described["n_classes"], described["axes"], described["channels_last"]) == (4, "H,W,K", True)
    assert lines(invoke(tmp_path / "p.zarr"))["shape"] == "(10-12, 5-7, 4)  H,W,K, sizes vary"


def test_incomplete_store_is_described_and_says_why(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with PredictionWriter(tmp_path / "p.zarr") as writer:
            writer.write("a", probs(5)[0])
            raise ZeroDivisionError("division by zero")
    result = invoke(tmp_path / "p.zarr")
    text = lines(result)
    assert text["images"] == "1"
    assert text["complete"] == "NO: writing stopped after 1 image(s): ZeroDivisionError: division by zero"
    assert text["readable"].startswith("no: ") and "incomplete store" in text["readable"]
    described = info_json(tmp_path / "p.zarr")
    assert described["complete"] is False and described["readable"] is False
    assert described["incomplete_reason"] == "writing stopped after 1 image(s): ZeroDivisionError: division by zero"


def test_stacked_store_without_ids_is_described_as_unreadable(tmp_path):
    write_store(tmp_path / "s.zarr", {"a": probs(6)[0], "b": probs(7)[0]}, layout="stacked", image_ids=[])
    described = info_json(tmp_path / "s.zarr")
    assert (described["layout"], described["images"], described["readable"]) == ("stacked", 2, False)
    assert "image_ids" in described["problem"]


def test_mixed_dtypes_and_names_without_classes(tmp_path):
    write_store(tmp_path / "p.zarr", {"a": probs(8)[0].astype("float32"), "b": probs(9)[0].astype("float16")})
    described = info_json(tmp_path / "p.zarr")
    assert described["dtype"] == ["float16", "float32"]
    text = format_info(described)
    assert "mixed: float16, float32" in text and "K=4 (no class names)" in text


def test_an_empty_group(tmp_path):
    import zarr

    zarr.open_group(str(tmp_path / "e.zarr"), mode="w")
    described = inspect_store(tmp_path / "e.zarr")
    assert described["images"] == 0 and described["readable"] is False
    assert "no prediction arrays found" in described["problem"]
    assert "images         0" in format_info(described)


@pytest.mark.parametrize("make, fragment", [
    (lambda p: None, "prediction store not found"),
    (lambda p: (p.mkdir(), (p / "x.txt").write_text("x")), "not a zarr group"),
])
def test_not_a_store_exits_2(tmp_path, make, fragment):
    make(tmp_path / "x.zarr")
    result = invoke(tmp_path / "x.zarr")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and fragment in result.stderr


def test_corrupt_array_metadata_exits_2_in_one_line(tmp_path):
    with PredictionWriter(tmp_path / "p.zarr") as writer:
        writer.write("a", probs(10)[0])
    (tmp_path / "p.zarr" / "a" / "zarr.json").write_text("{ not json")
    result = invoke(tmp_path / "p.zarr")
    assert result.exit_code == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "p.zarr" in result.stderr
