"""A circles CSV (image,x,y,r,mpp) of `glomkit synth` slides, for `glomkit train detector --data`.

Each glomerulus of a slide's ``<stem>_truth.geojson`` becomes the minimum enclosing circle of its
outline (the circle the detector is trained to give on real tiles); ``non_glomerular`` objects are
left out, so they stay background (negatives). The scale column keeps each slide at its own µm/px
(``--data-mpp`` would otherwise apply to it). Used for the session-6 detector
(docs/models/detector.md):

    for s in 101 102 103 104 105 106; do glomkit synth -o SYN/synth_$s.tif --size 12000x9000 --seed $s; done
    python benchmarks/synth_circles_csv.py SYN            # writes SYN/synth_circles.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, help="folder of synth_*.tif with their _truth.geojson")
    ap.add_argument("--mpp", type=float, default=0.25, help="µm/px of the slides [0.25]")
    a = ap.parse_args()

    from glomkit.io.geojson import read_geojson

    n = 0
    with (a.folder / "synth_circles.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "x", "y", "r", "mpp"])
        for tif in sorted(a.folder.glob("*.tif")):
            gj = tif.with_name(tif.stem + "_truth.geojson")
            if not gj.is_file():
                continue
            for ann in read_geojson(gj):
                if ann.label == "non_glomerular" or ann.polygon is None:
                    continue
                (cx, cy), r = cv2.minEnclosingCircle(np.asarray(ann.polygon, np.float32))
                w.writerow([tif.name, f"{cx:.1f}", f"{cy:.1f}", f"{r:.1f}", a.mpp])
                n += 1
    print(f"{n} circles -> {a.folder / 'synth_circles.csv'}")


if __name__ == "__main__":
    main()
