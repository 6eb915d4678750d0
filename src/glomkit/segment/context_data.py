"""In-context segmentation patches: real glomeruli cut from annotated tiles the way the pipeline cuts them.

The bueno_pas crops are tight boxes: the glomerulus fills the crop, so a segmenter trained only on
them fills the patch. ``glomkit run`` cuts the detected circle plus a margin from a slide, with
tubules, vessels and neighbouring glomeruli around it. This module cuts such patches from images
with glomerulus outlines (for example ``hubmap_pas/tiles``): a circle like a detector's (the
outline's minimum enclosing circle, its centre and radius jittered as a detector errs), a random
margin, resized to the model size; the mask is the outline of that glomerulus only.

Only the training files of ``glomkit.detect.data.split_annotated`` are used (never the validation
block or the ``test*`` files), grouped by their block of file numbers.

    python -m glomkit.segment.context_data --data ../shared/data/hubmap_pas/tiles --data-mpp 0.8 --out CTX
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

from glomkit import GlomkitError
from glomkit.infer.patches import read_patch


def context_patches(
    data: str | Path,
    out: str | Path,
    data_mpp: float | None,
    copies: int = 2,
    size: int = 256,
    margin_um: tuple[float, float] = (0.0, 25.0),
    seed: int = 0,
    val_block: int = -1,
) -> int:
    """Write ``out/images``, ``out/masks`` and ``out/labels.csv`` (image, mask, slide); returns the count."""
    from glomkit.detect.data import _number_key, read_user_images, split_annotated
    from glomkit.io.atomic import write_png
    from glomkit.slide.reader import Slide

    out = Path(out)
    train, _val, _test = split_annotated(read_user_images(data, data_mpp), val_block=val_block)
    order = sorted(train, key=lambda im: _number_key(im.path))
    blocks = np.array_split(np.arange(len(order)), 4)
    block_of = {order[i].path: b for b, idx in enumerate(blocks) for i in idx}
    rng = np.random.default_rng(seed)
    rows = []
    for im in order:
        sl = Slide(im.path, mpp=im.mpp)
        for j, ((x, y, r), poly) in enumerate(zip(im.circles, im.outlines, strict=True)):
            if poly is None or len(poly) < 3:
                continue
            lo, hi = poly.min(axis=0), poly.max(axis=0)
            if lo[0] < 2 or lo[1] < 2 or hi[0] > sl.width - 3 or hi[1] > sl.height - 3:
                continue  # cut by the image edge: its outline is not whole
            for c in range(copies):
                cx, cy = np.array([x, y]) + rng.normal(0, 0.08 * r, 2)
                cr = r * rng.uniform(0.9, 1.15)
                half = cr + rng.uniform(*margin_um) / sl.mpp
                x0, y0, side = cx - half, cy - half, 2 * half
                if x0 < 0 or y0 < 0 or x0 + side > sl.width or y0 + side > sl.height:
                    continue
                img = read_patch(sl, (x0, y0, side, side), size)
                mask = np.zeros((size, size), np.uint8)
                pts = np.round((poly - [x0, y0]) * (size / side)).astype(np.int32)
                cv2.fillPoly(mask, [pts], 255)
                name = f"{im.path.stem}_{j}_{c}.png"
                write_png(out / "images" / name, img)
                write_png(out / "masks" / name, mask)
                rows.append(
                    {
                        "image": f"images/{name}",
                        "mask": f"masks/{name}",
                        "slide": f"ctx_block{block_of[im.path]}",
                    }
                )
        sl.close()
    if not rows:
        raise GlomkitError(f"{data}: no whole glomerulus outline to cut")
    out.mkdir(parents=True, exist_ok=True)
    with (out / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "mask", "slide"])
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="folder of images with GeoJSON / XML outlines beside them")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-mpp", type=float, default=None)
    ap.add_argument("--copies", type=int, default=2, help="jittered patches per glomerulus")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    n = context_patches(a.data, a.out, a.data_mpp, copies=a.copies, seed=a.seed)
    print(f"wrote {n} patches to {a.out}")


if __name__ == "__main__":
    main()
