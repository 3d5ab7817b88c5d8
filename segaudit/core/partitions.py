"""A dataset's passes as jobs over partitions (runs of consecutive images), here or on Dask.

Every pass after the first one (clc's counting and flagging, flag maps, regions on a
cluster) is written once as a job over one partition; :class:`LocalPartitions` runs it
over the whole dataset in this process (over the cell cache, when there is one), and
:class:`segaudit.distributed.DaskPartitions` runs it as one task per partition on Dask
workers. Whoever merges the jobs' results sees the same either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Partitions(Protocol):
    """The dataset as consecutive runs of images, each pass over it one job per partition.

    :class:`LocalPartitions` is the whole dataset in this process (one partition, the cell
    cache when there is one); :mod:`segaudit.distributed` maps the same functions over
    partitions on Dask workers, each reading its images from the store. What a
    dataset-wide method merges from the partitions' results is the same either way.
    """

    n_images: int
    count: int  # partitions

    def map(self, stage: str, function: Callable, args: list[tuple]) -> list:
        """``function(dataset, first, cache, prefetch, done, *args[p])`` for each partition p,
        in dataset order; the results, in that order.

        ``dataset`` holds the partition's images (image n of the dataset is image
        n - first of it); ``cache`` is the cell cache of the whole dataset or None (then
        the cells come from the store); ``done(n)`` reports that image n (of the whole
        dataset) is through, for progress under ``stage``.
        """

    def map_sum(self, stage: str, function: Callable, args: list[tuple]):
        """As :meth:`map` for a ``function`` returning a tuple of integers or integer arrays:
        their element-wise sum over the partitions (in any order: integer sums are exact)."""

    def each(self, stage: str, function: Callable, args: list[tuple], on_item: Callable) -> None:
        """``function(dataset, first, cache, prefetch, done, emit, *args[p])`` for each
        partition p, which calls ``emit(item)`` per item (per image, say): ``on_item(item)``
        for every item, in dataset order. Here they stream as they come; from Dask workers,
        a partition's items arrive together (:func:`collected`)."""


class LocalPartitions:
    """The whole dataset as one partition, in this process (see :class:`Partitions`)."""

    count = 1

    def __init__(self, dataset, cache=None, *, prefetch: int = 4, progress=None):
        self.dataset, self.cache, self.prefetch = dataset, cache, prefetch
        self.progress = progress or (lambda stage, done, total: None)
        self.n_images = len(dataset.pairs)

    def map(self, stage: str, function: Callable, args: list[tuple]) -> list:
        (part_args,) = args

        def done(index):
            self.progress(stage, index + 1, self.n_images)

        return [function(self.dataset, 0, self.cache, self.prefetch, done, *part_args)]

    def map_sum(self, stage: str, function: Callable, args: list[tuple]):
        (result,) = self.map(stage, function, args)
        return result

    def each(self, stage: str, function: Callable, args: list[tuple], on_item: Callable) -> None:
        (part_args,) = args
        self.map(stage, function, [(on_item, *part_args)])


def collected(dataset, first: int, cache, prefetch: int, done, function: Callable, args: tuple) -> list:
    """A :meth:`Partitions.each` job run as a :meth:`Partitions.map` job: the items it emits, as a list."""
    items: list = []
    function(dataset, first, cache, prefetch, done, items.append, *args)
    return items
