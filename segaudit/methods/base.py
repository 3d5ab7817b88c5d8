"""What a scoring method is: a name, what it needs from the engine's passes, how it finishes.

A method declares its needs; the engine decides what the fused kernel accumulates (one
pass over the pixels for every method asked for) and which further passes run:

- ``finish``: a score from one image's :class:`~segaudit.core.kernel.ImageStats`, the
  accumulators of the fused pass (counts, sums of s, class tallies, histograms);
- ``temperature``: the softmin temperature the kernel sums at for an image of n pixels
  (one exp per pixel; methods asking for the same temperature share the sums);
- ``tccp_histograms``: the per-class threshold histograms of thresholded CCP;
- ``cell_score``: a score from one image's cells on the downsampled grid;
- ``dataset_pass``: a state that sees every image's cells in the first pass, then makes
  passes of its own over the dataset (confident learning's counting and flagging).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..core.kernel import ImageStats
from ..core.partitions import Partitions
from ..results import ClcState


@dataclass(frozen=True)
class Settings:
    """The run's settings that methods read."""

    temperature: float = 0.1  # softmin's τ (rsoftmin scales it)
    pixel_threshold: float = 0.5  # s below it makes a pixel a low pixel


@dataclass
class DatasetOutcome:
    """What a dataset-wide method found, per image in dataset order."""

    scores: list[float]  # the method's score per image (NaN: no scored pixel)
    flagged: np.ndarray  # flagged full-resolution pixels per image (the results' flagged_pixels)
    cut: float  # cells with s at or below it are flagged (-inf: none), for auto's calibration
    keep: dict[str, ClcState] = field(default_factory=dict)  # ScoreRun fields the run keeps (clc=...)


class DatasetPass(Protocol):
    """A dataset-wide method's state across the passes of one run.

    The first pass hands each image's cells to :meth:`image_piece` (on any thread or
    machine, of an instance made for it) and its piece to :meth:`add_piece` in dataset order, so that what is merged,
    floating-point sums included, is the same however the images were scored.
    """

    def image_piece(self, cells: dict[str, np.ndarray]) -> object:
        """What the method keeps of one image's cell grids (label, pred, s, ...): small, picklable."""

    def add_piece(self, piece: object) -> None:
        """One image's :meth:`image_piece`, in dataset order, during the first pass."""

    def finish(self, parts: Partitions, factor: int, baseline, pixels: list[int]) -> DatasetOutcome:
        """The passes after the first one, over ``parts``; ``pixels``: each image's scored pixels."""


@dataclass(frozen=True)
class Method:
    """A scoring method: lower scores mean an annotation more likely wrong, in [0, 1].

    Exactly one of ``finish``, ``cell_score`` and ``dataset_pass`` gives the score.
    """

    name: str
    order: int  # position in ``--method all`` and in the CSV's columns
    finish: Callable[[ImageStats, Settings], float] | None = None
    temperature: Callable[[Settings, int], float] | None = None
    tccp_histograms: bool = False
    cell_score: Callable[[dict[str, np.ndarray]], float] | None = None
    dataset_pass: Callable[[int], DatasetPass] | None = None  # called with K

    @property
    def per_image(self) -> bool:
        """Scored from each image's pixels alone, in the one fused pass."""
        return self.finish is not None

    @property
    def needs_cells(self) -> bool:
        return self.cell_score is not None or self.dataset_pass is not None
