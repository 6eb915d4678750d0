"""Segmentation as a detector: a tile segmenter's probability map -> connected components -> circles.

A component is one 8-connected region of the thresholded map (optionally split where glomeruli
touch, by a distance-transform watershed), its circle the minimum enclosing circle or the
equal-area circle, its score the mean probability inside. The trainer is
``glomkit.detect.segdetect`` (U-Net or SegNet); its model files say ``decode.method = "components"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from glomkit import GlomkitError
from glomkit.infer.kinds import DetectorKind
from glomkit.infer.tta import flip_tta
from glomkit.models.metadata import DetectorMetadata
from glomkit.slide.grid import Tile

EVAL_SCORE_THRESHOLD = 0.05


def _split_touching(comp: np.ndarray, min_sep_px: float) -> np.ndarray:
    """Labels of a 0/1 mask split where round objects touch (seeded geodesic growth).

    Seeds are maxima of the distance transform over a window of ``2 * min_sep_px`` lying at least
    ``min_sep_px / 2`` inside the mask; a component without such a seed keeps its own label. The
    seeds grow inside the mask one pixel per step (a cheap stand-in for a distance-transform
    watershed), so each pixel joins the seed geodesically nearest to it.
    """
    n_cc, cc = cv2.connectedComponents(comp, connectivity=8)
    dist = cv2.distanceTransform(comp, cv2.DIST_L2, 5)
    k = max(int(2 * min_sep_px) | 1, 3)
    peak = cv2.dilate(dist, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    seeds = ((dist >= peak) & (dist >= 0.5 * min_sep_px)).astype(np.uint8)
    n, markers = cv2.connectedComponents(seeds, connectivity=8)
    if n <= 2:  # one seed (or none): nothing to split
        return cc
    labels = markers.astype(np.float32)
    seeded = np.zeros(n_cc, bool)
    seeded[np.unique(cc[seeds > 0])] = True
    for lab in np.nonzero(~seeded[1:])[0] + 1:  # unseeded components are their own seed
        labels[cc == lab] = n
        n += 1
    inside = comp > 0
    cross = np.ones((3, 3), np.uint8)
    while True:
        todo = inside & (labels == 0)
        if not todo.any():
            break
        grown = cv2.dilate(labels, cross)
        take = todo & (grown > 0)
        if not take.any():
            break
        labels[take] = grown[take]
    return labels.astype(np.int32)


def decode_components(
    prob: np.ndarray,
    threshold: float = 0.5,
    min_diameter_px: float = 5.0,
    circle: str = "enclosing",
    split_touching: bool = False,
    score_threshold: float = 0.0,
    drop_edges: tuple[bool, bool, bool, bool] = (False, False, False, False),
) -> np.ndarray:
    """Circles (K,4) = x, y, r, score in input pixels for ONE probability map, best score first.

    ``prob`` (H,W) or (1,H,W) in [0,1]. Components are 8-connected regions of ``prob >=
    threshold`` with an equal-area diameter of at least ``min_diameter_px``. ``circle``:
    'enclosing' (minimum enclosing circle of the component's pixels, the ground-truth
    definition) or 'area' (centroid and equal-area radius). ``split_touching`` separates touching
    glomeruli by a watershed on the distance transform. ``drop_edges`` (left, top, right, bottom)
    drops components touching those image edges (cut by a tile edge). Coordinates are
    continuous: pixel (i, j) covers [j, j+1) x [i, i+1).
    """
    p = np.asarray(prob, np.float32).reshape(np.shape(prob)[-2:])
    fg = (p >= threshold).astype(np.uint8)
    if not fg.any():
        return np.zeros((0, 4))
    if split_touching:
        labels = _split_touching(fg, max(min_diameter_px, 2.0))
    else:
        labels = cv2.connectedComponents(fg, connectivity=8)[1]
    h, w = p.shape
    out = []
    min_area = math.pi * (min_diameter_px / 2.0) ** 2
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(1, int(labels.max()) + 2))
    for lab in range(1, int(labels.max()) + 1):
        idx = order[bounds[lab - 1] : bounds[lab]]
        if len(idx) == 0 or len(idx) < min_area:
            continue
        ys, xs = np.divmod(idx, w)
        left, top, right, bottom = drop_edges
        if (
            (left and xs.min() == 0)
            or (top and ys.min() == 0)
            or (right and xs.max() == w - 1)
            or (bottom and ys.max() == h - 1)
        ):
            continue
        score = float(p.ravel()[idx].mean())
        if score < score_threshold:
            continue
        if circle == "area":
            cx, cy, r = xs.mean() + 0.5, ys.mean() + 0.5, math.sqrt(len(idx) / math.pi)
        else:
            pts = np.stack([xs, ys], axis=1).astype(np.float32)
            (ex, ey), er = cv2.minEnclosingCircle(cv2.convexHull(pts))
            cx, cy, r = ex + 0.5, ey + 0.5, er + 0.5
        out.append((cx, cy, r, score))
    if not out:
        return np.zeros((0, 4))
    arr = np.asarray(out, np.float64)
    return arr[np.argsort(-arr[:, 3], kind="stable")]


def decode_settings(meta: DetectorMetadata) -> dict[str, Any]:
    """Keyword arguments of :func:`decode_components` from a model's typed metadata (px at its mpp)."""
    return {
        "threshold": meta.threshold,
        "min_diameter_px": meta.min_diameter_um / meta.mpp,
        "circle": meta.circle,
        "split_touching": meta.split_touching,
    }


def segmentation_counts(prob: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Pixel counts (tp, fp, fn, tn) of the thresholded ``prob`` against a 0/1 ``mask``."""
    pred = np.asarray(prob).reshape(mask.shape) >= threshold
    gt = mask.astype(bool)
    tp = int((pred & gt).sum())
    fp = int((pred & ~gt).sum())
    fn = int((~pred & gt).sum())
    return np.array([tp, fp, fn, pred.size - tp - fp - fn], np.int64)


def segmentation_metrics(counts: np.ndarray) -> dict[str, float]:
    """Mean IoU (glomerulus and background, pixels pooled over all fields), the glomerulus IoU and
    pixel accuracy from summed (tp, fp, fn, tn) counts."""
    tp, fp, fn, tn = (float(v) for v in counts)
    iou_fg = tp / max(tp + fp + fn, 1.0)
    iou_bg = tn / max(tn + fp + fn, 1.0)
    return {
        "mIoU": (iou_fg + iou_bg) / 2.0,
        "IoU_glomerulus": iou_fg,
        "IoU_background": iou_bg,
        "pixel_accuracy": (tp + tn) / max(tp + fp + fn + tn, 1.0),
    }


def score_fields(probs: list[np.ndarray], fields_, decode: dict[str, Any]) -> dict[str, float]:
    """Circle AP (COCO, circle IoU) and segmentation metrics of probability maps on fields with masks."""
    from glomkit.eval.detection import evaluate_circles

    counts = np.zeros(4, np.int64)
    preds = {}
    for i, (p, f) in enumerate(zip(probs, fields_, strict=True)):
        if f.mask is None:
            raise GlomkitError("segmentation metrics need fields with masks")
        counts += segmentation_counts(p, f.mask, decode.get("threshold", 0.5))
        preds[i] = decode_components(p, score_threshold=EVAL_SCORE_THRESHOLD, **decode)
    out = evaluate_circles({i: f.circles for i, f in enumerate(fields_)}, preds)
    out.update(segmentation_metrics(counts))
    return out


def predict_probability_onnx(model, images: list[np.ndarray], batch: int = 8, tta: bool = False):
    """Probability maps (H,W) of an ``OnnxModel`` segmentation detector on same-size uint8 RGB images."""
    out = []
    name = model.output_names[0]
    for i in range(0, len(images), batch):
        x = np.stack(images[i : i + batch])
        o = flip_tta(model.run_images, x) if tta else model.run_images(x)
        out.extend(o[name][:, 0])
    return out


def decode_tile(
    out: Mapping[str, np.ndarray], k: int, meta: Mapping[str, Any], thr: float, tile: Tile
) -> np.ndarray:
    """Circles (K,4) in tile px from image ``k`` of a batch's probability maps.

    Components touching an interior tile edge are dropped (cut; whole in a neighbouring tile),
    and so is the padding beyond a partial tile.
    """
    prob = out["probability"][k, 0, : tile.out_h, : tile.out_w]
    edges = (not tile.at_left, not tile.at_top, not tile.at_right, not tile.at_bottom)
    return decode_components(prob, score_threshold=thr, drop_edges=edges, **decode_settings(meta))


def _score(model, items: list[tuple[str, Any]], probs: list[np.ndarray]) -> dict[str, Any]:
    metrics = score_fields(probs, [f for _, f in items], decode_settings(model.info.typed))
    return {"decode": model.meta.get("decode"), "metrics": metrics}


KIND = DetectorKind(
    name="components",
    outputs=("probability",),
    decode_tile=decode_tile,
    predict=lambda model, images, tta: predict_probability_onnx(model, images, tta=tta),
    score=_score,
    architectures=("unet", "segnet"),
    trainer="glomkit.detect.segdetect:train_from_request",
    needs_masks=True,
    default_backbone="resnet10t",
)
