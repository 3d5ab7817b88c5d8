"""A Dask cluster scoring masks and a store on S3 (issue 20): workers read their own images
straight from the object store, and every output is the local run's, byte for byte.

A moto S3 server on 127.0.0.1 (started first, so the worker processes inherit its dummy
credentials from the environment) and a local cluster of two worker processes serve the
module; the endpoint travels in the storage options, which no output may record.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datasets import make_dataset
from segaudit.api import score
from segaudit.cli import app
from segaudit.methods import METHODS
from segaudit.outputs.ranking import write_ranking
from services import dask_cluster, s3_server

BUCKET = "segaudit-cluster"
IDS = [f"img{n:02d}" for n in range(7)]
SIZES = {"img01": (37, 23), "img03": (8, 64), "img05": (1, 5)}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Seven images of mixed sizes, 4-row chunks (several blocks per image), float16."""
    root = tmp_path_factory.mktemp("mixed")
    return make_dataset(root, IDS, n_classes=5, size=(20, 30), sizes=SIZES, seed=5, dtype=np.float16, row_chunk=4)


@pytest.fixture(scope="module")
def s3(mixed):
    with s3_server(BUCKET, {"masks": mixed.masks, "preds.zarr": mixed.store}) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def client(s3):
    with dask_cluster(2) as client:
        yield client


def written(run, directory: Path) -> dict[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    write_ranking(run, directory / "ranking.csv")
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def without_paths(record: bytes) -> dict:
    data = json.loads(record)
    for key in ("ranking", "masks", "predictions"):
        data.pop(key)
    return data


def test_a_cluster_scores_a_store_on_s3_as_one_machine_scores_it_locally(client, s3, mixed, tmp_path):
    methods = tuple(METHODS)
    local = written(score(mixed.masks, mixed.store, methods=methods, threads=1), tmp_path / "local")
    options = {"endpoint_url": s3}
    for masks in (str(mixed.masks), f"s3://{BUCKET}/masks"):
        run = score(masks, f"s3://{BUCKET}/preds.zarr", methods=methods, client=client, partition_size=2,
                    storage_options=options)
        remote = written(run, tmp_path / ("local-masks" if "://" not in masks else "s3-masks"))
        assert remote["ranking.csv"] == local["ranking.csv"]
        assert without_paths(remote["ranking.run.json"]) == without_paths(local["ranking.run.json"])
        record = json.loads(remote["ranking.run.json"])
        assert record["predictions"] == f"s3://{BUCKET}/preds.zarr"
        assert s3 not in remote["ranking.run.json"].decode()  # the storage options are never recorded


def test_the_command_line_on_a_cluster_reading_s3(client, s3, mixed, tmp_path):
    local = tmp_path / "local.csv"
    result = CliRunner().invoke(app, ["score", str(mixed.masks), str(mixed.store), "--method", "all",
                                      "-o", str(local), "-q"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "cluster.csv"
    result = CliRunner().invoke(app, ["score", f"s3://{BUCKET}/masks", f"s3://{BUCKET}/preds.zarr", "--method", "all",
                                      "--scheduler", client.scheduler.address, "--storage-options",
                                      json.dumps({"endpoint_url": s3}), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == local.read_bytes()
