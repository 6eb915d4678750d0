"""Stain operations on uint8 RGB images: HED jitter (the trainers' augmentation) and the stain
normalisers a classifier may apply before its input (training and inference alike).

>>> out = hed_jitter(img, np.random.default_rng(0), sigma=0.05, bias=0.02)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from glomkit import GlomkitError

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


# ---------------------------------------------------------------- stain normalisation
#
# A classifier's metadata names the normaliser it was trained with (``stain_norm``); training
# (glomkit.classify.data.PatchDataset) and inference (glomkit.infer.classify.classify_patches)
# both get the transform from :func:`stain_normaliser`, so the two apply the same function.

STAIN_NORMS = ("none", "reinhard", "macenko")
"""Names a classifier's ``stain_norm`` metadata may take; ``none`` for files that do not say."""

# Reinhard target: the median over the 667 bueno_pas crops (resized to 128 px) of each crop's
# tissue-pixel CIELAB mean and standard deviation (L 0-100; cv2 float conversion).
REINHARD_TARGET_MEAN = np.array([59.73, 26.71, -17.72], dtype=np.float32)
REINHARD_TARGET_STD = np.array([13.43, 9.49, 5.86], dtype=np.float32)
TISSUE_MAX_L = 88.0  # pixels lighter than this (CIELAB L) are background for the statistics
MIN_TISSUE_FRACTION = 0.05  # fewer tissue pixels than this: statistics over the whole image

# Macenko reference: the median over the bueno_pas crops (128 px) of each crop's two stain
# vectors (optical density, unit length; haematoxylin first) and 99th-percentile concentrations.
MACENKO_REF_STAINS = np.array([[0.6098, 0.6934, 0.3852], [0.2862, 0.8782, 0.3781]], dtype=np.float32)
MACENKO_REF_STAINS /= np.linalg.norm(MACENKO_REF_STAINS, axis=1, keepdims=True)
MACENKO_REF_MAX_CONC = np.array([1.8136, 1.4841], dtype=np.float32)
MACENKO_OD_MIN = 0.15  # optical density below which a pixel is background (Macenko et al. 2009)
MACENKO_ANGLE_PERCENTILE = 1.0


def reinhard(img: np.ndarray) -> np.ndarray:
    """Reinhard et al. (2001) colour transfer: each CIELAB channel's tissue mean and standard
    deviation mapped to :data:`REINHARD_TARGET_MEAN` / :data:`REINHARD_TARGET_STD`.

    ``img``: one uint8 RGB image (H, W, 3) or a batch (N, H, W, 3) of equal-size images, each
    normalised by its own statistics. A batch goes through OpenCV's colour conversions as one tall
    image (one call each way, on OpenCV's threads): the pipeline's classifier batches use that.
    """
    batch = img if img.ndim == 4 else img[None]
    n, h, w, _ = batch.shape
    if batch.size == 0:
        return img.copy()
    tall = np.ascontiguousarray(batch).reshape(n * h, w, 3)
    lab = cv2.cvtColor(tall.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2LAB).reshape(n, h * w, 3)
    tissue = lab[..., 0] < TISSUE_MAX_L
    tissue[tissue.sum(1) < MIN_TISSUE_FRACTION * h * w] = True  # too little tissue: the whole image
    weight = tissue.astype(np.float32)[:, None, :]  # (N, 1, HW): sums over the tissue by matmul
    count = weight.sum(2)
    mean = (weight @ lab)[:, 0] / count  # population mean and sd over the tissue
    std = np.sqrt(np.maximum((weight @ (lab * lab))[:, 0] / count - mean * mean, 0.0))
    gain = REINHARD_TARGET_STD / np.maximum(std, 1e-3)
    lab *= gain[:, None]
    lab += (REINHARD_TARGET_MEAN - mean * gain)[:, None]
    np.clip(lab[..., 0], 0.0, 100.0, out=lab[..., 0])
    rgb = cv2.cvtColor(lab.reshape(n * h, w, 3), cv2.COLOR_LAB2RGB)
    rgb *= np.float32(255.0)
    rgb += np.float32(0.5)
    np.clip(rgb, 0, 255, out=rgb)
    return rgb.astype(np.uint8).reshape(img.shape)


def macenko_stains(img: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(stain vectors (2, 3), 99th-percentile concentrations (2,)) of one image (Macenko et al.
    2009); None when too few pixels are stained to estimate them."""
    od = -np.log((img.reshape(-1, 3).astype(np.float32) + 1.0) / 256.0)
    stained = od[(od > MACENKO_OD_MIN).all(axis=1)]
    if len(stained) < 16:
        return None
    _, vecs = np.linalg.eigh(np.cov(stained.T))
    plane = vecs[:, 1:3]  # the two largest eigenvectors
    plane = plane * np.where(plane[0] < 0, -1.0, 1.0)  # point into positive optical density
    proj = stained @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [MACENKO_ANGLE_PERCENTILE, 100.0 - MACENKO_ANGLE_PERCENTILE])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    stains = np.stack([v1, v2] if v1[0] > v2[0] else [v2, v1])  # haematoxylin: the most red OD
    stains = stains / np.maximum(np.linalg.norm(stains, axis=1, keepdims=True), 1e-6)
    conc = np.linalg.lstsq(stains.T, od.T, rcond=None)[0]
    return stains.astype(np.float32), np.percentile(conc, 99, axis=1).astype(np.float32)


def macenko(img: np.ndarray) -> np.ndarray:
    """Macenko et al. (2009) stain normalisation: the image's two stain vectors and concentration
    scale replaced by the reference's (:data:`MACENKO_REF_STAINS`, :data:`MACENKO_REF_MAX_CONC`).
    An image with too little stain comes back unchanged. A batch (N, H, W, 3): each image alone."""
    if img.ndim == 4:
        return np.stack([macenko(x) for x in img]) if len(img) else img
    est = macenko_stains(img)
    if est is None:
        return img
    stains, max_conc = est
    od = -np.log((img.reshape(-1, 3).astype(np.float32) + 1.0) / 256.0)
    conc = np.linalg.lstsq(stains.T, od.T, rcond=None)[0]
    conc *= (MACENKO_REF_MAX_CONC / np.maximum(max_conc, 1e-6))[:, None]
    rgb = 256.0 * np.exp(-(MACENKO_REF_STAINS.T @ conc)) - 1.0
    return np.clip(rgb.T.reshape(img.shape) + 0.5, 0, 255).astype(np.uint8)


def _identity(img: np.ndarray) -> np.ndarray:
    return img


_NORMALISERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": _identity,
    "reinhard": reinhard,
    "macenko": macenko,
}


def stain_normaliser(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The uint8 RGB -> uint8 RGB transform a classifier's ``stain_norm`` metadata names; it takes
    one image (H, W, 3) or a batch (N, H, W, 3), each image normalised by its own statistics."""
    if name not in _NORMALISERS:
        raise GlomkitError(f"stain normalisation {name!r}: expected one of {', '.join(STAIN_NORMS)}")
    return _NORMALISERS[name]
