"""SimSiam (Chen and He, 2021): a timm backbone, a projector and a predictor (lightly's heads)."""

from __future__ import annotations

import timm
import torch
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from torch import nn

from glomkit import GlomkitError


class SimSiam(nn.Module):
    """Backbone -> projector -> predictor; ``forward`` returns (z, p) for one view."""

    def __init__(self, backbone: nn.Module, feat_dim: int, proj_dim: int = 2048, pred_hidden: int = 512):
        super().__init__()
        self.backbone = backbone
        self.projector = SimSiamProjectionHead(feat_dim, proj_dim, proj_dim)
        self.predictor = SimSiamPredictionHead(proj_dim, pred_hidden, proj_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.projector(self.backbone(x).flatten(1))
        p = self.predictor(z)
        return z.detach(), p  # stop-gradient on the target branch


def make_backbone(name: str) -> tuple[nn.Module, int]:
    """timm backbone without classifier (random init) and its feature width."""
    try:
        net = timm.create_model(name, pretrained=False, num_classes=0)
    except (RuntimeError, ValueError) as e:
        raise GlomkitError(f"{name}: unknown timm backbone ({e})") from e
    return net, int(net.num_features)
