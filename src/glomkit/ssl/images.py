"""Unlabelled image folders for self-supervised pretraining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from glomkit import GlomkitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def find_images(folders: list[str | Path]) -> list[Path]:
    """Every image under the folders (recursive), sorted; masks/ subfolders are skipped."""
    out: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file() and folder.suffix.lower() in IMAGE_SUFFIXES:
            out.append(folder)
            continue
        if not folder.is_dir():
            raise GlomkitError(f"{folder}: not an image folder")
        out.extend(
            p
            for p in sorted(folder.rglob("*"))
            if p.suffix.lower() in IMAGE_SUFFIXES and "masks" not in p.parts
        )
    if not out:
        raise GlomkitError(f"{', '.join(map(str, folders))}: no png/jpg/tif images found")
    return out


def read_rgb(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise GlomkitError(f"{path}: cannot read image ({e})") from e


def load_resized(paths: list[Path], size: int) -> np.ndarray:
    """N x size x size x 3 uint8, each image resized (bilinear) to a square."""
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        img = Image.fromarray(read_rgb(p)).resize((size, size), Image.BILINEAR)
        out[i] = np.asarray(img)
    return out
