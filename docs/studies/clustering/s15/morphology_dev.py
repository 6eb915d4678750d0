"""Session 15 (issue 26): hand-made morphology features on the 14 *training* bueno slides only.

Optical density in the central disk (glass / lumen share, mean, spread, quantiles), OD
chromaticity, a nuclear share, Laplacian texture at three scales, core against ring; then the
study's PCA / Isomap / t-SNE, k-means k = 2..8 and the label-free choice
(`choose_by_internal_scores`), in each embedding and in the shared features. `center` centres each
feature on its slide's median first. Run from the repository root:

    python docs/studies/clustering/s15/morphology_dev.py dev [center]
    python docs/studies/clustering/s15/morphology_dev.py held center   # read once (README)
"""

import csv
import sys
from pathlib import Path

import cv2
import numpy as np
from sklearn import metrics
from sklearn.preprocessing import StandardScaler

from glomkit.cluster.study import choose_by_internal_scores, kmeans_scan, reduce
from glomkit.ssl.pool import bueno_held_out_slides

B = Path("../shared/data/bueno_pas")
rows = list(csv.DictReader(open(B / "labels.csv")))
held = bueno_held_out_slides(sorted({r["source_wsi"] for r in rows}))
which = sys.argv[1] if len(sys.argv) > 1 else "dev"
rows = [r for r in rows if (r["source_wsi"] in held) == (which == "held")]
S = 128
imgs = np.stack(
    [
        cv2.resize(cv2.imread(str(B / r["image"]))[:, :, ::-1], (S, S), interpolation=cv2.INTER_AREA)
        for r in rows
    ]
)
y = np.array([r["label"] == "GS" for r in rows]).astype(int)
print(which, len(rows), y.sum())


def morph(imgs):
    n, h, w, _ = imgs.shape
    yy, xx = np.mgrid[:h, :w]
    rr = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) / (h / 2)
    disk, core, ring = rr < 0.8, rr < 0.45, (rr >= 0.45) & (rr < 0.8)
    out = []
    for im in imgs:
        od = -np.log((im.astype(np.float32) + 1) / 256)
        tot = od.sum(-1)
        chrom = od / np.maximum(tot[..., None], 1e-3)
        g = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32)
        t = tot[disk]
        stained = t > 0.3
        lum = (t < 0.3).mean()
        f = [lum, t.mean(), t.std(), *np.percentile(t, [10, 50, 90])]
        c = chrom[disk][stained] if stained.sum() > 10 else chrom[disk]
        f += [*c.mean(0), *c.std(0)]
        # blue (nuclear) share: red-absorbing pixels above the crop's own 75th pct
        rs = chrom[..., 0]
        thr = np.percentile(rs[disk], 75)
        dark = tot > np.percentile(t, 60)
        f += [((rs > thr) & dark & disk).sum() / disk.sum()]
        # texture
        for s in (1, 2, 4):
            gs = cv2.GaussianBlur(g, (0, 0), s)
            lap = np.abs(cv2.Laplacian(gs, cv2.CV_32F))
            f += [lap[disk].mean() / (g[disk].std() + 1)]
        loc = cv2.GaussianBlur(g * g, (0, 0), 3) - cv2.GaussianBlur(g, (0, 0), 3) ** 2
        f += [np.sqrt(np.maximum(loc[disk], 0)).mean()]
        f += [
            tot[core].mean() / (tot[ring].mean() + 1e-3),
            (tot[core] < 0.3).mean() - (tot[ring] < 0.3).mean(),
        ]
        out.append(f)
    return np.array(out, np.float32)


x = morph(imgs)
if "center" in sys.argv:
    sl = np.array([r["source_wsi"] for r in rows])
    for s_ in set(sl):  # centring only: the reductions and the shared features standardise after it
        m_ = sl == s_
        x[m_] -= np.median(x[m_], 0)
shared = np.nan_to_num(StandardScaler().fit_transform(x))
for space in ("embedding", "features"):
    fr = []
    for red in ("pca", "isomap", "tsne"):
        z = reduce(x, red, 10, 0)
        for k, (a, m) in kmeans_scan(z, range(2, 9), 0, shared if space == "features" else None).items():
            fr.append({"red": red, "k": k, **m, "ari": metrics.adjusted_rand_score(y, a)})
    i = choose_by_internal_scores(fr)
    print(
        space,
        "pick",
        fr[i]["red"],
        fr[i]["k"],
        "ARI %.3f" % fr[i]["ari"],
        "best %.3f" % max(r["ari"] for r in fr),
    )
    if space == "features":
        for r in fr:
            if r["k"] <= 3:
                print("  ", r["red"], r["k"], "sil %.3f ari %.3f" % (r["silhouette"], r["ari"]))
