"""Position-hashed noise: value noise and Worley (cellular) noise, vectorised with numpy.

Every value is a pure function of (seed, position), so tiles rendered separately join without
seams and a pyramid level rendered at another scale shows the same structures.
"""

from __future__ import annotations

import cv2
import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def hash_u64(*keys: np.ndarray | int) -> np.ndarray:
    """Mix integer keys (arrays broadcast) into well-spread uint64 hashes (splitmix64 finaliser)."""
    h = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for k in keys:
            k = np.asarray(k).astype(np.int64).astype(np.uint64)
            h = h ^ (k + np.uint64(0x9E3779B97F4A7C15) + (h << np.uint64(6)) + (h >> np.uint64(2)))
            h = (h ^ (h >> np.uint64(30))) * _M1
            h = (h ^ (h >> np.uint64(27))) * _M2
            h = h ^ (h >> np.uint64(31))
    return h


def hash_uniform(*keys: np.ndarray | int) -> np.ndarray:
    """Uniform floats in [0, 1) from integer keys."""
    return (hash_u64(*keys) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def value_noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth noise in [0, 1] on a unit lattice; ``x``, ``y`` are evenly spaced 1-D axes.

    Returns an array of shape (len(y), len(x)) (bicubic interpolation of hashed lattice values).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(x) > 1 and len(y) > 1 and min(x[1] - x[0], y[1] - y[0]) > 1.0:
        # lattice finer than the pixels: the noise averages out to its mean
        return np.full((len(y), len(x)), 0.5, np.float32)
    lx0 = int(np.floor(x[0])) - 2
    ly0 = int(np.floor(y[0])) - 2
    lx1 = int(np.floor(x[-1])) + 3
    ly1 = int(np.floor(y[-1])) + 3
    xs = np.arange(lx0, lx1 + 1)
    ys = np.arange(ly0, ly1 + 1)
    lat = hash_uniform(seed, xs[None, :], ys[:, None]).astype(np.float32)
    sx = (x[-1] - x[0]) / max(len(x) - 1, 1) if len(x) > 1 else 1.0
    sy = (y[-1] - y[0]) / max(len(y) - 1, 1) if len(y) > 1 else 1.0
    m = np.float32([[sx, 0, x[0] - lx0], [0, sy, y[0] - ly0]])
    out = cv2.warpAffine(
        lat,
        m,
        (len(x), len(y)),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.clip(out, 0.0, 1.0)


def fractal_noise(x: np.ndarray, y: np.ndarray, seed: int, octaves: int = 3) -> np.ndarray:
    """Sum of value-noise octaves, roughly in [0, 1]."""
    out = np.zeros((len(y), len(x)), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        f = 2.0**o
        out += amp * value_noise(x * f, y * f, seed + 7919 * o)
        total += amp
        amp *= 0.5
    return out / total


def worley(x: np.ndarray, y: np.ndarray, seed: int, jitter: float = 0.8) -> dict[str, np.ndarray]:
    """Cellular noise on a unit grid with one feature point per cell.

    ``x``, ``y``: 1-D axes in cell units. Returns, per pixel (shape (len(y), len(x))): ``d1`` and
    ``d2`` (distances to the nearest and second-nearest points), ``dx``, ``dy`` (offset from the
    nearest point) and ``cell`` (a uint64 hash of the nearest point's cell, for per-cell values).
    """
    cx = np.floor(x).astype(np.int64)
    cy = np.floor(y).astype(np.int64)
    gx = np.arange(cx.min() - 1, cx.max() + 2)
    gy = np.arange(cy.min() - 1, cy.max() + 2)
    ghash = hash_u64(seed, gx[None, :], gy[:, None])
    px = gx[None, :] + 0.5 + jitter * ((ghash & np.uint64(0xFFFF)).astype(np.float64) / 65535.0 - 0.5)
    py = (
        gy[:, None]
        + 0.5
        + jitter * (((ghash >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.float64) / 65535.0 - 0.5)
    )
    shape = (len(y), len(x))
    d1 = np.full(shape, np.inf, np.float32)
    d2 = np.full(shape, np.inf, np.float32)
    best = np.zeros(shape, np.uint8)
    ix = cx - gx[0]
    iy = cy - gy[0]
    xf = x.astype(np.float32)[None, :]
    yf = y.astype(np.float32)[:, None]
    px = px.astype(np.float32)
    py = py.astype(np.float32)
    offsets = [(oy, ox) for oy in (-1, 0, 1) for ox in (-1, 0, 1)]
    for k, (oy, ox) in enumerate(offsets):
        jy = (iy + oy)[:, None]
        jx = (ix + ox)[None, :]
        dx = xf - px[jy, jx]
        dy = yf - py[jy, jx]
        d = np.sqrt(dx * dx + dy * dy)
        closer = d < d1
        np.minimum(d2, np.maximum(d1, d), out=d2)
        np.minimum(d1, d, out=d1)
        best[closer] = k
    oy = np.array([o[0] for o in offsets])[best]
    ox = np.array([o[1] for o in offsets])[best]
    jy = iy[:, None] + oy
    jx = ix[None, :] + ox
    return {
        "d1": d1,
        "d2": d2,
        "dx": xf - px[jy, jx],
        "dy": yf - py[jy, jx],
        "cell": ghash[jy, jx],
    }


def cell_uniform(cell: np.ndarray, k: int) -> np.ndarray:
    """A per-cell uniform value in [0, 1) (the ``k``-th one) from Worley's ``cell`` hashes."""
    return hash_uniform(cell.view(np.int64), k).astype(np.float32)


def smoothstep(edge0: float | np.ndarray, edge1: float | np.ndarray, v: np.ndarray) -> np.ndarray:
    """0 below ``edge0``, 1 above ``edge1``, smooth between (float32)."""
    t = (np.asarray(v, np.float32) - np.float32(edge0)) * np.float32(1.0 / (edge1 - edge0 + 1e-9))
    np.clip(t, 0.0, 1.0, out=t)
    return t * t * (3 - 2 * t)
