"""Near-duplicate panels by perceptual hash (DCT pHash, Zauner 2010), with OpenCV only."""

from __future__ import annotations

import cv2
import numpy as np


def phash(rgb: np.ndarray, hash_size: int = 8, highfreq_factor: int = 4) -> int:
    """64-bit DCT perceptual hash: low-frequency DCT coefficients above their median."""
    img = np.asarray(rgb)
    grey = cv2.cvtColor(img[:, :, :3], cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    n = hash_size * highfreq_factor
    small = cv2.resize(grey, (n, n), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:hash_size, :hash_size].ravel()
    bits = low > np.median(low[1:])
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    """Number of differing bits."""
    return (a ^ b).bit_count()


class DuplicateIndex:
    """Remembers the hashes of kept images; ``find`` names the first within ``max_distance`` bits."""

    def __init__(self, max_distance: int = 8) -> None:
        self.max_distance = max_distance
        self._seen: list[tuple[int, str]] = []

    def find(self, h: int) -> str | None:
        for other, name in self._seen:
            if hamming(h, other) <= self.max_distance:
                return name
        return None

    def add(self, h: int, name: str) -> None:
        self._seen.append((h, name))
