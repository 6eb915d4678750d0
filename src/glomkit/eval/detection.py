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

from glomkit.detect.geometry import circle_iou

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
    if not g_anns:
        return {**out, **{m: -1.0 for m in METRIC_NAMES}}
    cgt = _coco(list(ids.values()), g_anns)
    cdt = _coco(list(ids.values()), d_anns)
    ev = _circle_cocoeval_class()(cgt, cdt, iouType="bbox")
    ev.params.maxDets = [1, 10, max_dets]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {**out, **{m: float(v) for m, v in zip(METRIC_NAMES, ev.stats, strict=True)}}
