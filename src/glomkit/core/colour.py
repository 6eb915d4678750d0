"""Colour transfer of a slide's tissue to a detector's training colours (Reinhard et al. 2001).

A detector trained on a few labs sees a new lab's stain as a shift of its input colours. Before
detection, each tile's tissue pixels are mapped, channel by channel in CIELAB, from the slide's
tissue statistics to the statistics of the tissue the detector was trained on (its metadata's
``input.stain_reference``); glass stays as it is. The slide's statistics come from its tissue
thumbnail, so every tile of a slide gets the same transform (per-tile statistics would shift with
the tile's content: a tile full of glomeruli is not a tile full of tubules).

CIELAB here is OpenCV's 8-bit encoding (L, a, b each 0-255, a and b offset by 128): the conversion
of a 1024² tile takes a few milliseconds. (``glomkit.core.stain.reinhard`` is the classifier's
variant: each patch by its own statistics, to a fixed bueno_pas target, glass included.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from glomkit.core.stain import TISSUE_MAX_L

# 8-bit CIELAB L at or above which an unsaturated pixel is glass: the stain module's tissue
# threshold (CIELAB L 0-100) on OpenCV's 8-bit scale
GLASS_L8 = TISSUE_MAX_L / 100.0 * 255
GLASS_MAX_CHROMA = 25  # max - min of R, G, B below which a light pixel is unstained glass
MIN_TISSUE_PIXELS = 400  # fewer tissue pixels than this: no statistics (no transfer)
MIN_SD = 1.0  # lower bound of a channel's spread, so flat images are not amplified
MAX_GAIN = 4.0  # a channel's spread is never stretched more than this
# statistics are taken at this scale (µm/px) on both sides: the spread of colours depends on the
# resolution (nuclei average out), and a slide's thumbnail is far coarser than a training tile
STATS_MPP = 8.0


@dataclass(frozen=True)
class LabStats:
    """Mean and standard deviation of the tissue pixels' 8-bit CIELAB channels."""

    mean: tuple[float, float, float]
    sd: tuple[float, float, float]

    def as_json(self) -> dict[str, list[float]]:
        return {"mean": [round(v, 3) for v in self.mean], "sd": [round(v, 3) for v in self.sd]}


def tissue_pixels(rgb: np.ndarray, lab: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the stained (non-glass) pixels of a uint8 RGB image (``lab``: its 8-bit
    CIELAB, when the caller has it already)."""
    if lab is None:
        lab = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2LAB)
    lab_l = lab[..., 0]
    chroma = rgb[..., :3].max(-1).astype(np.int16) - rgb[..., :3].min(-1)
    return (lab_l < GLASS_L8) | (chroma > GLASS_MAX_CHROMA)


def lab_stats(rgb: np.ndarray) -> LabStats | None:
    """The tissue's CIELAB statistics of a uint8 RGB image (a slide's thumbnail, a tile), or None
    when it has fewer than :data:`MIN_TISSUE_PIXELS` tissue pixels."""
    rgb = np.ascontiguousarray(rgb[..., :3])
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    m = tissue_pixels(rgb, lab).reshape(-1)
    if int(m.sum()) < MIN_TISSUE_PIXELS:
        return None
    t = lab.reshape(-1, 3)[m].astype(np.float64)
    return LabStats(tuple(map(float, t.mean(0))), tuple(map(float, t.std(0))))  # type: ignore[arg-type]


def colour_of(rgb: np.ndarray, mpp: float) -> LabStats | None:
    """:func:`lab_stats` of an image of ``mpp`` µm/px seen at :data:`STATS_MPP` (area-downscaled
    when finer): a slide's thumbnail at inference, a training image for the reference."""
    f = float(mpp) / STATS_MPP
    if f < 1.0:
        h, w = rgb.shape[:2]
        size = (max(1, round(w * f)), max(1, round(h * f)))
        rgb = cv2.resize(np.ascontiguousarray(rgb[..., :3]), size, interpolation=cv2.INTER_AREA)
    return lab_stats(rgb)


def pooled_stats(stats: Iterable[LabStats | None]) -> LabStats:
    """The mean of several images' statistics (a training set's reference); ValueError when none."""
    got = [s for s in stats if s is not None]
    if not got:
        raise ValueError("no image with enough tissue for colour statistics")
    mean = np.mean([s.mean for s in got], axis=0)
    sd = np.mean([s.sd for s in got], axis=0)
    return LabStats(tuple(map(float, mean)), tuple(map(float, sd)))  # type: ignore[arg-type]


def transfer(rgb: np.ndarray, source: LabStats, target: LabStats) -> np.ndarray:
    """``rgb`` (uint8, H x W x 3) with its tissue pixels mapped from ``source`` to ``target``
    statistics, channel by channel in 8-bit CIELAB; glass pixels are returned unchanged."""
    rgb = np.ascontiguousarray(rgb[..., :3])
    if rgb.size == 0:
        return rgb.copy()
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    gain = np.minimum(np.float32(target.sd) / np.maximum(np.float32(source.sd), MIN_SD), MAX_GAIN)
    out = (lab.astype(np.float32) - np.float32(source.mean)) * gain + np.float32(target.mean)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    res = cv2.cvtColor(out, cv2.COLOR_LAB2RGB)
    glass = ~tissue_pixels(rgb, lab)
    res[glass] = rgb[glass]
    return res
