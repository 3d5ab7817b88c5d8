"""``segaudit pack`` and ``segaudit pack-masks``: numpy files in, segaudit's inputs out.

The round trips the issue asks for: a directory of .npy files packed and scored equals
scoring the arrays in memory; a cleanlab-style (N, K, H, W) .npy packed as float32 and
scored equals cleanlab's own softmin to 1e-9.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer.main
import zarr
from typer.testing import CliRunner

from datasets import quantise, random_labels, random_probs, read_csv, write_masks
from segaudit.api import score_arrays
from segaudit.cli import app
from segaudit.errors import InputError
from segaudit.io.masks import find_masks, read_mask
from segaudit.methods import PER_IMAGE_METHODS as METHODS
from segaudit.io.pack import pack, pack_masks
from segaudit.io.predictions import open_predictions
from segaudit.api import score

K = 4
IDS = ["city/a", "city/b", "other/c"]


def invoke(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def assert_input_error(result, directory: Path, *fragments, before: list[str] | None = None):
    """Exit 2, one 'error:' line with the fragments, and ``directory`` as it was (default: empty)."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])
    assert sorted(os.listdir(directory)) == sorted(before or []), "output or temporaries left behind"


@pytest.fixture
def data(tmp_path):
    """Per-image float32 .npy files (K, H, W) for three ids, their labels as PNG masks."""
    rng = np.random.default_rng(0)
    probs = {i: random_probs(rng, K, 10, 7).astype(np.float32) for i in IDS}
    labels = {i: random_labels(rng, K, 10, 7) for i in IDS}
    source = tmp_path / "npy"
    for image_id, p in probs.items():
        (source / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(source / f"{image_id}.npy", p)
    write_masks(tmp_path / "masks", labels)
    out = tmp_path / "out"
    out.mkdir()
    return type("Data", (), dict(source=source, masks=tmp_path / "masks", probs=probs, labels=labels, out=out,
                                 root=tmp_path))


def in_memory(labels: dict, probs: dict, dtype: str):
    stored = np.stack([quantise(probs[i].astype(np.float64), dtype) if dtype == "uint8" else probs[i].astype(dtype)
                       for i in IDS])
    results, _ = score_arrays(np.stack([labels[i] for i in IDS]), stored, methods=METHODS,
                              ignore_index=(255,), image_ids=IDS)
    return {r.image_id: r for r in results}


# --- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32", "uint8"])
def test_npy_directory_round_trip_equals_in_memory_scores(data, dtype):
    store = data.out / "p.zarr"
    result = ok(invoke("pack", data.source, "-o", store, "--dtype", dtype, "--classes", "w,x,y,z"))
    assert f"wrote {store} (3 images, K=4, {dtype}, codec none, " in result.stderr
    run = score(data.masks, store, methods=METHODS)
    assert {r.image_id: r for r in run.results} == in_memory(data.labels, data.probs, dtype)
    opened = open_predictions(store)
    assert (opened.layout, opened.classes, opened.dtype, opened.logits) == ("per-image", ["w", "x", "y", "z"], dtype, False)
    assert sorted(os.listdir(data.out)) == ["p.zarr"]  # no temporaries left


def test_cleanlab_style_npy_round_trip_equals_cleanlab(tmp_path):
    cleanlab_rank = pytest.importorskip("cleanlab.segmentation.rank")
    rng = np.random.default_rng(1)
    n, k, h, w = 5, 3, 16, 20
    raw = rng.gamma(0.3, size=(n, k, h, w))
    pred_probs = (raw / raw.sum(axis=1, keepdims=True)).astype(np.float32)
    labels = rng.integers(0, k, size=(n, h, w))
    np.save(tmp_path / "pred_probs.npy", pred_probs)
    np.save(tmp_path / "labels.npy", labels)

    ok(invoke("pack-masks", tmp_path / "labels.npy", "-o", tmp_path / "masks"))
    ok(invoke("pack", tmp_path / "pred_probs.npy", "--masks", tmp_path / "masks", "--dtype", "float32",
              "-o", tmp_path / "preds.zarr"))
    ok(invoke("score", tmp_path / "masks", tmp_path / "preds.zarr", "-m", "softmin", "-o", tmp_path / "ranking.csv"))

    theirs, _ = cleanlab_rank.get_label_quality_scores(labels, pred_probs, method="softmin", verbose=False)
    ours = {row["image"]: float(row["softmin"]) for row in read_csv((tmp_path / "ranking.csv").read_text())}
    assert sorted(ours) == ["0", "1", "2", "3", "4"]
    np.testing.assert_allclose([ours[str(i)] for i in range(n)], theirs, rtol=0, atol=1e-9)


def test_stacked_npy_is_memory_mapped(tmp_path, monkeypatch):
    probs = np.stack([random_probs(np.random.default_rng(2), K, 6, 5) for _ in range(3)]).astype(np.float32)
    np.save(tmp_path / "probs.npy", probs)
    (tmp_path / "ids.txt").write_text("x\n\n  y  \nz\n")
    calls = []
    original = np.load

    def spy(path, *args, **kwargs):
        calls.append((Path(path).name, kwargs.get("mmap_mode")))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    pack(tmp_path / "probs.npy", tmp_path / "p.zarr", ids=tmp_path / "ids.txt", dtype="float32")
    assert calls == [("probs.npy", "r")]
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    for n, image_id in enumerate("xyz"):
        np.testing.assert_array_equal(group[image_id][...], probs[n])


def test_npz_files_and_channels_last(tmp_path):
    rng = np.random.default_rng(3)
    a, b = (random_probs(rng, K, 6, 5) for _ in range(2))
    source = tmp_path / "src"
    source.mkdir()
    np.savez(source / "a.npz", np.moveaxis(a, 0, -1))                        # the single array
    np.savez_compressed(source / "b.npz", probs=np.moveaxis(b, 0, -1), labels=np.zeros((6, 5)))  # the one named probs
    (source / "b.npz").rename(source / "b.NPZ")  # the extension's case does not matter
    (source / "notes.txt").write_text("ignored")
    (source / ".hidden.npy").write_bytes(b"ignored too")
    ok(invoke("pack", source, "-o", tmp_path / "p.zarr", "--channels-last", "--dtype", "float32"))
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")
    assert sorted(name for name, _ in group.arrays()) == ["a", "b"]
    np.testing.assert_array_equal(group["a"][...], a.astype(np.float32))  # stored (K, H, W)
    np.testing.assert_array_equal(group["b"][...], b.astype(np.float32))
    assert group.attrs["channels_last"] is False


def test_logits_and_classes_file(tmp_path):
    logits = np.random.default_rng(4).normal(0, 3, size=(2, K, 6, 5)).astype(np.float32)
    np.save(tmp_path / "logits.npy", logits)
    (tmp_path / "ids.txt").write_text("a\nb\n")
    (tmp_path / "classes.txt").write_text("road\nsky\ncar\ntree\n")
    ok(invoke("pack", tmp_path / "logits.npy", "--ids", tmp_path / "ids.txt", "--logits",
              "--classes", tmp_path / "classes.txt", "-o", tmp_path / "p.zarr", "-q"))
    store = open_predictions(tmp_path / "p.zarr")
    assert store.logits and store.classes == ["road", "sky", "car", "tree"]


def test_overwrite_replaces_a_store(data):
    store = data.out / "p.zarr"
    ok(invoke("pack", data.source, "-o", store, "-q"))
    (data.source / "other" / "c.npy").unlink()
    ok(invoke("pack", data.source, "-o", store, "--overwrite", "-q"))
    assert open_predictions(store).image_ids == ["city/a", "city/b"]
    assert sorted(os.listdir(data.out)) == ["p.zarr"]


def test_codecs(data):
    for codec in ("lz4", "zstd"):
        ok(invoke("pack", data.source, "-o", data.out / f"{codec}.zarr", "--codec", codec, "-q"))
        run = score(data.masks, data.out / f"{codec}.zarr", methods=METHODS)
        assert {r.image_id: r for r in run.results} == in_memory(data.labels, data.probs, "float16")


def test_quiet_prints_nothing(data):
    result = ok(invoke("pack", data.source, "-o", data.out / "p.zarr", "-q"))
    assert result.output == ""


def test_progress_reports_every_image(data):
    seen = []
    pack(data.source, data.out / "p.zarr", on_image=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_an_interrupted_pack_leaves_nothing(data):
    def interrupt(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pack(data.source, data.out / "p.zarr", on_image=interrupt)
    assert os.listdir(data.out) == []


# --- pack: bad input -------------------------------------------------------------------


def _nan_in_second(d):
    p = d.probs["city/b"].copy()
    p[1, 2, 3] = np.nan
    np.save(d.source / "city" / "b.npy", p)
    return [d.source], [d.source / "city" / "b.npy", "non-finite value nan at row 2, column 3 (class 1)"]


def _not_summing(d):
    np.save(d.source / "other" / "c.npy", d.probs["other/c"] * 1.1)
    return [d.source], [d.source / "other" / "c.npy", "summing to", "--logits"]


def _k_mismatch(d):
    np.save(d.source / "city" / "b.npy", np.full((5, 10, 7), 0.2, np.float32))
    return [d.source], [d.source / "city" / "b.npy", "5 classes", "K=4"]


def _batch_axis(d):
    np.save(d.source / "city" / "b.npy", d.probs["city/b"][None])
    return [d.source], [d.source / "city" / "b.npy", "expected a (K, H, W) array, got shape (1, 4, 10, 7)",
                        "save probs[0]"]


def _garbage_npy(d):
    (d.source / "city" / "b.npy").write_bytes(b"not numpy")
    return [d.source], ["cannot read", d.source / "city" / "b.npy", "not a .npy file"]


def _ambiguous_npz(d):
    np.savez(d.source / "city" / "z.npz", x=d.probs["city/a"], y=d.probs["city/a"])
    return [d.source], [d.source / "city" / "z.npz", "holds x, y", "name it 'probs'"]


def _two_files_one_id(d):
    np.savez(d.source / "city" / "a.npz", d.probs["city/a"])
    return [d.source], ["two files map to image id 'city/a'"]


def _empty_directory(d):
    (d.root / "empty").mkdir()
    return [d.root / "empty"], ["no .npy or .npz files found in", d.root / "empty"]


def _missing_source(d):
    return [d.root / "nope"], ["source not found", d.root / "nope"]


def _other_file(d):
    (d.root / "probs.pt").write_bytes(b"x")
    return [d.root / "probs.pt"], ["SOURCE must be a directory of .npy/.npz files or one (N, K, H, W) .npy"]


def _stack(d, ids_text=None):
    np.save(d.root / "stack.npy", np.stack([d.probs[i] for i in IDS]))
    if ids_text is not None:
        (d.root / "ids.txt").write_text(ids_text)
    return d.root / "stack.npy"


def _stack_without_ids(d):
    return [_stack(d)], ["holds 3 images", "--ids FILE", "--masks DIR"]


def _stack_ids_count(d):
    return [_stack(d, "a\nb\n"), "--ids", d.root / "ids.txt"], ["--ids", "gives 2 ids but", "holds 3 images"]


def _stack_duplicate_ids(d):
    return [_stack(d, "a\nb\na\n"), "--ids", d.root / "ids.txt"], ["duplicate image id 'a'"]


def _stack_unsafe_id(d):
    return [_stack(d, "a\n../b\nc\n"), "--ids", d.root / "ids.txt"], ["image id '../b' cannot be stored"]


def _stack_id_is_folder(d):
    return [_stack(d, "a\na/b\nc\n"), "--ids", d.root / "ids.txt"], ["image id 'a' is also a folder"]


def _stack_masks_count(d):
    (d.masks / "other" / "c.png").unlink()
    return [_stack(d), "--masks", d.masks], ["--masks", "gives 2 ids but", "holds 3 images"]


def _stack_both(d):
    return [_stack(d, "a\nb\nc\n"), "--ids", d.root / "ids.txt", "--masks", d.masks], ["either --ids or --masks"]


def _stack_three_d(d):
    np.save(d.root / "one.npy", d.probs["city/a"])
    return [d.root / "one.npy", "--ids", d.root / "x"], ["expected an (N, K, H, W) array, got shape (4, 10, 7)"]


def _ids_for_directory(d):
    (d.root / "ids.txt").write_text("a\n")
    return [d.source, "--ids", d.root / "ids.txt"], ["--ids and --masks apply to a single (N, K, H, W) .npy"]


def _missing_ids_file(d):
    return [_stack(d), "--ids", d.root / "nope.txt"], ["ids file not found", d.root / "nope.txt"]


def _classes_mismatch(d):
    return [d.source, "--classes", "a,b"], ["4 classes", "the class names give K=2"]


def _uint8_logits(d):
    return [d.source, "--dtype", "uint8", "--logits"], ["logits cannot be stored as uint8"]


PACK_ERRORS = {
    "NaN in the second image": _nan_in_second,
    "not summing to 1": _not_summing,
    "K mismatch": _k_mismatch,
    "batch axis": _batch_axis,
    "garbage .npy": _garbage_npy,
    "ambiguous .npz": _ambiguous_npz,
    "two files one id": _two_files_one_id,
    "empty directory": _empty_directory,
    "missing source": _missing_source,
    "other file": _other_file,
    "stack without ids": _stack_without_ids,
    "stack ids count": _stack_ids_count,
    "stack duplicate ids": _stack_duplicate_ids,
    "stack unsafe id": _stack_unsafe_id,
    "stack id is a folder": _stack_id_is_folder,
    "stack masks count": _stack_masks_count,
    "stack ids and masks": _stack_both,
    "stack 3-D": _stack_three_d,
    "ids for a directory": _ids_for_directory,
    "missing ids file": _missing_ids_file,
    "classes mismatch": _classes_mismatch,
    "uint8 logits": _uint8_logits,
}


@pytest.mark.parametrize("case", PACK_ERRORS.values(), ids=PACK_ERRORS.keys())
def test_pack_bad_input(data, case):
    args, fragments = case(data)
    result = invoke("pack", *args, "-o", data.out / "p.zarr")
    assert_input_error(result, data.out, *fragments)


def test_existing_output_is_kept(data):
    ok(invoke("pack", data.source, "-o", data.out / "p.zarr", "-q"))
    before = {p: p.stat().st_mtime_ns for p in (data.out / "p.zarr").rglob("*")}
    result = invoke("pack", data.source, "-o", data.out / "p.zarr")
    assert_input_error(result, data.out, "p.zarr already exists (pass --overwrite", before=["p.zarr"])
    # A failed --overwrite keeps the old store too.
    np.save(data.source / "city" / "b.npy", data.probs["city/b"] * 2)
    result = invoke("pack", data.source, "-o", data.out / "p.zarr", "--overwrite")
    assert_input_error(result, data.out, "summing to", before=["p.zarr"])
    assert {p: p.stat().st_mtime_ns for p in (data.out / "p.zarr").rglob("*")} == before


def test_overwrite_refuses_what_is_not_a_store(data):
    (data.out / "p.zarr").mkdir()
    (data.out / "p.zarr" / "thesis.tex").write_text("keep me")
    result = invoke("pack", data.source, "-o", data.out / "p.zarr", "--overwrite")
    assert_input_error(result, data.out, "refusing to replace", "it is not a zarr store", before=["p.zarr"])
    assert (data.out / "p.zarr" / "thesis.tex").read_text() == "keep me"


def test_output_directory_missing(data):
    result = invoke("pack", data.source, "-o", data.out / "missing" / "p.zarr")
    assert_input_error(result, data.out, "output directory does not exist")


# --- pack-masks -------------------------------------------------------------------------


def test_pack_masks_writes_8_bit_masks_named_by_ids(tmp_path):
    labels = np.random.default_rng(5).integers(0, 20, size=(3, 6, 5))
    labels[0, 0, 0] = 255
    np.save(tmp_path / "labels.npy", labels)
    (tmp_path / "ids.txt").write_text("city/a\ncity/b\nc\n")
    result = ok(invoke("pack-masks", tmp_path / "labels.npy", "--ids", tmp_path / "ids.txt", "-o", tmp_path / "masks"))
    assert "wrote" in result.stderr and "3 masks, 8-bit L PNGs" in result.stderr
    masks = find_masks(tmp_path / "masks")
    assert [m.image_id for m in masks] == ["c", "city/a", "city/b"]
    from PIL import Image

    assert Image.open(tmp_path / "masks" / "city" / "a.png").mode == "L"
    by_id = {m.image_id: m for m in masks}
    for n, image_id in enumerate(["city/a", "city/b", "c"]):
        np.testing.assert_array_equal(read_mask(by_id[image_id]), labels[n])


def test_pack_masks_uses_16_bits_for_large_values_and_padded_default_ids(tmp_path):
    labels = np.random.default_rng(6).integers(0, 300, size=(12, 4, 3)).astype(np.uint16)
    labels[3, 1, 1] = 65535
    np.savez(tmp_path / "labels.npz", labels=labels, other=np.zeros(3))
    pack_masks(tmp_path / "labels.npz", tmp_path / "masks")
    masks = find_masks(tmp_path / "masks")
    assert [m.image_id for m in masks] == [f"{n:02d}" for n in range(12)]
    from PIL import Image

    assert Image.open(masks[0].path).mode == "I;16"
    for n, mask in enumerate(masks):
        np.testing.assert_array_equal(read_mask(mask), labels[n])


def test_pack_masks_overwrite_replaces_a_masks_directory_only(tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros((2, 3, 3), np.uint8))
    ok(invoke("pack-masks", tmp_path / "labels.npy", "-o", tmp_path / "masks", "-q"))
    ok(invoke("pack-masks", tmp_path / "labels.npy", "-o", tmp_path / "masks", "-q", "--overwrite"))
    (tmp_path / "masks" / "README.md").write_text("mine")
    result = invoke("pack-masks", tmp_path / "labels.npy", "-o", tmp_path / "masks", "--overwrite")
    assert result.exit_code == 2 and "not a directory of PNG masks" in result.stderr
    assert (tmp_path / "masks" / "README.md").exists()


def _labels(values, ids_text=None, name="labels.npy"):
    def build(root):
        np.save(root / name, np.asarray(values))
        if ids_text is not None:
            (root / "ids.txt").write_text(ids_text)
        return [root / name] + (["--ids", root / "ids.txt"] if ids_text is not None else [])
    return build


MASK_ERRORS = {
    "floats": (_labels(np.zeros((2, 3, 3))), ["labels must be integer class indices, not float64"]),
    "negative": (_labels(np.full((2, 3, 3), -1)), ["negative label value -1"]),
    "too large": (_labels(np.full((2, 3, 3), 70000)), ["label value 70000 does not fit in a 16-bit PNG"]),
    "2-D": (_labels(np.zeros((3, 3), int)), ["expected an (N, H, W) array", "(3, 3)"]),
    "ids count": (_labels(np.zeros((2, 3, 3), int), "a\n"), ["gives 1 ids but", "holds 2 label images"]),
    "unsafe id": (_labels(np.zeros((2, 3, 3), int), "a\n/etc/passwd\n"), ["'/etc/passwd' cannot be stored"]),
    "duplicate id": (_labels(np.zeros((2, 3, 3), int), "a\na\n"), ["duplicate image id 'a'"]),
    "missing file": (lambda root: [root / "nope.npy"], ["labels file not found"]),
}


@pytest.mark.parametrize("case", MASK_ERRORS.values(), ids=MASK_ERRORS.keys())
def test_pack_masks_bad_input(tmp_path, case):
    build, fragments = case
    args = build(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("pack-masks", *args, "-o", out / "masks")
    assert_input_error(result, out, *fragments)


def test_pack_masks_existing_output(tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros((2, 3, 3), np.uint8))
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    (out / "masks" / "x.png").write_bytes(b"old")
    result = invoke("pack-masks", tmp_path / "labels.npy", "-o", out / "masks")
    assert_input_error(result, out, "already exists", before=["masks"])
    assert (out / "masks" / "x.png").read_bytes() == b"old"


# --- help ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["pack", "pack-masks", "info"])
def test_every_option_is_in_the_help(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    params = typer.main.get_command(app).commands[command].params
    for option in (opt for param in params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("-")):
        assert option in result.output, option


@pytest.mark.parametrize("command", ["pack", "pack-masks", "info"])
def test_help_does_not_import_numpy_zarr_or_numba(command):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from segaudit.cli import app\n"
        f"result = CliRunner().invoke(app, [{command!r}, '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print('numba' in sys.modules, 'zarr' in sys.modules, 'segaudit.io.writer' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "False"]


def test_pack_api_refuses_bad_input_with_input_error(tmp_path):
    with pytest.raises(InputError, match="source not found"):
        pack(tmp_path / "nope", tmp_path / "p.zarr")


def test_sum_errors_hint_channels_last_and_uint8_values_cast_to_float(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=(2, 16, 24)).astype(np.float32)  # (N, H, W, K)
    np.save(tmp_path / "last.npy", probs)
    np.save(tmp_path / "raw.npy", np.rint(np.moveaxis(probs, -1, 1) * 255).astype(np.float32))
    (tmp_path / "ids.txt").write_text("a\nb\n")
    result = invoke("pack", tmp_path / "last.npy", "--ids", tmp_path / "ids.txt", "-o", tmp_path / "l.zarr")
    assert result.exit_code == 2 and "pass --channels-last" in result.stderr and "--logits" not in result.stderr
    result = invoke("pack", tmp_path / "raw.npy", "--ids", tmp_path / "ids.txt", "-o", tmp_path / "r.zarr")
    assert result.exit_code == 2 and "sum to about 255" in result.stderr and "read as value/255" in result.stderr
    assert "--logits" not in result.stderr
    # The same hints when scoring in memory (the kernel's check, not the writer's), in
    # the words of the Python API: its arguments, never the CLI's flags.
    with pytest.raises(InputError, match=r"\(H, W, K\): pass channels_last=True\)$") as caught:
        score_arrays(np.zeros((2, 24, 5), int), probs)
    assert "logits" not in str(caught.value) and "--" not in caught.value.cli_message
    with pytest.raises(InputError, match="read as value/255"):
        score_arrays(np.zeros((2, 16, 24), int), np.moveaxis(probs, -1, 1) * 255)
    # Values that are neither still point at logits.
    with pytest.raises(InputError, match=r"\(if pred_probs are logits, pass logits=True\)$") as caught:
        score_arrays(np.zeros((2, 16, 24), int), np.moveaxis(probs, -1, 1) * 3)
    assert "--" not in caught.value.cli_message
