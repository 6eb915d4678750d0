"""Segment glomerulus patches with an ONNX segmenter (numpy + onnxruntime; no torch).

Usage::

    model = OnnxModel(resolve_model(None, "segmenter"), expect_task="segmenter")
    masks = segment_patches(model, patches)  # bool (N,H,W) at the patches' own size
"""

from __future__ import annotations

import cv2
import numpy as np

from glomkit import GlomkitError
from glomkit.models.runtime import OnnxModel, prepare_batch


def fit_to_size(img: np.ndarray, size: int, mode: str, is_mask: bool = False) -> np.ndarray:
    """Bring an image (or mask) to size x size: bilinear ``resize``, or constant ``pad`` (centred, 0)."""
    h, w = img.shape[:2]
    if mode == "pad" and h <= size and w <= size:
        top, left = (size - h) // 2, (size - w) // 2
        return cv2.copyMakeBorder(
            img, top, size - h - top, left, size - w - left, cv2.BORDER_CONSTANT, value=0
        )
    if mode not in ("pad", "resize"):
        raise GlomkitError(f"unknown resize mode {mode!r} (pad or resize)")
    interp = cv2.INTER_NEAREST if is_mask else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def unfit_from_size(prob: np.ndarray, shape: tuple[int, int], mode: str) -> np.ndarray:
    """Inverse of :func:`fit_to_size` for a probability map: crop the padding or resize back."""
    size = prob.shape[0]
    h, w = shape
    if mode == "pad" and h <= size and w <= size:
        top, left = (size - h) // 2, (size - w) // 2
        return prob[top : top + h, left : left + w]
    return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)


def predict_probs(
    model: OnnxModel, patches: np.ndarray | list[np.ndarray], batch_size: int = 16
) -> list[np.ndarray]:
    """Foreground probability maps (float32, each at its patch's own size) for uint8 RGB patches."""
    size, width = model.info.input_size
    if size != width:
        raise GlomkitError(f"{model.path}: non-square input size {size}x{width} is not supported")
    mode = model.info.typed.resize_mode
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
    thr = model.info.typed.threshold
    if len(patches) == 0:
        return np.zeros(patches.shape[:3], dtype=bool)
    return np.stack([p > thr for p in predict_probs(model, patches, batch_size)])
