"""Confidence in label (paper eq. 5): the mean of s over the scored pixels."""

from __future__ import annotations

import math

from .base import Method


def cil(stats, settings) -> float:
    return stats.sum_s / stats.pixels if stats.pixels else math.nan


METHOD = Method(name="cil", order=30, finish=cil)
