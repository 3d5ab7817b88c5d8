"""rsoftmin: softmin at a temperature scaled to the image's size.

Softmin (paper eq. 6) at temperature τ lets a pixel with s = 0 outweigh a pixel with
s = 1 by e^{1/τ}; once more than about n·e^{-1/τ} of an image's n pixels are confidently
wrong, they decide its score. The pixels a clean image gets confidently wrong lie mostly
along object boundaries, and boundaries hold a share of the image that grows as the image
shrinks (about 1/√n of it). rsoftmin therefore lets the number of pixels that can decide
the score grow with the side of the image, √n, instead of with its area n:

    1/τ(n) = 1/τ + ½·ln(n / n₀),

with n₀ = 760 × 1280, the SYNTHIA images the paper chose τ = 0.1 on. At that size
rsoftmin is the paper's softmin; at 1024 × 2048, τ(n) = 0.096; at 96 × 128, 0.128; at
48 × 64, 0.140. 1/τ(n) is kept at 1 or more (τ(n) ≤ 1) for tiny images at warm τ.
"""

from __future__ import annotations

import math

from .base import Method, Settings

#: n₀: pixels of the images the paper's τ = 0.1 was chosen on (SYNTHIA, 760 × 1280).
REFERENCE_PIXELS = 760 * 1280


def scaled_temperature(temperature: float, pixels: int) -> float:
    """The temperature rsoftmin uses on an image of ``pixels`` (H × W) pixels.

    Parameters
    ----------
    temperature : float
        Softmin's temperature τ > 0, which rsoftmin uses on an image of
        :data:`REFERENCE_PIXELS` pixels.
    pixels : int
        The image's size H × W (every pixel, ignored ones included, so the temperature
        depends on the image's geometry only).

    Returns
    -------
    float
        τ(n) with 1/τ(n) = max(1, 1/τ + ½·ln(n / n₀)).
    """
    if pixels <= 0:
        raise ValueError("rsoftmin needs the image's pixel count: H * W > 0")
    inverse = 1.0 / temperature + 0.5 * math.log(pixels / REFERENCE_PIXELS)
    return 1.0 / max(inverse, 1.0)


def _temperature(settings: Settings, pixels: int) -> float:
    return scaled_temperature(settings.temperature, pixels)


METHOD = Method(
    name="rsoftmin",
    order=10,
    finish=lambda stats, settings: stats.softmin(_temperature(settings, stats.image_pixels)),
    temperature=_temperature,
)
