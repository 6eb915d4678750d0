"""CenterNet-style training targets for circles: Gaussian centre heatmap, radius, offset.

The Gaussian's sigma follows the object size as in CenterNet (``gaussian_radius`` of the circle's
bounding box at min IoU 0.7, sigma = (2 * radius + 1) / 6), so large glomeruli get wide peaks.
"""

from __future__ import annotations

import numpy as np


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius of centre jitter that keeps a box of (height, width) above ``min_overlap`` IoU."""
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + np.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + np.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return float(min(r1, r2, r3))


def circle_targets(circles: np.ndarray, height: int, width: int, stride: int = 4, max_objects: int = 64):
    """Targets for one image of size (height, width) input px with ``circles`` (N,3) x, y, r.

    Returns dict: heatmap (1,h,w) float32 with peak exactly 1 at each centre cell, index (K,)
    int64 flat cell indices, radius (K,) input px, offset (K,2) sub-cell offsets, mask (K,) 1 for
    real entries (K = max_objects). Centres outside the image are skipped.
    """
    h, w = height // stride, width // stride
    hm = np.zeros((1, h, w), np.float32)
    index = np.zeros(max_objects, np.int64)
    radius = np.zeros(max_objects, np.float32)
    offset = np.zeros((max_objects, 2), np.float32)
    mask = np.zeros(max_objects, np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    k = 0
    for x, y, r in np.asarray(circles, np.float64).reshape(-1, 3):
        cx, cy = x / stride, y / stride
        ix, iy = int(np.floor(cx)), int(np.floor(cy))
        if not (0 <= ix < w and 0 <= iy < h) or k >= max_objects:
            continue
        d = 2.0 * r / stride
        rad = max(0, int(gaussian_radius(d, d)))
        sigma = (2 * rad + 1) / 6.0
        g = np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma**2))
        np.maximum(hm[0], g, out=hm[0])
        index[k] = iy * w + ix
        radius[k] = r
        offset[k] = (cx - ix, cy - iy)
        mask[k] = 1.0
        k += 1
    return {"heatmap": hm, "index": index, "radius": radius, "offset": offset, "mask": mask}
