"""Cross-validate a classifier recipe by slide (or by site), then fit its threshold and temperature.

``run_cv`` trains one model per fold on the other folds (fixed schedule, nothing held out is
looked at during training), predicts the held-out fold, and collects out-of-fold (OOF)
probabilities that cover every image once. From them:

- per fold and per site: GS vs non-GS AUC and balanced accuracy on the real graded glomeruli
  (``source == eval_source``, e.g. the bueno crops), and how many real glomeruli (graded ones and
  ungraded :data:`~glomkit.classify.data.ANY_GLOMERULUS` ones) are called non-glomerular;
- the temperature (NLL on the OOF predictions of real images), the GGS threshold (best balanced
  accuracy on OOF) and the glomerulus cut (at most ``max_glomeruli_dropped``, 2 % by default, of
  the real glomeruli below it). The per-fold
  balanced accuracy uses the threshold and temperature fitted on the *other* folds' OOF (nested),
  so no figure uses its own fold to pick its threshold;
- with ``final_out``: one model trained on every fold with the same recipe, exported with the
  threshold and temperature fitted on all OOF predictions and the CV figures in its metadata.

Folds by ``slide``: :func:`glomkit.classify.data.group_folds` over the ``slide`` groups (no group
in two folds). By ``site``: one fold per site of the evaluated images (leave-one-site-out); the
other groups (synthetic, tiles) are dealt over the same folds by slide.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from glomkit import GlomkitError
from glomkit.classify.data import (
    ANY_GLOMERULUS,
    LabelledImage,
    check_labels,
    group_folds,
    load_items,
)
from glomkit.core.schemes import get_scheme
from glomkit.infer.decision import (
    MAX_REAL_GLOM_DROPPED,
    Decision,
    apply_temperature,
    choose_threshold,
    fit_temperature,
    ggs_score,
    nll,
)
from glomkit.io.atomic import atomic_path, write_text


@dataclass
class CVConfig:
    by: str = "slide"  # "slide" or "site"
    n_folds: int = 5  # by slide only; by site there is one fold per site
    split_seed: int = 0
    eval_source: str = "bueno"  # images whose figures are reported; all graded glomeruli if no source column
    out_dir: str = "classifier_cv"
    final_out: str | None = None
    only_folds: tuple[int, ...] | None = (
        None  # train and predict only these folds (parallel runs), no summary
    )
    oof_from: str | None = None  # reuse this earlier run's oof.csv (and folds) instead of training folds
    # share of the real OOF glomeruli the non_glomerular cut may drop
    max_glomeruli_dropped: float = MAX_REAL_GLOM_DROPPED


def site_of(slide: str) -> str:
    """The site prefix of a bueno slide name (``SAS_21891_001`` -> ``SAS``)."""
    return slide.split("_")[0]


def evaluated(items: list[LabelledImage], eval_source: str, scheme) -> np.ndarray:
    """Mask of the graded real glomeruli whose figures are reported."""
    has_source = any(it.source for it in items)
    glom = {scheme.names[i] for i in scheme.glomerulus_indices}
    return np.array(
        [it.label in glom and (not has_source or it.source == eval_source) for it in items], dtype=bool
    )


def cv_folds(
    items: list[LabelledImage], by: str, n_folds: int, seed: int, eval_mask: np.ndarray
) -> tuple[list[int], list[str]]:
    """(fold per item, fold names). No slide is in two folds; by site no site is either."""
    slides = [it.slide for it in items]
    labels = [it.label for it in items]
    if by == "slide":
        if len(set(slides)) < n_folds:
            raise GlomkitError(f"{len(set(slides))} slides: too few for {n_folds} folds")
        return group_folds(slides, labels, n_folds, seed), [f"fold{k}" for k in range(n_folds)]
    if by != "site":
        raise GlomkitError(f"--by {by}: expected slide or site")
    sites = sorted({site_of(s) for s, m in zip(slides, eval_mask, strict=True) if m})
    if len(sites) < 2:
        raise GlomkitError(f"leave-one-site-out needs two sites or more (found {sites})")
    eval_slides = {s for s, m in zip(slides, eval_mask, strict=True) if m}
    folds = [-1] * len(items)
    rest = [i for i, s in enumerate(slides) if s not in eval_slides]
    for i, s in enumerate(slides):
        if s in eval_slides:
            folds[i] = sites.index(site_of(s))
    if rest:
        dealt = group_folds([slides[i] for i in rest], [labels[i] for i in rest], len(sites), seed)
        for i, f in zip(rest, dealt, strict=True):
            folds[i] = f
    return folds, sites


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC, None when one class is missing (a slide with no sclerosed glomerulus)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if 0 < int(np.sum(y)) < len(y) else None


def _balanced(y: np.ndarray, pred: np.ndarray) -> float:
    """Balanced accuracy; plain accuracy when the slide has one class only."""
    from sklearn.metrics import balanced_accuracy_score

    return (
        float(balanced_accuracy_score(y, pred)) if 0 < int(np.sum(y)) < len(y) else float(np.mean(y == pred))
    )


def _binary(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    t = np.asarray(y_true, bool)
    out: dict = {"n": int(len(t)), "n_ggs": int(t.sum())}
    both = t.any() and (~t).any()
    pred = score >= threshold
    out["auc"] = float(roc_auc_score(t, score)) if both else None
    out["balanced_accuracy"] = float(balanced_accuracy_score(t, pred)) if both else None
    out["sensitivity"] = float(pred[t].mean()) if t.any() else None
    out["specificity"] = float((~pred[~t]).mean()) if (~t).any() else None
    return out


def _mean_sd_min(values: list[float | None]) -> dict | None:
    v = np.array([x for x in values if x is not None], dtype=float)
    if not len(v):
        return None
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "min": float(v.min()),
        "n": int(len(v)),
    }


def ece(prob: np.ndarray, truth: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error of a binary probability (equal-width bins)."""
    p = np.asarray(prob, dtype=float)
    t = np.asarray(truth, dtype=float)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    return float(
        sum(abs(p[bins == b].mean() - t[bins == b].mean()) * (bins == b).sum() for b in np.unique(bins))
        / max(len(p), 1)
    )


def summarise(
    items: list[LabelledImage],
    folds: list[int],
    fold_names: list[str],
    oof: np.ndarray,
    scheme,
    eval_source: str,
    max_glomeruli_dropped: float = MAX_REAL_GLOM_DROPPED,
) -> dict:
    """Every CV figure from OOF probabilities (see the module docstring).

    ``max_glomeruli_dropped``: the glomerulus cut is this quantile of the real glomeruli's
    P(glomerulus) (fitted on the other folds for each fold's nested figure, on all OOF for the
    final decision). The held-out share dropped scatters around it, so a target of "at most 2 %
    on unseen slides" needs a fit below 2 %.
    """
    if not 0.0 <= max_glomeruli_dropped < 0.5:
        raise GlomkitError(f"max_glomeruli_dropped {max_glomeruli_dropped}: expected 0 <= x < 0.5")
    names = scheme.names
    k = len(names)
    folds_a = np.asarray(folds)
    ev = evaluated(items, eval_source, scheme)
    graded = np.array([it.label in names for it in items])
    y = np.array([names.index(it.label) if it.label in names else k for it in items])
    real_glom = ev | np.array([it.label == ANY_GLOMERULUS for it in items])
    truth_ggs = np.isin(y, scheme.ggs_indices)

    # real images (not synthetic renderings, not the skin SVS): what the temperature is fitted on
    real = graded & np.array([it.source not in ("synthetic", "svs") for it in items])
    real_neg = real & ~np.isin(y, scheme.glomerulus_indices)

    def fit(mask: np.ndarray) -> Decision:
        fit_on = mask & (real if (mask & real).any() else graded)
        t = fit_temperature(oof[fit_on], y[fit_on])
        cal = apply_temperature(oof, t)
        thr = choose_threshold(ggs_score(cal[mask & ev], scheme), truth_ggs[mask & ev])
        # the glomerulus cut: at most max_glomeruli_dropped of the real glomeruli below it, never above 0.5
        p_glom = scheme.glomerulus_probability(cal[mask & real_glom])
        glom_min = min(0.5, float(np.quantile(p_glom, max_glomeruli_dropped))) if len(p_glom) else 0.5
        return Decision(
            temperature=t, threshold=thr, glomerulus_min=glom_min, positive=names[scheme.ggs_indices[0]]
        )

    cal_oof, nested_labels = np.zeros_like(oof), np.zeros(len(items), int)
    fold_decisions = []
    for f in range(len(fold_names)):
        here = folds_a == f
        d = fit(~here)  # threshold and temperature from the other folds only
        cal_oof[here] = d.calibrate(oof[here])
        nested_labels[here] = d.labels(cal_oof[here], scheme)
        fold_decisions.append(d)
    final = fit(np.ones(len(items), bool))
    from sklearn.metrics import confusion_matrix

    pred_ggs_all = np.isin(nested_labels, scheme.ggs_indices)
    called_ng = ~np.isin(nested_labels, scheme.glomerulus_indices)

    def grade(m: np.ndarray) -> dict:
        """AUC of the calibrated OOF score; balanced accuracy etc. of the nested decisions."""
        rec = _binary(truth_ggs[m], ggs_score(cal_oof[m], scheme), 0.5)
        t, pred = truth_ggs[m], pred_ggs_all[m]
        both = t.any() and (~t).any()
        rec["balanced_accuracy"] = float(0.5 * (pred[t].mean() + (~pred[~t]).mean())) if both else None
        rec["sensitivity"] = float(pred[t].mean()) if t.any() else None
        rec["specificity"] = float((~pred[~t]).mean()) if (~t).any() else None
        return rec

    per_fold = []
    for f, name in enumerate(fold_names):
        here = folds_a == f
        m = here & ev
        rec = {"fold": name, "slides": sorted({items[i].slide for i in np.flatnonzero(m)})}
        rec.update(grade(m))
        rec["balanced_accuracy_at_0.5_raw"] = _binary(truth_ggs[m], ggs_score(oof[m], scheme), 0.5)[
            "balanced_accuracy"
        ]
        rec["threshold"] = fold_decisions[f].threshold
        rec["temperature"] = fold_decisions[f].temperature
        rec["glomerulus_min"] = fold_decisions[f].glomerulus_min
        g = here & real_glom
        rec["real_glomeruli"] = int(g.sum())
        rec["called_non_glomerular"] = int(called_ng[g].sum())
        per_fold.append(rec)

    per_site = {}
    for site in sorted({site_of(items[i].slide) for i in np.flatnonzero(ev)}):
        m = ev & np.array([site_of(it.slide) == site for it in items])
        per_site[site] = grade(m) | {"slides": len({items[i].slide for i in np.flatnonzero(m)})}
    pooled_score = ggs_score(cal_oof[ev], scheme)
    glom_called_ng = called_ng[real_glom]
    per_slide = []
    for s in sorted({items[i].slide for i in np.flatnonzero(ev)}):
        m = ev & np.array([it.slide == s for it in items])
        ggs_p = scheme.ggs_probability(cal_oof[m]) / np.maximum(
            scheme.glomerulus_probability(cal_oof[m]), 1e-12
        )
        per_slide.append(
            {
                "slide": s,
                "n": int(m.sum()),
                "true_ggs_percent": float(100 * truth_ggs[m].mean()),
                "predicted_ggs_percent_count": float(
                    100 * np.isin(nested_labels[m], scheme.ggs_indices).mean()
                ),
                "predicted_ggs_percent_probability": float(100 * ggs_p.mean()),
                # the held-out slide's own grade (issue 24: the worst slide, not only the pooled AUC)
                "n_ggs": int(truth_ggs[m].sum()),
                "auc": _auc(truth_ggs[m], ggs_p),
                "balanced_accuracy": float(
                    _balanced(truth_ggs[m], np.isin(nested_labels[m], scheme.ggs_indices))
                ),
            }
        )
    raw_ng = ~np.isin(oof[real_glom].argmax(1), scheme.glomerulus_indices)
    sources = np.array([it.source for it in items])

    def called_by_source(mask: np.ndarray) -> dict[str, float]:
        """Share of the ``mask`` items called non_glomerular, per source."""
        return {src: float(called_ng[mask & (sources == src)].mean()) for src in sorted(set(sources[mask]))}

    summary = {
        "n_images": len(items),
        "n_evaluated": int(ev.sum()),
        "n_ggs": int(truth_ggs[ev].sum()),
        "per_fold": per_fold,
        "folds": {
            "auc": _mean_sd_min([r["auc"] for r in per_fold]),
            "balanced_accuracy": _mean_sd_min([r["balanced_accuracy"] for r in per_fold]),
            "balanced_accuracy_at_0.5_raw": _mean_sd_min(
                [r["balanced_accuracy_at_0.5_raw"] for r in per_fold]
            ),
        },
        "per_site": per_site,
        "pooled": grade(ev)
        | {
            "confusion": confusion_matrix(y[graded], nested_labels[graded], labels=list(range(k))).tolist(),
            "confusion_real_graded": confusion_matrix(
                y[ev], nested_labels[ev], labels=list(range(k))
            ).tolist(),
            "class_names": list(names),
        },
        "real_negatives_called_non_glomerular": {
            "n": int(real_neg.sum()),
            "called": int(called_ng[real_neg].sum()),
            "rate": float(called_ng[real_neg].mean()) if real_neg.any() else None,
            "by_source": called_by_source(real_neg),
        },
        "real_glomeruli_called_non_glomerular": {
            "n": int(real_glom.sum()),
            "called": int(glom_called_ng.sum()),
            "rate": float(glom_called_ng.mean()) if real_glom.any() else None,
            "rate_argmax_raw": float(raw_ng.mean()) if real_glom.any() else None,
            "by_source": called_by_source(real_glom),
            "graded_bueno_rate": float((~np.isin(nested_labels[ev], scheme.glomerulus_indices)).mean())
            if ev.any()
            else None,
        },
        "calibration": {
            "nll_raw": nll(oof[graded], y[graded]),
            "nll_nested_temperature": nll(cal_oof[graded], y[graded]),
            "ece_ggs_raw": ece(ggs_score(oof[ev], scheme), truth_ggs[ev]),
            "ece_ggs_nested_temperature": ece(pooled_score, truth_ggs[ev]),
        },
        "per_slide_ggs": per_slide,
        "worst_slide_auc": min(
            (r for r in per_slide if r["auc"] is not None), key=lambda r: r["auc"], default=None
        ),
        "decision": final.to_meta(),
    }
    return summary


def reliability_diagram(
    path: str | Path, oof: np.ndarray, cal_oof: np.ndarray, truth: np.ndarray, scheme
) -> None:
    """PNG: fraction GGS vs mean predicted GGS score (10 bins), before and after temperature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect")
    for probs, name in ((oof, "raw softmax"), (cal_oof, "temperature-scaled")):
        s = ggs_score(probs, scheme)
        frac, mean = calibration_curve(truth, s, n_bins=10, strategy="uniform")
        ax.plot(mean, frac, "o-", label=name)
    ax.set_xlabel("predicted P(GGS | glomerulus), out-of-fold")
    ax.set_ylabel("observed fraction GGS")
    ax.set_title(f"reliability, {int(len(truth))} real glomeruli")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def _image_key(image: str | Path, data: str | Path) -> str:
    """An image's path relative to its data folder (absolute when outside it): matches OOF rows."""
    try:
        return Path(image).relative_to(Path(data)).as_posix()
    except ValueError:
        return Path(image).as_posix()


def oof_from_run(
    run_dir: str | Path, items: list[LabelledImage], data: str | Path, scheme
) -> tuple[list[int], list[str], np.ndarray, dict]:
    """(folds, fold names, OOF probabilities, provenance) of ``items`` from an earlier run's oof.csv.

    Rows are matched by image path relative to each run's data folder (``cv.json`` of the earlier
    run names its folder). Every item must have a row; rows of images no longer in the data (a
    folder with some images removed, e.g. held-out tiles) are dropped and counted. The fold
    models are not retrained: their predictions stand as they were.
    """
    run_dir = Path(run_dir)
    csv_path, json_path = run_dir / "oof.csv", run_dir / "cv.json"
    if not csv_path.is_file() or not json_path.is_file():
        raise GlomkitError(f"{run_dir}: needs oof.csv and cv.json of an earlier classifier-cv run")
    old = json.loads(json_path.read_text())
    old_data = old["config"]["train"]["data"]
    fold_names = [r["fold"] for r in old["per_fold"]]
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    cols = [f"prob_{n}" for n in scheme.names]
    if rows and not set(cols) <= set(rows[0]):
        raise GlomkitError(f"{csv_path}: no columns {cols} (another scheme?)")
    by_key = {_image_key(r["image"], old_data): r for r in rows}
    folds, probs, missing = [], [], []
    for it in items:
        r = by_key.get(_image_key(it.image, data))
        if r is None:
            missing.append(str(it.image))
            continue
        if r["label"] != it.label or r["slide"] != it.slide:
            raise GlomkitError(
                f"{it.image}: label/slide {it.label}/{it.slide} here, {r['label']}/{r['slide']} in {csv_path}"
            )
        folds.append(fold_names.index(r["fold"]))
        probs.append([float(r[c]) for c in cols])
    if missing:
        raise GlomkitError(f"{len(missing)} images have no row in {csv_path} (e.g. {missing[0]})")
    used = {_image_key(it.image, data) for it in items}
    dropped = [r for k, r in by_key.items() if k not in used]
    provenance = {
        "oof_from": str(run_dir),
        "oof_rows": len(rows),
        "dropped_rows": len(dropped),
        "dropped_by_source": {
            src: sum(r.get("source", "") == src for r in dropped)
            for src in sorted({r.get("source", "") for r in dropped})
        },
        "folds_trained_with_dropped_rows": True,
        "cv": old["config"]["cv"],
    }
    return folds, fold_names, np.asarray(probs, dtype=float), provenance


def ensemble_oof(
    run_dirs: list[str | Path], items: list[LabelledImage], data: str | Path, scheme
) -> tuple[list[int], list[str], np.ndarray, dict]:
    """(folds, fold names, mean OOF probabilities, provenance) of several earlier runs: an ensemble.

    Each run's fold models predicted the same held-out images, so the mean of the runs' out-of-fold
    probabilities (:func:`oof_from_run` each) is what an ensemble of their fold models predicts for
    an image none of them saw (one model per run and fold; a seed or recipe ensemble). Every run
    must put every image in the same fold (same grouping and split seed), else the mean would mix
    models that saw the image: refused. Feed the result to :func:`summarise`; the decision
    (temperature, threshold, glomerulus cut) is refitted on the mean as for one run.
    """
    if not run_dirs:
        raise GlomkitError("ensemble_oof: no run given")
    runs = [oof_from_run(d, items, data, scheme) for d in run_dirs]
    folds, fold_names = runs[0][0], runs[0][1]
    for d, (f, names, _, _) in zip(run_dirs[1:], runs[1:], strict=True):
        if names != fold_names or f != folds:
            moved = sum(fold_names[a] != names[b] for a, b in zip(folds, f, strict=True))
            raise GlomkitError(f"{d}: {moved} images in another fold than in {run_dirs[0]}: not one ensemble")
    probs = np.mean([r[2] for r in runs], axis=0)
    provenance = {"ensemble_of": [str(d) for d in run_dirs], "folds_identical": True, "cv": runs[0][3]["cv"]}
    return folds, fold_names, probs, provenance


def run_cv(train_config, cv: CVConfig, progress: bool = True) -> dict:
    """Train and predict every fold (resumable per fold), summarise, optionally train the final model."""
    import torch

    from glomkit.classify.train import eval_dataset, export_classifier, fit_classifier, predict_probs
    from glomkit.train.loop import plain

    out = Path(cv.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scheme = get_scheme(train_config.scheme)
    items = load_items(train_config.data, train_config.label_map)
    check_labels(items, scheme.names, train_config.data)
    ev = evaluated(items, cv.eval_source, scheme)
    if not ev.any():
        raise GlomkitError(f"{train_config.data}: no graded glomerulus with source {cv.eval_source!r}")
    provenance = None
    if cv.oof_from:
        folds, fold_names, oof, provenance = oof_from_run(cv.oof_from, items, train_config.data, scheme)
        old_cv = provenance["cv"]
        cv = replace(cv, by=old_cv["by"], n_folds=old_cv["n_folds"], split_seed=old_cv["split_seed"])
    else:
        folds, fold_names = cv_folds(items, cv.by, cv.n_folds, cv.split_seed, ev)
        oof = np.full((len(items), len(scheme)), np.nan)
    t0 = time.monotonic()
    minutes = []
    for f, name in enumerate([] if provenance else fold_names):
        test_idx = [i for i, g in enumerate(folds) if g == f]
        pred_file = out / f"{name}_probs.npy"
        if cv.only_folds is not None and f not in cv.only_folds:
            continue
        if pred_file.is_file() and train_config.resume:
            probs = np.load(pred_file)
        else:
            t1 = time.monotonic()
            train_items = [it for it, g in zip(items, folds, strict=True) if g != f]
            cfg = replace(train_config, seed=train_config.seed + f)
            net, _ = fit_classifier(
                train_items, [], cfg, checkpoint=out / f"{name}.ckpt.pt", progress=progress
            )
            # every held-out item, ungraded ones too (their P(glomerulus) is scored)
            ds = eval_dataset([items[i] for i in test_idx], [*scheme.names, ANY_GLOMERULUS], cfg)
            probs = predict_probs(net, ds, device=torch.device("cpu"))
            with atomic_path(pred_file) as tmp, open(tmp, "wb") as fh:
                np.save(fh, probs)
            minutes.append((time.monotonic() - t1) / 60)
        if len(probs) != len(test_idx):
            raise GlomkitError(
                f"{pred_file}: {len(probs)} rows for {len(test_idx)} images (stale; delete it)"
            )
        oof[test_idx] = probs
    if cv.only_folds is not None:
        return {"folds_done": [fold_names[f] for f in cv.only_folds], "minutes_trained": minutes}
    if np.isnan(oof).any():
        raise GlomkitError("internal: out-of-fold predictions do not cover every image")
    _write_oof(out / "oof.csv", items, folds, fold_names, oof, scheme)
    summary = summarise(items, folds, fold_names, oof, scheme, cv.eval_source, cv.max_glomeruli_dropped)
    summary["config"] = {"train": plain(asdict(train_config)), "cv": asdict(cv)}
    summary["minutes_trained"] = [round(m, 2) for m in minutes]
    if provenance is not None:
        summary["oof_from"] = provenance
    decision = Decision.from_meta(summary["decision"])
    cal = np.zeros_like(oof)
    for f in range(len(fold_names)):
        here = np.asarray(folds) == f
        cal[here] = apply_temperature(oof[here], summary["per_fold"][f]["temperature"])
    ggs_names = {scheme.names[i] for i in scheme.ggs_indices}
    truth = np.array([it.label in ggs_names for it in items])
    reliability_diagram(out / "reliability.png", oof[ev], cal[ev], truth[ev], scheme)
    _write_oof_ggs(
        out / "oof_ggs.csv", [items[i] for i in np.flatnonzero(ev)], truth[ev], ggs_score(cal[ev], scheme)
    )
    write_text(out / "cv.json", json.dumps(plain(summary), indent=1))
    if cv.final_out:
        net, hist = fit_classifier(
            items, [], train_config, checkpoint=Path(cv.final_out + ".ckpt.pt"), progress=progress
        )
        meta = {
            **decision.to_meta(),
            "training": {
                "command": train_config.command,
                "seed": train_config.seed,
                "data": str(train_config.data),
                "config": plain({k: v for k, v in asdict(train_config).items() if k != "command"}),
                "splits": {"by": "none: trained on every slide; figures from cross-validation"},
                "epochs_run": len(hist),
                "epoch_seconds": [round(h["seconds"], 1) for h in hist],
            },
            "cross_validation": plain(
                {
                    k: summary[k]
                    for k in (
                        "folds",
                        "per_site",
                        "pooled",
                        "real_glomeruli_called_non_glomerular",
                        "calibration",
                    )
                }
                | {"by": cv.by, "n_folds": len(fold_names), "split_seed": cv.split_seed}
                | ({"oof_from": {k: v for k, v in provenance.items() if k != "cv"}} if provenance else {})
            ),
        }
        export_classifier(net, cv.final_out, train_config, meta)
        summary["final_model"] = cv.final_out
        write_text(out / "cv.json", json.dumps(plain(summary), indent=1))
    summary["minutes"] = round((time.monotonic() - t0) / 60, 2)
    return summary


def _write_oof_ggs(path: Path, items, truth: np.ndarray, p_ggs: np.ndarray) -> None:
    """image, slide, truth (1 = GGS), P(GGS | glomerulus) out of fold and fold-calibrated: what
    ``benchmarks/ggs_interval_coverage.py`` draws biopsies from."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "slide", "ggs", "p_ggs"])
        for it, t, p in zip(items, truth, p_ggs, strict=True):
            w.writerow([Path(it.image).name, it.slide, int(t), round(float(p), 6)])


def _write_oof(path: Path, items, folds, fold_names, oof: np.ndarray, scheme) -> None:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["image", "label", "slide", "source", "fold", *[f"prob_{n}" for n in scheme.names]])
    for it, f, p in zip(items, folds, oof, strict=True):
        wr.writerow([str(it.image), it.label, it.slide, it.source, fold_names[f], *[f"{v:.6f}" for v in p]])
    write_text(path, buf.getvalue())
