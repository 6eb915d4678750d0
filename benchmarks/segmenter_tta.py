"""Held-out Dice of a segmenter with and without test-time augmentation and post-processing.

For the validation and test slides named in the model's metadata, prints the mean Dice of:
thresholds 0.4 / 0.5 / 0.6; the largest connected component of the 0.5 mask (holes filled);
the average of the plain and horizontally flipped predictions; and the average of all 8
dihedral views (4 rotations x flip). Each crop is predicted at its own size, as
``glomkit evaluate segmenter`` does. The model card's TTA figures come from:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/segmenter_tta.py --data ../shared/data/bueno_pas
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage as ndi

from glomkit.eval.segmentation import mask_scores
from glomkit.infer.morphometry import largest_component
from glomkit.infer.segment import predict_probs
from glomkit.io.images import read_rgb
from glomkit.models.registry import resolve_model
from glomkit.models.runtime import OnnxModel
from glomkit.segment.dataset import load_samples, read_mask
from glomkit.segment.evaluate import select_split

VIEWS = [(k, flip) for k in range(4) for flip in (False, True)]


def view(img: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Image seen under rotation ``k`` x 90 degrees after an optional horizontal flip."""
    return np.ascontiguousarray(np.rot90(img[:, ::-1] if flip else img, k))


def unview(prob: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Inverse of :func:`view` for a probability map."""
    back = np.rot90(prob, -k)
    return back[:, ::-1] if flip else back


def mean_dice(preds: list[np.ndarray], trues: list[np.ndarray]) -> float:
    return float(np.mean([mask_scores(p, t)["dice"] for p, t in zip(preds, trues, strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="segmenter .onnx (default: bundled)")
    ap.add_argument("--data", required=True, help="bueno_pas folder")
    args = ap.parse_args()
    model = OnnxModel(resolve_model(args.model, "segmenter"), expect_task="segmenter")
    samples = load_samples(args.data)
    for split in ("val", "test"):
        chosen = select_split(samples, model.info.typed.splits, split)
        images = [read_rgb(s.image) for s in chosen]
        trues = [read_mask(s.mask) for s in chosen]
        probs = {
            v: [unview(p, *v) for p in predict_probs(model, [view(i, *v) for i in images])] for v in VIEWS
        }
        plain = probs[(0, False)]
        hflip = [(a + b) / 2 for a, b in zip(plain, probs[(0, True)], strict=True)]
        all8 = [np.mean([probs[v][i] for v in VIEWS], axis=0) for i in range(len(images))]
        rows = {f"threshold {t}": mean_dice([p > t for p in plain], trues) for t in (0.4, 0.5, 0.6)}
        rows["largest component, holes filled"] = mean_dice(
            [ndi.binary_fill_holes(largest_component(p > 0.5)) for p in plain], trues
        )
        rows["hflip TTA"] = mean_dice([p > 0.5 for p in hflip], trues)
        rows["8-view TTA"] = mean_dice([p > 0.5 for p in all8], trues)
        print(f"{split} ({len(images)} crops)")
        for name, d in rows.items():
            print(f"  {name:34s} Dice {d:.4f}")


if __name__ == "__main__":
    main()
