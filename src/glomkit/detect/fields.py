"""Composed detection fields: real bueno_pas glomeruli pasted into realistic tissue, with known circles.

A field is an RGB image at the detector's working resolution (``mpp`` µm/px) holding 0-4
glomeruli of 100-250 µm diameter, some round non-glomerular distractors, on a background that is
either a mosaic of the tissue *outside* the masks of bueno crops or synthetic PAS cortex
(``glomkit.synth``). Real crops are pasted with a feathered blend of their dilated mask, so a thin
rim of their own surrounding tissue comes along. Synthetic glomeruli (``glomkit.synth.glomerulus``)
are added too.

Ground truth circle of a pasted glomerulus = the **minimum enclosing circle** of its mask after
placement (``cv2.minEnclosingCircle``), what an annotator drawing a circle around it would give.
Each field also carries the union of the pasted glomerulus masks (``Field.mask``), for
segmentation-as-detection (``glomkit.kinds.components``).

Splits are by source slide: build a :class:`FieldComposer` from the crops of one split only
(``split_samples``), so validation fields never contain a glomerulus or a background patch
from a training slide.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from glomkit.data.bueno import BuenoSample, load_bueno, split_train_val_test

DIAMETER_UM = (100.0, 250.0)
SYNTH_LABELS = ("normal", "normal", "obsolescent", "solidified", "disappearing")


@dataclass
class Field:
    """One composed field: uint8 RGB (S,S,3), circles (N,3) x, y, r in field pixels, and a mask.

    ``mask`` (S,S) uint8 0/1 is the union of the pasted glomerulus masks (distractors are
    background), or None where no mask is known (user annotations give circles only).
    ``ignore`` (S,S) uint8 0/1, or None: where the field's labels are not to be trusted as
    background (an image-edge band where glomeruli cut by the edge are often not outlined); a
    trainer puts no background loss there, and validation drops truth and detections centred there.
    """

    image: np.ndarray
    circles: np.ndarray
    mask: np.ndarray | None = None
    ignore: np.ndarray | None = None


@dataclass
class _Crop:
    rgb: np.ndarray  # uint8 (224,224,3)
    mask: np.ndarray  # uint8 0/1
    diameter: float  # equal-area diameter of the mask, crop px
    bg_spots: np.ndarray  # (K,2) top-left corners of mask-free BG_PATCH squares


BG_PATCH = 48  # crop px


def split_samples(
    split: str, root: str | None = None, test_fold: int = 0, seed: int = 0
) -> list[BuenoSample]:
    """The bueno samples of ``split`` ('train', 'val', 'test' or 'all'), split by source slide."""
    samples = load_bueno(root)
    if split == "all":
        return samples
    tr, va, te = split_train_val_test(samples, test_fold=test_fold, seed=seed)
    idx = {"train": tr, "val": va, "test": te}[split]
    return [samples[i] for i in idx]


def _load_crop(s: BuenoSample) -> _Crop:
    rgb = cv2.cvtColor(cv2.imread(str(s.image), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    mask = (cv2.imread(str(s.mask), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8)
    diameter = 2.0 * np.sqrt(max(mask.sum(), 1.0) / np.pi)
    # mask-free squares for the background mosaic (integral image of a dilated mask)
    dil = cv2.dilate(mask, np.ones((9, 9), np.uint8))
    integ = cv2.integral(dil)
    p = BG_PATCH
    ys, xs = np.mgrid[0 : mask.shape[0] - p : 4, 0 : mask.shape[1] - p : 4]
    cover = integ[ys + p, xs + p] - integ[ys, xs + p] - integ[ys + p, xs] + integ[ys, xs]
    ok = cover == 0
    spots = np.stack([xs[ok], ys[ok]], axis=1)
    return _Crop(rgb, mask, float(diameter), spots)


def _rand_dihedral(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = np.rot90(img, int(rng.integers(4)))
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def _blend(canvas: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-blend ``rgb`` (h,w,3 float) onto ``canvas`` at (x0, y0), clipped to the canvas."""
    h, w = alpha.shape
    H, W = canvas.shape[:2]
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + w, W), min(y0 + h, H)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    a = alpha[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, None]
    src = rgb[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    dst = canvas[cy0:cy1, cx0:cx1]
    canvas[cy0:cy1, cx0:cx1] = dst * (1 - a) + src * a


class FieldComposer:
    """Compose fields from the crops of one slide split (plus optional synthetic material).

    ``synthetic`` mixes in synthetic PAS tissue backgrounds, synthetic glomeruli and synthetic
    non-glomerular objects from ``glomkit.synth`` (pools rendered once, then reused with random
    crops, flips and rescaling). ``pool`` sets how many of each are rendered.
    """

    def __init__(
        self,
        samples: list[BuenoSample],
        mpp: float = 4.0,
        size: int = 160,
        seed: int = 0,
        synthetic: bool = True,
        pool: int = 48,
    ) -> None:
        if not samples:
            raise ValueError("FieldComposer needs at least one bueno sample")
        self.mpp = float(mpp)
        self.size = int(size)
        self.crops = [_load_crop(s) for s in samples]
        self.bg_crops = [c for c in self.crops if len(c.bg_spots)]
        rng = np.random.default_rng(seed + 7919)
        self.tissue_pool: list[np.ndarray] = []
        self.synth_pool: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.distractor_pool: list[tuple[np.ndarray, np.ndarray]] = []
        if synthetic:
            self._render_pools(rng, pool)

    # -- synthetic material ---------------------------------------------------------------
    def _render_pools(self, rng: np.random.Generator, n: int) -> None:
        try:
            from glomkit.synth.glomerulus import render_glomerulus_layer
            from glomkit.synth.stain import jitter_palette
            from glomkit.synth.tissue import render_tissue
        except ImportError:  # synth not available: bueno-only fields
            return
        side = self.size + 32
        for _ in range(max(n // 2, 1)):
            self.tissue_pool.append(render_tissue(side, side, rng, self.mpp))
        r0 = 40.0  # rendered once at this radius, rescaled when placed
        fs = int(2.6 * r0)
        for _ in range(n):
            pal = jitter_palette(rng)
            label = SYNTH_LABELS[int(rng.integers(len(SYNTH_LABELS)))]
            lay = render_glomerulus_layer(label, r0, rng, fs, palette=pal)
            self.synth_pool.append((lay.rgb, lay.alpha, (lay.mask > 127).astype(np.uint8)))
        for _ in range(max(n // 2, 1)):
            pal = jitter_palette(rng)
            lay = render_glomerulus_layer("non_glomerular", r0, rng, fs, palette=pal)
            self.distractor_pool.append((lay.rgb, lay.alpha))

    # -- backgrounds ----------------------------------------------------------------------
    def _mosaic(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Tissue from outside the glomerulus masks of several crops, tiled with soft seams."""
        acc = np.zeros((size, size, 3), np.float32)
        wsum = np.full((size, size), 1e-6, np.float32)
        scale = float(rng.uniform(0.45, 0.8))  # crop px -> field px (crops are ~1.3-2 µm/px)
        cell = max(int(BG_PATCH * scale), 8)
        step = max(int(cell * 0.7), 4)
        win1 = np.hanning(cell + 2)[1:-1].astype(np.float32)
        win = np.outer(win1, win1) + 1e-3
        n_src = int(rng.integers(1, 4))  # a few source crops per field: locally coherent texture
        srcs = [self.bg_crops[int(rng.integers(len(self.bg_crops)))] for _ in range(n_src)]
        for y in range(-cell // 2, size, step):
            for x in range(-cell // 2, size, step):
                c = srcs[int(rng.integers(n_src))]
                sx, sy = c.bg_spots[int(rng.integers(len(c.bg_spots)))]
                patch = c.rgb[sy : sy + BG_PATCH, sx : sx + BG_PATCH]
                patch = _rand_dihedral(patch, rng)
                patch = cv2.resize(patch, (cell, cell), interpolation=cv2.INTER_AREA).astype(np.float32)
                y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + cell, size), min(x + cell, size)
                acc[y0:y1, x0:x1] += (
                    patch[y0 - y : y1 - y, x0 - x : x1 - x] * win[y0 - y : y1 - y, x0 - x : x1 - x, None]
                )
                wsum[y0:y1, x0:x1] += win[y0 - y : y1 - y, x0 - x : x1 - x]
        return acc / wsum[..., None]

    def _background(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self.tissue_pool and rng.random() < 0.5:
            t = self.tissue_pool[int(rng.integers(len(self.tissue_pool)))]
            t = _rand_dihedral(t, rng)
            oy, ox = rng.integers(0, t.shape[0] - size + 1, 2)
            return t[oy : oy + size, ox : ox + size].astype(np.float32)
        return self._mosaic(rng, size)

    # -- objects --------------------------------------------------------------------------
    def _real_object(self, rng: np.random.Generator, radius: float):
        c = self.crops[int(rng.integers(len(self.crops)))]
        s = 2.0 * radius / c.diameter
        side = max(int(round(c.rgb.shape[0] * s)), 8)
        rgb = cv2.resize(c.rgb, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
        mask = (cv2.resize(c.mask * 255, (side, side), interpolation=cv2.INTER_LINEAR) > 127).astype(np.uint8)
        k = int(rng.integers(4))
        flip = rng.random() < 0.5
        rgb, mask = np.rot90(rgb, k), np.rot90(mask, k)
        if flip:
            rgb, mask = rgb[:, ::-1], mask[:, ::-1]
        rgb, mask = np.ascontiguousarray(rgb), np.ascontiguousarray(mask)
        rim = max(int(round(rng.uniform(4.0, 12.0) / self.mpp)), 1)  # 4-12 µm of own tissue
        alpha = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rim + 1, 2 * rim + 1)))
        alpha = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), max(rim * 0.6, 0.8))
        alpha = np.maximum(alpha, mask.astype(np.float32))
        return rgb, alpha, mask

    def _synth_object(self, rng: np.random.Generator, radius: float):
        rgb, alpha, mask = self.synth_pool[int(rng.integers(len(self.synth_pool)))]
        d = 2.0 * np.sqrt(max(mask.sum(), 1) / np.pi)
        side = max(int(round(rgb.shape[0] * 2.0 * radius / d)), 8)
        rgb = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (side, side), interpolation=cv2.INTER_LINEAR)
        mask = (cv2.resize(mask * 255, (side, side), interpolation=cv2.INTER_LINEAR) > 127).astype(np.uint8)
        k = int(rng.integers(4))
        return (
            np.ascontiguousarray(np.rot90(rgb, k)),
            np.ascontiguousarray(np.rot90(alpha, k)),
            np.ascontiguousarray(np.rot90(mask, k)),
        )

    def _distractor(self, rng: np.random.Generator, canvas: np.ndarray) -> None:
        size = canvas.shape[0]
        radius = rng.uniform(*DIAMETER_UM) / 2.0 / self.mpp * rng.uniform(0.5, 1.1)
        kind = rng.random()
        if self.distractor_pool and kind < 0.5:
            rgb, alpha = self.distractor_pool[int(rng.integers(len(self.distractor_pool)))]
            side = max(int(round(rgb.shape[0] * radius / 40.0)), 8)
            rgb = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
            alpha = cv2.resize(alpha, (side, side), interpolation=cv2.INTER_LINEAR)
        else:
            # a round window of other tissue with a capsule-like rim: round, but not a glomerulus
            side = int(2 * radius + 6)
            rgb = self._mosaic(rng, side)
            yy, xx = np.mgrid[0:side, 0:side] - (side - 1) / 2.0
            ax = rng.uniform(0.7, 1.0)
            d = np.sqrt((xx / ax) ** 2 + yy**2)
            alpha = np.clip(radius - d + 1.0, 0, 1).astype(np.float32)
            if rng.random() < 0.6:  # darker or paler rim
                ring = np.exp(-((d - radius) ** 2) / 2.0)[..., None].astype(np.float32)
                rgb = rgb * (1 - 0.4 * ring) if rng.random() < 0.5 else rgb + (255 - rgb) * 0.5 * ring
            if rng.random() < 0.5:  # pale lumen (tubule / vessel-like)
                inner = np.clip(radius * 0.5 - d, 0, 1)[..., None]
                rgb = rgb * (1 - inner) + 235.0 * inner
        x0, y0 = rng.integers(-side // 3, size - side // 2, 2)
        _blend(canvas, rgb.astype(np.float32), alpha.astype(np.float32), int(x0), int(y0))

    # -- the field -----------------------------------------------------------------------
    def compose(self, rng: np.random.Generator, size: int | None = None) -> Field:
        """One random field with its ground-truth circles."""
        size = int(size or self.size)
        canvas = self._background(rng, size)
        for _ in range(int(rng.integers(0, 3))):
            self._distractor(rng, canvas)
        area = (size * self.mpp / 320.0) ** 2  # field area in units of a 320 µm square
        n = int(rng.integers(0, max(int(area), 1) + 2))
        circles: list[tuple[float, float, float]] = []
        gmask = np.zeros((size, size), np.uint8)
        for _ in range(n):
            radius = rng.uniform(*DIAMETER_UM) / 2.0 / self.mpp
            if self.synth_pool and rng.random() < 0.3:
                rgb, alpha, mask = self._synth_object(rng, radius)
            else:
                rgb, alpha, mask = self._real_object(rng, radius)
            h, w = mask.shape
            for _try in range(10):
                cx, cy = rng.uniform(0, size, 2)
                if all(np.hypot(cx - x, cy - y) > 0.9 * (radius + r) for x, y, r in circles):
                    break
            else:
                continue
            ys, xs = np.nonzero(mask)
            mcx, mcy = xs.mean(), ys.mean()
            x0, y0 = int(round(cx - mcx)), int(round(cy - mcy))
            _blend(canvas, rgb, alpha, x0, y0)
            _paste_mask(gmask, mask, x0, y0)
            pts = np.stack([xs + x0, ys + y0], axis=1).astype(np.float32)
            hull = cv2.convexHull(pts)
            (ex, ey), er = cv2.minEnclosingCircle(hull)
            circles.append((ex + 0.5, ey + 0.5, er + 0.5))  # pixel centres -> continuous coords
        img = _stain_jitter(canvas, rng)
        circ = np.asarray(circles, np.float64).reshape(-1, 3)
        img, circ, gmask = _field_dihedral_with_mask(img, circ, gmask, rng)
        return Field(img, circ, gmask)


def _paste_mask(dst: np.ndarray, mask: np.ndarray, x0: int, y0: int) -> None:
    """OR ``mask`` (h,w 0/1) into ``dst`` at (x0, y0), clipped to ``dst``."""
    h, w = mask.shape
    H, W = dst.shape
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + w, W), min(y0 + h, H)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    dst[cy0:cy1, cx0:cx1] |= mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]


def _stain_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour, brightness, gamma, blur and noise jitter of a float RGB field -> uint8."""
    x = img / 255.0
    x = x * rng.uniform(0.88, 1.12, 3) + rng.uniform(-0.05, 0.05)
    x = np.clip(x, 0, 1) ** rng.uniform(0.8, 1.25)
    sat = rng.uniform(0.75, 1.25)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * sat
    x = x * 255.0
    if rng.random() < 0.25:
        x = cv2.GaussianBlur(x.astype(np.float32), (0, 0), rng.uniform(0.5, 1.2))
    x = x + rng.normal(0, rng.uniform(0, 4), x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def _field_dihedral(img: np.ndarray, circ: np.ndarray, rng: np.random.Generator):
    """Random flip / 90° rotation of a square field and its circles (continuous coords)."""
    img, c, _ = _field_dihedral_with_mask(img, circ, None, rng)
    return img, c


def _field_dihedral_with_mask(
    img: np.ndarray, circ: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
):
    """As ``_field_dihedral``, applying the same transform to ``mask`` (H,W) when given."""
    s = img.shape[0]
    c = circ.copy()
    if rng.random() < 0.5:
        img = img[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
        c[:, 0] = s - c[:, 0]
    if rng.random() < 0.5:
        img = img[::-1]
        mask = None if mask is None else mask[::-1]
        c[:, 1] = s - c[:, 1]
    if rng.random() < 0.5:  # transpose
        img = img.transpose(1, 0, 2)
        mask = None if mask is None else mask.T
        c[:, [0, 1]] = c[:, [1, 0]]
    mask = None if mask is None else np.ascontiguousarray(mask)
    return np.ascontiguousarray(img), c, mask


def fixed_fields(composer: FieldComposer, n: int, seed: int) -> list[Field]:
    """``n`` reproducible fields (validation / test sets)."""
    rng = np.random.default_rng(seed)
    return [composer.compose(rng) for _ in range(n)]
