"""Stain operations on uint8 RGB images: HED jitter (the trainers' augmentation) and the stain
normalisers a classifier may apply before its input (training and inference alike).

>>> out = hed_jitter(img, np.random.default_rng(0), sigma=0.05, bias=0.02)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from glomkit import GlomkitError

# Colour deconvolution (Ruifrok & Johnston 2001): rows are the RGB optical densities of H, E, DAB.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float32)
RGB_FROM_HED /= np.linalg.norm(RGB_FROM_HED, axis=1, keepdims=True)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED).astype(np.float32)

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luminance weights of R, G, B


def optical_density(img: np.ndarray) -> np.ndarray:
    """Per-channel optical density of uint8 RGB pixels, -log((v + 1) / 256), float32, same shape."""
    return -np.log((img.astype(np.float32) + 1.0) / 256.0)


def hed_jitter(
    img: np.ndarray, rng: np.random.Generator, sigma: float = 0.05, bias: float = 0.02
) -> np.ndarray:
    """Stain jitter in colour-deconvolution (HED) space (Tellez et al. 2018).

    Each stain channel's optical density is scaled by 1 ± ``sigma`` and shifted by ± ``bias``.
    """
    od = optical_density(img)
    hed = od.reshape(-1, 3) @ HED_FROM_RGB
    hed = hed * rng.uniform(1 - sigma, 1 + sigma, 3).astype(np.float32)
    hed = hed + rng.uniform(-bias, bias, 3).astype(np.float32)
    rgb = np.exp(-(hed @ RGB_FROM_HED)) * 256.0 - 1.0
    return np.clip(rgb.reshape(img.shape), 0, 255).astype(np.uint8)


def stain_vector_jitter(
    img: np.ndarray,
    rng: np.random.Generator,
    sigma: float = 0.2,
    scale: tuple[float, float] = (0.6, 1.6),
) -> np.ndarray:
    """Recolour uint8 RGB pixels through a random stain basis.

    The stain amounts under the standard H, E, DAB vectors are put back with each vector moved
    (Gaussian, sd ``sigma`` per RGB optical density, kept positive, unit length) and each amount
    scaled (log-uniform in ``scale``): a PAS magenta can come out eosin pink, blue or brown, while
    glass stays white and the tissue's structure is untouched.
    """
    od = optical_density(img).reshape(-1, 3)
    amounts = od @ HED_FROM_RGB
    basis = np.clip(RGB_FROM_HED + rng.normal(0.0, sigma, (3, 3)).astype(np.float32), 0.02, None)
    basis /= np.linalg.norm(basis, axis=1, keepdims=True)
    amounts = amounts * np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]), 3)).astype(np.float32)
    rgb = np.exp(-(amounts @ basis)) * 256.0 - 1.0
    return np.clip(rgb.reshape(img.shape), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- stain normalisation
#
# A classifier's metadata names the normaliser it was trained with (``stain_norm``); training
# (glomkit.classify.data.PatchDataset) and inference (glomkit.infer.classify.classify_patches)
# both get the transform from :func:`stain_normaliser`, so the two apply the same function.

STAIN_NORMS = ("none", "reinhard", "macenko", "gray")
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
    od = optical_density(img.reshape(-1, 3))
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
    od = optical_density(img.reshape(-1, 3))
    conc = np.linalg.lstsq(stains.T, od.T, rcond=None)[0]
    conc *= (MACENKO_REF_MAX_CONC / np.maximum(max_conc, 1e-6))[:, None]
    rgb = 256.0 * np.exp(-(MACENKO_REF_STAINS.T @ conc)) - 1.0
    return np.clip(rgb.T.reshape(img.shape) + 0.5, 0, 255).astype(np.uint8)


def _identity(img: np.ndarray) -> np.ndarray:
    return img


def gray(img: np.ndarray) -> np.ndarray:
    """Luminance (ITU-R 601 weights) in all three channels: no hue is left, so no stain's colour
    either; density and structure stay. One image or a batch (N, H, W, 3)."""
    lum = img.astype(np.float32) @ LUMA
    return np.repeat(np.clip(np.round(lum), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


_NORMALISERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": _identity,
    "reinhard": reinhard,
    "macenko": macenko,
    "gray": gray,
}


def stain_normaliser(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The uint8 RGB -> uint8 RGB transform a classifier's ``stain_norm`` metadata names; it takes
    one image (H, W, 3) or a batch (N, H, W, 3), each image normalised by its own statistics."""
    if name not in _NORMALISERS:
        raise GlomkitError(f"stain normalisation {name!r}: expected one of {', '.join(STAIN_NORMS)}")
    return _NORMALISERS[name]


# ---------------------------------------------------------------- stain recognition
#
# recognise_stain(thumbnail) -> StainCall: which stain a slide carries, from its own pixels.
# Features: a few colour-free "structure" statistics of how the two stains lie relative to each
# other (after unmixing with the image's own Macenko pair), which carry over between labs, and
# scale-free colour statistics of the tissue pixels (optical-density chromaticity), which fit the
# training labs but not new ones, so they enter the fit down-weighted. The PAS / H&E weights are a
# logistic regression fitted by benchmarks/stain_recognition.py (see docs/models/stain.md); rerun
# it with --write to refresh the block between the markers.

STAIN_PAS = "PAS"
STAIN_HE = "H&E"
STAIN_OTHER = "other"
STAIN_NOT_BRIGHTFIELD = "not_brightfield"
STAIN_NAMES = (STAIN_PAS, STAIN_HE, STAIN_OTHER, STAIN_NOT_BRIGHTFIELD)

RECOGNISE_MAX_SIDE = 768  # larger images are downscaled to this long side first (speed)
DARK_LUMINANCE = 60.0  # brightfield glass is bright: a 90th-percentile luminance below this is dark
TISSUE_OD_MIN = 0.25  # summed optical density above which a pixel is stained (glass: ~0.05)
TISSUE_OD_MAX = 4.5  # near-black pixels (pen, borders, folds) are not used
MIN_TISSUE_PIXELS = 400
MIN_TISSUE_SHARE = 0.01  # stained share of the image below which the call is "other"
UNSURE_MARGIN = 0.0  # |logit| of PAS vs H&E below this: "other" (unsure); CV-chosen, see the card
CHROMA_BINS = 6  # the 2-D chromaticity histogram: c_R (red OD share) x c_B (blue OD share)
CHROMA_LO = np.array([0.0, 0.0], dtype=np.float32)
CHROMA_HI = np.array([0.48, 0.48], dtype=np.float32)


@dataclass(frozen=True)
class StainCall:
    """The recognised stain of one image: ``name`` (one of :data:`STAIN_NAMES`), ``confidence``
    (0-1) and ``reason`` (one short sentence)."""

    name: str
    confidence: float
    reason: str


def _small(rgb: np.ndarray, max_side: int = RECOGNISE_MAX_SIDE) -> np.ndarray:
    """``rgb`` as uint8 (H, W, 3), downscaled (area) to ``max_side`` on its longer side."""
    img = np.asarray(rgb)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3])
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    f = max_side / max(h, w, 1)
    if f < 1.0:
        img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return img


def _luminance(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def tissue_od(rgb: np.ndarray) -> np.ndarray:
    """Optical densities (N, 3) of the stained pixels of a uint8 RGB image: brightfield glass is
    bright and unsaturated (low optical density), near-black pixels are not stain either."""
    od = optical_density(rgb.reshape(-1, 3))
    total = od.sum(1)
    return od[(total > TISSUE_OD_MIN) & (total < TISSUE_OD_MAX)]


def _stain_pair(od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Macenko stain vectors (haematoxylin, pink: eosin or Schiff) and their 99th-percentile
    concentrations, from stained pixels' optical densities (N, 3)."""
    _, vecs = np.linalg.eigh(np.cov(od.T.astype(np.float64)))
    plane = vecs[:, 1:3] * np.where(vecs[0, 1:3] < 0, -1.0, 1.0)
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [MACENKO_ANGLE_PERCENTILE, 100.0 - MACENKO_ANGLE_PERCENTILE])
    v1, v2 = plane @ np.array([np.cos(lo), np.sin(lo)]), plane @ np.array([np.cos(hi), np.sin(hi)])
    stains = np.stack([v1, v2] if v1[0] > v2[0] else [v2, v1])
    stains /= np.maximum(np.linalg.norm(stains, axis=1, keepdims=True), 1e-6)
    conc = np.linalg.lstsq(stains.T, od.T, rcond=None)[0]
    return stains, np.percentile(conc, 99, axis=1)


N_COLOUR_FEATURES = CHROMA_BINS**2 + 2 + 3 + 2 + 6
STRUCTURE_FEATURES = ("hp_corr", "nucleus_ring", "pink_tophat3", "pink_tophat5", "hae_tophat5")
N_STRUCTURE_FEATURES = len(STRUCTURE_FEATURES)
N_STAIN_FEATURES = N_STRUCTURE_FEATURES + N_COLOUR_FEATURES
HIGHPASS_SIGMA = 3.0  # px: detail finer than this Gaussian (nuclei, membranes) enters the correlation
NUCLEUS_PERCENTILE = 85.0  # stained pixels above this haematoxylin percentile are "nuclear"
RING_PX = 5  # the ring around nuclear pixels: a square dilation of this side, nuclei removed


def colour_features(od: np.ndarray) -> np.ndarray:
    """Scale-free colour features of stained pixels' optical densities (N, 3): the density-weighted
    2-D histogram of the chromaticity (c_R, c_B) = OD / sum(OD) and its mean; percentiles of the
    blue-minus-red share of the pinker half; the OD blue- and red-vs-green slopes; and the Macenko
    stain vectors' shape (angle, blue/green and red/green of the pink vector, relative to
    haematoxylin's) and the pink/haematoxylin concentration ratio."""
    total = od.sum(1)
    chroma = od[:, [0, 2]] / total[:, None]
    weight = np.minimum(total, 2.0)
    wsum = max(float(weight.sum()), 1e-6)
    span = CHROMA_HI - CHROMA_LO
    idx = np.clip(((chroma - CHROMA_LO) / span * CHROMA_BINS).astype(np.int64), 0, CHROMA_BINS - 1)
    hist = np.bincount(idx[:, 0] * CHROMA_BINS + idx[:, 1], weights=weight, minlength=CHROMA_BINS**2)
    hist = hist / wsum
    mean = (chroma * weight[:, None]).sum(0) / wsum
    pink = chroma[:, 0] < np.percentile(chroma[:, 0], 50)
    ratio = chroma[pink, 1] - chroma[pink, 0] if pink.any() else np.zeros(1, np.float32)
    pct = np.percentile(ratio, [10, 50, 90])
    g = od[:, 1] - od[:, 1].mean()
    gg = max(float(g @ g), 1e-6)
    slope_b, slope_r = float(g @ od[:, 2]) / gg, float(g @ od[:, 0]) / gg
    (h, e), conc = _stain_pair(od)
    angle = float(np.arccos(np.clip(h @ e, -1.0, 1.0)))
    e_bg, e_rg, h_bg = e[2] / max(e[1], 1e-3), e[0] / max(e[1], 1e-3), h[2] / max(h[1], 1e-3)
    shape = [
        angle,
        e_bg,
        e_rg,
        e_bg / max(h_bg, 1e-3),
        h_bg,
        float(np.log(max(conc[1], 1e-3) / max(conc[0], 1e-3))),
    ]
    return np.concatenate([hist, mean, pct, [slope_b, slope_r], shape]).astype(np.float32)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b) / max(float(np.sqrt((a @ a) * (b @ b))), 1e-9)


def _tophat_share(conc: np.ndarray, tissue: np.ndarray, side: int) -> float:
    """Share of a stain's concentration (clipped at 0) over the tissue that a white top-hat with an
    elliptic ``side`` x ``side`` element keeps: the part in structures thinner than ``side`` px."""
    pos = np.maximum(conc, 0.0)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    top = cv2.morphologyEx(pos, cv2.MORPH_TOPHAT, kernel)
    return float(top[tissue].sum() / max(float(pos[tissue].sum()), 1e-6))


def structure_features(od_img: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """Colour-free features of how the two stains lie (:data:`STRUCTURE_FEATURES`), from an image's
    optical densities (H, W, 3) and its stained-pixel mask, after unmixing with the image's own
    Macenko pair (so a lab's hue drops out): the correlation of the high-passed haematoxylin and
    pink concentrations (PAS: Schiff-positive membranes and nuclei exclude each other, negative;
    H&E: eosin rises with haematoxylin at cell scale, positive); the log ratio of pink in nuclear
    pixels to pink in a thin ring around them; and the share of pink (3 and 5 px) and of
    haematoxylin (5 px) in thin structures (white top-hat), at the image's own scale."""
    stains, _ = _stain_pair(od_img[tissue])
    unmix = np.linalg.pinv(stains.T).astype(np.float32)  # (2, 3)
    conc = od_img.reshape(-1, 3) @ unmix.T
    hae = np.ascontiguousarray(conc[:, 0].reshape(tissue.shape))
    pink = np.ascontiguousarray(conc[:, 1].reshape(tissue.shape))
    hp_h = hae - cv2.GaussianBlur(hae, (0, 0), HIGHPASS_SIGMA)
    hp_p = pink - cv2.GaussianBlur(pink, (0, 0), HIGHPASS_SIGMA)
    corr = _corr(hp_h[tissue], hp_p[tissue])
    nuclei = tissue & (hae > np.percentile(hae[tissue], NUCLEUS_PERCENTILE))
    ring = cv2.dilate(nuclei.astype(np.uint8), np.ones((RING_PX, RING_PX), np.uint8)).astype(bool)
    ring &= tissue & ~nuclei
    ring_ratio = 0.0
    if nuclei.sum() > 10 and ring.sum() > 10:
        ring_ratio = float(np.log(max(pink[nuclei].mean(), 1e-3) / max(pink[ring].mean(), 1e-3)))
    tops = [_tophat_share(pink, tissue, 3), _tophat_share(pink, tissue, 5), _tophat_share(hae, tissue, 5)]
    return np.array([corr, ring_ratio, *tops], dtype=np.float32)


def stain_features(rgb: np.ndarray) -> np.ndarray | None:
    """The :data:`N_STAIN_FEATURES` features of a (small) uint8 RGB image: structure first
    (:func:`structure_features`), then colour (:func:`colour_features`); None when fewer than
    :data:`MIN_TISSUE_PIXELS` pixels are stained."""
    od_img = optical_density(rgb)
    total = od_img.sum(2)
    tissue = (total > TISSUE_OD_MIN) & (total < TISSUE_OD_MAX)
    if tissue.sum() < MIN_TISSUE_PIXELS:
        return None
    return np.concatenate([structure_features(od_img, tissue), colour_features(od_img[tissue])])


# --- fitted by benchmarks/stain_recognition.py --write (do not edit by hand) ---
STAIN_FEATURE_MEAN = np.array(
    [
        0.081169,
        0.018674,
        0.083972,
        0.20292,
        0.34441,
        1.4965e-06,
        2.1373e-05,
        9.3469e-05,
        0.00013497,
        3.6754e-05,
        6.9378e-06,
        2.078e-06,
        8.6654e-05,
        0.0020894,
        0.027623,
        0.00078129,
        4.3983e-05,
        3.8814e-06,
        0.00016368,
        0.10689,
        0.26293,
        0.0037448,
        0.00015473,
        4.5446e-06,
        0.00019484,
        0.18655,
        0.29328,
        0.013104,
        3.9405e-05,
        2.5497e-06,
        0.00012086,
        0.035934,
        0.054309,
        0.0056661,
        4.9793e-06,
        1.0674e-05,
        0.00030675,
        0.0015789,
        0.0040616,
        2.5135e-05,
        3.1436e-07,
        0.25393,
        0.25128,
        -0.0062056,
        0.027415,
        0.068266,
        0.44313,
        0.47108,
        0.47206,
        0.4012,
        0.30583,
        0.69681,
        0.60763,
        0.26011,
    ],
    dtype=np.float32,
)
STAIN_FEATURE_SD = np.array(
    [
        0.42426,
        0.39208,
        0.04186,
        0.083092,
        0.1252,
        0.0010049,
        0.0010593,
        0.001323,
        0.0017471,
        0.0011957,
        0.0010525,
        0.0010057,
        0.0012,
        0.0059425,
        0.058276,
        0.0036178,
        0.0011816,
        0.0010104,
        0.0013702,
        0.11863,
        0.20573,
        0.00945,
        0.0015159,
        0.0010127,
        0.0014535,
        0.18531,
        0.19987,
        0.035751,
        0.0011346,
        0.0010079,
        0.0013401,
        0.055496,
        0.078504,
        0.021033,
        0.001016,
        0.0010621,
        0.0019137,
        0.0042396,
        0.034323,
        0.0010718,
        0.0010018,
        0.027376,
        0.017607,
        0.040799,
        0.043374,
        0.049733,
        0.090459,
        0.11985,
        0.099516,
        0.07921,
        0.086401,
        0.27819,
        0.12259,
        0.41676,
    ],
    dtype=np.float32,
)
STAIN_PAS_COEF = np.array(
    [
        -2.6837,
        -1.7944,
        0,
        -0.42928,
        -1.1509,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ],
    dtype=np.float32,
)
STAIN_PAS_INTERCEPT = 0.17617
# --- end fitted ---

StainModel = tuple[np.ndarray, np.ndarray, np.ndarray, float]
"""(feature mean, feature sd, coefficients, intercept): the PAS-vs-H&E logistic regression."""


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))


def recognise_stain(rgb: np.ndarray, model: StainModel | None = None) -> StainCall:
    """The stain of a slide from a low-resolution uint8 RGB image of it (its thumbnail, or a
    downscaled tile): PAS, H&E, "other" (brightfield but neither, too little tissue, or unsure)
    or "not_brightfield" (a dark background: fluorescence). ``model`` replaces the fitted weights
    (the benchmark's leave-one-out fits)."""
    img = _small(rgb)
    if img.size == 0:
        return StainCall(STAIN_OTHER, 0.0, "empty image")
    lum = _luminance(img)
    p90 = float(np.percentile(lum, 90))
    if p90 < DARK_LUMINANCE:
        conf = min(1.0, 0.6 + 0.4 * (DARK_LUMINANCE - p90) / DARK_LUMINANCE)
        return StainCall(STAIN_NOT_BRIGHTFIELD, conf, "dark background: fluorescence, not brightfield")
    n_tissue = len(tissue_od(img))
    share = n_tissue / lum.size
    feats = stain_features(img) if n_tissue >= MIN_TISSUE_PIXELS and share >= MIN_TISSUE_SHARE else None
    if feats is None:
        return StainCall(STAIN_OTHER, 0.1, f"too little stained tissue ({100 * share:.1f} % of the image)")
    mu, sd, coef, b = model or (STAIN_FEATURE_MEAN, STAIN_FEATURE_SD, STAIN_PAS_COEF, STAIN_PAS_INTERCEPT)
    z = float(((feats - mu) / sd) @ coef + b)
    p = _sigmoid(z)
    if abs(z) < UNSURE_MARGIN:
        return StainCall(
            STAIN_OTHER,
            0.5 * (1.0 - abs(z) / max(UNSURE_MARGIN, 1e-9)) + 0.1,
            f"unsure between PAS and H&E (P(PAS) {p:.2f})",
        )
    if z > 0:
        return StainCall(STAIN_PAS, p, f"stain layout and colours read as PAS (P(PAS) {p:.2f})")
    return StainCall(STAIN_HE, 1.0 - p, f"stain layout and colours read as H&E (P(H&E) {1 - p:.2f})")
