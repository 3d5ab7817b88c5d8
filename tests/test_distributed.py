"""Scoring on a Dask cluster (segaudit.distributed, score --scheduler / --dask-workers):
the same bytes as the single-machine run.

Every output (the ranking CSV, its run record, clc's state and flag maps) must be
byte-identical to the single-machine run's, for every method, on a dataset of mixed
image sizes, for any partitioning, when a worker dies mid-run, and through the command
line. One local cluster of two worker processes serves the module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datasets import FIXTURES, make_dataset
from segaudit.api import score
from segaudit.cli import app
from segaudit.distributed import DatasetSpec, dataset_spec, score_dataset_distributed
from segaudit.errors import InputError
from segaudit.methods import METHODS
from segaudit.methods import clc as clc_module
from segaudit.outputs.ranking import write_ranking
from services import dask_cluster

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install '.[dask]')")

IDS = [f"img{n:02d}" for n in range(9)]
SIZES = {"img00": (37, 23), "img02": (8, 64), "img03": (64, 8), "img05": (1, 5), "img07": (50, 41)}


@pytest.fixture(scope="module")
def client():
    """Two worker processes, one thread each, importing this checkout's segaudit and these tests."""
    with dask_cluster(2) as client:
        yield client


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Nine images of mixed sizes, 4-row chunks (so several blocks per image), float16."""
    root = tmp_path_factory.mktemp("mixed")
    return make_dataset(root, IDS, n_classes=5, size=(20, 30), sizes=SIZES, seed=3, dtype=np.float16, row_chunk=4)


def written(run, directory: Path) -> dict[str, bytes]:
    """The ranking CSV and run record of ``run``, as bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    write_ranking(run, directory / "ranking.csv")
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def assert_same_clc(got, want):
    assert (got is None) == (want is None)
    if want is not None:
        assert got.selection == want.selection and got.issues == want.issues and got.passes == want.passes
        assert got.thresholds.tobytes() == want.thresholds.tobytes()
        np.testing.assert_array_equal(got.flagged, want.flagged)


@pytest.mark.parametrize("method", [*METHODS, "all"])
def test_every_method_is_byte_identical_on_a_cluster(client, mixed, tmp_path, method):
    methods = tuple(METHODS) if method == "all" else (method,)
    local = score(mixed.masks, mixed.store, methods=methods, threads=1)
    want = written(local, tmp_path / "local")
    for size in (1, 4) if method == "all" else (2,):
        run = score(mixed.masks, mixed.store, methods=methods, client=client, partition_size=size)
        assert written(run, tmp_path / f"p{size}") == want
        assert_same_clc(run.clc, local.clc)
        assert run.class_pixels.tobytes() == local.class_pixels.tobytes()
    assert b"scheduler" not in want["ranking.run.json"] and b"partition" not in want["ranking.run.json"]


@pytest.mark.parametrize("seed", [0, 5])
def test_auto_is_byte_identical_on_a_cluster_for_any_partitioning(client, mixed, tmp_path, seed):
    """The planted copies depend on the seed and the image ids only, so the calibration and
    the ranking are the single machine's, byte for byte, however the images are split."""
    local = score(mixed.masks, mixed.store, methods=("auto", "rsoftmin"), threads=2, calibration_seed=seed)
    assert local.calibration is not None and local.calibration.seed == seed
    want = written(local, tmp_path / "local")
    for size in (1, 4):
        run = score(mixed.masks, mixed.store, methods=("auto", "rsoftmin"), client=client, partition_size=size,
                    calibration_seed=seed)
        assert written(run, tmp_path / f"p{size}") == want


def test_default_partitions_and_downsampling_one(client, mixed, tmp_path):
    local = score(mixed.masks, mixed.store, methods=("clc", "coco", "rsoftmin"), downsample=1)
    run = score(mixed.masks, mixed.store, methods=("clc", "coco", "rsoftmin"), downsample=1, client=client)
    assert written(run, tmp_path / "d") == written(local, tmp_path / "l")


def test_clc_with_a_baseline_is_byte_identical(client, mixed, tmp_path):
    full = score(mixed.masks, mixed.store, methods=("clc",))
    baseline = full.clc.record()
    only = IDS[2:7]
    local = score(mixed.masks, mixed.store, methods=("clc",), only=only, baseline=baseline)
    run = score(mixed.masks, mixed.store, methods=("clc",), only=only, baseline=baseline, client=client,
                partition_size=2)
    assert written(run, tmp_path / "d") == written(local, tmp_path / "l")
    assert_same_clc(run.clc, local.clc)


def test_clc_refinement_passes_and_ties_across_partitions(client, tmp_path, monkeypatch):
    # uint8 storage makes many equal s values; no candidate budget forces every
    # refinement pass down to one exact value, whose ties span several partitions.
    ds = make_dataset(tmp_path, ids=tuple(f"i{n}" for n in range(6)), n_classes=3, size=(8, 8),
                      flip_fraction=0.4, dtype="uint8", seed=7)
    monkeypatch.setattr(clc_module, "MAX_CANDIDATES", 0)  # read by the driver, on the client
    local = score(ds.masks, ds.store, methods=("clc", "softmin"), downsample=1)
    assert local.clc.passes == 5 and local.clc.selection.exact
    for size in (1, 2, 5):
        stages = set()
        run = score(ds.masks, ds.store, methods=("clc", "softmin"), downsample=1, client=client,
                    partition_size=size, on_progress=lambda stage, done, total: stages.add(stage))
        assert_same_clc(run.clc, local.clc)
        assert written(run, tmp_path / f"p{size}") == written(local, tmp_path / "l")
        if size < 5:  # 2 of the 3 tied cells are flagged: each partition is told how many of its own
            assert "clc: counting ties" in stages


def test_flag_maps_from_a_cluster_run_are_the_single_machine_ones(client, mixed):
    # The issue masks and the confusion summary are the flag maps of the run's clc selection.
    from segaudit.core.dataset import open_dataset

    local = score(mixed.masks, mixed.store, methods=("clc",))
    run = score(mixed.masks, mixed.store, methods=("clc",), client=client, partition_size=3)
    dataset = open_dataset(mixed.masks, mixed.store)

    def maps(state):
        found = {}
        clc_module.flag_pass(dataset, state.downsample, state.selection,
                             on_image=lambda i, image_id, flag_map, confusion: found.update(
                                 {image_id: (flag_map.tobytes(), confusion.tobytes())}))
        return found

    assert maps(run.clc) == maps(local.clc)
    assert any(run.clc.flagged)


_READS: dict[str, int] = {}  # marker -> row blocks read in this (worker) process by that run's datasets


class KillingSpec(DatasetSpec):
    """A spec whose datasets kill their worker process once, run-wide: the first to read a
    row block after ``after`` reads in that process (to test that Dask's retries change nothing)."""

    def open(self):
        dataset = super().open()
        marker, after = Path(self.marker), self.after
        read_rows = dataset.store.read_rows

        def reading(image_id, start, stop):
            _READS[str(marker)] = _READS.get(str(marker), 0) + 1
            if _READS[str(marker)] > after:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass
                else:
                    os._exit(1)  # this worker dies mid-pass; Dask re-runs its tasks elsewhere
            return read_rows(image_id, start, stop)

        dataset.store.read_rows = reading
        return dataset


def test_a_worker_killed_mid_run_changes_nothing(client, mixed, tmp_path):
    local = score(mixed.masks, mixed.store, methods=tuple(METHODS))
    marker = tmp_path / "killed"
    spec = dataset_spec(mixed.masks, mixed.store)
    killing = KillingSpec(spec.inputs)
    object.__setattr__(killing, "marker", str(marker))
    object.__setattr__(killing, "after", 6)  # past the scoring pass (about 5 blocks a worker): in clc's passes
    run = score_dataset_distributed(client, killing, tuple(METHODS), partition_size=1, dataset=spec.open())
    assert marker.exists(), "no worker was killed"
    assert written(run, tmp_path / "d") == written(local, tmp_path / "l")
    client.wait_for_workers(2, timeout=60)


class ShutdownSpec(DatasetSpec):
    """A spec whose first opening on a worker shuts the whole cluster down (its scheduler
    included): the client loses its scheduler mid-run."""

    def open(self):
        try:
            worker = distributed.get_worker()
        except ValueError:  # on the client
            worker = None
        if worker is not None:
            distributed.get_client().shutdown()
        return super().open()


def test_a_lost_scheduler_is_a_one_line_input_error(mixed):
    # A cluster of its own: this one is shut down. The client gives up reconnecting after 2 s.
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}), dask_cluster(1) as own:
        spec = dataset_spec(mixed.masks, mixed.store)
        lost = ShutdownSpec(spec.inputs)
        with pytest.raises(InputError, match="scheduler was lost") as raised:
            score_dataset_distributed(own, lost, ("rsoftmin",), partition_size=1, dataset=spec.open())
        assert "\n" not in str(raised.value)


def test_a_worker_that_sees_other_files_is_an_input_error(client, mixed, tmp_path):
    other = make_dataset(tmp_path / "other", IDS[:3], n_classes=5, size=(20, 30), seed=3, dtype=np.float16)
    spec = dataset_spec(other.masks, other.store)
    with pytest.raises(InputError, match="another dataset than the client"):
        score_dataset_distributed(client, spec, ("rsoftmin",), dataset=dataset_spec(mixed.masks, mixed.store).open())


def test_a_worker_that_sees_the_same_ids_at_other_sizes_is_an_input_error(client, mixed, tmp_path):
    # Workers read only their own partition's headers: the sizes the client saw travel with
    # the ids, so that a worker reading other files of the same names still notices.
    other = make_dataset(tmp_path / "other", IDS, n_classes=5, size=(20, 30), seed=3, dtype=np.float16)
    spec = dataset_spec(other.masks, other.store)
    with pytest.raises(InputError, match="another dataset than the client"):
        score_dataset_distributed(client, spec, ("rsoftmin",), partition_size=9,
                                  dataset=dataset_spec(mixed.masks, mixed.store).open())


def test_bad_input_on_a_worker_is_the_single_machine_error(client, tmp_path):
    ds = make_dataset(tmp_path, ids=("a", "b", "c"), n_classes=3, size=(6, 6), seed=1)
    import zarr

    array = zarr.open_group(str(ds.store), mode="r+")["b"]
    array[:, 2, 3] = np.nan
    with pytest.raises(InputError) as local:
        score(ds.masks, ds.store, methods=("softmin",))
    with pytest.raises(InputError) as remote:
        score(ds.masks, ds.store, methods=("softmin",), client=client, partition_size=1)
    assert str(remote.value) == str(local.value)
    # The CLI's wording (--logits, not logits=True) survives the trip from the worker.
    assert remote.value.cli_message == local.value.cli_message != str(local.value)
    assert remote.value.cli_message.endswith("(if the store holds logits, pass --logits)")


def outputs(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory``, by name."""
    files = {p.name: p.read_bytes() for p in sorted(directory.iterdir())}
    assert set(files) == {"r.csv", "r.run.json"}
    return files


def invoke(*args, code=0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def test_cli_dask_workers_end_to_end(client, mixed, tmp_path):
    (tmp_path / "local").mkdir(), (tmp_path / "dask").mkdir()
    invoke("score", mixed.masks, mixed.store, "--method", "all", "-q", "-o", tmp_path / "local" / "r.csv")
    invoke("score", mixed.masks, mixed.store, "--method", "all", "-q", "-o", tmp_path / "dask" / "r.csv",
           "--dask-workers", 2, "--partition-size", 2)
    assert outputs(tmp_path / "dask") == outputs(tmp_path / "local")


def test_cli_scheduler_address_end_to_end(client, mixed, tmp_path):
    (tmp_path / "local").mkdir(), (tmp_path / "dask").mkdir()
    invoke("score", mixed.masks, mixed.store, "-m", "clc,coco", "-q", "-o", tmp_path / "local" / "r.csv")
    invoke("score", mixed.masks, mixed.store, "-m", "clc,coco", "-q", "-o", tmp_path / "dask" / "r.csv",
           "--scheduler", client.scheduler.address, "--threads", 2)
    assert outputs(tmp_path / "dask") == outputs(tmp_path / "local")


def test_regions_on_a_cluster_are_the_single_machine_ones(client, mixed, tmp_path):
    # Each worker finds its images' regions; the counts and worst kinds, the run record's
    # regions section and the CSV are those of one machine, for any partitioning.
    local = tmp_path / "local"
    local.mkdir()
    invoke("score", mixed.masks, mixed.store, "-m", "rsoftmin,cil", "--regions", "-q", "-o", local / "r.csv")
    rows = (local / "r.csv").read_text().splitlines()
    assert rows[0].endswith("regions,worst_region") and any(not row.endswith(",0,") for row in rows[1:])
    for size in ("1", "4"):
        cluster = tmp_path / f"dask{size}"
        cluster.mkdir()
        invoke("score", mixed.masks, mixed.store, "-m", "rsoftmin,cil", "--regions", "-q", "-o", cluster / "r.csv",
               "--scheduler", client.scheduler.address, "--partition-size", size)
        assert outputs(cluster) == outputs(local)


def test_calibrated_region_scores_on_a_cluster_are_the_single_machine_ones(client, tmp_path):
    # The fixtures are large enough for the region calibration: the workers plant the
    # copies and find their regions, the client fits on every partition's samples in order.
    import json

    local = tmp_path / "local"
    local.mkdir()
    invoke("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "--regions", "-q", "-o", local / "r.csv")
    record = json.loads((local / "r.run.json").read_text())["regions"]
    assert record["calibration"]["calibrated"] and 0 < record["threshold"] < 1
    for size in ("1", "5"):
        cluster = tmp_path / f"dask{size}"
        cluster.mkdir()
        invoke("score", FIXTURES / "masks", FIXTURES / "preds.zarr", "--regions", "-q", "-o", cluster / "r.csv",
               "--scheduler", client.scheduler.address, "--partition-size", size)
        assert outputs(cluster) == outputs(local)


@pytest.mark.parametrize("options, message", [
    (["--scheduler", "tcp://127.0.0.1:9"], "cannot connect to the Dask scheduler at tcp://127.0.0.1:9"),
    (["--scheduler", "tcp://a:1", "--dask-workers", "2"], "--scheduler and --dask-workers exclude each other"),
    (["--dask-workers", "0"], "--dask-workers must be a whole number >= 1"),
    (["--partition-size", "3"], "--partition-size needs --scheduler or --dask-workers"),
    (["--dask-workers", "1", "--partition-size", "0"], "--partition-size must be a whole number >= 1"),
])
def test_cli_errors_are_one_line(mixed, tmp_path, options, message):
    result = invoke("score", mixed.masks, mixed.store, "-q", "-o", tmp_path / "r.csv", *options, code=2)
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r.csv").exists()


def test_without_dask_the_error_says_what_to_install(mixed, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    result = invoke("score", mixed.masks, mixed.store, "-q", "-o", tmp_path / "r.csv", "--dask-workers", 2, code=2)
    assert "install segaudit[dask]" in result.output and len(result.output.strip().splitlines()) == 1


def test_an_empty_subset_is_the_single_machine_run(client, mixed, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    local = score(mixed.masks, mixed.store, methods=("clc", "rsoftmin"), only=[])
    run = score(mixed.masks, mixed.store, methods=("clc", "rsoftmin"), only=[], client=client)
    assert not run.results
    assert written(run, tmp_path / "d") == written(local, tmp_path / "l")


@pytest.mark.parametrize("method", ["clc", "threshold"])
def test_issue_masks_and_summary_are_byte_identical_on_a_cluster(client, mixed, tmp_path, method):
    runs = {}
    for name, options in (("local", []), ("dask", ["--scheduler", client.scheduler.address, "--partition-size", 2])):
        out = tmp_path / name
        invoke("issues", mixed.masks, mixed.store, "--out", out / "issues", "--method", method, "--top", 9, "-q",
               *options)
        invoke("summary", mixed.masks, mixed.store, "--csv", out / "summary.csv", "-q", *options)
        runs[name] = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert len([name for name in runs["local"] if name.startswith("issues")]) == len(IDS)
    assert runs["dask"] == runs["local"]


def test_volumes_are_byte_identical_on_a_cluster(client, tmp_path):
    from segaudit.io.writer import PredictionWriter

    rng = np.random.default_rng(4)
    (tmp_path / "masks").mkdir()
    with PredictionWriter(tmp_path / "preds.zarr", dtype="float16", chunk_bytes=64) as writer:
        for n, (depth, height, width) in enumerate([(3, 5, 6), (1, 4, 4), (5, 2, 7), (2, 6, 3)]):
            raw = rng.gamma(0.5, size=(3, depth, height, width))
            probs = raw / raw.sum(axis=0)
            labels = probs.argmax(axis=0).astype(np.int32)
            flipped = rng.random(labels.shape) < 0.3
            labels[flipped] = rng.integers(0, 3, size=int(flipped.sum()))
            np.save(tmp_path / "masks" / f"case_{n}.npy", labels)
            writer.write_volume(f"case_{n}", probs)
    for factor in (1, 2):
        local = score(tmp_path / "masks", tmp_path / "preds.zarr", methods=tuple(METHODS), downsample=factor)
        run = score(tmp_path / "masks", tmp_path / "preds.zarr", methods=tuple(METHODS), downsample=factor,
                    client=client, partition_size=1)
        assert run.volumes and all(r.worst_slice is not None for r in run.results)
        assert written(run, tmp_path / f"d{factor}") == written(local, tmp_path / f"l{factor}")
        assert_same_clc(run.clc, local.clc)
