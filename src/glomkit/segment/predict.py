"""Segment glomerulus patches with an ONNX segmenter (numpy + onnxruntime; no torch).

Usage::

    model = OnnxModel(resolve_model(None, "segmenter"), expect_task="segmenter")
    masks = segment_patches(model, patches)  # bool (N,H,W) at the patches' own size
"""

from __future__ import annotations

import numpy as np

from glomkit import GlomkitError
from glomkit.models.runtime import OnnxModel, prepare_batch
from glomkit.segment.dataset import fit_to_size, unfit_from_size


def predict_probs(
    model: OnnxModel, patches: np.ndarray | list[np.ndarray], batch_size: int = 16
) -> list[np.ndarray]:
    """Foreground probability maps (float32, each at its patch's own size) for uint8 RGB patches."""
    size, width = model.info.input_size
    if size != width:
        raise GlomkitError(f"{model.path}: non-square input size {size}x{width} is not supported")
    mode = model.meta.get("resize_mode", "resize")
    out: list[np.ndarray] = []
    items = list(patches)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        for p in chunk:
            if p.ndim != 3 or p.shape[2] != 3:
                raise GlomkitError(f"segment_patches: expected RGB patches (H,W,3), got shape {p.shape}")
        batch = np.stack([fit_to_size(np.asarray(p, np.uint8), size, mode) for p in chunk])
        prob = model.run(prepare_batch(batch, model.info))["prob"][:, 0]
        for p, pr in zip(chunk, prob, strict=True):
            out.append(unfit_from_size(pr.astype(np.float32), p.shape[:2], mode))
    return out


def segment_patches(model: OnnxModel, patches: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Bool masks (N,H,W) at the patches' own size, thresholded at the model's ``threshold``."""
    patches = np.asarray(patches)
    if patches.ndim != 4 or patches.shape[-1] != 3:
        raise GlomkitError(f"segment_patches: expected uint8 (N,H,W,3), got shape {patches.shape}")
    thr = float(model.meta.get("threshold", 0.5))
    if len(patches) == 0:
        return np.zeros(patches.shape[:3], dtype=bool)
    return np.stack([p > thr for p in predict_probs(model, patches, batch_size)])
