"""Detection time of detector files on annotated images, as ``glomkit run`` detects (prints figures).

Each model runs ``glomkit.pipeline.detect_circles`` (tissue mask, tiles at the model's mpp, ONNX
Runtime, decoding, NMS) over the same images, one ONNX Runtime thread, after one warm-up image;
the figure is seconds per mm² of image, the best of ``--repeat`` passes.

    python benchmarks/detector_speed.py --data ../shared/data/hubmap_pas/tiles --data-mpp 0.8 --split val A.onnx B.onnx
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--data-mpp", type=float, default=None)
    ap.add_argument("--split", default="val")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()

    from glomkit.evaluate_images import select_images
    from glomkit.models.runtime import OnnxModel
    from glomkit.pipeline import PipelineConfig, detect_circles
    from glomkit.slide.reader import Slide
    from glomkit.slide.tissue import tissue_mask

    images = select_images(a.data, a.split, a.data_mpp)
    slides = [Slide(im.path, mpp=im.mpp) for im in images]
    area_mm2 = sum(s.width * s.height * s.mpp**2 for s in slides) / 1e6
    masks = [(tissue_mask(t), ds) for t, ds in (s.thumbnail(2048) for s in slides)]
    for path in a.models:
        det = OnnxModel(path, expect_task="detector", threads=1)
        cfg = PipelineConfig(threads=1)
        ns = SimpleNamespace(detector=det)
        detect_circles(slides[0], ns, cfg, *masks[0])  # warm-up
        best = float("inf")
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            for s, (m, ds) in zip(slides, masks, strict=True):
                detect_circles(s, ns, cfg, m, ds)
            best = min(best, time.perf_counter() - t0)
        print(
            f"{path}: mpp {det.info.mpp:g}  {len(slides)} images, {area_mm2:.2f} mm²: "
            f"{best:.2f} s ({best / area_mm2:.2f} s/mm²)"
        )


if __name__ == "__main__":
    main()
