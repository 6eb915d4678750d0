"""Mask -> polygon and physical measurements of a glomerulus (numpy + OpenCV only).

Usage::

    m = largest_component(mask)
    poly = mask_to_polygon(m)              # (K,2) x,y pixel vertices of the outer contour
    measure_mask(m, um_per_px=0.5)         # {"area_um2", "diameter_um", "perimeter_um"}
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected foreground component of ``mask`` as a bool mask (empty stays empty)."""
    m = np.asarray(mask, bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(m)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == k


def glomerulus_component(mask: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """The component of ``mask`` that is the glomerulus under the circle (cx, cy, r), in mask px.

    The segmenter can also mark a neighbouring glomerulus or a strip of tissue at the patch edge;
    the glomerulus the circle was cut for is the component that covers most of the circle's inner
    half (radius r/2). If none touches it, the largest component.
    """
    m = np.asarray(mask, bool)
    n, labels = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
    if n <= 2:
        return m.copy() if n == 2 else np.zeros_like(m)
    core = np.zeros(m.shape, np.uint8)
    cv2.circle(core, (int(round(cx)), int(round(cy))), max(1, int(round(r / 2))), 1, -1)
    overlap = np.bincount(labels[core.astype(bool)], minlength=n)[1:]
    if overlap.max() == 0:
        return largest_component(m)
    return labels == 1 + int(np.argmax(overlap))


def _outer_contour(mask: np.ndarray) -> np.ndarray | None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    return max(contours, key=cv2.contourArea)


def mask_to_polygon(mask: np.ndarray, simplify_px: float = 1.0) -> np.ndarray:
    """Outer contour of the largest component as (K,2) float x,y vertices (empty mask: shape (0,2)).

    The contour is simplified with Douglas-Peucker at tolerance ``simplify_px`` pixels (0: none).
    """
    c = _outer_contour(largest_component(mask))
    if c is None:
        return np.zeros((0, 2), dtype=np.float64)
    if simplify_px > 0:
        c = cv2.approxPolyDP(c, float(simplify_px), closed=True)
    return c.reshape(-1, 2).astype(np.float64)


def measure_mask(mask: np.ndarray, um_per_px: float) -> dict[str, float]:
    """Area (µm²), equivalent-circle diameter (µm) and perimeter (µm) of the largest component.

    Area counts pixels; the perimeter is the length of the outer contour after Douglas-Peucker
    simplification at 1 px, which removes the pixel staircase (the raw 8-connected contour
    over-estimates a disk's circumference by about 5 %; the simplified one is within 3 % for r >= 10 px).
    """
    m = largest_component(mask)
    area_px = float(m.sum())
    c = _outer_contour(m)
    perim_px = (
        float(cv2.arcLength(cv2.approxPolyDP(c, 1.0, closed=True), closed=True)) if c is not None else 0.0
    )
    area_um2 = area_px * um_per_px**2
    return {
        "area_um2": area_um2,
        "diameter_um": 2.0 * math.sqrt(area_um2 / math.pi),
        "perimeter_um": perim_px * um_per_px,
    }
