"""A five-class patch dataset of synthetic glomeruli (for training and testing classifiers)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from glomkit.core.schemes import FIVE_CLASS
from glomkit.io.atomic import write_png, write_text
from glomkit.synth.glomerulus import render_glomerulus
from glomkit.synth.stain import jitter_palette

PATCHES_PER_SLIDE = 8  # images sharing one fake slide id (and one stain), for grouped splits


def make_patch_dataset(out_dir: str | Path, n_per_class: int, seed: int = 0, size: int = 256) -> Path:
    """Write ``images/<label>/*.png``, ``masks/*.png`` (0/255) and ``labels.csv``; return the csv path.

    Each patch shows one object centred, with a radius of 30-42 % of the patch side and a random
    scale; ``labels.csv`` has columns image, mask, label, slide (paths relative to ``out_dir``).
    Patches are grouped into fake slides of a few images with a shared stain and tissue scale.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    out = Path(out_dir)
    rng = np.random.default_rng([seed, 101])
    items = [(label, i) for label in FIVE_CLASS.names for i in range(n_per_class)]
    order = rng.permutation(len(items))
    rows = []
    palette = jitter_palette(rng)
    for k, j in enumerate(order):
        label, i = items[j]
        slide = k // PATCHES_PER_SLIDE
        if k % PATCHES_PER_SLIDE == 0:
            palette = jitter_palette(rng)
        radius_um = float(rng.uniform(55.0, 105.0))
        radius_px = float(rng.uniform(0.3, 0.42)) * size
        prng = np.random.default_rng([seed, 102, int(k)])
        img, mask = render_glomerulus(
            label, radius_px, prng, size=size, mpp=radius_um / radius_px, palette=palette
        )
        name = f"{label}_{i:05d}.png"
        write_png(out / "images" / label / name, img)
        write_png(out / "masks" / name, mask)
        rows.append(
            {
                "image": f"images/{label}/{name}",
                "mask": f"masks/{name}",
                "label": label,
                "slide": f"synth{seed}_{slide:04d}",
            }
        )
    rows.sort(key=lambda r: r["image"])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["image", "mask", "label", "slide"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return write_text(out / "labels.csv", buf.getvalue())
