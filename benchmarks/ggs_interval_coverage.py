"""Coverage of the GGS % interval (glomkit.core.trust.ggs_interval) on out-of-fold predictions.

From the ``oof_ggs.csv`` of a slide-grouped ``glomkit study classifier-cv`` run (each crop's true
GGS label and its fold-calibrated P(GGS | glomerulus), predicted by a model that never saw its
slide), draw biopsies of n glomeruli from each held-out slide and count how often the interval
holds the slide's true GGS % (all its labelled glomeruli). n no larger than the slide is drawn
without replacement (a real biopsy); larger n with replacement (the slide as a population).
Also the interval a reviewer's certain labels give (sampling only), and the width.

    python benchmarks/ggs_interval_coverage.py RUN/oof_ggs.csv [--draws 200] [--sizes 5 10 20 50]
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict

import numpy as np

from glomkit.core.trust import ggs_interval


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("oof_ggs")
    ap.add_argument("--draws", type=int, default=200, help="biopsies per slide and size")
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 50])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--replace",
        action="store_true",
        help="always draw with replacement (the slide as an endless population)",
    )
    a = ap.parse_args()
    by_slide: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with open(a.oof_ggs, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            by_slide[row["slide"]].append((int(row["ggs"]), float(row["p_ggs"])))
    rng = np.random.default_rng(a.seed)
    print(
        f"{len(by_slide)} slides, {sum(map(len, by_slide.values()))} glomeruli, {a.draws} draws per slide and size"
    )
    print(
        "| n | draws | coverage, model P(GGS) | mean width | coverage, certain labels | mean width | worst slide's coverage (model) |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in a.sizes:
        hit_m = hit_r = total = 0
        width_m: list[float] = []
        width_r: list[float] = []
        per_slide: list[tuple[float, str]] = []
        for slide, rows in sorted(by_slide.items()):
            y = np.array([r[0] for r in rows])
            p = np.array([r[1] for r in rows])
            truth = 100.0 * y.mean()
            hits = 0
            for _ in range(a.draws):
                idx = rng.choice(len(rows), size=n, replace=a.replace or n > len(rows))
                lo, hi = ggs_interval(p[idx])
                hits += lo <= truth <= hi
                width_m.append(hi - lo)
                lo_r, hi_r = ggs_interval(y[idx].astype(float))
                hit_r += lo_r <= truth <= hi_r
                width_r.append(hi_r - lo_r)
            hit_m += hits
            total += a.draws
            per_slide.append((hits / a.draws, slide))
        worst = min(per_slide)
        print(
            f"| {n} | {total} | {hit_m / total:.3f} | {np.mean(width_m):.1f} | {hit_r / total:.3f} | "
            f"{np.mean(width_r):.1f} | {worst[0]:.3f} ({worst[1]}) |"
        )


if __name__ == "__main__":
    main()
