"""Is a panel a bright-field light micrograph? Simple colour and texture features, and a rule.

Charts and diagrams are flat (large areas of exactly one colour) with few distinct colours;
fluorescence is a dark background with bright saturated spots; electron micrographs and other
greyscale images have no chroma. A bright-field stain (PAS, H&E, trichrome) is textured, light
and coloured. The thresholds were set by eye on the synthetic evaluation set of
``glomkit.mine.synthetic_figures`` and checked on real PAS crops (docs/studies/mining.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

FEATURE_NAMES = (
    "value_mean",
    "sat_mean",
    "chroma_mean",
    "white_frac",
    "dark_frac",
    "flat_frac",
    "edge_density",
    "n_colours",
    "bright_sat_frac",
    "green_frac",
)


@dataclass(frozen=True)
class ModalityFeatures:
    """Per-panel image statistics (all in [0, 1] except ``n_colours``)."""

    value_mean: float  # mean HSV value (brightness)
    sat_mean: float  # mean HSV saturation
    chroma_mean: float  # mean max-min over RGB channels / 255: 0 for a greyscale image
    white_frac: float  # near-white, unsaturated pixels
    dark_frac: float  # pixels with value < 0.2
    flat_frac: float  # pixels equal to their right and lower neighbours (exactly flat areas)
    edge_density: float  # Canny edge pixels
    n_colours: int  # distinct colours after quantising to 4 bits per channel
    bright_sat_frac: float  # bright and saturated pixels (fluorescent signal)
    green_frac: float  # of the coloured pixels, those with a green or cyan hue (no common stain)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def modality_features(rgb: np.ndarray) -> ModalityFeatures:
    """Colour and texture statistics of an RGB uint8 panel, computed at most 256 px on a side."""
    img = np.asarray(rgb)[:, :, :3]
    h, w = img.shape[:2]
    scale = 256.0 / max(h, w)
    if scale < 1.0:  # nearest keeps flat areas exactly flat
        img = cv2.resize(
            img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_NEAREST
        )
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    s = hsv[:, :, 1].astype(np.float32) / 255.0
    v = hsv[:, :, 2].astype(np.float32) / 255.0
    i16 = img.astype(np.int16)
    chroma = (i16.max(axis=2) - i16.min(axis=2)).astype(np.float32) / 255.0
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    right = np.abs(np.diff(i16, axis=1)).max(axis=2)[:-1, :] <= 1
    down = np.abs(np.diff(i16, axis=0)).max(axis=2)[:, :-1] <= 1
    flat = float((right & down).mean()) if right.size else 1.0
    edges = cv2.Canny(grey, 50, 150)
    q = (img >> 4).astype(np.int32)
    codes = (q[:, :, 0] << 8) | (q[:, :, 1] << 4) | q[:, :, 2]
    coloured = (s > 0.2) & (v > 0.2)
    hue = hsv[:, :, 0]  # OpenCV: degrees / 2
    green = coloured & (hue >= 35) & (hue <= 95)  # 70-190 degrees: green to cyan
    return ModalityFeatures(
        value_mean=float(v.mean()),
        sat_mean=float(s.mean()),
        chroma_mean=float(chroma.mean()),
        white_frac=float(((v > 0.9) & (s < 0.1)).mean()),
        dark_frac=float((v < 0.2).mean()),
        flat_frac=flat,
        edge_density=float((edges > 0).mean()),
        n_colours=int(len(np.unique(codes))),
        bright_sat_frac=float(((v > 0.4) & (s > 0.5)).mean()),
        green_frac=float(green.sum() / max(1, coloured.sum())),
    )


def classify_modality(f: ModalityFeatures) -> str:
    """One of "brightfield", "fluorescence", "greyscale", "chart_or_diagram", "blank"."""
    if f.white_frac > 0.97 or (f.dark_frac > 0.97 and f.bright_sat_frac < 0.01):
        return "blank"
    if f.dark_frac > 0.2 and f.bright_sat_frac > 0.01:
        return "fluorescence"
    if f.flat_frac > 0.5:
        return "chart_or_diagram"
    if f.green_frac > 0.2:
        return "fluorescence"
    if f.chroma_mean < 0.04:
        return "greyscale"
    if f.n_colours < 40:
        return "chart_or_diagram"
    if f.dark_frac > 0.5:
        return "fluorescence"
    return "brightfield"


def is_light_microscopy(rgb: np.ndarray) -> tuple[bool, str, ModalityFeatures]:
    """(is bright-field light microscopy?, modality name, features) of an RGB panel."""
    f = modality_features(rgb)
    modality = classify_modality(f)
    return modality == "brightfield", modality, f
