"""Softmin (paper eq. 6): a soft minimum of the pixels' label likelihoods s.

    softmin = Σ s·exp((1−s)/τ) / Σ exp((1−s)/τ)

It focuses on the worst region of an image. The kernel sums it in float64 with an online
max-shift, so it is exact for any τ > 0. This is cleanlab's ``softmin`` score.
"""

from __future__ import annotations

from .base import Method, Settings


def _temperature(settings: Settings, pixels: int) -> float:
    return settings.temperature


METHOD = Method(
    name="softmin",
    order=20,
    finish=lambda stats, settings: stats.softmin(settings.temperature),
    temperature=_temperature,
)
