"""fp32 against INT8: how far two versions of the classifier (and segmenter) disagree on real crops.

This is a difference between two models, not a validation: the bundled classifier was trained on
every bueno slide (and on hubmap crops), so no held-out data exists for it. Two crop sets:

- bueno_pas: the 667 glomerulus crops, as ``glomkit evaluate classifier`` reads them;
- hubmap_pas: every outlined glomerulus of the tiles (all 120), cut as the pipeline cuts a patch
  (circle + 12.5 µm margin, 0.8 µm/px assumed) and resized to 256 px.

Printed: class agreement (after the metadata's decision rule), the largest and mean change of
P(GGS), the GGS AUC of each version on bueno, and the Dice between the two segmenters' masks.

    python benchmarks/int8_agreement.py --classifier OLD.onnx NEW.onnx --segmenter OLD.onnx NEW.onnx
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def bueno_crops(root: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    imgs = [cv2.cvtColor(cv2.imread(str(root / r["image"])), cv2.COLOR_BGR2RGB) for r in rows]
    imgs = [cv2.resize(i, (256, 256), interpolation=cv2.INTER_LINEAR) for i in imgs]
    return np.stack(imgs), np.array([r["label"] == "GS" for r in rows])


def hubmap_crops(tiles: Path, mpp: float = 0.8) -> np.ndarray:
    from glomkit.infer.patches import PATCH_SIZE, patch_box

    out = []
    margin = 12.5 / mpp
    for gj in sorted(tiles.glob("*.geojson")):
        img = cv2.cvtColor(cv2.imread(str(gj.with_suffix(".jpg"))), cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        for feat in json.loads(gj.read_text())["features"]:
            ring = np.asarray(feat["geometry"]["coordinates"][0], np.float32)
            (cx, cy), r = cv2.minEnclosingCircle(ring)
            x0, y0, side, _ = patch_box(cx, cy, r, margin)
            canvas = np.full((side, side, 3), 255, np.uint8)
            xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
            if xb <= xa or yb <= ya:
                continue
            canvas[ya - y0 : yb - y0, xa - x0 : xb - x0] = img[ya:yb, xa:xb]
            out.append(cv2.resize(canvas, (PATCH_SIZE, PATCH_SIZE), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classifier", nargs=2, metavar=("FP32", "INT8"), required=True)
    ap.add_argument("--segmenter", nargs=2, metavar=("FP32", "INT8"), default=None)
    ap.add_argument("--data", type=Path, default=DATA)
    a = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    from glomkit.infer.classify import classify_and_decide
    from glomkit.infer.segment import segment_patches
    from glomkit.models.runtime import OnnxModel

    sets = {
        "bueno_pas": bueno_crops(a.data / "bueno_pas"),
        "hubmap_pas": (hubmap_crops(a.data / "hubmap_pas" / "tiles"), None),
    }
    cls = [OnnxModel(p, expect_task="classifier") for p in a.classifier]
    seg = [OnnxModel(p, expect_task="segmenter") for p in a.segmenter] if a.segmenter else None
    for name, (x, gs) in sets.items():
        res = [classify_and_decide(m, x, 16) for m in cls]
        ggs = [m.info.scheme.ggs_probability(p) for m, (p, _) in zip(cls, res, strict=True)]
        agree = float(np.mean(res[0][1] == res[1][1]))
        d = np.abs(ggs[0] - ggs[1])
        line = f"{name}: {len(x)} crops; classes agree {agree:.4f}; |dP(GGS)| max {d.max():.4f} mean {d.mean():.5f}"
        if gs is not None:
            aucs = [roc_auc_score(gs, g) for g in ggs]
            line += f"; GGS AUC fp32 {aucs[0]:.4f} int8 {aucs[1]:.4f} (difference {aucs[1] - aucs[0]:+.4f})"
        print(line)
        if seg:
            m0, m1 = (segment_patches(m, x, 16) for m in seg)
            inter = np.logical_and(m0, m1).sum((1, 2))
            tot = m0.sum((1, 2)) + m1.sum((1, 2))
            dice = np.where(tot > 0, 2 * inter / np.maximum(tot, 1), 1.0)
            print(f"   segmenter masks fp32 vs int8: Dice mean {dice.mean():.4f}, min {dice.min():.4f}")


if __name__ == "__main__":
    main()
