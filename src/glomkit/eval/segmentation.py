"""Segmentation metrics over binary masks: Dice, IoU, mIoU (foreground + background), pixel accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from glomkit import GlomkitError


def _ratio(num: float, den: float) -> float:
    """num/den, with 0/0 = 1 (both masks empty agree perfectly)."""
    return 1.0 if den == 0 else num / den


def mask_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Dice, IoU (foreground), background IoU, mIoU and pixel accuracy of one pair of masks."""
    p, t = np.asarray(pred, bool), np.asarray(true, bool)
    if p.shape != t.shape:
        raise GlomkitError(f"mask shapes differ: predicted {p.shape}, true {t.shape}")
    inter = float(np.logical_and(p, t).sum())
    union = float(np.logical_or(p, t).sum())
    total = float(p.sum() + t.sum())
    bg_inter = float(np.logical_and(~p, ~t).sum())
    bg_union = float(np.logical_or(~p, ~t).sum())
    iou = _ratio(inter, union)
    iou_bg = _ratio(bg_inter, bg_union)
    return {
        "dice": _ratio(2.0 * inter, total),
        "iou": iou,
        "iou_background": iou_bg,
        "miou": (iou + iou_bg) / 2.0,
        "pixel_accuracy": float((p == t).mean()) if p.size else 1.0,
    }


def segmentation_metrics(pred_masks: Sequence[np.ndarray], true_masks: Sequence[np.ndarray]) -> dict:
    """Per-image scores and their summary.

    Returns ``dice_mean``, ``dice_sd`` (population sd over images), ``iou_mean``, ``miou`` (mean over
    images of the mean of foreground and background IoU), ``pixel_accuracy`` (mean over images),
    ``n_images`` and ``per_image`` (a list of the dicts of :func:`mask_scores`). Masks may differ in
    size from pair to pair.
    """
    if len(pred_masks) != len(true_masks):
        raise GlomkitError(f"{len(pred_masks)} predicted masks but {len(true_masks)} true masks")
    if len(pred_masks) == 0:
        raise GlomkitError("no masks to score")
    per = [mask_scores(p, t) for p, t in zip(pred_masks, true_masks, strict=True)]
    dice = np.array([s["dice"] for s in per])
    return {
        "dice_mean": float(dice.mean()),
        "dice_sd": float(dice.std()),
        "iou_mean": float(np.mean([s["iou"] for s in per])),
        "miou": float(np.mean([s["miou"] for s in per])),
        "pixel_accuracy": float(np.mean([s["pixel_accuracy"] for s in per])),
        "n_images": len(per),
        "per_image": per,
    }
