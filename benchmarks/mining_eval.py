"""Evaluate `glomkit mine` on seeded synthetic compound figures with known panel boxes.

Builds N figures (uneven grids, white/black gutters, borders, panel letters, captions, some saved
as JPEG) from: real glomerulus crops of the bueno_pas *test* slides (read in place), synthetic
glomeruli (glomkit.synth.glomerulus), non-glomerular tissue (parts of bueno test crops outside the
glomerulus mask, and glomkit.synth.tissue), matplotlib charts, box-and-arrow diagrams, fake
fluorescence and fake electron micrographs. Then prints

- panel separation precision / recall at IoU >= 0.5,
- the modality filter's pass rate per panel kind,
- curation precision / recall for "is a glomerulus" with the modality filter only and, when a
  classifier is available, with the classifier at the threshold.

    .venv/bin/python benchmarks/mining_eval.py --n-figures 120 --seed 0 --out /tmp/mining_eval
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np

from glomkit.data.bueno import load_bueno, split_train_val_test
from glomkit.io.images import read_rgb
from glomkit.mine.curate import MineConfig, mine_figures
from glomkit.mine.separate import Box, box_iou, separate_panels
from glomkit.mine.synthetic_figures import (
    chart_panel,
    diagram_panel,
    em_panel,
    fluorescence_panel,
    make_compound_figure,
)
from glomkit.models.registry import WEIGHTS_DIR
from glomkit.synth.glomerulus import render_glomerulus
from glomkit.synth.tissue import render_tissue

GLOM_KINDS = {"bueno_glom", "synth_glom"}
KIND_WEIGHTS = {
    "bueno_glom": 0.2,
    "synth_glom": 0.12,
    "bueno_outside": 0.08,
    "synth_tissue": 0.1,
    "chart": 0.15,
    "diagram": 0.1,
    "fluorescence": 0.13,
    "em": 0.12,
}


def outside_mask_crop(sample, rng: np.random.Generator) -> np.ndarray | None:
    """A corner of a bueno crop that lies (almost) outside the glomerulus mask, or None."""
    img = read_rgb(sample.image)
    mask = cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE) > 127
    best = None
    for side in (96, 80, 64, 56):
        for y, x in ((0, 0), (0, 224 - side), (224 - side, 0), (224 - side, 224 - side)):
            frac = float(mask[y : y + side, x : x + side].mean())
            if frac <= 0.05 and (best is None or frac < best[0]):
                best = (frac, img[y : y + side, x : x + side])
        if best is not None:
            return best[1]
    return None


class PanelSource:
    """Draws panels of each kind; bueno crops come from the test slides, without replacement."""

    def __init__(self, rng: np.random.Generator, test_fold: int) -> None:
        self.rng = rng
        samples = load_bueno()
        _, _, test = split_train_val_test(samples, test_fold=test_fold)
        self.test_slides = sorted({samples[i].slide for i in test})
        order = rng.permutation(test)
        self.glom = [samples[i] for i in order]
        self.outside = [samples[i] for i in rng.permutation(test)]

    def draw(self, kind: str) -> tuple[str, np.ndarray]:
        rng = self.rng
        if kind == "bueno_glom":
            if not self.glom:
                kind = "synth_glom"
            else:
                return kind, read_rgb(self.glom.pop().image)
        if kind == "bueno_outside":
            while self.outside:
                crop = outside_mask_crop(self.outside.pop(), rng)
                if crop is not None:
                    side = int(rng.integers(110, 200))
                    return kind, cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR)
            kind = "synth_tissue"
        h, w = int(rng.integers(120, 240)), int(rng.integers(120, 260))
        if kind == "synth_glom":
            label = str(rng.choice(["normal", "obsolescent", "solidified", "disappearing"]))
            rgb, _ = render_glomerulus(label, float(rng.uniform(40, 80)), rng, None)
            return kind, rgb
        if kind == "synth_tissue":
            return kind, render_tissue(h, w, rng, float(rng.uniform(0.5, 2.0)))
        if kind == "chart":
            return kind, chart_panel(rng, h, w)
        if kind == "diagram":
            return kind, diagram_panel(rng, h, w)
        if kind == "fluorescence":
            return kind, fluorescence_panel(rng, h, w)
        return "em", em_panel(rng, h, w)


def match(truth: list[Box], pred: list[Box], thr: float = 0.5) -> dict[int, int]:
    """Greedy one-to-one matching by IoU (best pairs first): truth index -> pred index."""
    pairs = sorted(
        ((box_iou(t, p), i, j) for i, t in enumerate(truth) for j, p in enumerate(pred)), reverse=True
    )
    out: dict[int, int] = {}
    used: set[int] = set()
    for iou, i, j in pairs:
        if iou < thr:
            break
        if i in out or j in used:
            continue
        out[i] = j
        used.add(j)
    return out


def prf(tp: int, n_pred: int, n_true: int) -> str:
    p = tp / n_pred if n_pred else float("nan")
    r = tp / n_true if n_true else float("nan")
    return f"precision {p:.3f} ({tp}/{n_pred})  recall {r:.3f} ({tp}/{n_true})"


def curation(out: Path, truth: dict[str, list[tuple[Box, str]]], keep_rule) -> tuple[int, int, int, Counter]:
    """(tp, n_kept, n_true_glomeruli, kept per true kind) of a mining run's manifest."""
    rows = defaultdict(list)
    with (out / "manifest.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            if r["reason"] not in ("too_small", "unreadable"):
                rows[r["source"]].append(r)
    tp = n_kept = n_true = 0
    kept_kinds: Counter = Counter()
    for source, gt in truth.items():
        pred_rows = rows.get(source, [])
        pred = [Box(int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"])) for r in pred_rows]
        m = match([b for b, _ in gt], pred)
        kind_of_pred = {j: gt[i][1] for i, j in m.items()}
        n_true += sum(1 for _, k in gt if k in GLOM_KINDS)
        for j, r in enumerate(pred_rows):
            if keep_rule(r):
                n_kept += 1
                kind = kind_of_pred.get(j, "unmatched")
                kept_kinds[kind] += 1
                tp += kind in GLOM_KINDS
    return tp, n_kept, n_true, kept_kinds


def n_duplicates(out: Path) -> int:
    with (out / "manifest.csv").open(newline="") as f:
        return sum(1 for r in csv.DictReader(f) if r["reason"].startswith("duplicate_of"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-figures", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/glomkit_mining_eval"))
    ap.add_argument("--classifier", default=None, help="classifier ONNX (default: bundled, when present)")
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--jpeg-fraction", type=float, default=0.3, help="figures saved as JPEG (quality 85)")
    ap.add_argument("--test-fold", type=int, default=0, help="bueno slide fold used for real crops")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    src = PanelSource(rng, args.test_fold)
    fig_dir = args.out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    kinds = list(KIND_WEIGHTS)
    weights = np.array([KIND_WEIGHTS[k] for k in kinds])
    truth: dict[str, list[tuple[Box, str]]] = {}
    sep_tp = sep_pred = sep_true = 0
    by_gutter: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    by_kind_found: Counter = Counter()
    by_kind_total: Counter = Counter()
    t_sep = 0.0
    for f in range(args.n_figures):
        n = int(rng.integers(2, 9))
        drawn = [src.draw(str(rng.choice(kinds, p=weights / weights.sum()))) for _ in range(n)]
        gutter_colour = int(rng.choice([255, 255, 0, 245]))
        fig, boxes = make_compound_figure([p for _, p in drawn], rng, gutter_colour=gutter_colour)
        jpeg = rng.random() < args.jpeg_fraction
        name = f"fig{f:03d}.{'jpg' if jpeg else 'png'}"
        bgr = cv2.cvtColor(fig, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(fig_dir / name), bgr, [cv2.IMWRITE_JPEG_QUALITY, 85] if jpeg else [])
        stored = cv2.cvtColor(cv2.imread(str(fig_dir / name)), cv2.COLOR_BGR2RGB)
        truth[name] = [(b, k) for b, (k, _) in zip(boxes, drawn, strict=True)]
        t0 = time.perf_counter()
        pred = separate_panels(stored).panels
        t_sep += time.perf_counter() - t0
        m = match(boxes, pred)
        sep_tp += len(m)
        sep_pred += len(pred)
        sep_true += len(boxes)
        key = f"{'black' if gutter_colour == 0 else 'white/grey'} gutter, {'jpeg' if jpeg else 'png'}"
        g = by_gutter[key]
        g[0] += len(m)
        g[1] += len(pred)
        g[2] += len(boxes)
        for i, (k, _) in enumerate(drawn):
            by_kind_total[k] += 1
            by_kind_found[k] += i in m

    report: dict = {"n_figures": args.n_figures, "seed": args.seed, "bueno_test_slides": src.test_slides}
    print(f"{args.n_figures} figures, {sep_true} panels; bueno test slides: {', '.join(src.test_slides)}")
    print(f"separation (IoU >= 0.5): {prf(sep_tp, sep_pred, sep_true)}")
    print(f"  separation time: {1000 * t_sep / args.n_figures:.1f} ms per figure")
    for key, (tp, npred, ntrue) in sorted(by_gutter.items()):
        print(f"  {key:28s} {prf(tp, npred, ntrue)}")
    print(
        "  recall per panel kind: "
        + ", ".join(f"{k} {by_kind_found[k]}/{by_kind_total[k]}" for k in kinds if by_kind_total[k])
    )
    report["separation"] = {"tp": sep_tp, "n_pred": sep_pred, "n_true": sep_true}

    # curation, modality filter only
    out_lm = args.out / "mined_modality_only"
    mine_figures(fig_dir, out_lm, MineConfig(use_classifier=False))
    tp, nk, nt, kk = curation(out_lm, truth, lambda r: r["kept"] == "True")
    print(f"curation, modality filter only: {prf(tp, nk, nt)}")
    print("  kept per true kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kk.items())))
    print(f"  flagged as duplicates (all panels here are distinct): {n_duplicates(out_lm)}")
    report["curation_modality_only"] = {"tp": tp, "n_kept": nk, "n_true": nt, "kept_kinds": dict(kk)}

    model = args.classifier or (WEIGHTS_DIR / "classifier.onnx")
    if Path(model).is_file():
        out_cls = args.out / "mined_classifier"
        mine_figures(fig_dir, out_cls, MineConfig(classifier=model, threshold=args.threshold))
        tp, nk, nt, kk = curation(out_cls, truth, lambda r: r["kept"] == "True")
        print(f"curation, modality filter + classifier >= {args.threshold}: {prf(tp, nk, nt)}")
        print("  kept per true kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kk.items())))
        report["curation_classifier"] = {
            "model": str(model),
            "tp": tp,
            "n_kept": nk,
            "n_true": nt,
            "kept_kinds": dict(kk),
        }
    else:
        print(f"curation with the classifier: not run ({model} is missing)")
    (args.out / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
