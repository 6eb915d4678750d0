"""Which real glomeruli a classifier's non-glomerular filter drops in context (prints figures).

Every annotated glomerulus of the hubmap_pas validation block and test tiles is cut as the
pipeline cuts it (its circle plus 12.5 µm, 256 px) and classified; the script prints, per model,
how many fall below the model's glomerulus cut, split into whole glomeruli and glomeruli cut by
the image's edge (their patch is partly white padding).

    python benchmarks/classifier_in_context.py                       # the bundled classifier
    python benchmarks/classifier_in_context.py other.onnx more.onnx  # and these
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def in_context_patches(data: Path, data_mpp: float) -> tuple[np.ndarray, np.ndarray]:
    """(patches (N, 256, 256, 3), cut by the image edge (N,)) of the val and test glomeruli."""
    from glomkit.evaluate_images import select_images
    from glomkit.infer.patches import PATCH_SIZE, patch_box
    from glomkit.slide.reader import Slide

    patches, edge = [], []
    for split in ("val", "test"):
        for im in select_images(data, split, data_mpp):
            with Slide(im.path, mpp=data_mpp) as s:
                margin = 12.5 / s.mpp
                for x, y, r in im.circles:
                    box = patch_box(float(x), float(y), float(r), margin)
                    patches.append(s.read_patch(*box, PATCH_SIZE, PATCH_SIZE, 1.0))
                    edge.append(x - r < 0 or y - r < 0 or x + r > s.width or y + r > s.height)
    return np.stack(patches), np.array(edge, bool)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path, help="classifier .onnx files (default: bundled)")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/hubmap_pas/tiles"))
    ap.add_argument("--data-mpp", type=float, default=0.8)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    from glomkit.infer.classify import classify_and_decide
    from glomkit.infer.decision import Decision
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import OnnxModel

    patches, edge = in_context_patches(a.data, a.data_mpp)
    print(
        f"{len(patches)} real glomeruli (validation block + test tiles), {int(edge.sum())} cut by the image edge"
    )
    for path in a.models or [resolve_model(None, "classifier")]:
        model = OnnxModel(path, expect_task="classifier", threads=a.threads)
        probs, _ = classify_and_decide(model, patches)
        glom = [k for k, c in enumerate(model.info.scheme.classes) if c.is_glomerulus]
        p = probs[:, glom].sum(axis=1)
        cut = Decision.from_meta(model.meta).glomerulus_min
        low = p < cut
        print(
            f"{Path(path).name}: glomerulus cut {cut:.3f}; dropped {int(low.sum())} of {len(p)}: "
            f"whole glomeruli {int(low[~edge].sum())} of {int((~edge).sum())}, "
            f"cut by the edge {int(low[edge].sum())} of {int(edge.sum())}; median P(glomerulus) {np.median(p):.3f}"
        )


if __name__ == "__main__":
    main()
