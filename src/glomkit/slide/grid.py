"""The tile grid at a model's working mpp, restricted to tissue."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from glomkit import GlomkitError

# A slide whose area at the detector's mpp exceeds this is refused before any tile is read:
# 4e8 model px is 20000² px, 16 cm square at 8 µm/px, far beyond any glass slide.
MAX_GRID_PIXELS = 400_000_000


@dataclass(frozen=True)
class Tile:
    """A tile: its level-0 box and its size in model pixels."""

    index: int
    x: float  # level-0 px
    y: float
    w: float  # level-0 extent
    h: float
    out_w: int  # model px
    out_h: int
    # which edges lie on the slide border (circles cut there cannot be seen by another tile)
    at_left: bool
    at_top: bool
    at_right: bool
    at_bottom: bool


@dataclass(frozen=True)
class TileGrid:
    """A regular grid of ``tile`` model px with ``overlap`` model px over a level-0 rectangle."""

    bounds: tuple[int, int, int, int]  # level-0 x, y, w, h
    slide_mpp: float
    model_mpp: float
    tile: int
    overlap: int

    def __post_init__(self) -> None:
        if self.overlap >= self.tile:
            raise ValueError(f"tile overlap {self.overlap} must be smaller than the tile {self.tile}")

    def check_size(self, where: str, limit: float = MAX_GRID_PIXELS) -> None:
        """GlomkitError when the bounds at the model's mpp would be an absurd number of pixels."""
        bx, by, bw, bh = self.bounds
        px = (bw / self.scale) * (bh / self.scale)
        if not math.isfinite(px) or px > limit:
            raise GlomkitError(
                f"{where}: {bw}x{bh} px at {self.slide_mpp:g} µm/px is {bw * self.slide_mpp / 1000:.1f} x "
                f"{bh * self.slide_mpp / 1000:.1f} mm, {px:.3g} px at the detector's {self.model_mpp:g} µm/px "
                f"(limit {limit:.3g}): check the slide's scale or --mpp"
            )

    @property
    def scale(self) -> float:
        """Level-0 px per model px."""
        return self.model_mpp / self.slide_mpp

    def tiles(
        self, tissue: np.ndarray | None = None, tissue_downsample: float = 1.0, min_tissue: float = 0.01
    ):
        """All tiles, or those whose tissue fraction (from a thumbnail mask) is ≥ ``min_tissue``.

        ``tissue`` is a boolean mask whose (0, 0) is the bounds origin, at ``tissue_downsample``
        level-0 px per mask px.
        """
        bx, by, bw, bh = self.bounds
        s = self.scale
        W, H = bw / s, bh / s  # model px
        stride = self.tile - self.overlap
        nx = max(1, math.ceil((W - self.overlap) / stride)) if W > self.tile else 1
        ny = max(1, math.ceil((H - self.overlap) / stride)) if H > self.tile else 1
        out = []
        k = 0
        for j in range(ny):
            for i in range(nx):
                mx, my = i * stride, j * stride
                tw, th = min(self.tile, W - mx), min(self.tile, H - my)
                x0, y0 = bx + mx * s, by + my * s
                w0, h0 = tw * s, th * s
                if tissue is not None:
                    ds = tissue_downsample
                    r0, r1 = int(my * s / ds), int(math.ceil((my + th) * s / ds))
                    c0, c1 = int(mx * s / ds), int(math.ceil((mx + tw) * s / ds))
                    sub = tissue[r0:r1, c0:c1]
                    if sub.size == 0 or sub.mean() < min_tissue:
                        continue
                out.append(
                    Tile(
                        index=k,
                        x=x0,
                        y=y0,
                        w=w0,
                        h=h0,
                        out_w=max(1, int(round(tw))),
                        out_h=max(1, int(round(th))),
                        at_left=i == 0,
                        at_top=j == 0,
                        at_right=i == nx - 1,
                        at_bottom=j == ny - 1,
                    )
                )
                k += 1
        return out
