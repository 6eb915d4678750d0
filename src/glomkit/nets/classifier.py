"""The glomerulus classifier: a timm backbone + global pooling + a linear head, built by name.

The published model used ResNet-50; the bundled default is a smaller ResNet (``resnet10t``) trained
on CPU. Backbones are always built with ``pretrained=False``: nothing is downloaded.

Example::

    net = build_classifier("resnet10t", num_classes=3)
    logits = net(torch.randn(2, 3, 128, 128))
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from glomkit import GlomkitError


class GlomClassifier(nn.Module):
    """``backbone`` (timm, ``num_classes=0``, pooled features) followed by ``head`` (linear)."""

    def __init__(self, backbone: str, num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        try:
            self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0, global_pool="avg")
        except RuntimeError as exc:  # timm: "Unknown model (...)"
            raise GlomkitError(f"--backbone {backbone}: {exc}") from None
        self.backbone_name = backbone
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.head = nn.Linear(self.backbone.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone(x)))


class WithSoftmax(nn.Module):
    """Wraps a classifier so its output is class probabilities (the exported graph's ``probs``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def build_classifier(
    backbone: str = "resnet10t", num_classes: int = 3, drop_rate: float = 0.0
) -> GlomClassifier:
    """A classifier with a ``timm`` backbone of that name and ``num_classes`` outputs."""
    return GlomClassifier(backbone, num_classes, drop_rate)


def load_encoder(net: GlomClassifier, path: str | Path) -> dict:
    """Initialise ``net.backbone`` from a SimSiam encoder file; returns the file's ``meta``.

    The file is ``torch.save({"backbone": timm_name, "state_dict": ..., "meta": {...}})``.
    """
    from glomkit.models.checkpoint import load_torch_file

    path = Path(path)
    blob = load_torch_file(path, "cpu", "encoder file", ("state_dict",))
    name = blob.get("backbone")
    if name and name != net.backbone_name:
        raise GlomkitError(f"{path}: encoder is a {name}, but the classifier backbone is {net.backbone_name}")
    state = {k: v for k, v in blob["state_dict"].items() if not k.startswith(("fc.", "head.", "classifier."))}
    missing, unexpected = net.backbone.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("num_batches_tracked")]:
        raise GlomkitError(
            f"{path}: encoder weights do not fit {net.backbone_name} "
            f"(missing {len(missing)}, unexpected {len(unexpected)})"
        )
    return dict(blob.get("meta", {}))
