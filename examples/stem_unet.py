"""Small segmentation networks that learn on a CPU in minutes: ``UNet`` and ``StemUNet``.

Plain PyTorch (no torchvision), shared by ``examples/pytorch_kfold.py`` and the detection
benchmarks (``benchmarks/detection/train.py``). segaudit itself does not depend on torch.

- :class:`UNet`: encoder-decoder with skip connections, ``widths`` channels per level.
- :class:`StemUNet`: the same U-Net behind a strided stem, so it runs at 1/``stride``
  resolution and its logits are upsampled bilinearly (a DeepLab-style output stride): about
  stride**2 cheaper per image, with the boundary blur real segmentation models have.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder-decoder with skip connections; ``widths`` per level, 2x2 max-pooling between levels."""

    def __init__(self, n_classes: int, widths=(16, 32, 64, 128)):
        super().__init__()
        self.down = nn.ModuleList([_block(3, widths[0])] +
                                  [_block(widths[i], widths[i + 1]) for i in range(len(widths) - 1)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                 for i in range(len(widths) - 1)])
        self.merge = nn.ModuleList([_block(2 * widths[i], widths[i]) for i in range(len(widths) - 1)])
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level < len(self.down) - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for level in reversed(range(len(self.up))):
            x = self.merge[level](torch.cat([self.up[level](x), skips[level]], dim=1))
        return self.head(x)


class StemUNet(nn.Module):
    """The U-Net behind a strided stem: it runs at 1/``stride`` resolution, logits upsampled bilinearly.

    A DeepLab-style output stride: the stem (a 3x3 convolution of stride 2, twice for
    ``stride`` 4) cuts the cost of every level by stride**2, and the bilinear upsampling
    blurs the class boundaries as real segmentation models do. The input is padded
    (reflection) to a multiple of stride * 2**(levels - 1) and the logits cropped back.
    ``upsample=False`` returns the logits at 1/``stride`` resolution (cropped to
    ceil(H / stride) x ceil(W / stride)), for a loop that resizes them itself: once, straight
    to the size it needs (the mask's size, or a training loss's), which saves a full-size
    upsampling and its backward pass.
    """

    def __init__(self, n_classes: int, widths=(16, 32, 64, 128), stride: int = 4, upsample: bool = True):
        super().__init__()
        self.upsample = upsample
        if stride not in (1, 2, 4):
            raise ValueError(f"stride must be 1, 2 or 4, got {stride}")
        self.stride = stride
        stem, cin = [], 3
        for _ in range({1: 0, 2: 1, 4: 2}[stride]):
            stem += [nn.Conv2d(cin, widths[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                     nn.ReLU(inplace=True)]
            cin = widths[0]
        self.stem = nn.Sequential(*stem)
        self.unet = UNet(n_classes, widths)
        if stride > 1:  # the U-Net's first block takes the stem's channels
            self.unet.down[0] = _block(widths[0], widths[0])
        self.multiple = stride * 2 ** (len(widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        logits = self.unet(self.stem(x))
        if not self.upsample:
            return logits[..., :-(-h // self.stride), :-(-w // self.stride)]
        if self.stride > 1:
            logits = F.interpolate(logits, scale_factor=self.stride, mode="bilinear", align_corners=False)
        return logits[..., :h, :w]
