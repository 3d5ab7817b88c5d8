"""What a run produces: per-image results, the ranked run, and what confident learning found.

These types sit below the engine and every writer, so that outputs need not import the
engine to read a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Selection:
    """Which cells the flagging pass flags: s bits below ``low``, and ``take`` of [low, high)."""

    low: int
    high: int
    take: int

    @property
    def exact(self) -> bool:
        return self.high - self.low == 1


@dataclass
class ClcState:
    """What confident learning found over the dataset."""

    downsample: int
    thresholds: np.ndarray  # t_k per class
    issues: int  # n, the number of cells flagged
    selection: Selection | None  # the exact rule that flags those cells (None when n = 0)
    flagged: np.ndarray  # flagged full-resolution pixels per image, in dataset order
    passes: int  # passes over the data (store or cell cache), the per-image pass included

    def record(self) -> dict:
        """For the run record: enough to flag the same pixels again without the counting."""
        return {
            "downsample": self.downsample,
            "thresholds": self.thresholds.tolist(),
            "issues": self.issues,
            "cut_bits": None if self.selection is None else self.selection.low,
            "cut_ties": None if self.selection is None else self.selection.take,
            "passes": self.passes,
        }


@dataclass
class ImageResult:
    """One image's scores (NaN when it has no scored pixel) and its low-pixel summary."""

    image_id: str
    scores: dict[str, float]
    pixels: int
    low_pixels: int
    suspect_class: int | None  # annotated class holding most low pixels
    likely_class: int | None  # the predicted class most common among those pixels
    flagged_pixels: int | None = None  # clc-flagged pixels, when clc was computed


@dataclass
class ScoreRun:
    """The ranked results of a run and what the run was."""

    results: list[ImageResult]  # worst first
    methods: tuple[str, ...]
    classes: list[str] | None
    options: dict
    skipped_masks: list[str] = field(default_factory=list)  # masks with no prediction
    skipped_predictions: list[str] = field(default_factory=list)  # predictions with no mask
    clc: ClcState | None = None  # what confident learning found, when clc was computed
    class_pixels: np.ndarray | None = None  # per class, scored pixels annotated with it

    @property
    def empty_images(self) -> list[str]:
        return [r.image_id for r in self.results if r.pixels == 0]

    def class_name(self, index: int | None) -> str:
        if index is None:
            return ""
        return self.classes[index] if self.classes else str(index)
