"""Thresholded CCP (paper eqs. 2–4, in the reading the text describes).

For class k and threshold τ, acc_k(τ) is the fraction of scored pixels where
(p_k > τ) equals (label == k); each class takes its best τ of 0.05, 0.10, ..., 0.95 and
the score is the mean over all K classes. The paper's formula (2), taken literally, is
monotone in τ; its text describes this per-class choice.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Method


def tccp(stats, settings) -> float:
    n = stats.pixels
    if not n:
        return math.nan
    positive = stats.tccp_hist[1]  # label == k, by bin of p_k
    negative = stats.tccp_hist[0] - positive  # label != k
    # Bin b holds the pixels with p_k above exactly b thresholds, so at threshold t
    # the pixels with p_k > τ_t are the bins t+1 and up.
    positive_above = np.cumsum(positive[:, ::-1], axis=1)[:, ::-1][:, 1:]
    negative_at_or_below = np.cumsum(negative, axis=1)[:, :-1]
    accuracy = (positive_above + negative_at_or_below) / n
    return float(accuracy.max(axis=1).mean())


METHOD = Method(name="tccp", order=50, finish=tccp, tccp_histograms=True)
