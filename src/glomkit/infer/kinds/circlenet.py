"""CircleNet: a centre heatmap, a radius map and a sub-pixel offset, decoded into circles.

The one batch-and-decode loop (:func:`detect_batches`) serves the pipeline's evaluation, the
trainer's validation (a torch network behind the same ``run`` callable) and field evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from glomkit.infer.kinds import DetectorKind
from glomkit.infer.tta import flip_tta
from glomkit.slide.grid import Tile

OUTPUTS = ("heatmap", "radius", "offset")
EVAL_SCORE_THRESHOLD = 0.05  # AP integrates over the whole score range: keep the low-score tail


def decode_circlenet(
    heatmap: np.ndarray,
    radius: np.ndarray,
    offset: np.ndarray,
    stride: int = 4,
    score_threshold: float = 0.3,
    top_k: int = 100,
) -> np.ndarray:
    """Circles (K,4) = x, y, r, score in input pixels for ONE image, best score first.

    ``heatmap`` (1,h,w) or (h,w) after sigmoid, ``radius`` (1,h,w) in input px, ``offset`` (2,h,w)
    in heatmap cells. Peaks are cells equal to their 3x3 max (``cv2.dilate``) at or above
    ``score_threshold``; the ``top_k`` best are kept.
    """
    hm = np.asarray(heatmap, np.float32).reshape(np.shape(heatmap)[-2:])
    rad = np.asarray(radius, np.float32).reshape(hm.shape)
    off = np.asarray(offset, np.float32).reshape(2, *hm.shape)
    peak = cv2.dilate(hm, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero((hm >= peak) & (hm >= score_threshold))
    scores = hm[ys, xs]
    order = np.argsort(-scores, kind="stable")[:top_k]
    ys, xs, scores = ys[order], xs[order], scores[order]
    x = (xs + off[0, ys, xs]) * stride
    y = (ys + off[1, ys, xs]) * stride
    r = rad[ys, xs]
    return np.stack([x, y, r, scores], axis=1).astype(np.float64).reshape(-1, 4)


def decode_outputs(
    out: Mapping[str, np.ndarray], k: int, stride: int, score_threshold: float, top_k: int
) -> np.ndarray:
    """Circles (K,4) of image ``k`` of a batch's CircleNet outputs."""
    return decode_circlenet(
        out["heatmap"][k], out["radius"][k], out["offset"][k], stride, score_threshold, top_k
    )


def detect_batches(
    run: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    images: Sequence[np.ndarray],
    *,
    stride: int = 4,
    score_threshold: float = EVAL_SCORE_THRESHOLD,
    top_k: int = 100,
    tta: bool = False,
    batch: int = 8,
) -> list[np.ndarray]:
    """(K,4) circles per image: ``run`` (NHWC uint8 -> outputs) on same-size images in batches."""
    out: list[np.ndarray] = []
    for i in range(0, len(images), batch):
        x = np.stack(images[i : i + batch])
        o = flip_tta(run, x, unflipped_only=("offset",)) if tta else run(x)
        out.extend(decode_outputs(o, j, stride, score_threshold, top_k) for j in range(len(x)))
    return out


def detect_images(
    model,
    images: Sequence[np.ndarray],
    tta: bool = False,
    batch: int = 8,
    score_threshold: float = EVAL_SCORE_THRESHOLD,
) -> list[np.ndarray]:
    """An ``OnnxModel`` CircleNet on same-size uint8 RGB images: list of (K,4) x, y, r, score."""
    meta = model.info.typed
    return detect_batches(
        model.run_images,
        images,
        stride=meta.stride,
        score_threshold=score_threshold,
        top_k=meta.top_k,
        tta=tta,
        batch=batch,
    )


def decode_tile(
    out: Mapping[str, np.ndarray], k: int, meta: Mapping[str, Any], thr: float, tile: Tile
) -> np.ndarray:
    """Circles (K,4) in tile px of image ``k`` of a batch (CircleNet peaks are never cut by padding)."""
    return decode_outputs(out, k, meta.stride, thr, meta.top_k)


def _predict(model, images: list[np.ndarray], tta: bool) -> list[np.ndarray]:
    return detect_images(model, images, tta=tta)


def _score(model, items: list[tuple[str, Any]], preds: list[np.ndarray]) -> dict[str, Any]:
    from glomkit.eval.detection import evaluate_circles

    gt = {k: f.circles for k, f in items}
    return {"metrics": evaluate_circles(gt, {k: p for (k, _), p in zip(items, preds, strict=True)})}


KIND = DetectorKind(
    name="circlenet",
    outputs=OUTPUTS,
    decode_tile=decode_tile,
    predict=_predict,
    score=_score,
    architectures=("circlenet",),
    trainer="glomkit.detect.train:train_from_request",
    unflipped=("offset",),
)
