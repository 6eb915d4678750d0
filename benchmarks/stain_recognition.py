"""Fit and measure the stain recogniser (glomkit.core.stain.recognise_stain): PAS vs H&E.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stain_recognition.py [--data ../shared/data] [--write]

Training splits only: hubmap_pas ``train_*`` tiles, cgmh_he training biopsies (the fixed third of
``glomkit.detect.data.split_groups`` is test), bueno_pas crops of the slides outside the same fixed
third of slides. Prints held-out accuracy per source, leave-one-PAS-source-out figures, the three
vendor slides and a synthetic slide; ``--write`` writes the fitted weights into core/stain.py.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from glomkit.core import stain as st
from glomkit.detect.data import image_group, split_groups

ROOT = Path(__file__).resolve().parents[1]
TILE_SIDES = (768, 192)  # each training tile at two sizes: a tile as read, and as in a thumbnail


def _read(p: Path) -> np.ndarray:
    return cv2.imread(str(p), cv2.IMREAD_COLOR)[:, :, ::-1]


def _resize(img: np.ndarray, side: int) -> np.ndarray:
    f = side / max(img.shape[:2])
    return cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=cv2.INTER_AREA)


def load(data: Path) -> list[dict]:
    """One record per image: source, stain, split ('train' / 'test'), group, path."""
    recs = []
    for p in sorted((data / "hubmap_pas" / "tiles").glob("*.jpg")):
        split = "test" if p.stem.startswith("test") else "train"
        recs.append(dict(source="hubmap_pas", stain=st.STAIN_PAS, split=split, group=p.stem, path=p))
    tiles = sorted((data / "cgmh_he" / "tiles").glob("*.jpg"))
    groups = [image_group(p) for p in tiles]
    tr, va, _ = split_groups([g for g in groups if g])
    for p, g in zip(tiles, groups, strict=True):
        split = "train" if g in tr | va else "test"
        recs.append(dict(source="cgmh_he", stain=st.STAIN_HE, split=split, group=g, path=p))
    with open(data / "bueno_pas" / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    tr, va, _ = split_groups([r["source_wsi"] for r in rows])
    for r in rows:
        split = "train" if r["source_wsi"] in tr | va else "test"
        recs.append(
            dict(
                source="bueno_pas",
                stain=st.STAIN_PAS,
                split=split,
                group=r["source_wsi"],
                path=data / "bueno_pas" / r["image"],
            )
        )
    return recs


def featurise(recs: list[dict]) -> None:
    """Adds 'feats' (one feature row per training size) and 'image' (the test-size image)."""
    for r in recs:
        img = _read(r["path"])
        sides = TILE_SIDES if max(img.shape[:2]) > 400 else (max(img.shape[:2]),)
        r["feats"] = [st.stain_features(st.tissue_od(_resize(img, s))) for s in sides]
        r["image"] = _resize(img, 768) if max(img.shape[:2]) > 768 else img


def fit(recs: list[dict], c: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(feature mean, feature sd, coefficients, intercept) of a logistic regression, PAS = 1; each
    source weighs the same in total, and so does each stain."""
    from sklearn.linear_model import LogisticRegression

    x, y, src = [], [], []
    for r in recs:
        for f in r["feats"]:
            x.append(f)
            y.append(int(r["stain"] == st.STAIN_PAS))
            src.append(r["source"])
    x, y, src = np.array(x), np.array(y), np.array(src)
    w = np.zeros(len(y))
    for s in set(src):
        w[src == s] = 1.0 / (src == s).sum()
    for k in (0, 1):
        w[y == k] /= w[y == k].sum()
    mu, sd = x.mean(0), x.std(0) + 1e-3
    m = LogisticRegression(C=c, max_iter=5000).fit((x - mu) / sd, y, sample_weight=w * len(y))
    return mu, sd, m.coef_[0], float(m.intercept_[0])


def evaluate(recs: list[dict], model) -> dict[str, tuple[int, int, int]]:
    """Per source: (right, other, n) of recognise_stain on the records' images with ``model``."""
    out: dict[str, list[int]] = {}
    for r in recs:
        call = st.recognise_stain(r["image"], model=model)
        o = out.setdefault(r["source"], [0, 0, 0])
        o[0] += call.name == r["stain"]
        o[1] += call.name == st.STAIN_OTHER
        o[2] += 1
    return {k: tuple(v) for k, v in out.items()}


def show(title: str, res: dict) -> None:
    print(title)
    for k, (ok, other, n) in sorted(res.items()):
        print(f"  {k:11s} {ok:4d}/{n:<4d} = {100 * ok / n:5.1f} %  (other: {other})")


def slides(data: Path, model) -> None:
    from glomkit.slide.reader import Slide

    print("vendor slides (thumbnail 2048 px, as the pipeline reads it)")
    for p in sorted((data / "slides").glob("*.*")):
        if p.suffix.lower() not in (".svs", ".ndpi"):
            continue
        with Slide(p, mpp=0.5) as s:
            thumb, _ = s.thumbnail(2048)
        t = time.perf_counter()
        call = st.recognise_stain(thumb, model=model)
        dt = time.perf_counter() - t
        print(f"  {p.name:32s} {call.name:16s} {call.confidence:.2f}  {dt * 1000:5.0f} ms  {call.reason}")


def synthetic(model) -> None:
    from glomkit.slide.reader import Slide
    from glomkit.synth.slide import synthesize_slide

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "synth.tif"
        try:
            synthesize_slide(out, 6000, 4000, seed=0)
        except TypeError as e:  # signature differs: report, do not fail the benchmark
            print(f"synthetic slide: skipped ({e})")
            return
        with Slide(out) as s:
            thumb, _ = s.thumbnail(2048)
        call = st.recognise_stain(thumb, model=model)
        print(f"synthetic slide (glomkit synth, seed 0): {call.name} {call.confidence:.2f}  {call.reason}")


def write(model: tuple) -> None:
    mu, sd, coef, b = model
    fmt = lambda a: "[" + ", ".join(f"{v:.5g}" for v in a) + "]"  # noqa: E731
    block = (
        "# --- fitted by benchmarks/stain_recognition.py --write (do not edit by hand) ---\n"
        f"STAIN_FEATURE_MEAN = np.array({fmt(mu)}, dtype=np.float32)\n"
        f"STAIN_FEATURE_SD = np.array({fmt(sd)}, dtype=np.float32)\n"
        f"STAIN_PAS_COEF = np.array({fmt(coef)}, dtype=np.float32)\n"
        f"STAIN_PAS_INTERCEPT = {b:.5g}\n"
        "# --- end fitted ---\n"
    )
    p = ROOT / "src" / "glomkit" / "core" / "stain.py"
    s = p.read_text()
    s2 = re.sub(r"# --- fitted by .*?# --- end fitted ---\n", lambda _: block, s, flags=re.S)
    if s2 == s and block not in s:
        sys.exit("core/stain.py: fitted block markers not found")
    p.write_text(s2)
    print(f"wrote the fitted weights into {p.relative_to(ROOT)} (run ruff format on it)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--c", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    ap.add_argument("--write", action="store_true", help="write the fitted weights into core/stain.py")
    ap.add_argument("--no-synth", action="store_true")
    a = ap.parse_args()
    recs = load(a.data)
    t = time.perf_counter()
    featurise(recs)
    print(f"{len(recs)} images featurised in {time.perf_counter() - t:.0f} s")
    for s in ("hubmap_pas", "cgmh_he", "bueno_pas"):
        sub = [r for r in recs if r["source"] == s]
        ntr = sum(r["split"] == "train" for r in sub)
        ng = len({r["group"] for r in sub if r["split"] == "test"})
        print(f"  {s:11s} train {ntr:4d}  held out {len(sub) - ntr:4d} images ({ng} groups)")
    train = [r for r in recs if r["split"] == "train"]
    test = [r for r in recs if r["split"] == "test"]
    model = fit(train, a.c)
    show("held out (model fitted on all three training splits)", evaluate(test, model))
    show("training splits (same model, for reference)", evaluate(train, model))
    for held in ("bueno_pas", "hubmap_pas"):
        m = fit([r for r in train if r["source"] != held], a.c)
        show(
            f"leave {held} out (PAS from the other source only); all its images tested",
            evaluate([r for r in recs if r["source"] == held], m),
        )
        show("  and the held-out H&E biopsies", evaluate([r for r in test if r["source"] == "cgmh_he"], m))
    slides(a.data, model)
    if not a.no_synth:
        synthetic(model)
    if a.write:
        write(model)


if __name__ == "__main__":
    main()
