"""A detector kind is one file: a kind defined only in this test trains, exports, loads and runs.

The kind ``blobs`` (a 3x3 convolution, average-pooled to stride 4, peaks of its map become circles of
a fixed radius that its own metadata field ``decode.radius_um`` gives) is registered with
:func:`glomkit.kinds.register` and nothing else: ``glomkit train detector --arch blobs`` trains it
for two steps, the model file validates through the kind's own schema, and ``glomkit run`` decodes
it with the kind's tile decoder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from glomkit import GlomkitError
from glomkit.kinds import KINDS, DetectorKind, TrainRequest, register

torch = pytest.importorskip("torch")

STRIDE = 4
decoded_tiles: list[int] = []


@dataclass(frozen=True)
class BlobDecode:
    radius_um: float


def _parse(check: Any, dec: Mapping[str, Any]) -> BlobDecode:
    return BlobDecode(check.number(dec, "decode.radius_um", "radius_um", 20.0, 0.0, 1000.0, lo_open=True))


def _decode_tile(out, k, meta, thr, tile) -> np.ndarray:
    decoded_tiles.append(k)
    m = out["blob"][k, 0]
    peak = cv2.dilate(m, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero((m >= peak) & (m >= thr))
    r = meta.decode.radius_um / meta.mpp
    return np.array(
        [[(x + 0.5) * STRIDE, (y + 0.5) * STRIDE, r, m[y, x]] for y, x in zip(ys, xs, strict=True)]
    ).reshape(-1, 4)


def _network(arch: str, backbone: str):
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 1, 3, padding=1), torch.nn.AvgPool2d(STRIDE), torch.nn.Sigmoid()
    )


def _train(req: TrainRequest) -> Path:
    """Two Adam steps towards 'dark is glomerulus' on the request's images, then export."""
    from glomkit.models.export import export_onnx

    net = _network(req.arch, req.backbone or "none")
    images = [
        cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        for p in sorted(Path(req.sources[0]).glob("*.png"))
    ]
    x = torch.from_numpy(np.stack(images).astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
    target = torch.nn.functional.avg_pool2d((x.mean(1, keepdim=True) < 0.5).float(), STRIDE)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(2):
        loss = torch.nn.functional.binary_cross_entropy(net(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    meta = {
        "task": "detector",
        "architecture": req.arch,
        "input_size": [64, 64],
        "mpp": 2.0,
        "stride": STRIDE,
        "input": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        "decode": {"method": "blobs", "score_threshold": 0.3, "radius_um": 16.0},
        "metrics": {"validation": {"AP50": 0.0, "AP": 0.0}},
    }
    return export_onnx(net.eval(), torch.zeros(1, 3, 64, 64), req.options["out"], meta, output_names=["blob"])


BLOBS = DetectorKind(
    name="blobs",
    outputs=("blob",),
    decode_tile=_decode_tile,
    predict=lambda model, images, tta: [],
    score=lambda model, items, preds: {"metrics": {}},
    architectures=("blobs",),
    network=_network,
    train=_train,
    default_stride=STRIDE,
    default_score_threshold=0.3,
    parse_decode=_parse,
)


@pytest.fixture
def blobs_kind():
    register(BLOBS)
    decoded_tiles.clear()
    yield BLOBS
    KINDS.unregister("blobs")


def _dark_disc_images(folder: Path, n: int = 2) -> Path:
    folder.mkdir()
    for i in range(n):
        img = np.full((128, 128, 3), 235, np.uint8)
        cv2.circle(img, (40 + 20 * i, 64), 14, (70, 40, 90), -1)
        cv2.imwrite(str(folder / f"im{i}.png"), img)
    return folder


def test_a_kind_from_one_file_trains_loads_and_runs(tmp_path, blobs_kind):
    from glomkit.cli import cli
    from glomkit.models.runtime import OnnxModel

    data = _dark_disc_images(tmp_path / "imgs")
    model = tmp_path / "blobs.onnx"
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "detector", "--arch", "blobs", "--data", str(data), "-o", str(model)])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output

    typed = OnnxModel(model).info.typed  # the kind's schema parsed its own field
    assert typed.method == "blobs" and typed.decode == BlobDecode(16.0) and typed.stride == STRIDE

    out = tmp_path / "out"
    res = runner.invoke(
        cli, ["run", str(data / "im0.png"), "--mpp", "1", "--detector", str(model), "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "im0" / "summary.json").read_text())
    assert all((out / "im0" / f).is_file() for f in summary["outputs"])
    assert decoded_tiles, "glomkit run did not decode through the kind's tile decoder"


def test_the_kinds_schema_checks_its_own_field(tmp_path, blobs_kind):
    from glomkit.models.metadata import FORMAT, validate_metadata

    meta = {"format": FORMAT, "task": "detector", "input_size": [64, 64], "decode": {"method": "blobs"}}
    assert validate_metadata(meta, "m.onnx").decode == BlobDecode(20.0)  # the kind's default
    meta["decode"]["radius_um"] = -3
    with pytest.raises(GlomkitError, match=r"m.onnx: model metadata field 'decode.radius_um'"):
        validate_metadata(meta, "m.onnx")


def test_an_unregistered_kind_is_refused_in_one_line():
    from glomkit.models.metadata import FORMAT, validate_metadata

    meta = {"format": FORMAT, "task": "detector", "input_size": [64, 64], "decode": {"method": "blobs"}}
    with pytest.raises(GlomkitError, match=r"decode.method.*'blobs'; known: circlenet, components"):
        validate_metadata(meta, "m.onnx")
