"""Stain operations on uint8 RGB images, shared by the detection and classification trainers.

>>> out = hed_jitter(img, np.random.default_rng(0), sigma=0.05, bias=0.02)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

# Colour deconvolution (Ruifrok & Johnston 2001): rows are the RGB optical densities of H, E, DAB.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float32)
RGB_FROM_HED /= np.linalg.norm(RGB_FROM_HED, axis=1, keepdims=True)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED).astype(np.float32)


def hed_jitter(
    img: np.ndarray, rng: np.random.Generator, sigma: float = 0.05, bias: float = 0.02
) -> np.ndarray:
    """Stain jitter in colour-deconvolution (HED) space (Tellez et al. 2018).

    Each stain channel's optical density is scaled by 1 ± ``sigma`` and shifted by ± ``bias``.
    """
    od = -np.log((img.astype(np.float32) + 1.0) / 256.0)
    hed = od.reshape(-1, 3) @ HED_FROM_RGB
    hed = hed * rng.uniform(1 - sigma, 1 + sigma, 3).astype(np.float32)
    hed = hed + rng.uniform(-bias, bias, 3).astype(np.float32)
    rgb = np.exp(-(hed @ RGB_FROM_HED)) * 256.0 - 1.0
    return np.clip(rgb.reshape(img.shape), 0, 255).astype(np.uint8)
