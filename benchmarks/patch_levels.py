"""Patches from the pyramid level against patches from level 0: the pipeline's classes and masks.

Runs ``glomkit run`` twice on each slide, with the default patch reads (the coarsest level at least
as fine as 1 µm/px) and with ``--patch-level0``, and compares the two outputs glomerulus by
glomerulus (detection does not depend on the switch, so the rows pair one to one): class
agreement, the largest change of P(GGS), and the Dice of the two masks. Where the slide has a
truth file beside it (``glomkit synth`` writes ``<stem>_truth.geojson``), each run's masks are also
scored against the true outlines (Dice, over detections matching a true object with circle
IoU ≥ 0.5) and its grading (sclerosed or not) against the true labels.

    python benchmarks/patch_levels.py SLIDE [SLIDE ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np


def run(slide: Path, out: Path, level0: bool) -> list[dict[str, str]]:
    cmd = [sys.executable, "-m", "glomkit.cli", "run", str(slide), "-o", str(out), "--overwrite", "--quiet"]
    if level0:
        cmd.append("--patch-level0")
    subprocess.run(cmd, check=True)
    with open(out / slide.stem / f"{slide.stem}_glomeruli.csv", newline="") as f:
        return list(csv.DictReader(f))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


def truth_masks(slide: Path) -> tuple[list[dict[str, str]], dict[int, np.ndarray]] | None:
    csv_path = slide.with_name(f"{slide.stem}_truth.csv")
    gj = slide.with_name(f"{slide.stem}_truth.geojson")
    if not (csv_path.is_file() and gj.is_file()):
        return None
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    polys = {}
    for feat in json.loads(gj.read_text())["features"]:
        k = int(str(feat["properties"]["name"]).rsplit(" ", 1)[-1])
        polys[k] = np.asarray(feat["geometry"]["coordinates"][0], np.float64)
    return rows, polys


def compare(slide: Path, out: Path) -> dict[str, float]:
    from glomkit.core.geometry import circle_iou
    from glomkit.infer.patches import PATCH_SIZE

    a = run(slide, out / "level", False)
    b = run(slide, out / "level0", True)
    if [(r["x"], r["y"], r["radius"]) for r in a] != [(r["x"], r["y"], r["radius"]) for r in b]:
        raise SystemExit(f"{slide}: detections differ between the runs")
    res: dict[str, float] = {"detections": float(len(a))}
    if not a:
        print(f"{slide.name}: no detections; both runs identical")
        return res
    same = [ra["label"] == rb["label"] for ra, rb in zip(a, b, strict=True)]
    dggs = [
        abs(float(ra["ggs_probability"]) - float(rb["ggs_probability"])) for ra, rb in zip(a, b, strict=True)
    ]

    def mask(run_dir: Path, r: dict[str, str]) -> np.ndarray:
        return cv2.imread(str(run_dir / slide.stem / r["mask"]), cv2.IMREAD_GRAYSCALE) > 127

    ma = [mask(out / "level", r) for r in a]
    mb = [mask(out / "level0", r) for r in b]
    d_ab = [dice(x, y) for x, y in zip(ma, mb, strict=True)]
    res.update(
        class_agreement=float(np.mean(same)),
        max_ggs_prob_change=float(np.max(dggs)),
        mask_dice_level_vs_level0_mean=float(np.mean(d_ab)),
        mask_dice_level_vs_level0_min=float(np.min(d_ab)),
    )
    truth = truth_masks(slide)
    if truth is not None:
        t_rows, polys = truth
        tc = np.array([[float(r["x"]), float(r["y"]), float(r["radius"])] for r in t_rows])
        pc = np.array([[float(r["x"]), float(r["y"]), float(r["radius"])] for r in a])
        iou = circle_iou(pc, tc)
        margin = 12.5 / float(json.loads((out / "level" / slide.stem / "summary.json").read_text())["mpp"])
        dt = {"level": [], "level0": []}
        right = {"level": 0, "level0": 0}
        n = 0
        for i, r in enumerate(a):
            j = int(iou[i].argmax())
            if iou[i, j] < 0.5 or t_rows[j]["label"] == "non_glomerular":
                continue
            n += 1
            x, y, rad = (float(r[k]) for k in ("x", "y", "radius"))
            half = rad + margin
            x0, y0, side = round(x - half), round(y - half), max(1, round(2 * half))
            s = PATCH_SIZE / side
            t = np.zeros((PATCH_SIZE, PATCH_SIZE), np.uint8)
            poly = polys[int(t_rows[j]["id"])]
            cv2.fillPoly(t, [np.round((poly - (x0, y0)) * s).astype(np.int32)], 1)
            true_ggs = t_rows[j]["label"] != "normal"
            for name, masks, rows in (("level", ma, a), ("level0", mb, b)):
                dt[name].append(dice(masks[i], t > 0))
                right[name] += (rows[i]["label"] == "sclerosed") == true_ggs
        res["true_glomeruli_matched"] = float(n)
        for name in ("level", "level0"):
            res[f"dice_vs_truth_{name}"] = float(np.mean(dt[name])) if n else float("nan")
            res[f"graded_right_{name}"] = float(right[name])
    print(f"{slide.name}:")
    for k, v in res.items():
        print(f"   {k:<34} {v:.4f}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("slides", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("/tmp/glomkit_patch_levels"))
    a = ap.parse_args()
    for s in a.slides:
        compare(s, a.out / s.stem)


if __name__ == "__main__":
    main()
