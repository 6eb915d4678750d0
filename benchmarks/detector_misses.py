"""Where a detector loses glomeruli: located but scored low, badly placed, or not found at all.

The detector alone, run as ``glomkit run`` runs it (``evaluate_images._detect_image``), on a split
of annotated images; glomeruli cut by the image edge are ignore regions, as with
``glomkit evaluate pipeline --edge-ignore``. For each kept glomerulus it prints the best box IoU
of any detection and the best score at IoU >= 0.5, then the counts that tell the failure apart:

    python benchmarks/detector_misses.py ../shared/data/cgmh_he/tiles --data-mpp 1.0 --split val
    python benchmarks/detector_misses.py DIR --data-mpp 0.8 --split val --detector det.onnx --no-edge-ignore
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="folder of annotated images (GeoJSON / XML beside each)")
    ap.add_argument("--data-mpp", type=float, required=True)
    ap.add_argument("--split", default="val", choices=("val", "test", "train", "all"))
    ap.add_argument("--detector", default=None, help="detector file [bundled]")
    ap.add_argument("--no-edge-ignore", action="store_true", help="count edge-cut glomeruli too")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--each", action="store_true", help="print one line per glomerulus")
    a = ap.parse_args()

    from glomkit.eval.detection import box_iou, circle_boxes
    from glomkit.evaluate_images import _detect_image, edge_ignored, select_images
    from glomkit.kinds import EVAL_SCORE_THRESHOLD
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import OnnxModel
    from glomkit.pipeline import PipelineConfig

    config = PipelineConfig(
        detector=a.detector,
        mpp=a.data_mpp,
        score_threshold=EVAL_SCORE_THRESHOLD,
        write_images=False,
        threads=a.threads,
    )
    det = OnnxModel(resolve_model(a.detector, "detector"), expect_task="detector", threads=a.threads)
    thr = det.info.typed.score_threshold
    rows, n_fp = [], 0
    for im in select_images(a.data, a.split, a.data_mpp, -1, det.info.mpp):
        circles, _, size = _detect_image(im.path, im.mpp, det, config)
        if not a.no_edge_ignore:
            im, keep = edge_ignored(im, circle_boxes(circles[:, :3]), *size)
            circles = circles[keep]
        gb = im.boxes()
        pb = circle_boxes(circles[:, :3]) if len(circles) else np.zeros((0, 4))
        iou = box_iou(pb, gb) if len(pb) and len(gb) else np.zeros((len(pb), len(gb)))
        if len(pb):
            far = iou.max(axis=1) < 0.1 if len(gb) else np.ones(len(pb), bool)
            n_fp += int((far & (circles[:, 3] >= thr)).sum())
        for j in range(len(gb)):
            col = iou[:, j]
            best = float(col.max()) if len(col) else 0.0
            s50 = float(circles[col >= 0.5, 3].max()) if (col >= 0.5).any() else 0.0
            rows.append((im.path.name, *gb[j, 2:], best, s50))
    if not rows:
        raise SystemExit(f"{a.data}: no glomeruli in the {a.split} split")
    r = np.array([x[3:] for x in rows], float)
    print(f"{len(rows)} glomeruli; detector threshold {thr}")
    print(f"  found (IoU >= 0.5, score >= threshold):   {int((r[:, 1] >= thr).sum())}")
    print(f"  located at IoU >= 0.5, any score:          {int((r[:, 0] >= 0.5).sum())}")
    print(f"  overlapped only (0.1 <= IoU < 0.5):        {int(((r[:, 0] >= 0.1) & (r[:, 0] < 0.5)).sum())}")
    print(f"  not found (IoU < 0.1):                     {int((r[:, 0] < 0.1).sum())}")
    located = r[r[:, 0] >= 0.5, 1]
    if len(located):
        q = np.percentile(located, [10, 50, 90])
        print(f"  score of the located ones: 10/50/90 % {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}")
    print(f"  false positives at or above the threshold (IoU < 0.1 with every glomerulus): {n_fp}")
    if a.each:
        for name, w, h, best, s50 in sorted(rows, key=lambda x: x[4]):
            print(f"{name:32s} w {w:5.0f} h {h:5.0f}  best IoU {best:.2f}  score at IoU>=0.5 {s50:.3f}")


if __name__ == "__main__":
    main()
