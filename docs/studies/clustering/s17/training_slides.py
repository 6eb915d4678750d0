"""Both label-free rules on the 14 *training* bueno slides with one encoder (a second number: these
crops were in the unlabelled pretraining pool; their labels were never used).

    python training_slides.py ENCODER.onnx
    python training_slides.py vgg19        # or pixels: the baselines (random init, no encoder)
"""

import sys
from pathlib import Path

import numpy as np
from sklearn import metrics
from sklearn.preprocessing import StandardScaler

from glomkit.cluster.features import extract, stain_view
from glomkit.cluster.study import _rows, choose_by_internal_scores, kmeans_scan, reduce
from glomkit.ssl.images import find_images, load_resized
from glomkit.ssl.pool import bueno_held_out_slides

B = Path(__file__).resolve().parents[4] / ".." / "shared" / "data" / "bueno_pas"


def main(encoder: str) -> None:
    name = "simsiam" if encoder.lower().endswith(".onnx") else encoder
    rows = _rows(B / "labels.csv")
    by = {Path(r["image"]).name: r for r in rows}
    held = bueno_held_out_slides(sorted({r["source_wsi"] for r in rows}))
    paths = [p for p in find_images([B / "images"]) if p.name in by and by[p.name]["source_wsi"] not in held]
    y = np.array([by[p.name]["label"] == "GS" for p in paths], int)
    imgs = load_resized(paths, 64)
    print(f"{len(paths)} crops of the training slides, {y.sum()} GS")
    cands = {"embedding": [], "features": []}
    for view in ("none", "gray", "macenko"):
        x, _ = extract(name, stain_view(imgs, view), encoder if name == "simsiam" else None, 0, 10, 1)
        shared = np.nan_to_num(StandardScaler().fit_transform(x))
        for red in ("pca", "isomap", "tsne"):
            z = reduce(x, red, 10, 0)
            for space, s in (("embedding", None), ("features", shared)):
                for k, (a, m) in kmeans_scan(z, range(2, 9), 0, s).items():
                    ari = metrics.adjusted_rand_score(y, a)
                    cands[space].append({"view": view, "reduction": red, "k": k, **m, "ari": ari})
    for space, rs in cands.items():
        c = rs[choose_by_internal_scores(rs)]
        print(
            f"{name}, scores in the {space}: {c['view']} / {c['reduction']} / k = {c['k']}: ARI {c['ari']:.3f}"
        )
    best = max(cands["embedding"], key=lambda r: r["ari"])
    print(
        f"best ARI of any candidate (reads the labels): {best['ari']:.3f} ({best['view']} / {best['reduction']} / k = {best['k']})"
    )


if __name__ == "__main__":
    main(sys.argv[1])
