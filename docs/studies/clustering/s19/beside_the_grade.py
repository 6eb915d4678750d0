"""python beside_the_grade.py cvPAS_S   (session 19, classifier card)

Morphometry beside the CNN's out-of-fold GS probability, bueno_pas, slide-grouped.
(1) each measure's AUC on the held-out clustering slides and on all 21 (no training);
(2) stacking: logistic regression on [logit p_ggs, 3 measures], fitted on the other folds' OOF rows
    (the CNN's own folds), tested on the fold: balanced accuracy at 0.5 and AUC, vs the CNN alone."""

import csv
import sys
from pathlib import Path

import numpy as np
from sklearn import metrics
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from glomkit.cluster.features import MORPHOMETRY, extract, stain_view
from glomkit.ssl.images import load_resized
from glomkit.ssl.pool import bueno_held_out_slides

B = Path(__file__).resolve().parents[4] / ".." / "shared" / "data" / "bueno_pas"
CV = Path(sys.argv[1])  # a classifier-cv output folder (oof.csv, oof_ggs.csv)
oof = {r["image"].split("/")[-1]: r for r in csv.DictReader(open(CV / "oof.csv")) if r["source"] == "bueno"}
ggs = {r["image"]: r for r in csv.DictReader(open(CV / "oof_ggs.csv"))}
rows = list(csv.DictReader(open(B / "labels.csv")))
names = [Path(r["image"]).name for r in rows]
y = np.array([r["label"] == "GS" for r in rows], int)
slides = np.array([r["source_wsi"] for r in rows])
fold = np.array([oof[n]["fold"] for n in names])
p = np.clip(np.array([float(ggs[n]["p_ggs"]) for n in names]), 1e-6, 1 - 1e-6)
imgs = load_resized([B / r["image"] for r in rows], 128)
x, _ = extract("morphometry", stain_view(imgs, "macenko"))
held = np.isin(slides, sorted(bueno_held_out_slides(sorted(set(slides)))))
for j, n in enumerate(MORPHOMETRY):
    a_all = metrics.roc_auc_score(y, -x[:, j])
    a_h = metrics.roc_auc_score(y[held], -x[held, j])
    print(f"{n}: AUC (low = GS) all 21 slides {a_all:.3f}, held-out 7 {a_h:.3f}")
print(f"CNN OOF p_ggs: AUC all {metrics.roc_auc_score(y, p):.3f}")
z = np.column_stack([np.log(p / (1 - p)), x])
out = {"cnn": np.zeros(len(y)), "stack": np.zeros(len(y)), "morph": np.zeros(len(y))}
for f in sorted(set(fold)):
    te, tr = fold == f, fold != f
    for name, cols in (("stack", slice(None)), ("morph", slice(1, None))):
        sc = StandardScaler().fit(z[tr][:, cols])
        lr = LogisticRegression(C=1.0, class_weight="balanced").fit(sc.transform(z[tr][:, cols]), y[tr])
        out[name][te] = lr.predict_proba(sc.transform(z[te][:, cols]))[:, 1]
    out["cnn"][te] = p[te]
thr_cnn = 0.5
for name, q in out.items():
    ba = [metrics.balanced_accuracy_score(y[fold == f], q[fold == f] >= 0.5) for f in sorted(set(fold))]
    per = {
        s: metrics.roc_auc_score(y[slides == s], q[slides == s])
        for s in sorted(set(slides))
        if 0 < y[slides == s].sum() < (slides == s).sum()
    }
    w = min(per, key=per.get)
    print(
        f"{name}: AUC {metrics.roc_auc_score(y, q):.3f}; BA@0.5 per fold {np.mean(ba):.3f} ± {np.std(ba, ddof=1):.3f} (worst {min(ba):.3f}); worst slide {w} {per[w]:.3f}; GS missed {int(((q < 0.5) & (y == 1)).sum())}/{y.sum()}"
    )
