"""Segmenter files timed against each other, alternating, on the same real patches.

Each round runs ``segment_patches`` (resize to the model's input, ONNX Runtime, resize back,
threshold) over the same patches with every file in turn; the medians are printed. The patches are
bueno_pas crops resized to the pipeline's 256 px.

    git show 57a196c~1:src/glomkit/models/weights/segmenter.onnx > seg256.onnx
    OMP_NUM_THREADS=2 python benchmarks/segmenter_speed.py seg256.onnx src/glomkit/models/weights/segmenter.onnx
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bueno_pas"


def main() -> None:
    from glomkit.infer.patches import PATCH_SIZE
    from glomkit.infer.segment import segment_patches
    from glomkit.io.images import read_rgb
    from glomkit.models.runtime import OnnxModel

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, default=DATA, help="bueno_pas folder (images/)")
    ap.add_argument("--patches", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    files = sorted((args.data / "images").rglob("*.*"))[: args.patches]
    if not files:
        raise SystemExit(f"{args.data / 'images'}: no crops")
    size = (PATCH_SIZE, PATCH_SIZE)
    patches = np.stack([cv2.resize(read_rgb(f), size, interpolation=cv2.INTER_LINEAR) for f in files])
    models = {str(p): OnnxModel(p, device="cpu", threads=args.threads) for p in args.models}
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.rounds):
        for k, m in models.items():
            t0 = time.perf_counter()
            segment_patches(m, patches, args.batch)
            times[k].append(time.perf_counter() - t0)
    for k, m in models.items():
        med = float(np.median(times[k]))
        print(
            f"{k} (input {m.info.input_size[0]} px): median {med:.3f} s for {len(patches)} patches, "
            f"{med / len(patches) * 1e3:.2f} ms/patch (min {min(times[k]):.3f} s, {args.rounds} rounds)"
        )


if __name__ == "__main__":
    main()
