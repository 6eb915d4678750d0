"""Study runners: the label-fraction study (published Table II design) on bueno_pas.

Arms: ``scratch`` (random init, all layers trained), ``probe`` (frozen SimSiam backbone,
logistic-regression head on its features, C picked on validation) and ``finetune`` (SimSiam
init, all layers trained). Training of scratch/finetune goes through
``glomkit.classify.train.fit_classifier`` (best epoch on slide-grouped validation).
No ImageNet arm: no pretrained weights can be had offline.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn import metrics
from sklearn.linear_model import LogisticRegression

from glomkit import GlomkitError
from glomkit.data.bueno import BuenoSample, load_bueno, slide_folds
from glomkit.io.atomic import write_bytes, write_text
from glomkit.models.metadata import Pretraining, parse_pretraining

ARMS = ("scratch", "probe", "finetune")
CLASSES = ("nonGS", "GS")
NO_IMAGENET = (
    "No ImageNet-pretrained arm: no pretrained weights can be downloaded offline, so the "
    "published ImageNet baseline is not reproduced here."
)


@dataclass
class LabelFractionConfig:
    data: str
    encoder: str
    out: str
    folds: int = 5
    fractions: tuple[float, ...] = (1, 5, 10, 25, 100)
    arms: tuple[str, ...] = ARMS
    size: int = 96
    epochs: int = 5
    min_steps: int = 0  # small label fractions get more epochs: at least this many steps
    batch: int = 32
    seed: int = 0
    threads: int = 1
    external: bool = False
    leave_site_out: bool = False  # test on one site, train (and validate) on the other two
    command: str = ""


def subsample(labels: list[str], fraction: float, seed: int) -> list[int]:
    """Indices of a stratified ``fraction`` percent of ``labels``; at least one per class."""
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    arr = np.asarray(labels)
    for c in sorted(set(labels)):
        idx = np.flatnonzero(arr == c)
        n = max(1, int(round(len(idx) * fraction / 100)))
        keep.extend(rng.permutation(idx)[:n].tolist())
    return sorted(keep)


def split_rest(samples: list[BuenoSample], rest: list[int], seed: int) -> tuple[list[int], list[int]]:
    """75 % train / 25 % validation of ``rest``, grouped by slide (GS-balanced dealing)."""
    sub = [samples[i] for i in rest]
    f = slide_folds(sub, 4, seed)
    val = [rest[j] for j, k in enumerate(f) if k == 0]
    train = [rest[j] for j, k in enumerate(f) if k != 0]
    return train, val


def _report(y: np.ndarray, prob_gs: np.ndarray) -> dict:
    pred = (prob_gs > 0.5).astype(int)
    auc = metrics.roc_auc_score(y, prob_gs) if len(set(y.tolist())) == 2 else float("nan")
    return {
        "balanced_accuracy": float(metrics.balanced_accuracy_score(y, pred)),
        "f1": float(metrics.f1_score(y, pred, average="macro")),
        "auc": float(auc),
        "confusion": metrics.confusion_matrix(y, pred, labels=[0, 1]),
    }


class _Features:
    """Frozen-encoder features of every sample, computed once."""

    def __init__(self, encoder: str, samples: list[BuenoSample], size: int):
        from glomkit.ssl.images import load_resized
        from glomkit.ssl.simsiam import embed, load_encoder

        t0 = time.monotonic()
        net, _ = load_encoder(encoder)
        self.x = embed(net, load_resized([s.image for s in samples], size))
        self.seconds = time.monotonic() - t0


def _probe(
    feats: np.ndarray, y: np.ndarray, tr: list[int], va: list[int], te: list[int]
) -> tuple[np.ndarray, float]:
    """Logistic regression on standardised features; C chosen by validation balanced accuracy."""
    mu, sd = feats[tr].mean(0), feats[tr].std(0) + 1e-6
    z = (feats - mu) / sd
    best, best_c = -1.0, 1.0
    t0 = time.monotonic()
    for c in (0.001, 0.01, 0.1, 1.0):
        clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(z[tr], y[tr])
        s = metrics.balanced_accuracy_score(y[va], clf.predict(z[va]))
        if s > best:
            best, best_c = s, c
    clf = LogisticRegression(C=best_c, max_iter=2000, class_weight="balanced").fit(z[tr], y[tr])
    return clf.predict_proba(z[te])[:, 1], time.monotonic() - t0


def epochs_for(n_train: int, batch: int, epochs: int, min_steps: int) -> int:
    """``epochs``, or more when that many epochs would give fewer than ``min_steps`` steps."""
    steps_per_epoch = max(1, n_train // max(1, batch))
    return max(epochs, -(-min_steps // steps_per_epoch))


def _train_net(
    arm: str, cfg: LabelFractionConfig, backbone: str, samples, tr, va, te
) -> tuple[np.ndarray, float]:
    from glomkit.classify.data import LabelledImage, PatchDataset
    from glomkit.classify.train import ClassifierConfig, fit_classifier, predict_probs
    from glomkit.models.runtime import IMAGENET_MEAN, IMAGENET_STD

    def items(idx):
        return [LabelledImage(samples[i].image, samples[i].label, samples[i].slide) for i in idx]

    batch = min(cfg.batch, max(2, len(tr)))
    cc = ClassifierConfig(
        data=cfg.data,
        scheme="gs_binary",
        backbone=backbone,
        size=cfg.size,
        epochs=epochs_for(len(tr), batch, cfg.epochs, cfg.min_steps),
        batch=batch,
        seed=cfg.seed,
        threads=cfg.threads,
        init=cfg.encoder if arm == "finetune" else None,
    )
    net, hist = fit_classifier(items(tr), items(va), cc, progress=False)
    ds = PatchDataset(items(te), list(CLASSES), cfg.size, False, IMAGENET_MEAN, IMAGENET_STD)
    probs = predict_probs(net, ds)
    return probs[:, 1], float(np.mean([h["seconds"] for h in hist]))


def _tasks(
    samples: list[BuenoSample], cfg: LabelFractionConfig
) -> list[tuple[str, list[int], list[int], list[int]]]:
    """(name, train, val, test) per fold, per training site with ``external``, or per test site
    with ``leave_site_out``."""
    out = []
    if cfg.external and cfg.leave_site_out:
        raise GlomkitError("external and leave_site_out exclude each other")
    if cfg.leave_site_out:
        for site in sorted({s.site for s in samples}):
            te = [i for i, s in enumerate(samples) if s.site == site]
            rest = [i for i, s in enumerate(samples) if s.site != site]
            tr, va = split_rest(samples, rest, cfg.seed)
            out.append((f"test {site}", tr, va, te))
        return out
    if cfg.external:
        for site in sorted({s.site for s in samples}):
            own = [i for i, s in enumerate(samples) if s.site == site]
            te = [i for i, s in enumerate(samples) if s.site != site]
            tr, va = split_rest(samples, own, cfg.seed)
            out.append((f"train {site}", tr, va, te))
        return out
    folds = slide_folds(samples, cfg.folds, cfg.seed)
    for k in range(cfg.folds):
        te = [i for i, f in enumerate(folds) if f == k]
        tr, va = split_rest(samples, [i for i, f in enumerate(folds) if f != k], cfg.seed + k)
        out.append((f"fold {k}", tr, va, te))
    return out


def run_label_fraction(cfg: LabelFractionConfig, progress=None) -> dict:
    """Run every (task, fraction, arm); write results.csv, results.md, confusion.png; return a summary."""
    import torch

    torch.set_num_threads(max(1, cfg.threads))
    for a in cfg.arms:
        if a not in ARMS:
            raise GlomkitError(f"--arms: unknown arm {a!r} (choose from {', '.join(ARMS)})")
    samples = load_bueno(cfg.data)
    y = np.array([CLASSES.index(s.label) for s in samples])
    from glomkit.ssl.simsiam import load_encoder

    _, raw_meta = load_encoder(cfg.encoder)
    enc_meta = parse_pretraining(raw_meta, cfg.encoder)
    backbone = enc_meta.backbone or "resnet18"
    feats = _Features(cfg.encoder, samples, cfg.size) if "probe" in cfg.arms else None
    tasks = _tasks(samples, cfg)
    rows: list[dict] = []
    conf: dict[tuple[str, float], np.ndarray] = {}
    total = len(tasks) * len(cfg.fractions) * len(cfg.arms)
    done = 0
    for name, tr_all, va, te in tasks:
        for frac in cfg.fractions:
            tr = [tr_all[j] for j in subsample([samples[i].label for i in tr_all], frac, cfg.seed)]
            for arm in cfg.arms:
                if arm == "probe":
                    prob, secs = _probe(feats.x, y, tr, va, te)
                else:
                    prob, secs = _train_net(arm, cfg, backbone, samples, tr, va, te)
                rep = _report(y[te], prob)
                conf[(arm, frac)] = conf.get((arm, frac), 0) + rep.pop("confusion")
                rows.append(
                    {
                        "task": name,
                        "fraction": frac,
                        "arm": arm,
                        "n_train": len(tr),
                        "n_val": len(va),
                        "n_test": len(te),
                        **rep,
                        "seconds_per_epoch": round(secs, 2),
                    }
                )
                done += 1
                if progress:
                    progress(done, total, f"{name} {frac}% {arm}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "results.csv", rows)
    summary = summarise(rows)
    write_text(out / "results.md", _markdown(summary, cfg, enc_meta, tasks, len(samples)))
    write_bytes(out / "confusion.png", _confusion_png(conf, cfg))
    return {"rows": rows, "summary": summary}


def _design(cfg: LabelFractionConfig) -> str:
    if cfg.external:
        return "external: train on one site"
    if cfg.leave_site_out:
        return "leave one site out: test on one site, train on the other two"
    return f"{cfg.folds}-fold slide-grouped CV"


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and sd over tasks for each (fraction, arm)."""
    keys = sorted({(r["fraction"], r["arm"]) for r in rows}, key=lambda k: (k[0], ARMS.index(k[1])))
    out = []
    for frac, arm in keys:
        sel = [r for r in rows if r["fraction"] == frac and r["arm"] == arm]
        rec = {
            "fraction": frac,
            "arm": arm,
            "n_tasks": len(sel),
            "n_train": int(np.mean([r["n_train"] for r in sel])),
        }
        for m in ("balanced_accuracy", "f1", "auc", "seconds_per_epoch"):
            v = np.array([r[m] for r in sel], float)
            rec[m] = float(np.nanmean(v))
            rec[m + "_sd"] = float(np.nanstd(v))
        out.append(rec)
    return out


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text(path, buf.getvalue())


def _markdown(summary: list[dict], cfg: LabelFractionConfig, enc_meta: Pretraining, tasks, n: int) -> str:
    lines = [
        f"# Label-fraction study ({_design(cfg)})",
        "",
        f"Data: {n} bueno_pas crops, GS vs nonGS. Encoder: {enc_meta.backbone} SimSiam, "
        f"{enc_meta.epochs_done} epochs on {enc_meta.n_images} images at {enc_meta.size} px. "
        f"Classifier input {cfg.size} px; scratch/finetune {cfg.epochs} epochs, at least {cfg.min_steps} "
        "optimiser steps (best epoch on validation).",
        "",
        NO_IMAGENET,
        "",
        "| label % | arm | train crops | balanced acc. | F1 (macro) | AUC | s / epoch |",
        "|---:|---|---:|---|---|---|---:|",
    ]
    for r in summary:
        lines.append(
            f"| {r['fraction']:g} | {r['arm']} | {r['n_train']} | {r['balanced_accuracy']:.3f} ± {r['balanced_accuracy_sd']:.3f} "
            f"| {r['f1']:.3f} ± {r['f1_sd']:.3f} | {r['auc']:.3f} ± {r['auc_sd']:.3f} | {r['seconds_per_epoch']:.1f} |"
        )
    lines += [
        "",
        "Mean ± sd over "
        + ", ".join(t[0] for t in tasks)
        + ". Probe 's / epoch' is the logistic-regression fit time.",
        "",
    ]
    if cfg.command:
        lines += ["Command:", "", "```", cfg.command, "```", ""]
    return "\n".join(lines)


def _confusion_png(conf: dict, cfg: LabelFractionConfig) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in ARMS if a in cfg.arms]
    fr = list(cfg.fractions)
    fig, axes = plt.subplots(
        len(arms), len(fr), figsize=(1.6 * len(fr) + 0.5, 1.6 * len(arms) + 0.5), squeeze=False
    )
    for i, a in enumerate(arms):
        for j, f in enumerate(fr):
            ax = axes[i][j]
            m = np.asarray(conf.get((a, f), np.zeros((2, 2))))
            ax.imshow(m / np.maximum(m.sum(1, keepdims=True), 1), vmin=0, vmax=1, cmap="Blues")
            for (r, c), v in np.ndenumerate(m):
                ax.text(c, r, int(v), ha="center", va="center", fontsize=7)
            ax.set_xticks([0, 1], CLASSES, fontsize=6)
            ax.set_yticks([0, 1], CLASSES, fontsize=6)
            ax.set_title(f"{a} {f:g}%", fontsize=7)
    fig.suptitle("summed confusion (rows true, cols predicted)", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
