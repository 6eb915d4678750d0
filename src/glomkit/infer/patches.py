"""Glomerulus patches: the circle's box plus a margin, read from the slide and resized (no torch)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from glomkit.slide.reader import Slide
from glomkit.slide.tile_reader import prefetch_map

PATCH_SIZE = 256
# patches are read from the coarsest pyramid level at least as fine as this (µm/px), or the patch's own
# resolution when coarser; None: level 0 (slower, same results: docs/PERFORMANCE.md)
PATCH_MPP: float | None = 1.0


def patch_box(x: float, y: float, r: float, margin_px: float) -> tuple[int, int, int, int]:
    """Level-0 box (x0, y0, w, h) of a circle plus a margin: a square of side 2(r + margin)."""
    half = r + margin_px
    x0, y0 = int(round(x - half)), int(round(y - half))
    side = max(1, int(round(2 * half)))
    return x0, y0, side, side


def read_patch(
    slide: Slide,
    box: tuple[float, float, float, float],
    size: int = PATCH_SIZE,
    patch_mpp: float | None = PATCH_MPP,
) -> np.ndarray:
    """uint8 (size, size, 3): one level-0 box read as the pipeline reads a glomerulus patch.

    The one way patches are read: the pipeline (:func:`read_patches`), the training-data builders
    (reviewed slides, in-context segmenter patches, the SimSiam pool) and the benchmarks all call it."""
    x0, y0, w, h = box
    return slide.read_patch(x0, y0, w, h, size, size, patch_mpp)[..., :3]


def read_patches(
    slide: Slide,
    boxes: Sequence[tuple[int, int, int, int]],
    size: int = PATCH_SIZE,
    read_threads: int = 2,
    patch_mpp: float | None = 0.0,
) -> np.ndarray:
    """uint8 (N, size, size, 3): each level-0 box read from the slide and resized.

    Each box is read from :meth:`Slide.patch_level`: the coarsest pyramid level at least as fine as
    the coarser of the patch's own resolution and ``patch_mpp`` µm/px (0: the patch's own; None:
    level 0)."""
    if not boxes:
        return np.zeros((0, size, size, 3), np.uint8)

    def cut(box: tuple[int, int, int, int]) -> np.ndarray:
        return read_patch(slide, box, size, patch_mpp)

    return np.stack([p for _, p in prefetch_map(cut, list(boxes), read_threads)])


def crop_to_circles(
    patches: np.ndarray, circles: np.ndarray, margins: float | np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Each patch cut down to its circle (cx, cy, r in patch px) plus its margin (patch px) and
    resized back to the patch size; with the crop boxes (x0, y0, x1, y1) for :func:`uncrop_masks`."""
    size = patches.shape[1]
    crops, boxes = [], []
    margins = np.broadcast_to(np.asarray(margins, np.float64), (len(patches),))
    for p, (cx, cy, r), margin in zip(patches, circles, margins, strict=True):
        half = r + margin
        x0, y0 = max(0, int(round(cx - half))), max(0, int(round(cy - half)))
        x1, y1 = min(size, int(round(cx + half))), min(size, int(round(cy + half)))
        if x1 - x0 < 8 or y1 - y0 < 8:
            x0, y0, x1, y1 = 0, 0, size, size
        crops.append(cv2.resize(p[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_LINEAR))
        boxes.append((x0, y0, x1, y1))
    return np.stack(crops) if crops else patches[:0].copy(), boxes


def uncrop_masks(small: np.ndarray, boxes: list[tuple[int, int, int, int]], size: int) -> np.ndarray:
    """Masks of cropped patches put back into the whole patch's frame (zeros outside the crop)."""
    masks = np.zeros((len(boxes), size, size), dtype=small.dtype)
    for j, (x0, y0, x1, y1) in enumerate(boxes):
        m = cv2.resize(small[j].astype(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        masks[j, y0:y1, x0:x1] = m.astype(small.dtype)
    return masks
