"""PAS-like stain colours, jittered per slide or per patch."""

from __future__ import annotations

import numpy as np

# Reference RGB colours of a PAS (periodic acid-Schiff + haematoxylin) kidney section.
PAS_COLORS: dict[str, tuple[int, int, int]] = {
    "background": (244, 243, 246),  # glass
    "lumen": (246, 238, 244),  # empty lumen / Bowman's space
    "interstitium": (236, 214, 230),
    "epithelium": (222, 168, 205),  # tubular cytoplasm
    "brush": (196, 110, 170),  # brush border / tubular basement membrane
    "membrane": (165, 45, 125),  # PAS-positive basement membrane (capillary loops, capsule)
    "mesangium": (205, 120, 178),
    "sclerosis": (180, 70, 145),  # solid PAS-positive matrix
    "collagen": (226, 196, 224),  # pale pink-lilac fibrous tissue
    "nucleus": (88, 74, 142),  # haematoxylin
    "rbc": (214, 96, 110),
    "muscle": (214, 140, 168),
}


def jitter_palette(rng: np.random.Generator, strength: float = 1.0) -> dict[str, np.ndarray]:
    """The PAS colours with one global stain shift plus a small per-colour jitter (float32 RGB)."""
    shift = rng.normal(0.0, 7.0 * strength, 3)
    gain = 1.0 + rng.normal(0.0, 0.04 * strength)
    out = {}
    for name, rgb in PAS_COLORS.items():
        c = np.asarray(rgb, np.float64)
        if name != "background":
            c = 255.0 - (255.0 - c) * gain + shift + rng.normal(0.0, 4.0 * strength, 3)
        out[name] = np.clip(c, 0, 255).astype(np.float32)
    return out


def paint(img: np.ndarray, weight: np.ndarray, color: np.ndarray) -> None:
    """Blend ``color`` into the float image ``img`` (H, W, 3) in place with ``weight`` in [0, 1]."""
    img += weight[..., None] * (color - img)
