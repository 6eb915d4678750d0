"""Classify glomerulus patches with an ONNX classifier (numpy + onnxruntime; torch is never imported).

Patches of any size are resized to the model's ``input_size`` (``cv2.INTER_AREA`` when shrinking,
bilinear when enlarging), stain-normalised and normalised as the model's metadata says
(``stain_norm``, ``input``), and run in batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from glomkit.core.stain import stain_normaliser
from glomkit.io.images import read_rgb
from glomkit.models.runtime import OnnxModel, prepare_batch


def resize_patch(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 image to ``size`` = (height, width): area when shrinking, else bilinear."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    shrink = image.shape[0] > h or image.shape[1] > w
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def classify_patches(
    model: OnnxModel, patches: np.ndarray | Sequence[np.ndarray], batch_size: int = 32
) -> np.ndarray:
    """Class probabilities (N, C) float32 for uint8 RGB patches (N, H, W, 3) of any size."""
    info = model.info
    size = info.input_size
    n = len(patches)
    n_classes = len(info.scheme)
    out = np.zeros((n, n_classes), dtype=np.float32)
    normalise = stain_normaliser(info.typed.stain_norm)
    for start in range(0, n, batch_size):
        chunk = normalise(
            np.stack(
                [
                    resize_patch(np.asarray(p, dtype=np.uint8), size)
                    for p in patches[start : start + batch_size]
                ]
            )
        )
        probs = model.run(prepare_batch(chunk, info))["probs"]
        out[start : start + len(chunk)] = probs
    return out


def classify_and_decide(
    model: OnnxModel, patches: np.ndarray | Sequence[np.ndarray], batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated probabilities (N, C), class index (N,)): the model's temperature and GGS
    threshold applied (:class:`glomkit.infer.decision.Decision`; argmax without them)."""
    from glomkit.infer.decision import Decision

    decision = Decision.of(model.info.typed)
    probs = decision.calibrate(classify_patches(model, patches, batch_size)).astype(np.float32)
    return probs, decision.labels(probs, model.info.scheme)


def classify_files(
    model: OnnxModel,
    paths: Sequence[str | Path],
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict]:
    """One row per image: path, label, prob_<class>..., ggs_probability.

    Probabilities are temperature-scaled and the label follows the model's decision metadata
    (:func:`classify_and_decide`).

    An unreadable image raises a GlomkitError naming it. ``on_batch(n)`` is called after each
    batch of ``n`` images (for progress bars).
    """
    scheme = model.info.scheme
    rows: list[dict] = []
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start : start + batch_size])
        # each image is resized as soon as it is decoded: a batch holds one full-size image at most
        size = model.info.input_size
        probs, labels = classify_and_decide(
            model, [resize_patch(read_rgb(p, size), size) for p in chunk], batch_size
        )
        ggs = scheme.ggs_probability(probs)
        for p, pr, g, lab in zip(chunk, probs, ggs, labels, strict=True):
            row = {"path": str(p), "label": scheme.names[int(lab)]}
            row.update({f"prob_{name}": float(v) for name, v in zip(scheme.names, pr, strict=True)})
            row["ggs_probability"] = float(g)
            rows.append(row)
        if on_batch is not None:
            on_batch(len(chunk))
    return rows
