"""Every registered segmenter builds on a tiny encoder and maps (N,3,H,W) to (N,1,H,W) logits."""

from __future__ import annotations

import pytest
import torch

from glomkit import GlomkitError
from glomkit.nets.segmenters import create_segmenter, list_segmenters


def test_registry_lists_the_three_architectures() -> None:
    assert set(list_segmenters()) >= {"deeplabv3", "unet", "segnet"}


@pytest.mark.parametrize("arch", list_segmenters())
def test_every_architecture_gives_one_logit_per_pixel(arch: str) -> None:
    torch.manual_seed(0)
    model = create_segmenter(arch, "resnet10t").eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 64, 64))
        y2 = model(torch.randn(1, 3, 96, 64))  # non-square, not a multiple of 64
    assert y.shape == (2, 1, 64, 64)
    assert y2.shape == (1, 1, 96, 64)
    assert torch.isfinite(y).all()


@pytest.mark.slow
@pytest.mark.parametrize("arch", list_segmenters())
def test_every_architecture_trains_one_step(arch: str) -> None:
    torch.manual_seed(0)
    model = create_segmenter(arch, "resnet10t")
    x = torch.randn(2, 3, 64, 64)
    target = torch.zeros(2, 1, 64, 64)
    target[:, :, 16:48, 16:48] = 1
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), target)
    opt.zero_grad()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # the encoder's first layer gets gradient, so the decoder is really connected to it
    first = next(model.encoder.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_unknown_architecture_is_a_user_error() -> None:
    with pytest.raises(GlomkitError, match="unknown segmenter architecture"):
        create_segmenter("pspnet", "resnet10t")
