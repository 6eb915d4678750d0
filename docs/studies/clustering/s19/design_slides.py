"""The morphometry features on the 14 *training* bueno slides (the design slides of session 19):
each measure's AUC for GS (sign-free: the larger of AUC and 1 - AUC), and the label-free choice
across the stain views none / gray / macenko (``choose_by_internal_scores`` over every view,
reduction and k, scores in the standardised features), with its ARI, and the ARI of its most solid
cluster against the rest (``solid_cluster``).

    python design_slides.py [SIZE]      # default 128
"""

import sys
from pathlib import Path

import numpy as np
from sklearn import metrics
from sklearn.preprocessing import StandardScaler

from glomkit.cluster.features import MORPHOMETRY, extract, solid_cluster, stain_view
from glomkit.cluster.study import _rows, choose_by_internal_scores, kmeans_scan, reduce
from glomkit.ssl.images import find_images, load_resized
from glomkit.ssl.pool import bueno_held_out_slides

B = Path(__file__).resolve().parents[4] / ".." / "shared" / "data" / "bueno_pas"


def main(size: int) -> None:
    rows = _rows(B / "labels.csv")
    by = {Path(r["image"]).name: r for r in rows}
    held = bueno_held_out_slides(sorted({r["source_wsi"] for r in rows}))
    paths = [p for p in find_images([B / "images"]) if p.name in by and by[p.name]["source_wsi"] not in held]
    y = np.array([by[p.name]["label"] == "GS" for p in paths], int)
    imgs = load_resized(paths, size)
    print(f"{len(paths)} crops of the 14 training slides, {y.sum()} GS, {size} px")
    cands = []
    for view in ("none", "gray", "macenko"):
        x, _ = extract("morphometry", stain_view(imgs, view))
        aucs = [metrics.roc_auc_score(y, x[:, j]) for j in range(x.shape[1])]
        print(
            f"{view}: "
            + ", ".join(f"{n} AUC {max(a, 1 - a):.3f}" for n, a in zip(MORPHOMETRY, aucs, strict=True))
        )
        shared = StandardScaler().fit_transform(x)
        for red in ("pca", "isomap", "tsne"):
            z = reduce(x, red, 10, 0)
            for k, (a, m) in kmeans_scan(z, range(2, 9), 0, shared).items():
                two = (a == solid_cluster(x, a)).astype(int)
                row = {"view": view, "reduction": red, "k": k, **m, "ari": metrics.adjusted_rand_score(y, a)}
                cands.append({**row, "ari_solid": metrics.adjusted_rand_score(y, two)})
    c = cands[choose_by_internal_scores(cands)]
    print(
        f"label-free choice across views: {c['view']} / {c['reduction']} / k = {c['k']}: ARI {c['ari']:.3f}; "
        f"its most solid cluster against the rest: ARI {c['ari_solid']:.3f}"
    )
    best = max(cands, key=lambda r: r["ari"])
    print(
        f"best ARI of any candidate (reads the labels): {best['ari']:.3f} ({best['view']} / {best['reduction']} / k = {best['k']})"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 128)
