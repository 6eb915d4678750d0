"""Unlabelled image folders for self-supervised pretraining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from glomkit import GlomkitError
from glomkit.io.images import collect_images


def find_images(folders: list[str | Path]) -> list[Path]:
    """Every image under the folders (recursive, sorted) or given as files; masks/ subfolders are skipped."""
    return collect_images(folders, skip_dirs=("masks",))


def read_rgb(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB; the declared size is checked against the pixel limit before decoding."""
    from glomkit.io.images import check_pixels

    check_pixels(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, MemoryError, Image.DecompressionBombError) as e:
        reason = " ".join(str(e).split())[:120] or type(e).__name__
        raise GlomkitError(f"{path}: cannot read image ({reason})") from None


def load_resized(paths: list[Path], size: int) -> np.ndarray:
    """N x size x size x 3 uint8, each image resized (bilinear) to a square."""
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        img = Image.fromarray(read_rgb(p)).resize((size, size), Image.BILINEAR)
        out[i] = np.asarray(img)
    return out
