"""Issue 23: one input rule for the Detector, Classifier and Segmenter (``io.images.rgb_input``):
uint8 RGB, RGBA composited on white; floats, empty arrays and bad settings are one-line errors."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

import glomkit
from glomkit import GlomkitError
from glomkit.io.images import composite_on_white, read_rgb, rgb_input
from glomkit.models.registry import WEIGHTS_DIR
from glomkit.slide.reader import Slide

MODELS = all((WEIGHTS_DIR / f"{t}.onnx").is_file() for t in ("detector", "classifier", "segmenter"))
needs_models = pytest.mark.skipif(not MODELS, reason="bundled models are not built yet")


def _rgba(h: int = 64, w: int = 64) -> np.ndarray:
    """Black RGB under alpha: transparent left half, opaque right half (a pinkish square)."""
    img = np.zeros((h, w, 4), np.uint8)
    img[:, w // 2 :] = (200, 80, 160, 255)
    return img


@pytest.mark.parametrize(
    ("array", "needle"),
    [
        (np.full((8, 8, 3), 0.5, np.float32), "for floats in [0, 1]"),
        (np.zeros((8, 8, 3), np.uint16), "uint16"),
        (np.zeros((8, 8), np.uint8), "shape (8, 8)"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        (np.zeros((8, 0, 3), np.uint8), "empty"),
    ],
)
def test_the_rule_refuses_in_one_line(array, needle):
    with pytest.raises(GlomkitError, match="expected an RGB uint8|empty") as e:
        rgb_input(array, "patches[0]")
    assert needle in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith("patches[0]")


def test_alpha_is_composited_on_white(tmp_path):
    out = rgb_input(_rgba(), "image")
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 63].tolist() == [200, 80, 160]
    half = composite_on_white(np.array([[[0, 0, 0, 128]]], np.uint8))
    assert half[0, 0].tolist() == [127, 127, 127]
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), cv2.cvtColor(_rgba(), cv2.COLOR_RGBA2BGRA))
    assert read_rgb(p)[0, 0].tolist() == [255, 255, 255]  # a path: the same rule
    with Slide(p, mpp=0.5) as s:  # a plain image slide as well
        assert s.read_level(0, 0, 64, 64)[0, 0].tolist() == [255, 255, 255]
    with Slide.from_array(_rgba(), 0.5) as s:
        assert s.read_level(0, 0, 64, 64)[5, 5].tolist() == [255, 255, 255]


@needs_models
def test_all_three_models_take_the_same_rule():
    det, cls, seg = glomkit.Detector.load(), glomkit.Classifier.load(), glomkit.Segmenter.load()
    floats = np.full((64, 64, 3), 0.8, np.float32)
    messages = []
    for run in (lambda: det.run(floats, mpp=0.5), lambda: cls.run(floats[None]), lambda: seg.run([floats])):
        with pytest.raises(GlomkitError, match="expected an RGB uint8 array") as e:
            run()
        messages.append(str(e.value))
    assert all("float32" in m and "\n" not in m for m in messages)
    empty = np.zeros((0, 64, 3), np.uint8)
    for run in (lambda: det.run(empty, mpp=0.5), lambda: cls.run([empty]), lambda: seg.run([empty])):
        with pytest.raises(GlomkitError, match="empty"):
            run()
    # a transparent patch is a white one
    white = np.full((64, 64, 3), 255, np.uint8)
    clear = np.zeros((64, 64, 4), np.uint8)
    a, b = cls.run([white]), cls.run([clear])
    assert a[0].probs == pytest.approx(b[0].probs, abs=1e-6)


@needs_models
def test_bad_settings_are_refused(tmp_path):
    det = glomkit.Detector.load()
    img = np.full((128, 128, 3), 240, np.uint8)
    for bad in (math.nan, -0.1, 1.5, "x"):
        with pytest.raises(GlomkitError, match="score_threshold=.*from 0 to 1"):
            det.run(img, mpp=0.5, score_threshold=bad)
    for threads in (-4, 1.5, True):
        with pytest.raises(GlomkitError, match=r"threads=.*1 or more"):
            glomkit.Classifier.load(threads=threads)
    p = tmp_path / "s.png"
    cv2.imwrite(str(p), img)
    with pytest.raises(GlomkitError, match="threads=-4"):
        glomkit.run_slide(p, mpp=0.5, threads=-4)
    with pytest.raises(GlomkitError, match="nms_iou="):
        glomkit.run_slide(p, mpp=0.5, nms_iou=math.nan, threads=1)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    seg = glomkit.api.Segmentation(mask, int(mask.sum()), np.zeros((0, 2)))
    for bad in (-1, 0, math.nan, math.inf):
        with pytest.raises(GlomkitError, match="um_per_px="):
            seg.measure(um_per_px=bad)
    assert seg.measure(um_per_px=0.5)["area_um2"] == pytest.approx(256 * 0.25)
