"""Unlabelled image folders for self-supervised pretraining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from glomkit.io.images import collect_images, read_rgb


def find_images(folders: list[str | Path]) -> list[Path]:
    """Every image under the folders (recursive, sorted) or given as files; masks/ subfolders are skipped."""
    return collect_images(folders, skip_dirs=("masks",))


def load_resized(paths: list[Path], size: int) -> np.ndarray:
    """N x size x size x 3 uint8, each image resized (bilinear) to a square."""
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        img = Image.fromarray(read_rgb(p)).resize((size, size), Image.BILINEAR)
        out[i] = np.asarray(img)
    return out
