"""Segmentation metrics on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from glomkit import GlomkitError
from glomkit.eval.segmentation import mask_scores, segmentation_metrics


def square(x0: int, x1: int, size: int = 10) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[:, x0:x1] = True
    return m


def test_identical_masks_score_one() -> None:
    m = square(2, 6)
    s = mask_scores(m, m)
    assert s["dice"] == s["iou"] == s["miou"] == s["pixel_accuracy"] == 1.0


def test_disjoint_masks_score_zero() -> None:
    s = mask_scores(square(0, 3), square(5, 8))
    assert s["dice"] == 0.0 and s["iou"] == 0.0
    # 4 of 10 columns are background in both: bg IoU = 4/10; pixel accuracy = 4/10
    assert s["iou_background"] == pytest.approx(0.4)
    assert s["miou"] == pytest.approx(0.2)
    assert s["pixel_accuracy"] == pytest.approx(0.4)


def test_half_overlap_by_hand() -> None:
    # pred columns 0-3 (40 px), true columns 2-5 (40 px): overlap 20, union 60
    s = mask_scores(square(0, 4), square(2, 6))
    assert s["dice"] == pytest.approx(2 * 20 / 80)
    assert s["iou"] == pytest.approx(20 / 60)
    # background: pred bg = cols 4-9 (60), true bg = cols 0-1 and 6-9 (60): overlap cols 6-9 = 40, union 80
    assert s["iou_background"] == pytest.approx(40 / 80)
    assert s["miou"] == pytest.approx((20 / 60 + 0.5) / 2)
    assert s["pixel_accuracy"] == pytest.approx(60 / 100)


def test_summary_over_images_and_sizes() -> None:
    preds = [square(0, 4), square(2, 6), np.ones((4, 6), bool)]
    trues = [square(2, 6), square(2, 6), np.ones((4, 6), bool)]
    r = segmentation_metrics(preds, trues)
    d = np.array([0.5, 1.0, 1.0])
    assert r["n_images"] == 3
    assert r["dice_mean"] == pytest.approx(d.mean())
    assert r["dice_sd"] == pytest.approx(d.std())
    assert [p["dice"] for p in r["per_image"]] == pytest.approx(list(d))


def test_two_empty_masks_agree() -> None:
    z = np.zeros((5, 5), bool)
    assert mask_scores(z, z)["dice"] == 1.0


def test_mismatched_inputs_are_user_errors() -> None:
    with pytest.raises(GlomkitError, match="shapes differ"):
        mask_scores(np.zeros((4, 4), bool), np.zeros((5, 5), bool))
    with pytest.raises(GlomkitError, match="2 predicted masks but 1"):
        segmentation_metrics([np.zeros((2, 2))] * 2, [np.zeros((2, 2))])
