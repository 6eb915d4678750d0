"""Focal loss: properties, not magic numbers."""

import torch
import torch.nn.functional as F

from glomkit.classify.losses import FocalLoss, class_weights


def test_gamma_zero_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 3, generator=g)
    y = torch.randint(0, 3, (16,), generator=g)
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, y), F.cross_entropy(logits, y), atol=1e-6)
    w = torch.tensor([0.5, 2.0, 1.0])
    assert torch.allclose(FocalLoss(0.0, w)(logits, y), F.cross_entropy(logits, y, weight=w), atol=1e-6)


def test_focal_down_weights_easy_examples():
    easy = torch.tensor([[6.0, 0.0, 0.0]])
    hard = torch.tensor([[0.2, 0.0, 0.0]])
    y = torch.tensor([0])
    ce_ratio = F.cross_entropy(easy, y) / F.cross_entropy(hard, y)
    fl = FocalLoss(gamma=2.5)
    fl_ratio = fl(easy, y) / fl(hard, y)
    assert fl_ratio < ce_ratio / 100  # easy example weighs far less relative to a hard one
    assert fl(hard, y) < F.cross_entropy(hard, y)


def test_class_weights_inverse_frequency():
    w = class_weights([0, 0, 0, 1], 3)
    assert w[2] == 0 and w[1] == 3 * w[0]
    assert torch.isclose(w[:2].mean(), torch.tensor(1.0))
