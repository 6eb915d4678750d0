"""Tissue mask from a thumbnail: Otsu on saturation, then morphology."""

from __future__ import annotations

import cv2
import numpy as np

MIN_TISSUE_SATURATION = 20  # a background whose mean saturation exceeds this is tissue too


def tissue_mask(thumb: np.ndarray, min_area_frac: float = 0.0005) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail (True = tissue).

    Otsu's threshold on the HSV saturation separates stained tissue from glass; dark pen or
    black borders (value < 40) are excluded; a closing then an opening clean it, and components
    smaller than ``min_area_frac`` of the image go. An image that is tissue everywhere (a plain
    crop) is all True.
    """
    hsv = cv2.cvtColor(np.ascontiguousarray(thumb), cv2.COLOR_RGB2HSV)
    sat = cv2.GaussianBlur(hsv[:, :, 1], (5, 5), 0)
    val = hsv[:, :, 2]
    if sat.max() - sat.min() < 8:
        flat = bool(sat.mean() > MIN_TISSUE_SATURATION)
        return np.full(sat.shape, flat, dtype=bool)
    thr, _ = cv2.threshold(sat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    low = sat <= thr
    if low.any() and sat[low].mean() > MIN_TISSUE_SATURATION:
        mask = np.ones(sat.shape, bool)  # the "background" class is itself stained tissue
    else:
        mask = (sat > max(thr, 8)) & (val > 40)
    k = max(3, int(round(min(sat.shape) / 200)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel, iterations=2)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    min_area = min_area_frac * m.size
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels]
