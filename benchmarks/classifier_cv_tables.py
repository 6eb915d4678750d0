"""Markdown tables of one or more ``glomkit study classifier-cv`` runs (their ``cv.json``).

Prints, per run: the per-fold and per-site tables (AUC of the temperature-scaled OOF GGS score;
balanced accuracy, sensitivity and specificity of the nested decision: threshold and temperature
fitted on the other folds), mean ± sd and minimum over folds, real glomeruli called
non_glomerular, calibration, per-slide GGS percentages and the confusion matrix. The classifier
card's and the study's tables come from:

    python benchmarks/classifier_cv_tables.py A=cvA/cv.json B=cvB/cv.json
"""

from __future__ import annotations

import argparse
import json


def f(v, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def msm(d: dict | None) -> str:
    return "-" if d is None else f"{d['mean']:.3f} ± {d['sd']:.3f} (min {d['min']:.3f})"


def tables(name: str, s: dict) -> str:
    out = [f"### {name}", ""]
    cfg = s.get("config", {})
    tr, cv = cfg.get("train", {}), cfg.get("cv", {})
    out.append(
        f"data `{tr.get('data')}`, by {cv.get('by')}, {len(s['per_fold'])} folds (split seed "
        f"{cv.get('split_seed')}), {tr.get('backbone')} {tr.get('size')} px, {tr.get('epochs')} epochs, "
        f"aug {tr.get('aug')}, stain norm {tr.get('stain_norm', 'none')}, seed {tr.get('seed')}; "
        f"{s['n_evaluated']} real graded glomeruli "
        f"({s['n_ggs']} GS)"
    )
    out += [
        "",
        "| fold | slides | n | GS | AUC | bal. acc | sens | spec | bal. acc raw@0.5 | threshold | T |",
    ]
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in s["per_fold"]:
        out.append(
            f"| {r['fold']} | {', '.join(r['slides'])} | {r['n']} | {r['n_ggs']} | {f(r['auc'])} | "
            f"{f(r['balanced_accuracy'])} | {f(r['sensitivity'])} | {f(r['specificity'])} | "
            f"{f(r['balanced_accuracy_at_0.5_raw'])} | {f(r['threshold'])} | {f(r['temperature'], 2)} |"
        )
    fo = s["folds"]
    out.append(
        f"| **mean ± sd (min)** | | | | {msm(fo['auc'])} | {msm(fo['balanced_accuracy'])} | | | "
        f"{msm(fo['balanced_accuracy_at_0.5_raw'])} | | |"
    )
    p = s["pooled"]
    out.append(
        f"| pooled OOF | | {p['n']} | {p['n_ggs']} | {f(p['auc'])} | {f(p['balanced_accuracy'])} | "
        f"{f(p['sensitivity'])} | {f(p['specificity'])} | | | |"
    )
    out += [
        "",
        "| site (pooled OOF) | slides | n | GS | AUC | bal. acc | sens | spec |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for site, r in s["per_site"].items():
        out.append(
            f"| {site} | {r['slides']} | {r['n']} | {r['n_ggs']} | {f(r['auc'])} | {f(r['balanced_accuracy'])} | "
            f"{f(r['sensitivity'])} | {f(r['specificity'])} |"
        )
    g = s["real_glomeruli_called_non_glomerular"]
    out += [
        "",
        f"Real glomeruli called non_glomerular (held-out, nested decision): {g['called']} / {g['n']} = "
        f"{100 * (g['rate'] or 0):.1f} % (bueno graded crops only: {100 * (g['graded_bueno_rate'] or 0):.1f} %; "
        f"raw argmax: {100 * (g['rate_argmax_raw'] or 0):.1f} %).",
    ]
    n = s.get("real_negatives_called_non_glomerular")
    if n:
        by = ", ".join(f"{k} {100 * v:.1f} %" for k, v in n["by_source"].items())
        out.append(
            f"Real negatives called non_glomerular (held-out, nested decision): {n['called']} / {n['n']} = "
            f"{100 * (n['rate'] or 0):.1f} % ({by})."
        )
    c = s["calibration"]
    out.append(
        f"Calibration (OOF): 3-class NLL {f(c['nll_raw'])} raw -> {f(c['nll_nested_temperature'])} with the "
        f"nested temperature; GGS-score ECE {f(c['ece_ggs_raw'])} -> {f(c['ece_ggs_nested_temperature'])}."
    )
    d = s["decision"]
    out.append(
        f"Fitted on all OOF predictions: temperature {f(d['temperature'])}, GGS threshold "
        f"{f(d.get('decision', {}).get('threshold'))}, glomerulus cut P(glomerulus) >= "
        f"{f(d.get('decision', {}).get('glomerulus_min'))}."
    )
    names = p["class_names"]
    out += ["", "Confusion of the real graded glomeruli (rows true, columns predicted; nested decision):", ""]
    out += ["| true \\ pred | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for n, row in zip(names, p["confusion_real_graded"], strict=True):
        out.append(f"| {n} | " + " | ".join(str(v) for v in row) + " |")
    out += [
        "",
        "| slide | n | true GGS % | predicted GGS % (count) | mean P(GGS) % |",
        "|---|---|---|---|---|",
    ]
    for r in s["per_slide_ggs"]:
        out.append(
            f"| {r['slide']} | {r['n']} | {r['true_ggs_percent']:.1f} | {r['predicted_ggs_percent_count']:.1f} | "
            f"{r['predicted_ggs_percent_probability']:.1f} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="NAME=path/to/cv.json")
    a = ap.parse_args()
    for spec in a.runs:
        name, _, path = spec.partition("=")
        with open(path or name) as fh:
            print(tables(name if path else path, json.load(fh)))


if __name__ == "__main__":
    main()
