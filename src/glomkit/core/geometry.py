"""Circle geometry: exact circle IoU (pairwise, vectorised) and circle NMS.

Circles are arrays of shape (N, 3) holding (x, y, r) in one coordinate frame (level-0 pixels
outside the slide module).
"""

from __future__ import annotations

import numpy as np

# circle-IoU above which the lower-scored of two detections is dropped: the one default of every
# detector, decoder and slide-wide merge (a model's metadata may say otherwise: decode.nms_iou)
DEFAULT_NMS_IOU = 0.35


def circle_intersection_area(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact intersection areas between every circle of ``a`` (N,3) and ``b`` (M,3): (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 3)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 3)
    x1, y1, r1 = (a[:, i, None] for i in range(3))
    x2, y2, r2 = (b[None, :, i] for i in range(3))
    d = np.hypot(x1 - x2, y1 - y2)
    r1b, r2b, db = np.broadcast_arrays(r1, r2, d)
    out = np.zeros(db.shape, dtype=np.float64)
    rmin = np.minimum(r1b, r2b)
    contained = db <= np.abs(r1b - r2b)
    out[contained] = np.pi * rmin[contained] ** 2
    partial = (~contained) & (db < r1b + r2b)
    if partial.any():
        dd, ra, rb = db[partial], r1b[partial], r2b[partial]
        ca = np.clip((dd**2 + ra**2 - rb**2) / (2 * dd * ra), -1.0, 1.0)
        cb = np.clip((dd**2 + rb**2 - ra**2) / (2 * dd * rb), -1.0, 1.0)
        tri = 0.5 * np.sqrt(
            np.clip((-dd + ra + rb) * (dd + ra - rb) * (dd - ra + rb) * (dd + ra + rb), 0, None)
        )
        out[partial] = ra**2 * np.arccos(ca) + rb**2 * np.arccos(cb) - tri
    return out


def circle_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise circle IoU: exact intersection area over union area, shape (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 3)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 3)
    inter = circle_intersection_area(a, b)
    area_a = np.pi * a[:, 2, None] ** 2
    area_b = np.pi * b[None, :, 2] ** 2
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def circle_nms(circles: np.ndarray, scores: np.ndarray, iou_threshold: float = DEFAULT_NMS_IOU) -> np.ndarray:
    """Greedy NMS by circle IoU; returns the kept indices, best score first.

    The IoU of each kept circle against all remaining ones is computed in one vectorised call.
    Circles are first bucketed on a grid so that slide-wide NMS over thousands of detections
    only compares neighbours.
    """
    circles = np.asarray(circles, dtype=np.float64).reshape(-1, 3)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = len(circles)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    # Pairwise only between circles whose boxes overlap: sort once, then sweep in score order.
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    x, y, r = circles[:, 0], circles[:, 1], circles[:, 2]
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        near = (~suppressed) & (np.abs(x - x[i]) < r + r[i]) & (np.abs(y - y[i]) < r + r[i])
        near[i] = False
        idx = np.flatnonzero(near)
        if idx.size:
            iou = circle_iou(circles[i : i + 1], circles[idx])[0]
            suppressed[idx[iou > iou_threshold]] = True
        suppressed[i] = True
    return np.asarray(keep, dtype=np.int64)
