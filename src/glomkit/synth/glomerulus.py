"""Procedural PAS-like glomeruli of the five classes, and round look-alikes.

Everything random is drawn from ``rng`` in a fixed order and in units of the glomerulus radius,
so one seed renders the same object at any pixel size (each pyramid level shows the same
glomerulus). Geometry: an ellipse with a low-order wobble is the Bowman's capsule; the tuft,
capillary loops and nuclei are cellular noise in the capsule's normalised frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from glomkit.synth.noise import cell_uniform, fractal_noise, smoothstep, worley
from glomkit.synth.stain import jitter_palette, paint
from glomkit.synth.tissue import render_tissue

LABELS = ("normal", "obsolescent", "solidified", "disappearing", "non_glomerular")
NON_GLOMERULAR_KINDS = ("tubule", "vessel", "blob")
MAX_WORK_RADIUS = 150.0  # larger glomeruli are rendered at this radius and upsampled
MIN_WORK_RADIUS = 40.0  # smaller ones are rendered at this radius and downsampled
PATCH_FACTOR = 2.5  # default patch side = 2.5 x radius


@dataclass(frozen=True)
class RoundShape:
    """An irregular round outline: ellipse (aspect, angle) times a low-order radial wobble."""

    aspect: float
    angle: float
    ks: tuple[int, ...]
    amps: tuple[float, ...]
    phases: tuple[float, ...]

    def radius_factor(self, theta: np.ndarray) -> np.ndarray:
        r = np.ones_like(theta, dtype=np.float32)
        for k, a, p in zip(self.ks, self.amps, self.phases, strict=True):
            r += np.float32(a) * np.cos(k * theta + p).astype(np.float32)
        return r

    def polygon(self, cx: float, cy: float, radius: float, n: int = 96) -> np.ndarray:
        """The outline as an (n, 2) float array of (x, y) points around (cx, cy)."""
        th = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
        r = radius * self.radius_factor(th).astype(np.float64)
        s = np.sqrt(self.aspect)
        sx, sy = r * np.cos(th) * s, r * np.sin(th) / s
        c, si = np.cos(self.angle), np.sin(self.angle)
        return np.stack([cx + c * sx - si * sy, cy + si * sx + c * sy], axis=1)


def draw_shape(rng: np.random.Generator, wobble: float = 0.05) -> RoundShape:
    """A random irregular round shape (slight ellipse and wobble)."""
    aspect = float(rng.uniform(1.0, 1.3))
    angle = float(rng.uniform(0, np.pi))
    ks = (2, 3, 4, 5)
    amps = tuple(float(a) for a in rng.uniform(0, wobble, 4) / np.array([1.0, 1.5, 2.0, 2.5]))
    phases = tuple(float(p) for p in rng.uniform(0, 2 * np.pi, 4))
    return RoundShape(aspect, angle, ks, amps, phases)


@dataclass
class GlomerulusLayer:
    """A rendered object, ready to composite: colour, opacity, glomerulus mask."""

    rgb: np.ndarray  # float32 (S, S, 3)
    alpha: np.ndarray  # float32 (S, S) in [0, 1]
    mask: np.ndarray  # uint8 (S, S) 0/255, empty for non-glomerular objects
    outline: np.ndarray  # (n, 2) outline in patch px


def render_glomerulus(
    label: str,
    radius_px: float,
    rng: np.random.Generator,
    size: int | None = None,
    *,
    mpp: float | None = None,
    palette: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one centred object of class ``label`` on PAS-like tissue.

    Returns the RGB uint8 (size, size, 3) patch and a uint8 0/255 mask of the glomerulus
    (Bowman's capsule outline filled; all zero for ``non_glomerular``). ``size`` defaults to
    about 2.5 x ``radius_px``; ``mpp`` (tissue scale) defaults to a random 60-100 µm radius;
    ``palette`` (stain colours) defaults to one jittered from ``rng``.
    """
    if size is None:
        size = int(np.ceil(PATCH_FACTOR * radius_px))
    if mpp is None:
        mpp = float(rng.uniform(60.0, 100.0)) / radius_px
    if palette is None:
        palette = jitter_palette(rng)
    layer = render_glomerulus_layer(label, radius_px, rng, size, palette=palette)
    tissue = render_tissue(size, size, rng, mpp=mpp, palette=palette).astype(np.float32)
    out = tissue * (1.0 - layer.alpha[..., None]) + layer.rgb * layer.alpha[..., None]
    return np.clip(out, 0, 255).astype(np.uint8), layer.mask


def render_glomerulus_layer(
    label: str,
    radius_px: float,
    rng: np.random.Generator,
    size: int,
    centre: tuple[float, float] | None = None,
    palette: dict[str, np.ndarray] | None = None,
) -> GlomerulusLayer:
    """Render the object alone (colour + opacity) in a ``size`` x ``size`` frame.

    ``centre`` is the object's (x, y) in frame pixels (default: the frame centre). The same
    ``rng`` state gives the same object at any ``radius_px``.
    """
    if label not in LABELS:
        raise ValueError(f"unknown glomerulus class {label!r}; expected one of {', '.join(LABELS)}")
    if palette is None:
        palette = jitter_palette(rng)
    if centre is None:
        centre = (size / 2.0, size / 2.0)
    shape = draw_shape(rng)
    params = _draw_params(label, rng)
    seed = int(rng.integers(0, 2**31 - 1))

    # render at a work scale that keeps the radius within [MIN, MAX]_WORK_RADIUS
    if radius_px > MAX_WORK_RADIUS:
        f = MAX_WORK_RADIUS / radius_px
    elif radius_px < MIN_WORK_RADIUS:
        f = float(np.ceil(MIN_WORK_RADIUS / radius_px))
    else:
        f = 1.0
    ws = size * int(f) if f > 1.0 else max(int(np.ceil(size * f)), 1)
    rgb, alpha = _render(
        label, shape, params, seed, palette, radius_px * f, ws, (centre[0] * f, centre[1] * f)
    )
    if f != 1.0:
        work = np.dstack([rgb, alpha])
        if f > 1.0:
            work = cv2.resize(work, (size, size), interpolation=cv2.INTER_AREA)
        else:
            m = np.float32([[f, 0, 0.5 * f - 0.5], [0, f, 0.5 * f - 0.5]])
            work = cv2.warpAffine(
                work,
                m,
                (size, size),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )
        rgb, alpha = work[..., :3], work[..., 3]
    outline = shape.polygon(centre[0], centre[1], radius_px)
    mask = np.zeros((size, size), np.uint8)
    if label != "non_glomerular":
        cv2.fillPoly(mask, [np.round(outline * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)
    return GlomerulusLayer(rgb.astype(np.float32), np.clip(alpha, 0, 1).astype(np.float32), mask, outline)


def _draw_params(label: str, rng: np.random.Generator) -> dict[str, float]:
    """Class-dependent appearance parameters, in units of the capsule radius."""
    p: dict[str, float] = {
        "tuft": 0.85,
        "capsule": float(rng.uniform(0.018, 0.03)),
        "loops": float(rng.uniform(5.5, 7.5)),
        "nuclei": float(rng.uniform(0.45, 0.65)),
        "lobes": float(rng.integers(4, 8)),
        "lobe_amp": float(rng.uniform(0.03, 0.08)),
        "offx": float(rng.normal(0, 0.04)),
        "offy": float(rng.normal(0, 0.04)),
        "kind": 0.0,
        "fade": 1.0,
        "wrinkle": 0.0,
    }
    if label == "normal":
        p["tuft"] = float(rng.uniform(0.78, 0.9))
    elif label == "solidified":
        p["tuft"] = float(rng.uniform(0.95, 1.0))
        p["capsule"] = float(rng.uniform(0.03, 0.05))
        p["nuclei"] = float(rng.uniform(0.04, 0.1))
        p["lobe_amp"] = float(rng.uniform(0.0, 0.03))
    elif label == "obsolescent":
        p["tuft"] = float(rng.uniform(0.35, 0.6))
        p["capsule"] = float(rng.uniform(0.04, 0.07))
        p["nuclei"] = float(rng.uniform(0.03, 0.08))
        p["wrinkle"] = float(rng.uniform(0.06, 0.12))
        p["offx"] *= 3
        p["offy"] *= 3
    elif label == "disappearing":
        p["tuft"] = float(rng.uniform(0.3, 0.6))
        p["nuclei"] = float(rng.uniform(0.02, 0.05))
        p["fade"] = float(rng.uniform(0.25, 0.45))
        p["wrinkle"] = float(rng.uniform(0.03, 0.08))
    else:
        p["kind"] = float(rng.integers(0, len(NON_GLOMERULAR_KINDS)))
        p["wall"] = float(rng.uniform(0.3, 0.5))
        p["blob_mix"] = float(rng.uniform(0, 1))
    return p


def _render(
    label: str,
    shape: RoundShape,
    p: dict[str, float],
    seed: int,
    pal: dict[str, np.ndarray],
    radius: float,
    size: int,
    centre: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Colour and opacity at the work scale; coordinates normalised by the capsule radius."""
    ax = (np.arange(size) + 0.5 - centre[0]) / radius
    ay = (np.arange(size) + 0.5 - centre[1]) / radius
    c, s = np.cos(shape.angle), np.sin(shape.angle)
    sq = np.sqrt(shape.aspect)
    # normalised, de-rotated, de-stretched frame: the capsule is rho = 1
    xr = (c * ax[None, :] + s * ay[:, None]) / sq
    yr = (-s * ax[None, :] + c * ay[:, None]) * sq
    xr = xr.astype(np.float32)
    yr = yr.astype(np.float32)
    theta = np.arctan2(yr, xr)
    rho = np.hypot(xr, yr) / shape.radius_factor(theta)
    aa = 1.0 / radius  # one pixel in normalised units
    axn = np.linspace(ax[0], ax[-1], size)

    img = np.empty((size, size, 3), np.float32)
    img[:] = pal["interstitium"]
    alpha = smoothstep(1.12, 1.04, rho)

    if label == "non_glomerular":
        _non_glomerular(img, p, seed, pal, rho, theta, xr, yr, aa, axn)
        alpha = smoothstep(1.08, 1.0, rho)
        return img, alpha

    fade = p["fade"]
    # periglomerular fibrous rim, Bowman's space, capsule
    paint(img, 0.6 * smoothstep(1.1, 1.0, rho), pal["collagen"])
    inside = smoothstep(1.0 + aa, 1.0 - aa, rho)
    space = pal["collagen"] if label in ("obsolescent", "disappearing") else pal["lumen"]
    paint(img, inside, space)
    if label in ("obsolescent", "disappearing"):
        fib = fractal_noise(axn * 14.0, axn * 14.0, seed + 5, octaves=3)
        paint(img, inside * 0.5 * smoothstep(0.4, 0.75, fib), pal["interstitium"])
        rings = 0.5 + 0.5 * np.cos(rho * 60.0 + 4.0 * fib)
        paint(img, inside * 0.25 * rings, pal["mesangium"] * 0.3 + pal["collagen"] * 0.7)
    cap = p["capsule"]
    band = smoothstep(cap * 0.5 + aa, cap * 0.5, np.abs(rho - (1.0 - cap * 0.5)))
    paint(img, band * (0.9 if fade == 1.0 else 0.35), pal["membrane"])
    # parietal epithelium: flat nuclei just inside the capsule
    pn = np.abs(np.sin(theta * 9.0 + seed % 7)) ** 12 * smoothstep(
        0.02, 0.0, np.abs(rho - (1.0 - cap - 0.012))
    )
    paint(img, pn * 0.8 * fade, pal["nucleus"])

    # tuft: lobulated, offset toward the vascular pole, wrinkled when sclerosed
    tx, ty = xr - p["offx"], yr - p["offy"]
    tth = np.arctan2(ty, tx)
    wr = p["wrinkle"] * (fractal_noise(axn * 10.0, axn * 10.0, seed + 7, octaves=2) - 0.5) * 2.0
    lobn = fractal_noise(axn * 3.0, axn * 3.0, seed + 23, octaves=2) - 0.5
    lob = 1.0 + p["lobe_amp"] * np.cos(p["lobes"] * tth + seed % 11) + wr + 0.25 * lobn
    trho = np.hypot(tx, ty) / (p["tuft"] * lob)
    tuft = smoothstep(1.0 + aa / p["tuft"], 1.0 - aa / p["tuft"], trho) * inside
    # the tuft cannot leave the capsule
    tuft *= smoothstep(1.0 - cap * 0.5, 1.0 - cap * 0.5 - aa, rho)

    loops = worley(axn * p["loops"], axn * p["loops"], seed + 13)
    la = aa * p["loops"]
    nuc = worley(axn * 10.0, axn * 10.0, seed + 17)
    nd = np.hypot(nuc["dx"] * 1.4, nuc["dy"]) * (1.0 + 0.4 * cell_uniform(nuc["cell"], 1))
    nucleus = smoothstep(0.36 + aa * 10, 0.36 - aa * 10, nd)
    nucleus *= cell_uniform(nuc["cell"], 2) < p["nuclei"]

    if label == "normal":
        paint(img, tuft, pal["mesangium"])
        # open capillary loops: per-loop random size, elongation and orientation
        phi = cell_uniform(loops["cell"], 3) * np.float32(np.pi)
        elong = 1.0 + 0.8 * cell_uniform(loops["cell"], 4)
        du = loops["dx"] * np.cos(phi) + loops["dy"] * np.sin(phi)
        dv = -loops["dx"] * np.sin(phi) + loops["dy"] * np.cos(phi)
        dl = np.hypot(du / elong, dv * elong) / (0.7 + 0.6 * cell_uniform(loops["cell"], 5))
        ring = smoothstep(0.06 + la, 0.06, np.abs(dl - 0.38))
        lumen = smoothstep(0.38, 0.38 - la, dl)
        mes = smoothstep(0.14, 0.02, loops["d2"] - loops["d1"])
        paint(img, tuft * mes * 0.55, pal["sclerosis"])
        open_ = cell_uniform(loops["cell"], 1) < 0.8
        paint(img, tuft * lumen * open_, pal["lumen"])
        rbc = (cell_uniform(loops["cell"], 2) < 0.25) * smoothstep(0.16, 0.1, dl)
        paint(img, tuft * lumen * rbc * 0.7, pal["rbc"])
        paint(img, tuft * ring * 0.75, pal["membrane"])
        # endothelial and mesangial nuclei: in the stalks between loops and along loop walls
        spots = fractal_noise(axn * 18.0, axn * 18.0, seed + 29, octaves=1)
        stalk = smoothstep(0.12, 0.04, loops["d2"] - loops["d1"]) * smoothstep(0.6, 0.7, spots)
        paint(img, tuft * np.maximum(nucleus, stalk * smoothstep(0.4, 0.46, dl)) * 0.9, pal["nucleus"])
    elif label == "solidified":
        paint(img, tuft, pal["sclerosis"])
        tex = fractal_noise(axn * 20.0, axn * 20.0, seed + 19, octaves=2)
        paint(img, tuft * 0.35 * smoothstep(0.5, 0.8, tex), pal["membrane"])
        paint(img, tuft * 0.25 * smoothstep(0.45, 0.2, tex), pal["mesangium"])
        slit = (cell_uniform(loops["cell"], 1) < 0.15) * smoothstep(0.1, 0.06, loops["d1"])
        paint(img, tuft * slit * 0.6, pal["lumen"])
        paint(img, tuft * nucleus * 0.9, pal["nucleus"])
    elif label == "obsolescent":
        paint(img, tuft, pal["sclerosis"])
        folds = 0.5 + 0.5 * np.cos(trho * 30.0 + 6.0 * wr / max(p["wrinkle"], 1e-3))
        paint(img, tuft * 0.5 * folds, pal["membrane"])
        paint(img, tuft * nucleus * 0.9, pal["nucleus"])
    else:  # disappearing: a faint remnant that merges into the interstitium
        paint(img, tuft * fade, pal["sclerosis"])
        paint(img, tuft * nucleus * fade, pal["nucleus"])
        alpha = smoothstep(1.1, 0.85, rho)
    return img, alpha


def _non_glomerular(
    img: np.ndarray,
    p: dict[str, float],
    seed: int,
    pal: dict[str, np.ndarray],
    rho: np.ndarray,
    theta: np.ndarray,
    xr: np.ndarray,
    yr: np.ndarray,
    aa: float,
    axn: np.ndarray,
) -> None:
    """Round look-alikes: a tubule cross-section, a vessel, or a round blob of tissue."""
    kind = NON_GLOMERULAR_KINDS[int(p["kind"])]
    inside = smoothstep(1.0 + aa, 1.0 - aa, rho)
    wall = p["wall"]
    if kind == "tubule":
        paint(img, inside, pal["epithelium"])
        gran = fractal_noise(axn * 40.0, axn * 40.0, seed + 3, octaves=2)
        paint(img, inside * 0.35 * smoothstep(0.45, 0.8, gran), pal["brush"])
        paint(img, smoothstep(0.03, 0.0, np.abs(rho - 0.985)), pal["brush"])
        lumen_r = 1.0 - wall
        paint(img, 0.6 * smoothstep(0.05, 0.0, np.abs(rho - lumen_r)), pal["brush"])
        paint(img, smoothstep(lumen_r, lumen_r - aa, rho), pal["lumen"])
        n = 14 + int(p["blob_mix"] * 10)
        a = theta * n / (2 * np.pi)
        arc = (a - np.floor(a) - 0.5) * (2 * np.pi / n) * rho
        rad = rho - (1.0 - wall * 0.45)
        nd = np.hypot(arc / 0.045, rad / 0.06)
        paint(img, inside * smoothstep(1.0, 0.8, nd) * 0.9, pal["nucleus"])
    elif kind == "vessel":
        paint(img, inside, pal["muscle"])
        lumen_r = 1.0 - wall
        layers = 0.5 + 0.5 * np.cos(rho * 70.0 + 3.0 * fractal_noise(axn * 8, axn * 8, seed + 3))
        paint(img, inside * 0.2 * layers, pal["brush"])
        n = 40
        a = theta * n / (2 * np.pi) + rho * 25.0
        arc = (a - np.floor(a) - 0.5) * (2 * np.pi / n) * rho
        band = np.modf(rho * 9.0)[0] - 0.5
        nd = np.hypot(arc / 0.06, band / 0.18)
        wall_zone = smoothstep(lumen_r, lumen_r + 0.05, rho) * inside
        paint(img, wall_zone * smoothstep(1.0, 0.7, nd) * 0.85, pal["nucleus"])
        wave = lumen_r + 0.012 * np.sin(theta * 40.0)
        paint(img, smoothstep(0.012 + aa, 0.012, np.abs(rho - wave)), pal["membrane"])
        paint(img, 0.7 * smoothstep(1.0, 0.95, rho) * smoothstep(0.9, 0.95, rho), pal["collagen"])
        lumen = smoothstep(lumen_r - 0.01, lumen_r - 0.01 - aa, rho)
        paint(img, lumen, pal["lumen"])
        rbc = worley(axn * 12.0, axn * 12.0, seed + 9)
        cells = (cell_uniform(rbc["cell"], 1) < 0.3) * smoothstep(0.3, 0.22, rbc["d1"])
        paint(img, lumen * cells * 0.8, pal["rbc"])
    else:
        mix = p["blob_mix"]
        base = pal["collagen"] * (1 - mix) + pal["epithelium"] * mix
        paint(img, inside, base)
        tex = fractal_noise(axn * 12.0, axn * 12.0, seed + 3, octaves=3)
        paint(img, inside * 0.4 * smoothstep(0.5, 0.8, tex), pal["brush"])
        nuc = worley(axn * 14.0, axn * 14.0, seed + 5)
        nucleus = (cell_uniform(nuc["cell"], 1) < 0.3) * smoothstep(0.22, 0.16, nuc["d1"])
        paint(img, inside * nucleus * 0.85, pal["nucleus"])
        paint(img, 0.7 * smoothstep(0.03, 0.0, np.abs(rho - 0.985)), pal["brush"])
