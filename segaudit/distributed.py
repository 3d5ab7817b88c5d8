"""Scoring on a Dask cluster: the distributed twin of :func:`segaudit.engine.score_dataset`.

As stumpy pairs ``stump`` with ``stumped(client, ...)``, :func:`score_dataset_distributed`
takes a ``dask.distributed`` client and gives the same :class:`~segaudit.results.ScoreRun`,
byte for byte in every output, as the single-machine run.

- **Workers read their own images.** The dataset travels as a :class:`DatasetSpec` (its
  :class:`~segaudit.results.InputSpec`, small and picklable); a
  worker opens each of its partitions (runs of consecutive images) from it, restricted to
  the partition's images, once per run, and reads them straight from the masks and the
  store. Only per-image results and integer histograms come back.
- **The same code as one machine.** The first pass is :func:`~segaudit.engine.score_images`
  over a partition; each image's :class:`~segaudit.engine.ImagePiece` is merged on the
  client in dataset order by the same :class:`~segaudit.engine.FirstPass`, so
  floating-point sums (clc's class thresholds, the class-space check) add up in the
  same order. clc's counting, selecting and flagging passes are its own per-partition
  functions (:func:`segaudit.methods.clc.histogram_part`, ``flag_part``) mapped by
  :class:`DaskPartitions`; its driver runs on the client and merges integer histograms
  and candidates in dataset order.
- **Deterministic tasks.** A task is a pure function of the spec, the partition and
  the pass's parameters, so a worker lost mid-run is simply re-run by Dask elsewhere
  and the output does not change.

Dask is optional (``pip install 'segaudit[dask]'``); this module imports it only when
called.
"""

from __future__ import annotations

import logging
import math
import os
import copy
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .core.dataset import Dataset, open_dataset
from .core.partitions import collected
from .engine import FirstPass, calibration_plan, check_settings, finish_run, score_images
from .errors import InputError, one_line
from .methods import Settings, resolve
from .results import ClcRecord, InputSpec, ScoreRun

#: A partition's stored prediction bytes, by default: a few seconds of one core's work.
PARTITION_BYTES = 1 << 30
#: ... and at least this many partitions per worker thread, so that the work spreads.
PARTITIONS_PER_THREAD = 4

INSTALL_HINT = "install segaudit[dask] (pip install 'segaudit[dask]')"


#: The temporary directory of a local cluster's scratch files: this + the process id + ``-`` ...
SCRATCH_PREFIX = "segaudit-dask-"


def require_dask():
    """The ``distributed`` module; InputError (one line) when Dask is not installed."""
    try:
        import distributed
    except ImportError:
        raise InputError(f"scoring on a Dask cluster needs dask.distributed: {INSTALL_HINT}") from None
    return distributed


def _local_path(value):
    """An absolute path for a local file (workers may start elsewhere); URLs unchanged."""
    if value is None or "://" in str(value):
        return None if value is None else str(value)
    return str(Path(value).resolve())


@dataclass(frozen=True)
class DatasetSpec:
    """How to open a dataset anywhere: its :class:`~segaudit.results.InputSpec`, shipped to
    every worker, which opens the dataset from it (:meth:`open`). Make one with
    :func:`dataset_spec`, which makes local paths absolute."""

    inputs: InputSpec

    @property
    def masks(self) -> str:
        return self.inputs.masks

    @property
    def predictions(self) -> str:
        return self.inputs.predictions

    def open(self) -> Dataset:
        """The dataset, opened and checked as :func:`~segaudit.core.dataset.open_dataset` does."""
        return open_dataset(self.inputs)


def dataset_spec(masks: str | Path | InputSpec, predictions: str | Path | None = None, **inputs) -> DatasetSpec:
    """A :class:`DatasetSpec` of an InputSpec (or of ``InputSpec(masks, predictions, **inputs)``).

    Local paths (masks, predictions, palette, a label-map file) are made absolute, so
    that workers started in another directory open the same files; URLs are unchanged.
    """
    spec = masks if isinstance(masks, InputSpec) else InputSpec(masks, predictions, **inputs)
    label_map = spec.label_map
    if isinstance(label_map, str) and Path(label_map).is_file():
        label_map = _local_path(label_map)
    return DatasetSpec(replace(spec, masks=_local_path(spec.masks), predictions=_local_path(spec.predictions),
                               palette=_local_path(spec.palette), label_map=label_map))


# --- on the workers ------------------------------------------------------------------

_opened: dict[tuple, Dataset] = {}  # (run token, first image, images) -> that partition's dataset, a few
_opened_lock = threading.Lock()
_KEEP_PARTITIONS = 16


def _partition(spec: DatasetSpec, token: str, start: int, images: tuple[tuple[str, tuple[int, int]], ...]) -> Dataset:
    """Images ``start`` .. ``start + len(images)`` of the run's dataset, in this worker process.

    ``images``: the partition's (image id, size) as the client saw them. The worker opens
    the spec restricted to those ids (``only``), so that it lists the masks but reads the
    headers and array metadata of its own images only (a store on S3 is not walked whole
    by every worker), and checks that it sees the same images at the same sizes. Opened
    once per run and partition (the passes of a run reuse it).
    """
    key = (token, start, images)
    with _opened_lock:
        dataset = _opened.get(key)
    if dataset is not None:
        return dataset
    restricted = copy.copy(spec)  # (not dataclasses.replace: a subclass's own attributes stay)
    object.__setattr__(restricted, "inputs", replace(spec.inputs, only=tuple(image_id for image_id, _ in images)))
    dataset = restricted.open()
    seen = tuple((image_id, tuple(dataset.store.image_shape(image_id))) for _, image_id in dataset.pairs)
    if seen != images:
        raise InputError(f"a Dask worker sees another dataset than the client at {spec.masks} and "
                         f"{spec.predictions} (images {start}-{start + len(images) - 1} differ): the workers must "
                         "read the same files")
    with _opened_lock:
        _opened[key] = dataset
        while len(_opened) > _KEEP_PARTITIONS:
            _opened.pop(next(iter(_opened)))
    return dataset


def score_partition(spec: DatasetSpec, token: str, start: int, images: tuple, names: tuple[str, ...],
                    settings: Settings, factor: int, prefetch: int, threads: int, plan=None) -> list:
    """The first pass over one partition, on a worker: its images' pieces, in order.

    Parameters
    ----------
    spec, token : DatasetSpec, str
        The dataset and the run (each partition is opened once per run and worker process).
    start, images : int, tuple
        The partition: image ``start`` of the dataset and its images' (id, size).
    names, settings, factor, prefetch, threads
        The methods, their settings, the downsampling, the read-ahead and the threads
        that score the partition's images at once.
    plan : CalibrationPlan, optional
        With ``auto``: the planted copies (chosen by image id, so any partitioning
        plants the same ones).

    Returns
    -------
    list of ImagePiece
    """
    dataset = _partition(spec, token, start, images)
    scored = score_images(dataset, resolve(names), settings, factor, prefetch, threads=threads, plan=plan)
    return [piece for _, piece, _ in scored]


def map_partition(spec: DatasetSpec, token: str, start: int, images: tuple, function: Callable,
                  args: tuple, prefetch: int):
    """``function(partition, start, None, prefetch, done, *args)`` on a worker: a
    :meth:`~segaudit.core.partitions.Partitions.map` job over the store (there is no cell
    cache on a worker)."""
    return function(_partition(spec, token, start, images), start, None, prefetch, lambda index: None, *args)


# --- on the client -------------------------------------------------------------------


def partition_spans(dataset: Dataset, worker_threads: int, images: int | None = None) -> list[tuple[int, int]]:
    """Consecutive runs [start, stop) of the dataset's images, one task each.

    ``images``: images per partition. By default, about :data:`PARTITION_BYTES` of stored
    predictions each, but at least :data:`PARTITIONS_PER_THREAD` partitions per worker
    thread when there are enough images. The outputs do not depend on it.
    """
    n = len(dataset.pairs)
    if images is None:
        store = dataset.store
        itemsize = np.dtype(store.dtype).itemsize
        sizes = [math.prod(store.image_shape(image_id)) * store.n_classes * itemsize for _, image_id in dataset.pairs]
        by_bytes = max(1, int(PARTITION_BYTES // max(1.0, float(np.mean(sizes))))) if sizes else 1
        images = max(1, min(by_bytes, math.ceil(n / (PARTITIONS_PER_THREAD * max(1, worker_threads)))))
    elif isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 1:
        raise InputError(f"--partition-size must be a whole number >= 1, got {images}")
    # No image (an empty --only subset): one empty partition, so that every pass still has a result.
    return [(start, min(n, start + int(images))) for start in range(0, n, int(images))] or [(0, 0)]


class DaskPartitions:
    """The dataset's partitions on a Dask cluster (see :class:`~segaudit.core.partitions.Partitions`).

    Each :meth:`map` is one task per partition; the results are gathered in dataset order
    and progress is reported per completed partition.
    """

    def __init__(self, client, spec: DatasetSpec, token: str, dataset: Dataset, spans: list[tuple[int, int]],
                 prefetch: int = 4, progress=None):
        self.client, self.spec, self.token, self.spans, self.prefetch = client, spec, token, spans, prefetch
        # What each task is told of its images, (id, size), so that a worker can check it sees the same.
        self.images = [tuple((image_id, tuple(dataset.store.image_shape(image_id))) for _, image_id in dataset.pairs[a:b])
                       for a, b in spans]
        self.progress = progress or (lambda stage, done, total: None)
        self.n_images = len(dataset.pairs)
        self.count = len(spans)

    def _leaves(self, stage: str, function: Callable, args: list[tuple]) -> list:
        return [self.client.submit(function, self.spec, self.token, start, images, *part_args, key=_key(stage))
                for (start, _), images, part_args in zip(self.spans, self.images, args)]

    def submit(self, stage: str, function: Callable, args: list[tuple]) -> list:
        """``function(spec, token, start, images, *args[p])`` for every partition p, gathered in order."""
        return gather_in_order(self._leaves(stage, function, args), [b - a for a, b in self.spans], stage,
                               self.progress, self.n_images)

    def map(self, stage: str, function: Callable, args: list[tuple]) -> list:
        return self.submit(stage, map_partition, [(function, part_args, self.prefetch) for part_args in args])

    def each(self, stage: str, function: Callable, args: list[tuple], on_item: Callable) -> None:
        """Each partition's emitted items (:func:`~segaudit.core.partitions.collected` on the
        workers) to ``on_item``, in dataset order, as the partitions come back in order."""
        for items in self.map(stage, collected, [(function, part_args) for part_args in args]):
            for item in items:
                on_item(item)

    def map_sum(self, stage: str, function: Callable, args: list[tuple]):
        """As :meth:`map`, summed on the workers in a tree, so that one result reaches the client."""
        leaves = self._leaves(stage, map_partition, [(function, part_args, self.prefetch) for part_args in args])
        level = leaves
        while len(level) > 1:
            level = [self.client.submit(add_results, *level[n:n + 2], key=_key(stage + " sum"))
                     for n in range(0, len(level), 2)]
        try:
            gather_in_order(leaves, [b - a for a, b in self.spans], stage, self.progress, self.n_images,
                            fetch=False)
            with _connection_kept(stage):
                return level[0].result()
        finally:
            for future in level:
                future.cancel()


@contextmanager
def _connection_kept(stage: str) -> Iterator[None]:
    """A lost scheduler (its tasks cancelled with the reason ``scheduler-connection-lost``, or
    the connection closed) as a one-line InputError instead of Dask's traceback."""
    from concurrent.futures import CancelledError

    try:
        yield
    except CancelledError as exc:  # distributed's FutureCancelledError among them
        reason = getattr(exc, "reason", None) or "cancelled"
        raise InputError(f"{stage}: the Dask cluster cancelled the run's tasks ({reason}): the scheduler was lost "
                         "or shut down; nothing was written, run again") from None
    except (OSError, TimeoutError) as exc:  # CommClosedError is an OSError
        raise InputError(f"{stage}: lost the connection to the Dask scheduler ({one_line(exc, type(exc).__name__)}); "
                         "nothing was written, run again") from None


def add_results(*results: tuple) -> tuple:
    """The element-wise sum of partitions' results (tuples of integers or integer arrays)."""
    return tuple(sum(values) for values in zip(*results))


def _key(stage: str) -> str:
    """A unique task key naming the pass (the dashboard shows it)."""
    return f"segaudit-{stage.replace(' ', '-').replace(':', '')}-{uuid.uuid4().hex}"


def gather_in_order(futures: list, sizes: list[int], stage: str, progress, total: int, *, fetch: bool = True) -> list:
    """The futures' results in their order, reporting ``progress(stage, images done, total)``
    as each completes (with ``fetch`` False, only waiting: the results stay on the workers).
    On a failure, the first failing future in order raises (the later ones are cancelled).
    A future cancelled by the cluster (the scheduler lost, say) is a one-line InputError."""
    from distributed import as_completed

    position = {future.key: n for n, future in enumerate(futures)}
    results: list = [None] * len(futures)
    done = 0
    failed: int | None = None
    try:
        with _connection_kept(stage):
            for future in as_completed(futures):
                n = position[future.key]
                if future.status == "error":
                    failed = n if failed is None else min(failed, n)
                    for later in futures[n + 1:]:
                        later.cancel()
                    if all(f.done() for f in futures[:failed]):
                        break
                    continue
                if future.status == "cancelled":
                    if failed is None or n < failed:  # not one this function cancelled
                        future.result()  # raises the cluster's CancelledError, with its reason
                    continue
                if fetch:
                    results[n] = future.result()
                done += sizes[n]
                progress(stage, done, total)
                if failed is not None and all(f.done() for f in futures[:failed]):
                    break
        if failed is not None:
            first = min([n for n, f in enumerate(futures[:failed]) if f.status == "error"], default=failed)
            _raise_task_error(futures[first])
    finally:
        if fetch or failed is not None:
            for future in futures:
                future.cancel()
    return results


def dask_partitions(client, spec: DatasetSpec, dataset: Dataset, partition_size: int | None = None, *,
                    prefetch: int = 4, progress=None) -> DaskPartitions:
    """The partitions of ``dataset`` (``spec`` opened on the client) on ``client``'s cluster,
    for one run: the workers open the dataset once each (see :func:`partition_spans`)."""
    worker_threads = sum(client.nthreads().values()) or 1
    spans = partition_spans(dataset, worker_threads, partition_size)
    return DaskPartitions(client, spec, uuid.uuid4().hex, dataset, spans, prefetch=prefetch,
                          progress=progress)


def _raise_task_error(future) -> None:
    """Raise a failed task's exception: an InputError as it is; a task Dask gave up on (its
    workers died) or workers without segaudit as a one-line InputError saying so."""
    from distributed import KilledWorker

    try:
        future.result()
    except InputError:
        raise
    except KilledWorker as exc:
        raise InputError(f"Dask gave up on a task whose workers kept dying ({one_line(exc)}): see the workers' "
                         "logs (out of memory?)") from None
    except ModuleNotFoundError as exc:
        if "segaudit" not in str(exc):
            raise
        raise InputError(f"the Dask workers cannot import segaudit ({one_line(exc)}): install it on every worker, "
                         "the same version as here") from None


def score_dataset_distributed(client, spec: DatasetSpec, methods: Iterable[str], *, temperature: float = 0.1,
                              pixel_threshold: float = 0.5, downsample: int = 4, prefetch: int = 4,
                              on_progress: Callable[[str, int, int], None] | None = None,
                              baseline: ClcRecord | dict | None = None, threads: int | None = None,
                              partition_size: int | None = None, dataset: Dataset | None = None,
                              parts: DaskPartitions | None = None, calibration_seed: int = 0,
                              unlabeled: int | None = None) -> ScoreRun:
    """Score a dataset on a Dask cluster: the same run as :func:`segaudit.engine.score_dataset`.

    Parameters
    ----------
    client : distributed.Client
        A client of the cluster whose workers score the partitions. The workers must be
        able to import segaudit and to read the dataset at the spec's paths or URLs.
    spec : DatasetSpec
        The dataset (:func:`dataset_spec`), opened on the client and on every worker.
    methods, temperature, pixel_threshold, downsample, baseline, calibration_seed, unlabeled
        As for :func:`segaudit.score`.
    prefetch : int
        Reads in flight ahead of the kernel, within each task.
    on_progress : callable, optional
        ``on_progress(stage, done, total)`` after each completed partition of each pass.
    threads : int, optional
        Threads scoring a partition's images at once within each task (default 1: the
        worker's own threads run several tasks at once).
    partition_size : int, optional
        Images per task (default: see :func:`partition_spans`). No output depends on it.
    dataset : Dataset, optional
        ``spec`` already opened on the client (else it is opened here).
    parts : DaskPartitions, optional
        The partitions to score (:func:`dask_partitions` of ``spec`` and ``dataset``), for a
        caller that makes further passes over them (flag maps, say).

    Returns
    -------
    ScoreRun
        Byte-identical, through every writer, to the single-machine run's.

    Raises
    ------
    InputError
        For any bad input (on the client or raised on a worker), before any result.
    """
    names, chosen, settings, downsample, baseline, threads = check_settings(
        methods, temperature, pixel_threshold, downsample, baseline, 1 if threads is None else threads)
    progress = on_progress or (lambda stage, done, total: None)
    dataset = spec.open() if dataset is None else dataset
    plan = calibration_plan(names, dataset, calibration_seed, unlabeled)
    if parts is None:
        parts = dask_partitions(client, spec, dataset, partition_size, prefetch=prefetch, progress=progress)
    pieces = parts.submit("scoring", score_partition,
                          [(names, settings, downsample, prefetch, threads, plan)] * parts.count)
    first = FirstPass(dataset.store.n_classes, chosen)
    for part in pieces:
        for piece in part:
            first.add(piece)
    return finish_run(dataset, names, settings, downsample, first, parts, baseline, plan)


def max_local_workers() -> int:
    """The most local worker processes ``--dask-workers`` may start: 4 per core this process may
    use (each is a process with its own files; far more would exhaust the machine, not speed it up)."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 4 * max(cores, 1)


def _probe_scheduler(distributed, scheduler: str, timeout: float) -> None:
    """Connect to ``scheduler`` and read its handshake within ``timeout`` seconds, or raise
    TimeoutError/OSError. distributed's own connect timeout does not cover the handshake, so
    a port that accepts and never answers would hang ``Client`` forever."""
    import asyncio

    async def probe():
        args = distributed.Security().get_connection_args("client")
        comm = await asyncio.wait_for(distributed.comm.connect(scheduler, timeout=timeout, **args), timeout)
        await comm.close()

    asyncio.run(probe())


@contextmanager
def connect(scheduler: str | None = None, workers: int | None = None, *, timeout: float = 10) -> Iterator:
    """A ``distributed.Client``: of the scheduler at ``scheduler``, or of a local cluster of
    ``workers`` processes (one thread each), closed on leaving.

    ``timeout``: seconds to wait for the scheduler's connection and first answer. A local
    cluster's workers keep their scratch files in a temporary directory removed on leaving.

    Raises
    ------
    InputError
        One line: Dask is not installed, the scheduler cannot be reached or does not answer
        within ``timeout``, or the number of workers is not a whole number from 1 to
        :func:`max_local_workers`.
    """
    if (scheduler is None) == (workers is None):
        raise InputError("give a Dask scheduler address or a number of local workers, not both")
    distributed = require_dask()
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InputError(f"--dask-workers must be a whole number >= 1, got {workers}")
        if workers > max_local_workers():
            raise InputError(f"--dask-workers {workers}: at most {max_local_workers()} local worker processes on "
                             "this machine (4 per core); for more, start a cluster and give --scheduler")
        import shutil
        import tempfile

        from .io.files import remove_orphans, temporary_directory

        remove_orphans(tempfile.gettempdir(), SCRATCH_PREFIX)  # those of runs killed outright
        scratch = temporary_directory(tempfile.gettempdir(), f"{SCRATCH_PREFIX}{os.getpid()}-",
                                      renamed_into_place=False)
        import dask

        try:
            # silence_logs: the workers' log lines would bury the command's own output (a task
            # that fails logs "Compute Failed" and its traceback at ERROR; the error itself comes
            # back to this process, which says it in one line). The
            # scheduler's and workers' dask-scratch-space go into ``scratch`` (the config covers
            # the scheduler, which takes no local_directory).
            with dask.config.set({"temporary-directory": str(scratch)}), distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                          dashboard_address=":0", silence_logs=logging.CRITICAL,
                                          local_directory=str(scratch)) as cluster, \
                    distributed.Client(cluster) as client:
                yield client
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    try:
        _probe_scheduler(distributed, scheduler, timeout)
        client = distributed.Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        said = one_line(exc, type(exc).__name__)
        if isinstance(exc, TimeoutError) and not str(exc):
            said = f"no answer within {timeout:g} s (--timeout)"
        raise InputError(f"cannot connect to the Dask scheduler at {scheduler}: {said}") from None
    from concurrent.futures import CancelledError

    with client:
        try:
            yield client
        except (CancelledError, OSError, TimeoutError) as exc:
            if client.status == "running":  # not the connection: the error is the run's own
                raise
            raise InputError(f"lost the connection to the Dask scheduler at {scheduler} "
                             f"({one_line(exc, type(exc).__name__)}); nothing was written, run again") from None
