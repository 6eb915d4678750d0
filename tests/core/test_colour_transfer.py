"""Colour transfer before detection (glomkit.core.colour): the tissue's CIELAB statistics move to the
detector's reference, glass stays, the metadata field is checked, and the tile loop applies it
only when asked."""

from __future__ import annotations

import numpy as np
import pytest
from badinputs import bundled_meta, model_with_meta

from glomkit import GlomkitError
from glomkit.core.colour import LabStats, colour_of, lab_stats, pooled_stats, tissue_pixels, transfer
from glomkit.models.metadata import validate_metadata


def _tissue_image(seed: int = 0, tint=(200, 120, 190)) -> np.ndarray:
    """Glass with a textured pink/purple blob in the middle."""
    rng = np.random.default_rng(seed)
    img = np.full((96, 96, 3), 242, np.uint8)
    tex = rng.normal(0, 18, (48, 48, 3))  # colour varies per channel
    img[24:72, 24:72] = np.clip(np.array(tint, float) + tex, 0, 255).astype(np.uint8)
    return img


def test_transfer_moves_tissue_statistics_and_keeps_glass():
    img = _tissue_image()
    src = lab_stats(img)
    target = LabStats((120.0, 160.0, 100.0), (30.0, 10.0, 8.0))
    out = transfer(img, src, target)
    got = lab_stats(out)
    assert got is not None and src is not None
    assert np.allclose(got.mean, target.mean, atol=3.0), got
    assert np.allclose(got.sd, target.sd, rtol=0.25, atol=1.5), got
    glass = ~tissue_pixels(img)
    assert glass.sum() > 4000 and np.array_equal(out[glass], img[glass])


def test_identity_transfer_changes_little():
    img = _tissue_image(1)
    s = lab_stats(img)
    out = transfer(img, s, s)
    assert np.abs(out.astype(int) - img).max() <= 4  # 8-bit CIELAB round trip


def test_statistics_need_tissue():
    assert lab_stats(np.full((64, 64, 3), 245, np.uint8)) is None
    with pytest.raises(ValueError):
        pooled_stats([None, None])
    a, b = LabStats((100, 150, 110), (20, 8, 6)), LabStats((140, 160, 100), (40, 10, 8))
    assert pooled_stats([a, None, b]).mean == (120.0, 155.0, 105.0)


def test_detector_metadata_stain_reference():
    meta = bundled_meta("detector")
    meta.setdefault("input", {})["stain_reference"] = {"mean": [130, 160, 103], "sd": [37, 12.5, 9]}
    meta.setdefault("decode", {})["colour_transfer"] = True
    m = validate_metadata(meta, "d.onnx")
    assert m.stain_reference == LabStats((130.0, 160.0, 103.0), (37.0, 12.5, 9.0)) and m.colour_transfer
    for bad in (
        {"mean": [1, 2]},
        {"mean": [1, 2, 3], "sd": [0, 1, 1]},
        [1, 2, 3],
        {"mean": [1, 2, 300], "sd": [1, 1, 1]},
    ):
        meta["input"]["stain_reference"] = bad
        with pytest.raises(GlomkitError, match="stain_reference"):
            validate_metadata(meta, "d.onnx")


def test_tile_loop_applies_transfer_only_when_on(tmp_path, monkeypatch):
    import cv2

    import glomkit.core.colour as colour
    from glomkit.infer.detect import DetectOptions, detect_slide
    from glomkit.models.runtime import OnnxModel
    from glomkit.slide.reader import Slide

    ref = {"mean": [130, 160, 103], "sd": [37, 12.5, 9]}

    def edit(meta):
        meta.setdefault("input", {})["stain_reference"] = ref
        meta.setdefault("decode", {})["colour_transfer"] = True

    det = OnnxModel(model_with_meta("detector", tmp_path / "d.onnx", edit), threads=1)
    img = np.full((600, 600, 3), 240, np.uint8)
    img[100:500, 100:500] = cv2.resize(_tissue_image(2), (400, 400))
    path = tmp_path / "tile.png"
    cv2.imwrite(str(path), img[..., ::-1])
    calls: list[tuple] = []
    real = colour.transfer
    monkeypatch.setattr(colour, "transfer", lambda rgb, s, t: calls.append((s, t)) or real(rgb, s, t))
    with Slide(path, mpp=1.0) as sl:
        detect_slide(sl, det, DetectOptions())
        assert len(calls) >= 1 and calls[0][1] == LabStats(tuple(ref["mean"]), tuple(ref["sd"]))
        thumb, ds = sl.thumbnail(2048)
        assert calls[0][0] == colour_of(thumb, sl.mpp * ds)  # the slide's own tissue colours
        calls.clear()
        detect_slide(sl, det, DetectOptions(colour_transfer=False))
        assert calls == []


def test_colour_reference_command_writes_a_copy(tmp_path):
    import json

    import cv2
    from click.testing import CliRunner

    from glomkit.cli import cli
    from glomkit.models.registry import WEIGHTS_DIR
    from glomkit.models.runtime import OnnxModel

    data = tmp_path / "tiles"
    data.mkdir()
    poly = [[[30, 30], [70, 30], [70, 70], [30, 70], [30, 30]]]
    for i in range(4):
        cv2.imwrite(str(data / f"train_{i}.png"), cv2.resize(_tissue_image(i), (192, 192))[..., ::-1])
        feat = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": poly}, "properties": {}}
        (data / f"train_{i}.geojson").write_text(
            json.dumps({"type": "FeatureCollection", "features": [feat]})
        )
    src = WEIGHTS_DIR / "detector.onnx"
    before = src.read_bytes()
    dst = tmp_path / "d.onnx"
    res = CliRunner().invoke(
        cli, ["models", "colour-reference", str(src), str(dst), "--data", str(data), "--data-mpp", "4.0"]
    )
    assert res.exit_code == 0, res.output
    assert "from 3 images" in res.output  # the training split only (one block of 4 validates)
    meta = OnnxModel(dst, threads=1).info.typed
    assert meta.colour_transfer and meta.stain_reference is not None
    assert src.read_bytes() == before
    bad = CliRunner().invoke(
        cli,
        [
            "models",
            "colour-reference",
            str(src),
            str(dst),
            "--data",
            str(data),
            "--data-mpp",
            "1",
            "--data-mpp",
            "2",
        ],
    )
    assert bad.exit_code == 2 and "one --data-mpp per --data" in bad.output


def test_colour_transfer_without_a_reference_is_refused():
    from glomkit.infer.detect import DetectOptions, colour_transfer_to

    meta = validate_metadata({**bundled_meta("detector"), "input": {}}, "d.onnx")
    assert meta.stain_reference is None
    assert colour_transfer_to(DetectOptions(), meta, True) is None  # not asked for: nothing to do
    with pytest.raises(GlomkitError, match="d.onnx: the detector records no training colours"):
        colour_transfer_to(DetectOptions(colour_transfer=True), meta, True)
