"""PAS-like kidney cortex texture: packed tubules, interstitium, occasional vessels.

The texture is a pure function of (seed, position in µm), computed with cellular noise, so tiles
rendered separately join without seams and every pyramid level shows the same tubules.
"""

from __future__ import annotations

import cv2
import numpy as np

from glomkit.synth.noise import cell_uniform, fractal_noise, smoothstep, value_noise, worley
from glomkit.synth.stain import jitter_palette, paint

TUBULE_CELL_UM = 52.0  # spacing of tubule cross-sections
FINEST_WORK_MPP = 1.0  # finer requests are rendered at this scale and upsampled
COARSEST_WORK_MPP = 2.0  # coarser requests are rendered at about this scale and downsampled
VESSEL_FRACTION = 0.035


def render_tissue(
    height: int,
    width: int,
    rng: np.random.Generator,
    mpp: float = 2.0,
    origin: tuple[float, float] = (0, 0),
    *,
    seed: int | None = None,
    palette: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Render an RGB uint8 (height, width, 3) PAS-like cortex texture at ``mpp`` µm/px.

    ``origin`` is the (x, y) of the top-left pixel in pixels of this scale, so neighbouring
    tiles continue each other. The structures depend on ``seed`` (drawn from ``rng`` when not
    given: pass the same seed to every tile of one slide) and the colours on ``palette``
    (jittered from ``rng`` when not given). Fine grain noise is drawn from ``rng``.
    """
    if seed is None:
        seed = int(rng.integers(0, 2**31 - 1))
    if palette is None:
        palette = jitter_palette(rng)
    x0_um = float(origin[0]) * mpp
    y0_um = float(origin[1]) * mpp
    if mpp < FINEST_WORK_MPP:
        f = FINEST_WORK_MPP / mpp
        wh, ww = int(np.ceil(height / f)) + 2, int(np.ceil(width / f)) + 2
        work = _render_float(wh, ww, x0_um, y0_um, FINEST_WORK_MPP, seed, palette)
        # pixel centres: output px i sits at (i + 0.5) / f work px from the work origin
        m = np.float32([[1.0 / f, 0, 0.5 / f - 0.5], [0, 1.0 / f, 0.5 / f - 0.5]])
        img = cv2.warpAffine(
            work,
            m,
            (width, height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )
    elif COARSEST_WORK_MPP * 1.5 < mpp <= COARSEST_WORK_MPP * 4:
        k = min(int(np.ceil(mpp / COARSEST_WORK_MPP)), 2)
        work = _render_float(height * k, width * k, x0_um, y0_um, mpp / k, seed, palette)
        img = cv2.resize(work, (width, height), interpolation=cv2.INTER_AREA)
    else:
        img = _render_float(height, width, x0_um, y0_um, mpp, seed, palette)
    img += rng.normal(0.0, 2.5, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _render_float(
    h: int, w: int, x0_um: float, y0_um: float, mpp: float, seed: int, pal: dict[str, np.ndarray]
) -> np.ndarray:
    """The texture as float32 RGB, computed at exactly ``mpp``."""
    xs_um = x0_um + (np.arange(w) + 0.5) * mpp
    ys_um = y0_um + (np.arange(h) + 0.5) * mpp
    aa = max(mpp, 0.6)  # edge softness in µm: about one pixel

    cells = worley(xs_um / TUBULE_CELL_UM, ys_um / TUBULE_CELL_UM, seed)
    d1 = cells["d1"] * TUBULE_CELL_UM
    edge = (cells["d2"] - cells["d1"]) * (0.5 * TUBULE_CELL_UM)
    u_radius = cell_uniform(cells["cell"], 1)
    u_kind = cell_uniform(cells["cell"], 2)
    u_thick = cell_uniform(cells["cell"], 3)
    u_nuc = cell_uniform(cells["cell"], 4)

    # interstitium width varies slowly (patches of fibrosis)
    fib = fractal_noise(xs_um / 300.0, ys_um / 300.0, seed + 11, octaves=2)
    gap = 1.5 + 5.0 * fib**2
    radius = 20.0 + 12.0 * u_radius
    # depth inside the tubule (µm from its outer edge); negative outside
    depth = np.minimum(edge - gap, radius - d1)

    img = np.empty((h, w, 3), np.float32)
    img[:] = pal["interstitium"]
    # interstitial fibres and scattered fibroblast nuclei
    fibres = fractal_noise(xs_um / 9.0, ys_um / 3.0, seed + 23, octaves=2)
    paint(img, 0.45 * smoothstep(0.45, 0.75, fibres), pal["collagen"])
    spots = value_noise(xs_um / 3.0, ys_um / 3.0, seed + 31)
    inuc = smoothstep(0.9, 0.93, spots)
    paint(img, inuc * smoothstep(0.0, -aa, depth), pal["nucleus"])

    tubule = smoothstep(-aa * 0.5, aa * 0.5, depth)
    vessel = (u_kind < VESSEL_FRACTION).astype(np.float32)
    tub = tubule * (1.0 - vessel)
    ves = tubule * vessel

    # tubular epithelium, its basement membrane and lumen
    thick = np.minimum(8.0 + 7.0 * u_thick, radius - 5.0)
    paint(img, tub, pal["epithelium"])
    granules = fractal_noise(xs_um / 4.0, ys_um / 4.0, seed + 41, octaves=2)
    paint(img, tub * 0.35 * smoothstep(0.4, 0.8, granules), pal["brush"])
    tbm = smoothstep(1.6 + aa * 0.5, 1.6 - aa * 0.5, np.abs(depth - 0.8))
    paint(img, tub * tbm * 0.7, pal["brush"])
    lumen = smoothstep(thick - aa * 0.5, thick + aa * 0.5, depth)
    brush = smoothstep(1.8, 0.0, np.abs(depth - thick)) * (u_nuc < 0.7)
    paint(img, tub * brush * 0.55, pal["brush"])
    paint(img, tub * lumen * 0.9, pal["lumen"])

    # epithelial nuclei: slots around the ring
    ang = np.arctan2(cells["dy"], cells["dx"])
    r_mid = np.maximum(d1, 1.0)
    n_slots = np.floor(8 + 8 * u_nuc)
    a = ang * (n_slots / (2 * np.pi)) + u_radius * 7.0
    slot = np.floor(a)
    arc = (a - slot - 0.5) * (2 * np.pi * r_mid / n_slots)
    present = ((slot * 0.6180339 + u_thick * 13.7) % 1.0) < 0.75
    rad = depth - (2.5 + 0.25 * thick)
    nd = np.sqrt((arc / 1.15) ** 2 + (rad / 0.9) ** 2)
    nuc = smoothstep(2.6 + aa * 0.5, 2.6 - aa * 0.5, nd) * smoothstep(4.0, 7.0, d1)
    paint(img, tub * present * nuc * 0.9, pal["nucleus"])

    # vessels: muscular wall with circumferential nuclei, magenta elastic lamina, open lumen
    vr = radius - d1  # depth from outer wall
    wall = 0.45 * radius
    paint(img, ves, pal["muscle"])
    vnuc = np.sqrt(
        (((a - slot - 0.5) * 2 * np.pi * r_mid / n_slots) / 3.5) ** 2 + ((vr - wall * 0.5) / 0.9) ** 2
    )
    paint(img, ves * present * smoothstep(1.4, 0.8, vnuc), pal["nucleus"])
    lam = smoothstep(1.2 + aa * 0.5, 1.2 - aa * 0.5, np.abs(vr - wall))
    paint(img, ves * lam, pal["membrane"])
    vlumen = smoothstep(wall, wall + aa, vr)
    paint(img, ves * vlumen, pal["lumen"])
    rbc = smoothstep(0.55, 0.7, granules) * vlumen
    paint(img, ves * rbc * 0.8, pal["rbc"])

    # slow stain intensity variation
    var = fractal_noise(xs_um / 500.0, ys_um / 500.0, seed + 53, octaves=2)
    img = 255.0 - (255.0 - img) * (0.85 + 0.3 * var)[..., None]
    return img.astype(np.float32)
