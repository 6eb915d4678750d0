"""Glomerulus score of a panel: 1 - P(non_glomerular) from a classifier model file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from glomkit.models.runtime import OnnxModel


def load_classifier(
    spec: str | Path | None = None, device: str = "auto", threads: int | None = None
) -> OnnxModel:
    """The classifier ONNX model given by path or bundled name (None: the bundled default)."""
    from glomkit.models.registry import resolve_model

    return OnnxModel(
        resolve_model(spec, "classifier"), device=device, threads=threads, expect_task="classifier"
    )


def _fit(panel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return cv2.resize(np.ascontiguousarray(panel[:, :, :3]), (w, h), interpolation=cv2.INTER_AREA)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _are_probabilities(y: np.ndarray, name: str) -> bool:
    if "prob" in name.lower():
        return True
    return bool(np.all(y >= 0) and np.allclose(y.sum(axis=1), 1.0, atol=1e-3))


def classify_panels(model: OnnxModel, panels: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
    """Class probabilities (N, n_classes) of RGB panels, each resized to the model's input size."""
    if not panels:
        return np.zeros((0, len(model.info.scheme)), dtype=np.float32)
    if "probs" in model.output_names:
        try:  # the classifier stage's own entry point (same resizing as in training)
            from glomkit.infer.classify import classify_patches
        except ImportError:
            classify_patches = None
        if classify_patches is not None:
            return np.asarray(classify_patches(model, panels, batch_size), dtype=np.float32)
    patches = [_fit(p, model.info.input_size) for p in panels]
    out = []
    for i in range(0, len(patches), batch_size):
        y = model.run_images(np.stack(patches[i : i + batch_size]))[model.output_names[0]]
        out.append(y if _are_probabilities(y, model.output_names[0]) else _softmax(y))
    return np.concatenate(out).astype(np.float32)


def glomerulus_scores(model: OnnxModel, panels: list[np.ndarray]) -> np.ndarray:
    """P(glomerulus) per panel: the scheme's glomerulus classes summed (= 1 - P(non_glomerular))."""
    probs = classify_panels(model, panels)
    if len(probs) == 0:
        return np.zeros(0, dtype=np.float64)
    return model.info.scheme.glomerulus_probability(probs)
