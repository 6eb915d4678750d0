"""The `make demo` slide against its truth: detection recall, glomeruli kept, GGS % (prints figures).

Runs ``glomkit run`` on the demo slide (12000x9000 at 0.25 µm/px, seed 0, made if missing) with
the given models and compares its table with the slide's ``_truth.csv``: a true glomerulus is
found when a detection's circle IoU with it is ≥ 0.5; it is kept when that detection is not
called non-glomerular; graded right when sclerosed / not agrees with the truth.

    python benchmarks/demo_check.py                          # bundled models
    python benchmarks/demo_check.py --detector det.onnx --segmenter seg.onnx
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def read_table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detector", default=None)
    ap.add_argument("--classifier", default=None)
    ap.add_argument("--segmenter", default=None)
    ap.add_argument("--workdir", default="demo_out", help="where the demo slide is (made if missing)")
    a = ap.parse_args()

    from glomkit.core.geometry import circle_iou
    from glomkit.synth.slide import demo_slide

    slide, _ = demo_slide(Path(a.workdir), 12000, 9000, 0)
    truth = read_table(slide.with_name(f"{slide.stem}_truth.csv"))
    out = Path(tempfile.mkdtemp(prefix="demo_check_"))
    cmd = [sys.executable, "-m", "glomkit.cli", "run", str(slide), "-o", str(out), "--quiet"]
    for k in ("detector", "classifier", "segmenter"):
        if getattr(a, k):
            cmd += [f"--{k}", getattr(a, k)]
    subprocess.run(cmd, check=True)
    pred = read_table(out / slide.stem / f"{slide.stem}_glomeruli.csv")

    def circles(rows):
        return np.array([[float(r["x"]), float(r["y"]), float(r["radius"])] for r in rows]).reshape(-1, 3)

    gl = [r for r in truth if r["label"] != "non_glomerular"]
    t, p = circles(gl), circles(pred)
    iou = circle_iou(t, p) if len(t) and len(p) else np.zeros((len(t), len(p)))
    found = kept = graded = 0
    for i, row in enumerate(gl):
        if not len(p) or iou[i].max() < 0.5:
            continue
        found += 1
        d = pred[int(iou[i].argmax())]
        if d["is_glomerulus"].lower() == "true":
            kept += 1
            graded += (d["label"] != "normal") == (row["label"] != "normal")
    n_true_ggs = sum(r["label"] != "normal" for r in gl)
    n_glom = sum(r["is_glomerulus"].lower() == "true" for r in pred)
    n_ggs = sum(r["is_glomerulus"].lower() == "true" and r["label"] not in ("normal",) for r in pred)
    print(f"true glomeruli {len(gl)} (GGS {n_true_ggs}, {100 * n_true_ggs / max(len(gl), 1):.1f} %)")
    print(
        f"detections {len(pred)}; glomeruli reported {n_glom}; GGS {n_ggs} ({100 * n_ggs / max(n_glom, 1):.1f} %)"
    )
    print(f"recall {found / max(len(gl), 1):.3f}; kept {kept}; graded right {graded} of kept")


if __name__ == "__main__":
    main()
