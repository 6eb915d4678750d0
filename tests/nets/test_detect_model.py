"""CircleNet model, losses, a 2-step training run and the ONNX export (tiny: resnet10t at 64-128 px)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from glomkit.detect.losses import circlenet_loss, focal_loss  # noqa: E402
from glomkit.detect.targets import circle_targets  # noqa: E402
from glomkit.nets.circlenet import CIRCLENET_CONFIGS, build_circlenet  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_circlenet({"backbone": "resnet10t", "neck_channels": 16, "head_channels": 16}).eval()


def test_presets_are_data():
    assert {"resnet18", "resnet10t", "dla34"} <= set(CIRCLENET_CONFIGS)
    assert all("backbone" in c for c in CIRCLENET_CONFIGS.values())


@pytest.mark.parametrize("hw", [(64, 64), (96, 128)])
def test_output_shapes_at_stride_4(tiny_model, hw):
    with torch.no_grad():
        hm, rad, off = tiny_model(torch.randn(2, 3, *hw))
    h, w = hw[0] // 4, hw[1] // 4
    assert hm.shape == (2, 1, h, w) and rad.shape == (2, 1, h, w) and off.shape == (2, 2, h, w)
    assert float(hm.min()) >= 0.0 and float(hm.max()) <= 1.0
    assert float(rad.min()) >= 0.0


def test_focal_loss_prefers_correct_heatmap():
    target = torch.from_numpy(circle_targets([[32, 32, 10]], 64, 64)["heatmap"][None])
    good = target.clamp(0.01, 0.99)
    bad = torch.full_like(target, 0.5)
    assert float(focal_loss(good, target)) < float(focal_loss(bad, target))


def test_loss_is_zero_for_radius_and_offset_when_exact():
    t = circle_targets([[30.5, 20.25, 9.0]], 64, 64)
    batch = {k: torch.from_numpy(v[None]) for k, v in t.items()}
    rad = torch.zeros(1, 1, 16, 16)
    off = torch.zeros(1, 2, 16, 16)
    iy, ix = divmod(int(t["index"][0]), 16)
    rad[0, 0, iy, ix] = 9.0
    off[0, :, iy, ix] = torch.from_numpy(t["offset"][0])
    _, parts = circlenet_loss((batch["heatmap"].clamp(0.01, 0.99), rad, off), batch)
    assert parts["radius"] == pytest.approx(0.0, abs=1e-6)
    assert parts["offset"] == pytest.approx(0.0, abs=1e-6)


def test_onnx_matches_torch_with_fp16_weights(tiny_model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from glomkit.models.export import export_onnx

    model = tiny_model
    with torch.no_grad():
        for p in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            p.copy_(p.half().float())  # what fp16 storage will hold
    path = export_onnx(
        model,
        torch.zeros(1, 3, 64, 64),
        tmp_path / "d.onnx",
        {"task": "detector"},
        output_names=["heatmap", "radius", "offset"],
    )
    x = torch.randn(1, 3, 96, 128)  # another size than the export example: dynamic H, W
    with torch.no_grad():
        want = [t.numpy() for t in model(x)]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["heatmap", "radius", "offset"], {"input": x.numpy()})
    assert got[0].shape == (1, 1, 24, 32)
    np.testing.assert_allclose(got[0], want[0], atol=1e-3)
    np.testing.assert_allclose(got[1], want[1], atol=1e-3 * 16)
    np.testing.assert_allclose(got[2], want[2], atol=1e-3)


def test_focal_loss_puts_no_background_loss_in_ignored_cells():
    target = torch.from_numpy(circle_targets([[32, 32, 10]], 64, 64)["heatmap"][None])
    pred = target.clamp(0.01, 0.99).clone()
    pred[..., 0, 0] = 0.9  # a confident detection at a corner: an unoutlined edge-cut glomerulus
    ignore = torch.zeros_like(target)
    ignore[..., 0, :2] = 1.0
    assert float(focal_loss(pred, target, ignore=ignore)) < float(focal_loss(pred, target))
    clean = target.clamp(0.01, 0.99)
    # what the model says in an ignored cell does not matter
    assert float(focal_loss(pred, target, ignore=ignore)) == pytest.approx(
        float(focal_loss(clean, target, ignore=ignore))
    )
