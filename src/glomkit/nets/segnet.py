"""SegNet-style encoder-decoder (Badrinarayanan et al., "SegNet", TPAMI 2017), without skips.

The timm encoder does not return max-pooling indices (its stride-2 stages are mostly strided
convolutions), so index unpooling is not possible; the decoder here is a plain symmetric one:
at every encoder stage, upsample x2 (nearest) then two conv-BN-ReLU, with no skip connections.

Usage::

    model = create_segmenter("segnet", "resnet18")
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glomkit.nets.blocks import ConvBNReLU, SegmentationHead
from glomkit.nets.encoders import create_encoder


class SegNet(nn.Module):
    """Encoder + symmetric decoder (upsample + 2 conv per stage, no skips) + 1-logit head."""

    def __init__(
        self, encoder: str = "resnet18", decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 16)
    ) -> None:
        super().__init__()
        self.encoder = create_encoder(encoder)
        self.reductions = self.encoder.reductions
        cin = self.encoder.channels[-1]
        stages = []
        for cout in decoder_channels[: len(self.reductions)]:
            stages.append(nn.Sequential(ConvBNReLU(cin, cout), ConvBNReLU(cout, cout)))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.head = SegmentationHead(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self.encoder(x)[-1]
        # target strides: the encoder's reductions in reverse, shifted by one, ending at stride 1
        targets = list(reversed(self.reductions[:-1])) + [1]
        for stage, r in zip(self.stages, targets, strict=True):
            y = stage(F.interpolate(y, size=(-(-h // r), -(-w // r)), mode="nearest"))
        return self.head(y, (h, w))


def segnet(encoder: str = "resnet18", **kw) -> SegNet:
    return SegNet(encoder, **kw)
