import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from glomkit.core.geometry import circle_intersection_area, circle_iou, circle_nms


def test_disjoint_circles_have_zero_iou():
    assert circle_iou([[0, 0, 1]], [[3, 0, 1]])[0, 0] == 0.0


def test_contained_circle_iou_is_area_ratio():
    assert math.isclose(circle_iou([[0, 0, 2]], [[0.5, 0, 1]])[0, 0], 0.25, rel_tol=1e-12)


def test_equal_circles_have_iou_one():
    assert math.isclose(circle_iou([[5, 5, 3]], [[5, 5, 3]])[0, 0], 1.0, rel_tol=1e-12)


def test_partial_overlap_matches_lens_formula():
    # two unit circles at distance 1: lens area = 2*acos(1/2) - (1/2)*sqrt(3)
    lens = 2 * math.acos(0.5) - 0.5 * math.sqrt(3)
    assert math.isclose(circle_intersection_area([[0, 0, 1]], [[1, 0, 1]])[0, 0], lens, rel_tol=1e-12)
    assert math.isclose(
        circle_iou([[0, 0, 1]], [[1, 0, 1]])[0, 0], lens / (2 * math.pi - lens), rel_tol=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(
    st.floats(-50, 50),
    st.floats(-50, 50),
    st.floats(0.5, 30),
    st.floats(-50, 50),
    st.floats(-50, 50),
    st.floats(0.5, 30),
)
def test_iou_symmetric_bounded_and_matches_polygons(x1, y1, r1, x2, y2, r2):
    from shapely.geometry import Point

    a, b = [[x1, y1, r1]], [[x2, y2, r2]]
    iou = circle_iou(a, b)[0, 0]
    assert 0.0 <= iou <= 1.0 + 1e-12
    assert math.isclose(iou, circle_iou(b, a)[0, 0], abs_tol=1e-12)
    pa, pb = Point(x1, y1).buffer(r1, 256), Point(x2, y2).buffer(r2, 256)
    ref = pa.intersection(pb).area / pa.union(pb).area
    assert abs(iou - ref) < 2e-3


def test_nms_keeps_best_of_overlapping_and_distant_ones():
    circles = np.array([[0, 0, 10], [1, 0, 10], [100, 0, 10], [0, 0, 3]])
    scores = np.array([0.5, 0.9, 0.8, 0.7])
    keep = circle_nms(circles, scores, 0.35)
    assert list(keep) == [1, 2, 3]  # the small contained circle has IoU 0.09 < 0.35 with the big one


def test_nms_threshold_is_used():
    circles = np.array([[0, 0, 10], [8, 0, 10]])
    iou = circle_iou(circles[:1], circles[1:])[0, 0]
    assert len(circle_nms(circles, [1, 0.5], iou + 0.01)) == 2
    assert len(circle_nms(circles, [1, 0.5], iou - 0.01)) == 1
