"""The `make demo` slide against its truth: detection recall, glomeruli kept, GGS % (prints figures).

Runs ``glomkit run`` on the demo slide (12000x9000 at 0.25 µm/px, seed 0, made if missing) with
the given models and compares its table with the slide's ``_truth.csv``: a true glomerulus is
found when a detection's circle IoU with it is ≥ 0.5; it is kept when that detection is not
called non-glomerular; graded right when sclerosed / not agrees with the truth.

``--seeds`` runs demo-like slides of other seeds (made in ``WORKDIR_seedN``): the demo is seed 0,
so other seeds are synthetic *validation* slides that a threshold rule may read. ``--sweep`` runs
them at score threshold 0.05 and prints the whole-pipeline F1 (detections not called
non-glomerular, matched at circle IoU ≥ 0.5, greedy by score) of the seeds pooled at each
threshold of the 0.025 grid, and the midpoint of the thresholds that tie for the best F1.

    python benchmarks/demo_check.py                          # bundled models
    python benchmarks/demo_check.py --detector det.onnx --segmenter seg.onnx
    python benchmarks/demo_check.py --detector det.onnx --seeds 1,2,3,4,5 --sweep
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SWEEP_FLOOR = 0.05


def read_table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def circles(rows: list[dict[str, str]], score: bool = False) -> np.ndarray:
    keys = ("x", "y", "radius", "score") if score else ("x", "y", "radius")
    return np.array([[float(r[k]) for k in keys] for r in rows]).reshape(-1, len(keys))


def run_seed(a: argparse.Namespace, seed: int, threshold: float | None) -> tuple[list, list]:
    """Truth rows (glomeruli only) and the pipeline's table for one demo-like slide."""
    from glomkit.synth.slide import demo_slide

    work = Path(a.workdir) if seed == 0 else Path(f"{a.workdir}_seed{seed}")
    slide, _ = demo_slide(work, 12000, 9000, seed)
    truth = read_table(slide.with_name(f"{slide.stem}_truth.csv"))
    out = Path(tempfile.mkdtemp(prefix="demo_check_"))
    cmd = [sys.executable, "-m", "glomkit.cli", "run", str(slide), "-o", str(out), "--quiet"]
    for k in ("detector", "classifier", "segmenter"):
        if getattr(a, k):
            cmd += [f"--{k}", getattr(a, k)]
    if threshold is not None:
        cmd += ["--score-threshold", str(threshold)]
    subprocess.run(cmd, check=True)
    pred = read_table(out / slide.stem / f"{slide.stem}_glomeruli.csv")
    return [r for r in truth if r["label"] != "non_glomerular"], pred


def report(seed: int, gl: list, pred: list) -> None:
    from glomkit.core.geometry import circle_iou

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
    print(
        f"seed {seed}: true glomeruli {len(gl)} (GGS {n_true_ggs}, {100 * n_true_ggs / max(len(gl), 1):.1f} %)"
    )
    print(
        f"detections {len(pred)}; glomeruli reported {n_glom}; GGS {n_ggs} ({100 * n_ggs / max(n_glom, 1):.1f} %)"
    )
    print(f"recall {found / max(len(gl), 1):.3f}; kept {kept}; graded right {graded} of kept")


def sweep(runs: dict[int, tuple[list, list]]) -> None:
    """Pooled whole-pipeline F1 per threshold, and the midpoint of the best-F1 thresholds."""
    from glomkit.core.geometry import circle_iou
    from glomkit.eval.detection import greedy_match

    cands = np.round(np.arange(SWEEP_FLOOR, 0.95, 0.025), 3)
    n_gt = sum(len(gl) for gl, _ in runs.values())
    f1s = []
    for t in cands:
        tp = n_pred = 0
        for gl, pred in runs.values():
            p = circles([r for r in pred if r["is_glomerulus"].lower() == "true"], score=True)
            p = p[p[:, 3] >= t]
            n_pred += len(p)
            if len(gl) and len(p):
                tp += len(greedy_match(circle_iou(p[:, :3], circles(gl)), p[:, 3]))
        rec, prec = tp / max(n_gt, 1), tp / n_pred if n_pred else 0.0
        f1 = 2 * rec * prec / (rec + prec) if rec + prec else 0.0
        f1s.append(f1)
        print(f"threshold {t:.3f}: recall {rec:.3f} precision {prec:.3f} F1 {f1:.4f} (predictions {n_pred})")
    f1s = np.round(np.array(f1s), 6)
    best = cands[f1s == f1s.max()]
    mid = np.floor((best.min() + best.max()) / 2 / 0.025 + 1e-9) * 0.025
    print(f"best F1 {f1s.max():.4f} at thresholds {best.min():.3f}-{best.max():.3f}; midpoint {mid:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detector", default=None)
    ap.add_argument("--classifier", default=None)
    ap.add_argument("--segmenter", default=None)
    ap.add_argument("--workdir", default="demo_out", help="where the demo slide is (made if missing)")
    ap.add_argument("--seeds", default="0", help="comma-separated slide seeds (0 is the demo)")
    ap.add_argument(
        "--sweep", action="store_true", help=f"run at threshold {SWEEP_FLOOR}; print F1 per threshold"
    )
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    runs = {s: run_seed(a, s, SWEEP_FLOOR if a.sweep else None) for s in seeds}
    if a.sweep:
        sweep(runs)
    else:
        for s, (gl, pred) in runs.items():
            report(s, gl, pred)


if __name__ == "__main__":
    main()
