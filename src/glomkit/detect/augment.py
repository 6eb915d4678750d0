"""Augmentation of detection tiles for real, in-context training images (numpy + OpenCV).

Real tiles vary in stain, scanner, focus, compression and orientation from lab to lab, so a tile
and its circles go through (each step random):

* rotation by any angle (reflected border) and a flip / transpose;
* stain jitter in colour-deconvolution (HED) space (Tellez et al. 2018), then brightness, gamma,
  saturation and, sometimes, a hue shift or a grey image;
* Gaussian blur (focus), JPEG re-compression (artefacts) and sensor noise.

``glomkit train detector --colour-aug wide`` adds :func:`wide_colour` to every training field of
every source (composed fields included): a random stain basis and more grey, so that a stain the
training never showed (H&E for a PAS-trained model) looks like one it did.

Scale jitter happens where the tile is read (``glomkit.detect.data.TileSampler``), because it
decides how much of the image the tile covers.

>>> img, circles, mask = augment_tile(img, circles, np.random.default_rng(0), mask=mask)  # doctest: +SKIP
"""

from __future__ import annotations

import cv2
import numpy as np

from glomkit.core.stain import gray, hed_jitter, stain_vector_jitter
from glomkit.detect.fields import _field_dihedral_with_mask, _stain_jitter

COLOUR_AUGS = ("default", "wide")
"""``--colour-aug`` values: the per-source augmentation only, or :func:`wide_colour` on top."""


def rotate_tile(
    img: np.ndarray, circles: np.ndarray, angle_deg: float, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rotate a tile (and its object mask) about its centre (reflected border); circles keep their
    radius. Circles whose centre leaves the tile are dropped."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle_deg, 1.0)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if mask is not None:
        mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    c = np.asarray(circles, np.float64).reshape(-1, 3).copy()
    if len(c):
        xy = np.column_stack([c[:, :2], np.ones(len(c))]) @ m.T
        c[:, :2] = xy
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        c = c[inside]
    return out, c, mask


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG at ``quality`` (block and ringing artefacts of compressed scans)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return img
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def augment_tile(
    img: np.ndarray,
    circles: np.ndarray,
    rng: np.random.Generator,
    strength: float = 1.0,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A randomly augmented copy of a square uint8 RGB tile, its circles (N,3) x, y, r and its
    object mask (the same geometry; None stays None). ``strength`` scales the colour jitter (0:
    geometry only)."""
    c = np.asarray(circles, np.float64).reshape(-1, 3)
    if rng.random() < 0.5:
        img, c, mask = rotate_tile(img, c, float(rng.uniform(0, 360)), mask)
    img, c, mask = _field_dihedral_with_mask(img, c, mask, rng)
    if strength > 0:
        img = hed_jitter(img, rng, sigma=0.25 * strength, bias=0.05 * strength)
        if rng.random() < 0.25 * strength:  # other stains and scanners: hue shift
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + int(rng.integers(-25, 26))) % 180).astype(np.uint8)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if rng.random() < 0.1 * strength:
            img = gray(img)
        img = _stain_jitter(img.astype(np.float32), rng)  # gain, gamma, saturation, light blur, noise
        if rng.random() < 0.2:
            img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.8, 2.0)))
        if rng.random() < 0.3:
            img = jpeg_roundtrip(img, int(rng.integers(30, 90)))
    return np.ascontiguousarray(img), c, mask


def wide_colour(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ``wide`` colour augmentation, on top of each source's own: a random stain basis
    (``glomkit.core.stain.stain_vector_jitter``) on 80 % of fields, then grey on 20 %."""
    if rng.random() < 0.8:
        img = stain_vector_jitter(img, rng)
    if rng.random() < 0.2:
        img = gray(img)
    return np.ascontiguousarray(img)
