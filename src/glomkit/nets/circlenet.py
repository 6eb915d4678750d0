"""CircleNet: the shared timm encoder (``nets/encoders.py``), an FPN-lite neck up to stride 4, and
centre / radius / offset heads.

Yang et al., "CircleNet: Anchor-free Glomerulus Detection with Circle Representation", MICCAI 2020
(after Zhou et al., "Objects as Points", 2019). The model is built by name from a small config
dict; ``CIRCLENET_CONFIGS`` holds the named presets as data.

>>> model = build_circlenet({"backbone": "resnet18"})   # doctest: +SKIP
>>> heatmap, radius, offset = model(torch.zeros(1, 3, 256, 256))  # each (1, C, 64, 64)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from glomkit.nets.encoders import create_encoder

STRIDE = 4
RADIUS_SCALE = 16.0  # the radius head predicts radius / RADIUS_SCALE (input px)

CIRCLENET_CONFIGS: dict[str, dict[str, Any]] = {
    "resnet18": {"backbone": "resnet18", "neck_channels": 64, "head_channels": 64},
    "resnet10t": {"backbone": "resnet10t", "neck_channels": 64, "head_channels": 64},
    "resnet34": {"backbone": "resnet34", "neck_channels": 96, "head_channels": 96},
    "dla34": {"backbone": "dla34", "neck_channels": 128, "head_channels": 128},
}


def _head(cin: int, mid: int, cout: int, bias: float = 0.0) -> nn.Sequential:
    head = nn.Sequential(nn.Conv2d(cin, mid, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1))
    nn.init.constant_(head[-1].bias, bias)
    return head


def _old_backbone_keys(module, state_dict, prefix, *args) -> None:
    """Checkpoints written before the backbone became the shared :class:`Encoder` name its weights
    ``backbone.<layer>``; they are now ``backbone.body.<layer>``."""
    old = f"{prefix}backbone."
    new = f"{prefix}backbone.body."
    if any(k.startswith(new) for k in state_dict):
        return
    for k in [k for k in state_dict if k.startswith(old)]:
        state_dict[new + k[len(old) :]] = state_dict.pop(k)


class CircleNet(nn.Module):
    """Backbone features at strides 4..32, fused top-down into one stride-4 map, three heads.

    ``forward`` returns (heatmap after sigmoid (N,1,H/4,W/4), radius in input px (N,1,..),
    sub-pixel offset in heatmap cells (N,2,..)). Input H and W must be multiples of 32.
    """

    def __init__(self, backbone: str = "resnet18", neck_channels: int = 64, head_channels: int = 64) -> None:
        super().__init__()
        self.backbone = create_encoder(backbone)
        red, chans = self.backbone.reductions, self.backbone.channels
        self.levels = [i for i, r in enumerate(red) if r >= STRIDE]
        if red[self.levels[0]] != STRIDE:
            raise ValueError(f"backbone {backbone!r} has no stride-{STRIDE} feature map")
        self.lateral = nn.ModuleList(nn.Conv2d(chans[i], neck_channels, 1) for i in self.levels)
        self.smooth = nn.Sequential(
            nn.Conv2d(neck_channels, neck_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(neck_channels),
            nn.ReLU(inplace=True),
        )
        self.heatmap_head = _head(neck_channels, head_channels, 1, bias=-2.19)  # prior 0.1
        self.radius_head = _head(neck_channels, head_channels, 1, bias=2.0)
        self.offset_head = _head(neck_channels, head_channels, 2, bias=0.5)
        self.register_load_state_dict_pre_hook(_old_backbone_keys)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        feats = [feats[i] for i in self.levels]
        y = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1]), strict=True):
            y = F.interpolate(y, size=f.shape[-2:], mode="bilinear", align_corners=False) + lat(f)
        return self.smooth(y)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self.features(x)
        heatmap = torch.sigmoid(self.heatmap_head(y))
        radius = F.relu(self.radius_head(y)) * RADIUS_SCALE
        offset = self.offset_head(y)
        return heatmap, radius, offset


def build_circlenet(config: dict[str, Any] | str) -> CircleNet:
    """Build a CircleNet from a config dict (``backbone`` plus optional channel widths) or a preset name.

    Unknown backbone names that timm knows are accepted with default widths.
    """
    if isinstance(config, str):
        config = {"backbone": config}
    cfg = dict(CIRCLENET_CONFIGS.get(config["backbone"], {"backbone": config["backbone"]}))
    cfg.update({k: v for k, v in config.items() if k in ("backbone", "neck_channels", "head_channels")})
    return CircleNet(**cfg)
