"""U-Net (Ronneberger et al., "U-Net: Convolutional Networks for Biomedical Image Segmentation", 2015).

Decoder blocks upsample x2, concatenate the encoder features of the same stride (skip
connections) and apply two conv-BN-ReLU; the last block reaches full resolution.

Usage::

    model = create_segmenter("unet", "resnet18")
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glomkit.nets.blocks import ConvBNReLU, SegmentationHead
from glomkit.nets.encoders import create_encoder


class UpBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(ConvBNReLU(cin + cskip, cout), ConvBNReLU(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class UNet(nn.Module):
    """Encoder + U-Net decoder with skips at every encoder stride + 1-logit head."""

    def __init__(
        self, encoder: str = "resnet18", decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 16)
    ) -> None:
        super().__init__()
        self.encoder = create_encoder(encoder)
        chans = self.encoder.channels
        n = len(chans)
        skips = list(reversed(chans[:-1])) + [0]  # deepest-but-one ... shallowest, then full-res (none)
        blocks = []
        cin = chans[-1]
        for i in range(n):
            blocks.append(UpBlock(cin, skips[i], decoder_channels[i]))
            cin = decoder_channels[i]
        self.blocks = nn.ModuleList(blocks)
        self.head = SegmentationHead(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        y = feats[-1]
        skips = list(reversed(feats[:-1]))
        for i, block in enumerate(self.blocks):
            skip = skips[i] if i < len(skips) else None
            size = skip.shape[-2:] if skip is not None else x.shape[-2:]
            y = block(y, skip, size)
        return self.head(y, x.shape[-2:])


def unet(encoder: str = "resnet18", **kw) -> UNet:
    return UNet(encoder, **kw)
