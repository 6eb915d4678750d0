"""SimSiam loss, stop-gradient and the pretrain command (tiny: resnet10t, 32 px, 1-2 steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

torch.set_num_threads(1)


def test_loss_symmetric_and_bounded():
    from glomkit.ssl.simsiam import simsiam_loss

    g = torch.Generator().manual_seed(0)
    z0, p0, z1, p1 = (torch.randn(8, 16, generator=g) for _ in range(4))
    a = simsiam_loss(z0, p0, z1, p1)
    b = simsiam_loss(z1, p1, z0, p0)
    assert torch.isclose(a, b)
    assert -1.0 <= float(a) <= 1.0
    # identical prediction and target: minimum -1
    assert torch.isclose(simsiam_loss(z0, z1, z1, z0), torch.tensor(-1.0), atol=1e-5)


def test_stop_gradient_blocks_target_branch():
    from glomkit.nets.simsiam import SimSiam, make_backbone
    from glomkit.ssl.simsiam import simsiam_loss

    torch.manual_seed(0)
    bb, d = make_backbone("resnet10t")
    model = SimSiam(bb, d, proj_dim=32, pred_hidden=8)
    x0 = torch.randn(4, 3, 32, 32)
    x1 = torch.randn(4, 3, 32, 32)
    z0, p0 = model(x0)
    z1, p1 = model(x1)
    assert not z0.requires_grad and not z1.requires_grad
    # gradient of D(p0, z1) alone wrt the *input* of view 1 must be zero (target branch stopped)
    x1g = x1.clone().requires_grad_(True)
    z1g, _ = model(x1g)
    x0g = x0.clone().requires_grad_(True)
    _, p0g = model(x0g)
    loss = simsiam_loss(z1g, p0g, z1g, p0g)  # only p0g carries gradient
    loss.backward()
    assert x1g.grad is None
    assert x0g.grad is not None and float(x0g.grad.abs().sum()) > 0


@pytest.mark.slow
def test_pretrain_command_writes_loadable_encoder(tmp_path):
    from glomkit._cli.train import pretrain_simsiam_cmd
    from glomkit.ssl.simsiam import load_encoder

    rng = np.random.default_rng(0)
    (tmp_path / "a" / "sub").mkdir(parents=True)
    for i in range(12):
        h, w = 30 + i, 50 - i  # any size
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            tmp_path / "a" / "sub" / f"{i}.png"
        )
    out = tmp_path / "enc.pt"
    res = CliRunner().invoke(
        pretrain_simsiam_cmd,
        [
            "--images",
            str(tmp_path / "a"),
            "-o",
            str(out),
            "--backbone",
            "resnet10t",
            "--size",
            "32",
            "--batch-size",
            "6",
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--color-jitter",
            "0",
            "--crop-scale",
            "0.5",
        ],
    )
    assert res.exit_code == 0, res.output
    blob = torch.load(out, weights_only=True)
    assert blob["backbone"] == "resnet10t" and blob["meta"]["n_images"] == 12
    assert (blob["meta"]["color_jitter"], blob["meta"]["crop_scale"]) == (0.0, 0.5)  # in the card's record
    net, meta = load_encoder(out)
    assert meta["steps_done"] == 2 and len(meta["history"]) == 1
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, net.num_features)
    # the trained weights are the saved ones
    key = next(iter(blob["state_dict"]))
    assert torch.equal(net.state_dict()[key], blob["state_dict"][key])


def test_missing_images_is_a_one_line_error(tmp_path):
    from glomkit._cli.train import pretrain_simsiam_cmd

    res = CliRunner().invoke(
        pretrain_simsiam_cmd, ["--images", str(tmp_path / "nope"), "-o", str(tmp_path / "e.pt")]
    )
    assert res.exit_code == 1 and "nope: no such file or folder" in res.output


@pytest.mark.parametrize("bad", ["not-a-model-xyz"])
def test_unknown_backbone(bad):
    from glomkit import GlomkitError
    from glomkit.nets.simsiam import make_backbone

    with pytest.raises(GlomkitError):
        make_backbone(bad)


@pytest.mark.slow
def test_resume_continues_the_run(tmp_path):
    from glomkit.ssl.simsiam import SimSiamConfig, load_encoder, pretrain_simsiam

    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "a" / f"{i}.png")
    cfg = dict(
        images=[str(tmp_path / "a")], backbone="resnet10t", size=32, batch_size=4, proj_dim=32, pred_hidden=8
    )
    full = pretrain_simsiam(SimSiamConfig(out=str(tmp_path / "full.pt"), epochs=2, **cfg))
    steps: list[int] = []
    # stopped after its first epoch by max_steps, then resumed without the limit
    half = pretrain_simsiam(SimSiamConfig(out=str(tmp_path / "r.pt"), epochs=2, max_steps=2, **cfg))
    assert load_encoder(half)[1]["epochs_done"] == 1
    resumed = pretrain_simsiam(
        SimSiamConfig(out=str(tmp_path / "r.pt"), epochs=2, resume=True, **cfg),
        lambda s, t, loss: steps.append(s),
    )
    assert steps == [3, 4]  # only the second epoch ran
    a, b = load_encoder(full), load_encoder(resumed)
    assert [h["loss"] for h in a[1]["history"]] == [h["loss"] for h in b[1]["history"]]
    for k, v in a[0].state_dict().items():
        assert torch.equal(v, b[0].state_dict()[k]), k


def _colours(transform, img: torch.Tensor, n: int = 24) -> set[tuple[float, ...]]:
    torch.manual_seed(0)
    out = set()
    for _ in range(n):
        view = transform(img)
        assert torch.allclose(view, view[:, :1, :1].expand_as(view), atol=1e-5)  # still one colour
        out.add(tuple(round(float(v), 4) for v in view[:, 0, 0]))
    return out


def test_color_jitter_off_keeps_a_crops_colour():
    """``color_jitter=0`` (no stain jitter) leaves a flat crop's colour as it was; the published 0.4 moves it."""
    from glomkit.ssl.simsiam import MEAN, STD, view_transform

    img = torch.zeros(3, 32, 32, dtype=torch.uint8)
    img[0], img[1], img[2] = 180, 60, 140  # a PAS-magenta tuft
    kept = _colours(view_transform(16, color_jitter=0.0, crop_scale=0.5), img)
    expect = tuple(round((c / 255 - m) / s, 4) for c, m, s in zip((180, 60, 140), MEAN, STD, strict=True))
    assert kept == {expect}
    assert len(_colours(view_transform(16), img)) > 5
