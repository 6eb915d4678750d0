"""Circle AP via COCOeval with circle IoU: IoU cases by hand, AP properties."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Point

from glomkit.core.geometry import circle_iou
from glomkit.eval.detection import evaluate_circles


def test_circle_iou_disjoint_is_zero():
    assert circle_iou([[0, 0, 5]], [[20, 0, 5]])[0, 0] == 0.0


def test_circle_iou_contained_is_squared_radius_ratio():
    assert circle_iou([[0, 0, 10]], [[2, 1, 4]])[0, 0] == pytest.approx((4 / 10) ** 2)


def test_circle_iou_equal_is_one():
    assert circle_iou([[3, 4, 7]], [[3, 4, 7]])[0, 0] == pytest.approx(1.0)


def test_circle_iou_partial_matches_shapely_polygons():
    a, b = (0.0, 0.0, 10.0), (12.0, 5.0, 8.0)
    pa = Point(a[0], a[1]).buffer(a[2], quad_segs=512)
    pb = Point(b[0], b[1]).buffer(b[2], quad_segs=512)
    expected = pa.intersection(pb).area / pa.union(pb).area
    assert 0.05 < expected < 0.5
    assert circle_iou([a], [b])[0, 0] == pytest.approx(expected, rel=1e-4)


def _gt():
    return {
        "a": np.array([[40.0, 40.0, 30.0], [150.0, 60.0, 45.0]]),
        "b": np.array([[100.0, 100.0, 50.0]]),
    }


def _perfect(gt):
    return {k: np.column_stack([v, np.linspace(0.9, 0.8, len(v))]) for k, v in gt.items()}


def test_perfect_predictions_give_ap_one():
    gt = _gt()
    m = evaluate_circles(gt, _perfect(gt))
    assert m["AP"] == pytest.approx(1.0)
    assert m["AP50"] == pytest.approx(1.0)
    assert m["AP75"] == pytest.approx(1.0)
    assert m["AR"] == pytest.approx(1.0)


def test_missed_object_lowers_ap_and_recall():
    gt = _gt()
    preds = _perfect(gt)
    preds["a"] = preds["a"][:1]
    m = evaluate_circles(gt, preds)
    assert m["AP50"] < 0.99
    assert m["AR"] == pytest.approx(2 / 3)


def test_confident_false_positive_lowers_precision():
    gt = _gt()
    preds = _perfect(gt)
    preds["b"] = np.vstack([[[300.0, 300.0, 40.0, 0.99]], preds["b"]])
    m = evaluate_circles(gt, preds)
    assert m["AP50"] < 0.99
    assert m["AR"] == pytest.approx(1.0)  # every object is still found


def test_shifted_circle_passes_iou_half_but_not_075():
    gt = {"a": np.array([[50.0, 50.0, 40.0]])}
    shift = 12.0  # IoU about 0.65
    iou = circle_iou([[50 + shift, 50, 40]], gt["a"])[0, 0]
    assert 0.5 < iou < 0.75
    m = evaluate_circles(gt, {"a": np.array([[50 + shift, 50, 40, 0.9]])})
    assert m["AP50"] == pytest.approx(1.0)
    assert m["AP75"] == pytest.approx(0.0)
