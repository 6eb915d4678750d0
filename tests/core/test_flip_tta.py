"""Flip test-time augmentation of a batch of model outputs (glomkit.core.tta.flip_tta)."""

from __future__ import annotations

import numpy as np
import pytest

from glomkit.core.tta import flip_tta


def _images(n: int = 2, h: int = 8, w: int = 12) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, h, w, 3), dtype=np.uint8)


def test_equivariant_model_is_unchanged():
    """A model whose output follows the input's flips gives the same map with and without TTA."""

    def run(x):
        return {"heatmap": x[..., 0][:, None].astype(np.float32)}

    x = _images()
    np.testing.assert_allclose(flip_tta(run, x)["heatmap"], run(x)["heatmap"])


def test_outputs_are_flipped_back_and_averaged():
    """A model that always answers a left-to-right ramp: TTA averages the ramp with its mirror."""
    ramp = np.arange(12, dtype=np.float32)

    def run(x):
        n, h, w, _ = x.shape
        return {"radius": np.broadcast_to(ramp, (n, 1, h, w)).copy(), "offset": np.ones((n, 2, h, w))}

    out = flip_tta(run, _images())
    # runs: '' -> ramp, 'h' -> ramp flipped back = reversed ramp, 'v' -> ramp
    expect = (2 * ramp + ramp[::-1]) / 3
    np.testing.assert_allclose(out["radius"][0, 0, 3], expect, rtol=1e-6)
    np.testing.assert_array_equal(out["offset"], 1.0)  # taken from the unflipped run


def test_unflipped_only_output_needs_the_unflipped_run():
    def run(x):
        return {"offset": np.zeros((len(x), 2, 8, 12))}

    with pytest.raises(ValueError, match="offset"):
        flip_tta(run, _images(), flips=("h", "v"))


def test_run_setting_overrides_the_model_metadata():
    from glomkit.infer.detect import detection_tta
    from glomkit.models.metadata import DetectorMetadata

    on = DetectorMetadata(path="m.onnx", task="detector", input_size=(64, 64), tta=True)
    off = DetectorMetadata(path="m.onnx", task="detector", input_size=(64, 64))
    assert detection_tta(None, on) and not detection_tta(None, off)
    assert not detection_tta(False, on)
    assert detection_tta(True, off)
