"""Cross-validation figures of classifier-cv runs and of ensembles of them, side by side.

Each arm is ``NAME=RUN[,RUN...]``: the folders of earlier ``glomkit study classifier-cv`` runs
(``oof.csv`` and ``cv.json``). One run is summarised again from its out-of-fold predictions (its
own figures, a check); several are averaged image by image (glomkit.classify.cv.ensemble_oof:
the ensemble of their fold models, refused unless every image lies in the same fold in every
run) and the decision is refitted exactly as classifier-cv fits it (glomkit.classify.cv.summarise).
Prints the rows of the classifier card's CV table, one column per arm; ``--json DIR`` also writes
each arm's summary (cv.json form). Issue 24's seed ensemble:

    python benchmarks/classifier_ensemble.py --data COARSE4 --label-map GS=sclerosed,nonGS=normal \\
        --max-glomeruli-dropped 0.01 base=cvHE01 seed1=cv_seed1 ens2=cvHE01,cv_seed1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from glomkit.classify.cv import ensemble_oof, site_of, summarise
from glomkit.classify.data import load_items, parse_label_map
from glomkit.core.schemes import get_scheme


def _f(v: float | None, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _msm(d: dict | None) -> str:
    return "-" if d is None else f"{d['mean']:.3f} ± {d['sd']:.3f} ({d['min']:.3f})"


def rows(s: dict) -> dict[str, str]:
    """The classifier card's CV rows of one summary."""
    fo, pooled = s["folds"], s["pooled"]
    per_slide = sorted((r for r in s["per_slide_ggs"] if r["auc"] is not None), key=lambda r: r["auc"])
    worst = [
        f"{r['slide']}: {_f(r['auc'])} / {_f(r['balanced_accuracy'])} ({r['n']} crops, {r['n_ggs']} GGS)"
        for r in per_slide[:2]
    ]
    glom, neg = s["real_glomeruli_called_non_glomerular"], s["real_negatives_called_non_glomerular"]
    dec = s["decision"]["decision"] | {"temperature": s["decision"]["temperature"]}
    return {
        "AUC, mean ± sd (worst fold)": _msm(fo["auc"]),
        "balanced accuracy at own threshold, mean ± sd (worst fold); pooled": (
            f"{_msm(fo['balanced_accuracy'])}; pooled {_f(pooled['balanced_accuracy'])}"
        ),
        "pooled AUC": _f(pooled["auc"]),
        # sensitivity: sclerosed glomeruli called sclerosed (issue 24: pale ones called normal)
        "pooled GGS sensitivity / specificity": f"{_f(pooled['sensitivity'])} / {_f(pooled['specificity'])}",
        "per site (AUC / balanced accuracy)": ", ".join(
            f"{k} {_f(v['auc'])} / {_f(v['balanced_accuracy'])}" for k, v in s["per_site"].items()
        ),
        "worst held-out slide (AUC / BA); next": "; next ".join(worst),
        "real glomeruli called non_glomerular": (
            f"{glom['called']} / {glom['n']} = {100 * glom['rate']:.1f} %: "
            + ", ".join(f"{k} {100 * v:.1f} %" for k, v in glom["by_source"].items())
        ),
        "real negatives called non_glomerular": (
            f"{100 * neg['rate']:.0f} %: "
            + ", ".join(f"{k} {100 * v:.1f} %" for k, v in neg["by_source"].items())
        ),
        "GGS ECE (nested temperature)": _f(s["calibration"]["ece_ggs_nested_temperature"]),
        "decision: temperature / GGS threshold / glomerulus cut": (
            f"{dec['temperature']:.3f} / {dec['threshold']:.3f} / {dec['glomerulus_min']:.3f}"
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arms", nargs="+", help="NAME=RUN[,RUN...] (classifier-cv output folders)")
    ap.add_argument("--data", required=True, help="the runs' data folder (labels.csv)")
    ap.add_argument("--label-map", default="", help="as the runs had it, e.g. GS=sclerosed,nonGS=normal")
    ap.add_argument("--scheme", default="coarse_3")
    ap.add_argument("--eval-source", default="bueno")
    ap.add_argument("--max-glomeruli-dropped", type=float, default=0.01)
    ap.add_argument("--json", type=Path, help="write NAME.json (the summary of each arm) here")
    a = ap.parse_args()
    scheme = get_scheme(a.scheme)
    items = load_items(a.data, parse_label_map(a.label_map) if a.label_map else None)
    table: dict[str, dict[str, str]] = {}
    for arm in a.arms:
        name, _, runs = arm.partition("=")
        folds, fold_names, probs, prov = ensemble_oof(runs.split(","), items, a.data, scheme)
        s = summarise(items, folds, fold_names, probs, scheme, a.eval_source, a.max_glomeruli_dropped)
        s["ensemble"] = prov
        table[name] = rows(s)
        if a.json:
            a.json.mkdir(parents=True, exist_ok=True)
            (a.json / f"{name}.json").write_text(json.dumps(s, indent=1, default=float))
        sites = sorted({site_of(it.slide) for it in items if it.source == a.eval_source})
        print(f"{name}: {len(runs.split(','))} run(s), folds {fold_names}, sites {sites}")
    names = list(table)
    print()
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for row in table[names[0]]:
        print(f"| {row} | " + " | ".join(table[n][row] for n in names) + " |")


if __name__ == "__main__":
    main()
