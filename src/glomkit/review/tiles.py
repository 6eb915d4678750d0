"""Deep-zoom tiles of a slide for OpenSeadragon, cut by glomkit's own :class:`~glomkit.slide.reader.Slide`.

The pyramid follows the Deep Zoom convention: level ``max_level`` is level 0 of the slide, each
level below halves it, down to 1 x 1 px. A tile is ``tile_size`` px square (smaller at the right
and bottom edges), without overlap. Coordinates of the full-resolution level are level-0 px, the
frame every glomkit output uses, so annotations need no conversion. Every format ``glomkit run``
reads works, plain images included.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import cv2

from glomkit.slide.reader import Slide

CACHE_TILES = 1024


class DeepZoomTiles:
    """JPEG tiles of a slide by (level, column, row); recently used tiles are kept in memory."""

    def __init__(self, slide: Slide, tile_size: int = 256, quality: int = 85) -> None:
        self.slide = slide
        self.width, self.height = int(slide.width), int(slide.height)
        self.tile_size = int(tile_size)
        self.quality = int(quality)
        self.max_level = max(0, math.ceil(math.log2(max(self.width, self.height, 1))))
        self._cache: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def scale(self, level: int) -> int:
        """Level-0 px per px of ``level``."""
        return 2 ** (self.max_level - level)

    def level_size(self, level: int) -> tuple[int, int]:
        s = self.scale(level)
        return max(1, math.ceil(self.width / s)), max(1, math.ceil(self.height / s))

    def tile_count(self, level: int) -> tuple[int, int]:
        w, h = self.level_size(level)
        return math.ceil(w / self.tile_size), math.ceil(h / self.tile_size)

    def has_tile(self, level: int, col: int, row: int) -> bool:
        if not 0 <= level <= self.max_level:
            return False
        cols, rows = self.tile_count(level)
        return 0 <= col < cols and 0 <= row < rows

    def tile(self, level: int, col: int, row: int) -> bytes:
        """The JPEG bytes of one tile; ``KeyError`` when the tile does not exist."""
        if not self.has_tile(level, col, row):
            raise KeyError((level, col, row))
        key = (level, col, row)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data = self._render(level, col, row)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > CACHE_TILES:
                self._cache.popitem(last=False)
        return data

    def _render(self, level: int, col: int, row: int) -> bytes:
        lw, lh = self.level_size(level)
        s = self.scale(level)
        t = self.tile_size
        tw, th = min(t, lw - col * t), min(t, lh - row * t)
        x0, y0 = col * t * s, row * t * s
        w0, h0 = min(tw * s, self.width - x0), min(th * s, self.height - y0)
        img = self.slide.read_region_scaled(x0, y0, w0, h0, tw, th)
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        )
        if not ok:
            raise OSError("JPEG encoding failed")
        return buf.tobytes()
