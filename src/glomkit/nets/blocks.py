"""Small building blocks shared by the decoders: conv-BN-ReLU and the 1-channel segmentation head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """3x3 (or k x k) convolution, batch norm, ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, dilation: int = 1) -> None:
        pad = dilation * (k - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class SegmentationHead(nn.Module):
    """1x1 conv to one logit channel, then bilinear upsampling to the input size."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 1, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(self.conv(x), size=size, mode="bilinear", align_corners=False)
