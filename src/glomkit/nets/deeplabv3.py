"""DeepLabv3 (Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation", 2017).

ASPP (atrous spatial pyramid pooling: 1x1, three dilated 3x3, image pooling) on the deepest
encoder features at output stride 16, a 3x3 conv, and bilinear upsampling to the input size.
This is the architecture of the published Glo-In-One segmenter and glomkit's default.

Usage::

    model = create_segmenter("deeplabv3", "resnet18")
    logits = model(torch.randn(2, 3, 256, 256))  # (2, 1, 256, 256)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glomkit.nets.blocks import ConvBNReLU, SegmentationHead
from glomkit.nets.encoders import create_encoder


class ASPPPooling(nn.Module):
    """Image-level branch: global average pool, 1x1 conv, broadcast back."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        y = self.conv(F.adaptive_avg_pool2d(x, 1))
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling."""

    def __init__(self, cin: int, cout: int = 128, rates: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        branches = [ConvBNReLU(cin, cout, k=1)]
        branches += [ConvBNReLU(cin, cout, k=3, dilation=r) for r in rates]
        branches.append(ASPPPooling(cin, cout))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(ConvBNReLU(cout * len(branches), cout, k=1), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class DeepLabV3(nn.Module):
    """Encoder (output stride 16) + ASPP + 3x3 conv + 1-logit head."""

    def __init__(
        self, encoder: str = "resnet18", decoder_channels: int = 128, output_stride: int = 16
    ) -> None:
        super().__init__()
        self.encoder = create_encoder(encoder, output_stride=output_stride)
        self.decoder = nn.Sequential(
            ASPP(self.encoder.channels[-1], decoder_channels),
            ConvBNReLU(decoder_channels, decoder_channels),
        )
        self.head = SegmentationHead(decoder_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        return self.head(self.decoder(feats[-1]), x.shape[-2:])


def deeplabv3(encoder: str = "resnet18", **kw) -> DeepLabV3:
    return DeepLabV3(encoder, **kw)
