"""The one encoder interface every segmenter shares: a timm backbone with ``features_only``.

Usage::

    enc = create_encoder("resnet18", output_stride=16)
    feats = enc(x)  # list of feature maps, shallow to deep
    enc.channels, enc.reductions
"""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """A timm ``features_only`` backbone (``pretrained=False``) returning its feature pyramid."""

    def __init__(self, name: str, output_stride: int = 32, in_chans: int = 3) -> None:
        import timm

        super().__init__()
        kw = {"features_only": True, "pretrained": False, "in_chans": in_chans}
        if output_stride != 32:
            kw["output_stride"] = output_stride
        self.name = name
        self.body = timm.create_model(name, **kw)
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))


def create_encoder(name: str, output_stride: int = 32, in_chans: int = 3) -> Encoder:
    """Build encoder ``name`` (any timm model with ``features_only`` support)."""
    return Encoder(name, output_stride=output_stride, in_chans=in_chans)
