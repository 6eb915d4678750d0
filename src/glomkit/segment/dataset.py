"""Segmentation data: image/mask pairs read from a folder, fitted to the model's input size, augmented.

A data folder is either ``labels.csv`` with columns image, mask and slide (or source_wsi; the
bueno_pas form), or ``images/`` + ``masks/`` with matching file names (no slide: each image is
its own group). Masks are binarised at > 127.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from glomkit import GlomkitError
from glomkit.infer.segment import fit_to_size
from glomkit.io.images import IMAGE_SUFFIXES, read_rgb


@dataclass(frozen=True)
class SegSample:
    image: Path
    mask: Path
    slide: str
    label: str = ""


def load_samples(data_dir: str | Path) -> list[SegSample]:
    """The image/mask pairs of ``data_dir`` (labels.csv, else images/ + masks/)."""
    root = Path(data_dir)
    csv_path = root / "labels.csv"
    if csv_path.is_file():
        out = []
        with csv_path.open(newline="") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or [])
            if not {"image", "mask"} <= cols:
                raise GlomkitError(
                    f"{csv_path}: needs columns image and mask (has {', '.join(sorted(cols))})"
                )
            slide_col = "slide" if "slide" in cols else ("source_wsi" if "source_wsi" in cols else None)
            for row in reader:
                img = root / row["image"]
                out.append(
                    SegSample(
                        image=img,
                        mask=root / row["mask"],
                        slide=row[slide_col] if slide_col else img.stem,
                        label=row.get("label", "") or "",
                    )
                )
    elif (root / "images").is_dir() and (root / "masks").is_dir():
        masks = {p.stem: p for p in (root / "masks").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
        out = []
        for p in sorted((root / "images").rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                if p.stem not in masks:
                    raise GlomkitError(f"{p}: no mask with the same name in {root / 'masks'}")
                out.append(SegSample(image=p, mask=masks[p.stem], slide=p.stem))
    else:
        raise GlomkitError(
            f"{root}: not a segmentation data folder (needs labels.csv, or images/ and masks/)"
        )
    if not out:
        raise GlomkitError(f"{root}: no image/mask pairs found")
    return out


def read_mask(path: str | Path) -> np.ndarray:
    """bool (H,W): grey value > 127."""
    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise GlomkitError(f"{path}: not a readable mask image")
    return m > 127


def load_arrays(samples: list[SegSample], size: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """All samples fitted to ``size``: uint8 images (N,S,S,3) and uint8 0/1 masks (N,S,S)."""
    imgs = np.empty((len(samples), size, size, 3), np.uint8)
    masks = np.empty((len(samples), size, size), np.uint8)
    for i, s in enumerate(samples):
        img, m = read_rgb(s.image), read_mask(s.mask)
        if img.shape[:2] != m.shape:
            raise GlomkitError(f"{s.mask}: mask size {m.shape} differs from image size {img.shape[:2]}")
        imgs[i] = fit_to_size(img, size, mode)
        masks[i] = fit_to_size(m.astype(np.uint8), size, mode, is_mask=True)
    return imgs, masks


def augment(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flips, 90-degree rotations, scale 0.85-1.15 (reflect border), colour jitter. uint8 in, uint8 out."""
    k = int(rng.integers(4))
    img, mask = np.rot90(img, k), np.rot90(mask, k)
    if rng.random() < 0.5:
        img, mask = img[:, ::-1], mask[:, ::-1]
    img, mask = np.ascontiguousarray(img), np.ascontiguousarray(mask)
    if rng.random() < 0.5:
        s = float(rng.uniform(0.85, 1.15))
        h, w = mask.shape
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, s)
        img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    x = img.astype(np.float32)
    x = x * rng.uniform(0.85, 1.15) + rng.uniform(-20, 20)  # contrast, brightness
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.8, 1.2)  # saturation
    x += rng.uniform(-8, 8, size=3)  # per-channel shift (hue-ish)
    return np.clip(x, 0, 255).astype(np.uint8), mask
