"""Correctly classified pixels (paper eq. 1): the fraction whose argmax is the annotated class."""

from __future__ import annotations

import math

from .base import Method


def ccp(stats, settings) -> float:
    return stats.correct / stats.pixels if stats.pixels else math.nan


METHOD = Method(name="ccp", order=40, finish=ccp)
