"""Circle detection AP: pycocotools' COCOeval with the box IoU replaced by exact circle IoU.

Areas are pi r^2, so COCO's area ranges apply to circles (small < 32^2, medium < 96^2 px^2).

>>> evaluate_circles({"a": np.array([[10, 10, 5]])}, {"a": np.array([[10, 10, 5, 0.9]])})["AP50"]  # doctest: +SKIP
1.0
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping

import numpy as np

from glomkit.core.geometry import circle_iou

METRIC_NAMES = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AR1", "AR10", "AR", "AR_S", "AR_M", "AR_L")


def _coco(images: list[int], anns: list[dict]):
    from pycocotools.coco import COCO

    c = COCO()
    c.dataset = {
        "images": [{"id": i} for i in images],
        "categories": [{"id": 1, "name": "glomerulus"}],
        "annotations": anns,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        c.createIndex()
    return c


def _coco_stats(evaluator, images: list[int], g_anns: list[dict], d_anns: list[dict], max_dets: int):
    """COCO's 12 summary figures (``METRIC_NAMES``) of ``evaluator`` (a COCOeval class); -1 for
    all when there is no truth object."""
    if not g_anns:
        return {m: -1.0 for m in METRIC_NAMES}
    ev = evaluator(_coco(images, g_anns), _coco(images, d_anns), iouType="bbox")
    ev.params.maxDets = [1, 10, max_dets]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {m: float(v) for m, v in zip(METRIC_NAMES, ev.stats, strict=True)}


def _ann(aid: int, img: int, x: float, y: float, r: float, score: float | None = None) -> dict:
    a = {
        "id": aid,
        "image_id": img,
        "category_id": 1,
        "circle": [float(x), float(y), float(r)],
        "bbox": [float(x - r), float(y - r), float(2 * r), float(2 * r)],
        "area": float(np.pi * r * r),
        "iscrowd": 0,
    }
    if score is not None:
        a["score"] = float(score)
    return a


def _circle_cocoeval_class():
    from pycocotools.cocoeval import COCOeval

    class CircleCOCOeval(COCOeval):
        """COCOeval whose IoU is the exact circle IoU of the ``circle`` field (x, y, r)."""

        def computeIoU(self, imgId, catId):  # noqa: N802 - pycocotools' name
            p = self.params
            gt = self._gts[imgId, catId]
            dt = self._dts[imgId, catId]
            if len(gt) == 0 and len(dt) == 0:
                return []
            inds = np.argsort([-d["score"] for d in dt], kind="mergesort")
            dt = [dt[i] for i in inds]
            if len(dt) > p.maxDets[-1]:
                dt = dt[: p.maxDets[-1]]
            d = np.array([a["circle"] for a in dt], dtype=np.float64).reshape(-1, 3)
            g = np.array([a["circle"] for a in gt], dtype=np.float64).reshape(-1, 3)
            return circle_iou(d, g)

    return CircleCOCOeval


def evaluate_circles(
    gt: Mapping[object, np.ndarray], preds: Mapping[object, np.ndarray], max_dets: int = 100
) -> dict[str, float]:
    """COCO metrics for circles: AP (0.5:0.95), AP50, AP75, AP_S/M/L, AR1, AR10, AR (@max_dets), AR_S/M/L.

    ``gt[image_id]`` is (N,3) x, y, r; ``preds[image_id]`` is (M,4) x, y, r, score. Images in
    ``preds`` but not in ``gt`` count as images without objects. Metrics that COCO cannot
    compute (no object in an area range) are -1. Also returns ``n_images``, ``n_gt``, ``n_pred``.
    """
    keys = list(dict.fromkeys(list(gt) + list(preds)))
    ids = {k: i + 1 for i, k in enumerate(keys)}
    g_anns, d_anns = [], []
    for k in keys:
        for x, y, r in np.asarray(gt.get(k, np.zeros((0, 3))), np.float64).reshape(-1, 3):
            g_anns.append(_ann(len(g_anns) + 1, ids[k], x, y, r))
        for x, y, r, s in np.asarray(preds.get(k, np.zeros((0, 4))), np.float64).reshape(-1, 4):
            d_anns.append(_ann(len(d_anns) + 1, ids[k], x, y, r, s))
    out = {"n_images": float(len(keys)), "n_gt": float(len(g_anns)), "n_pred": float(len(d_anns))}
    return {**out, **_coco_stats(_circle_cocoeval_class(), list(ids.values()), g_anns, d_anns, max_dets)}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of boxes x, y, w, h."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y1 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def circle_boxes(circles: np.ndarray) -> np.ndarray:
    """The boxes x, y, w, h (N,4) around circles (N,>=3) x, y, r."""
    c = np.asarray(circles, np.float64).reshape(len(circles), -1)
    return np.column_stack([c[:, 0] - c[:, 2], c[:, 1] - c[:, 2], 2 * c[:, 2], 2 * c[:, 2]])


def evaluate_boxes(
    gt: Mapping[object, np.ndarray], preds: Mapping[object, np.ndarray], max_dets: int = 100
) -> dict[str, float]:
    """Standard COCO box metrics (pycocotools ``COCOeval``, iouType bbox), names as :func:`evaluate_circles`.

    ``gt[image_id]`` is (N,4) x, y, w, h; ``preds[image_id]`` is (M,5) x, y, w, h, score.
    """
    from pycocotools.cocoeval import COCOeval

    keys = list(dict.fromkeys(list(gt) + list(preds)))
    ids = {k: i + 1 for i, k in enumerate(keys)}

    def ann(aid, img, box, score=None):
        a = {"id": aid, "image_id": img, "category_id": 1, "bbox": [float(v) for v in box]}
        a.update(area=float(box[2] * box[3]), iscrowd=0)
        if score is not None:
            a["score"] = float(score)
        return a

    g_anns, d_anns = [], []
    for k in keys:
        for b in np.asarray(gt.get(k, np.zeros((0, 4))), np.float64).reshape(-1, 4):
            g_anns.append(ann(len(g_anns) + 1, ids[k], b))
        for b in np.asarray(preds.get(k, np.zeros((0, 5))), np.float64).reshape(-1, 5):
            d_anns.append(ann(len(d_anns) + 1, ids[k], b[:4], b[4]))
    out = {"n_images": float(len(keys)), "n_gt": float(len(g_anns)), "n_pred": float(len(d_anns))}
    return {**out, **_coco_stats(COCOeval, list(ids.values()), g_anns, d_anns, max_dets)}


def greedy_match(iou: np.ndarray, scores: np.ndarray, min_iou: float = 0.5) -> list[tuple[int, int]]:
    """(prediction, truth) pairs: predictions in descending score each take the free truth of
    highest IoU ≥ ``min_iou`` (as COCO matches). ``iou`` is (n_pred, n_gt)."""
    pairs: list[tuple[int, int]] = []
    taken: set[int] = set()
    for i in np.argsort(-np.asarray(scores), kind="mergesort"):
        best, best_j = min_iou, -1
        for j in range(iou.shape[1]):
            if j not in taken and iou[i, j] >= best:
                best, best_j = iou[i, j], j
        if best_j >= 0:
            taken.add(best_j)
            pairs.append((int(i), best_j))
    return pairs


def recall_precision(
    gt: Mapping[object, np.ndarray], preds: Mapping[object, np.ndarray], min_iou: float = 0.5
) -> dict[str, float]:
    """Recall, precision and F1 of box predictions (x, y, w, h, score) that are all kept (already
    thresholded), matched greedily to truth boxes at box IoU ≥ ``min_iou``."""
    tp = n_gt = n_pred = 0
    for k in set(gt) | set(preds):
        g = np.asarray(gt.get(k, np.zeros((0, 4))), np.float64).reshape(-1, 4)
        p = np.asarray(preds.get(k, np.zeros((0, 5))), np.float64).reshape(-1, 5)
        n_gt += len(g)
        n_pred += len(p)
        if len(g) and len(p):
            tp += len(greedy_match(box_iou(p[:, :4], g), p[:, 4], min_iou))
    rec = tp / n_gt if n_gt else float("nan")
    prec = tp / n_pred if n_pred else float("nan")
    f1 = 2 * rec * prec / (rec + prec) if n_gt and n_pred and (rec + prec) > 0 else 0.0
    return {
        "recall": rec,
        "precision": prec,
        "f1": f1,
        "tp": float(tp),
        "n_gt": float(n_gt),
        "n_pred": float(n_pred),
    }


def f1_best_threshold(
    gt: Mapping[object, np.ndarray],
    preds: Mapping[object, np.ndarray],
    min_iou: float = 0.5,
    candidates: np.ndarray | None = None,
) -> dict[str, float]:
    """The score threshold with the best F1 of circle predictions (x, y, r, score) against truth
    circles (x, y, r), greedy matching at circle IoU ≥ ``min_iou``; with its recall and precision."""
    cands = np.round(np.arange(0.05, 0.95, 0.025), 3) if candidates is None else np.asarray(candidates)
    best = {"score_threshold": float(cands[0]), "f1": -1.0, "recall": 0.0, "precision": 0.0}
    n_gt = sum(len(np.asarray(g).reshape(-1, 3)) for g in gt.values())
    pairs_cache = {}
    for k in set(gt) | set(preds):
        g = np.asarray(gt.get(k, np.zeros((0, 3))), np.float64).reshape(-1, 3)
        p = np.asarray(preds.get(k, np.zeros((0, 4))), np.float64).reshape(-1, 4)
        pairs_cache[k] = (g, p, circle_iou(p[:, :3], g) if len(g) and len(p) else np.zeros((len(p), len(g))))
    for t in cands:
        tp = n_pred = 0
        for g, p, iou in pairs_cache.values():
            keep = p[:, 3] >= t
            n_pred += int(keep.sum())
            if len(g) and keep.any():
                tp += len(greedy_match(iou[keep], p[keep, 3], min_iou))
        rec = tp / n_gt if n_gt else 0.0
        prec = tp / n_pred if n_pred else 0.0
        f1 = 2 * rec * prec / (rec + prec) if rec + prec > 0 else 0.0
        if f1 > best["f1"]:
            best = {"score_threshold": float(t), "f1": f1, "recall": rec, "precision": prec}
    return best
