"""ARI / NMI of each chosen grouping of a mixed-pool run against the stain (PAS or H&E) and the
source, and, on its bueno crops only, ARI against GS / nonGS, from its clusters.csv:
``python stain_ari.py LABELS_CSV RUN [RUN ...]``."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from sklearn import metrics

STAIN = {"bueno_pas": "PAS", "hubmap_pas": "PAS", "cgmh_he": "H&E"}


def main(labels_csv: str, runs: list[str]) -> None:
    with open(labels_csv, newline="") as f:
        gs = {Path(r["image"]).name: r["label"] for r in csv.DictReader(f)}
    print("| run | features | k | ARI vs stain | NMI vs stain | ARI vs source | bueno crops: ARI vs GS |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for run in runs:
        with open(f"{run}/clusters.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        stain = [STAIN[r["source"]] for r in rows]
        source = [r["source"] for r in rows]
        bueno = [i for i, r in enumerate(rows) if r["source"] == "bueno_pas"]
        y = [gs[Path(rows[i]["image"]).name] for i in bueno]
        for col in [c for c in rows[0] if c.endswith("_chosen")]:
            a = [r[col] for r in rows]
            ari_gs = metrics.adjusted_rand_score(y, [a[i] for i in bueno]) if bueno else float("nan")
            print(
                f"| {run.rstrip('/').split('/')[-1]} | {col.removesuffix('_chosen')} | {len(set(a))} | "
                f"{metrics.adjusted_rand_score(stain, a):.3f} | {metrics.normalized_mutual_info_score(stain, a):.3f} | "
                f"{metrics.adjusted_rand_score(source, a):.3f} | {ari_gs:.3f} |"
            )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
