"""Classification metrics (scikit-learn): balanced accuracy, macro F1, per-class P/R, AUC, confusion."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn import metrics

from glomkit.io.atomic import atomic_path, write_text


def classification_report(
    y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str], pred: Sequence[int] | None = None
) -> dict:
    """Metrics of predictions ``pred`` (default ``argmax(probs)``) against integer labels ``y_true``.

    Keys: n, balanced_accuracy, accuracy, macro_f1, per_class {name: precision, recall, f1, support,
    auc}, macro_auc (one-vs-rest over classes present; binary: the positive class's AUC), confusion
    (rows = true, columns = predicted), class_names.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probs, dtype=np.float64)
    k = len(class_names)
    pred = p.argmax(axis=1) if pred is None else np.asarray(pred, dtype=int)
    labels = list(range(k))
    prec, rec, f1, sup = metrics.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    present = sorted(set(y.tolist()))
    per_class: dict[str, dict] = {}
    for i, name in enumerate(class_names):
        auc = None
        if i in present and len(present) > 1:
            auc = float(metrics.roc_auc_score(y == i, p[:, i]))
        per_class[name] = {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(sup[i]),
            "auc": auc,
        }
    aucs = [per_class[class_names[i]]["auc"] for i in present if per_class[class_names[i]]["auc"] is not None]
    if k == 2 and len(present) == 2:
        macro_auc = per_class[class_names[1]]["auc"]
    else:
        macro_auc = float(np.mean(aucs)) if aucs else None
    return {
        "n": int(len(y)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(y, pred)) if len(y) else None,
        "accuracy": float(metrics.accuracy_score(y, pred)) if len(y) else None,
        "macro_f1": float(np.mean([f1[i] for i in present])) if present else None,
        "macro_auc": macro_auc,
        "per_class": per_class,
        "confusion": metrics.confusion_matrix(y, pred, labels=labels).tolist(),
        "class_names": list(class_names),
    }


def ggs_report(
    y_true: Sequence[int], probs: np.ndarray, scheme, threshold: float | None = None
) -> dict | None:
    """Globally sclerosed vs not, among the items whose true class is a glomerulus.

    Score = P(GGS) / P(glomerulus); predicted GGS when the score > 0.5, or >= ``threshold`` when
    given (the model's decision threshold). None when the scheme has no GGS class or the items
    hold only one of the two groups.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(probs, dtype=np.float64)
    glom = np.isin(y, scheme.glomerulus_indices)
    if not scheme.ggs_indices or not glom.any():
        return None
    truth = np.isin(y[glom], scheme.ggs_indices)
    if truth.all() or not truth.any():
        return None
    score = scheme.ggs_probability(p[glom]) / np.maximum(scheme.glomerulus_probability(p[glom]), 1e-12)
    pred = score > 0.5 if threshold is None else score >= threshold
    return {
        "n": int(glom.sum()),
        "n_ggs": int(truth.sum()),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(truth, pred)),
        "auc": float(metrics.roc_auc_score(truth, score)),
        "sensitivity": float(pred[truth].mean()),
        "specificity": float((~pred[~truth]).mean()),
    }


def write_confusion(
    path_png: str | Path, path_csv: str | Path, cm: Sequence[Sequence[int]], names: Sequence[str]
) -> None:
    """Write a confusion matrix as CSV (rows = true) and as a PNG heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=int)
    lines = ["true\\pred," + ",".join(names)]
    lines += [f"{n}," + ",".join(str(v) for v in row) for n, row in zip(names, cm, strict=True)]
    write_text(path_csv, "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.1 * len(names) + 1.5))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = cm.max() if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > top / 2 else "black",
            )
    fig.tight_layout()
    with atomic_path(path_png) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def report_table(report: dict, title: str = "classification"):
    """A rich Table of a :func:`classification_report`."""
    from rich.table import Table

    def f(v):
        return "-" if v is None else f"{v:.3f}"

    t = Table(
        title=f"{title}: n={report['n']}  balanced acc {f(report['balanced_accuracy'])}  "
        f"macro F1 {f(report['macro_f1'])}  AUC {f(report['macro_auc'])}"
    )
    for col in ("class", "precision", "recall", "f1", "AUC", "support"):
        t.add_column(col, justify="left" if col == "class" else "right")
    for name, m in report["per_class"].items():
        t.add_row(name, f(m["precision"]), f(m["recall"]), f(m["f1"]), f(m["auc"]), str(m["support"]))
    return t
