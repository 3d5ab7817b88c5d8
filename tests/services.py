"""Real services that tests start on 127.0.0.1 themselves, and stop: an S3-compatible server
(moto in server mode) and a local Dask cluster of worker processes.

Each is a context manager; the test modules wrap them in module-scoped fixtures. Both skip
the calling module, with the reason, when the package they need is missing (``.ci/run``
installs them through the ``test`` extra, so in CI they always run).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import pytest

#: Settings that keep botocore to the test server: dummy keys, no instance metadata service, no ~/.aws.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
           "AWS_CONFIG_FILE": "/nonexistent/config"}
REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def s3_server(bucket: str, uploads: dict[str, Path]):
    """A moto S3 server on a free port of 127.0.0.1 holding ``uploads`` (key -> local file or
    directory) in ``bucket``; yields its endpoint URL. The AWS_* environment is the dummy one
    meanwhile (worker processes started inside inherit it)."""
    moto_server = pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (pip install 'segaudit[test]')")
    s3fs = pytest.importorskip("s3fs", reason="the S3 tests need s3fs (pip install 'segaudit[test]' or 'segaudit[s3]')")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            patch.delenv(name)
        for name, value in AWS_ENV.items():
            patch.setenv(name, value)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request in a failure's log
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
            fs.mkdir(bucket)
            for key, path in uploads.items():
                fs.put(str(path), f"{bucket}/{key}", recursive=Path(path).is_dir())
            yield endpoint
        finally:
            server.stop()


@contextlib.contextmanager
def dask_cluster(n_workers: int = 2):
    """A LocalCluster of ``n_workers`` processes (one thread each) importing this checkout's
    segaudit and the tests' helpers; yields a connected Client."""
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install '.[dask]')")
    import dask
    paths = [str(REPO), str(Path(__file__).parent)]
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(paths + ([old] if old else []))
    try:
        # The scheduler's and workers' scratch go in a folder removed afterwards, not in dask's
        # default /tmp/dask-scratch-space, which outlives the test run (the config covers the
        # scheduler, which takes no local_directory).
        with tempfile.TemporaryDirectory(prefix="segaudit-test-dask-") as scratch, \
                dask.config.set({"temporary-directory": scratch}), \
                distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                         dashboard_address=":0", local_directory=scratch) as cluster, \
                distributed.Client(cluster) as client:
            files = client.run(lambda: __import__("segaudit").__file__)
            assert all(Path(f).resolve().is_relative_to(REPO) for f in files.values()), files
            yield client
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
