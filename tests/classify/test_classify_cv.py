"""Slide-grouped cross-validation of the classifier, OOF threshold and temperature (tiny data)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from glomkit import GlomkitError
from glomkit.classify.cv import CVConfig, cv_folds, evaluated, run_cv
from glomkit.classify.data import ANY_GLOMERULUS, load_items
from glomkit.core.schemes import get_scheme
from glomkit.infer.decision import (
    Decision,
    apply_temperature,
    choose_threshold,
    fit_temperature,
    nll,
)
from glomkit.io.atomic import write_png

COLOURS = {"GS": (200, 60, 120), "nonGS": (230, 180, 210), "non_glomerular": (120, 200, 120)}


def _tiny_config(data, **extra):
    """A one-epoch 32-px classifier recipe on a tiny folder (GS/nonGS mapped to the coarse scheme)."""
    from glomkit.classify.train import ClassifierConfig

    return ClassifierConfig(
        data=str(data), label_map={"GS": "sclerosed", "nonGS": "normal"}, size=32, epochs=1, batch=4, **extra
    )


def _tiny_folder(tmp_path, n_slides=6, per_class=2):
    """Slides of three sites, a few solid-colour images per class, plus ungraded glomeruli."""
    rng = np.random.default_rng(0)
    rows = []
    sites = ["SAS", "SESCAM", "VUHSK"]
    for s in range(n_slides):
        slide = f"{sites[s % 3]}_{s}"
        for label, rgb in COLOURS.items():
            for j in range(per_class):
                img = np.clip(np.array(rgb) + rng.normal(0, 10, (24, 24, 3)), 0, 255).astype(np.uint8)
                name = f"{slide}_{label}_{j}.png"
                write_png(tmp_path / name, img)
                source = "bueno" if label != "non_glomerular" else "hubmap_tissue"
                rows.append((name, label, slide, source))
    for b in range(2):  # ungraded real glomeruli in their own groups
        img = np.full((24, 24, 3), COLOURS["nonGS"], np.uint8)
        write_png(tmp_path / f"hub{b}.png", img)
        rows.append((f"hub{b}.png", ANY_GLOMERULUS, f"hubmap#b{b}", "hubmap_glomerulus"))
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "label", "slide", "source"])
        w.writerows(rows)
    return tmp_path


def test_folds_grouped_by_slide_and_site(tmp_path):
    items = load_items(_tiny_folder(tmp_path), {"GS": "sclerosed", "nonGS": "normal"})
    scheme = get_scheme("coarse_3")
    ev = evaluated(items, "bueno", scheme)
    assert ev.sum() == 6 * 2 * 2  # graded bueno glomeruli only
    folds, names = cv_folds(items, "slide", 3, 0, ev)
    fold_of_slide: dict[str, set[int]] = {}
    for it, f in zip(items, folds, strict=True):
        fold_of_slide.setdefault(it.slide, set()).add(f)
    assert all(len(v) == 1 for v in fold_of_slide.values())  # no slide in two folds
    assert set(folds) == {0, 1, 2} and len(names) == 3
    folds, names = cv_folds(items, "site", 0, 0, ev)
    assert names == ["SAS", "SESCAM", "VUHSK"]
    for it, f in zip(items, folds, strict=True):
        if it.source == "bueno":
            assert names[f] == it.slide.split("_")[0]


def test_temperature_lowers_nll_of_overconfident_probs():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    logits = rng.normal(0, 1, (400, 3))
    logits[np.arange(400), y] += 1.0  # informative ...
    probs = np.exp(4 * logits) / np.exp(4 * logits).sum(1, keepdims=True)  # ... but 4x overconfident
    t = fit_temperature(probs, y)
    assert t > 2.0
    assert nll(apply_temperature(probs, t), y) < nll(probs, y) - 0.1
    assert np.allclose(apply_temperature(probs, 1.0), probs)


def test_threshold_and_decision():
    score = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.6, 0.9])
    truth = np.array([0, 0, 0, 0, 1, 1, 1], bool)
    thr = choose_threshold(score, truth)
    assert 0.3 < thr <= 0.35
    scheme = get_scheme("coarse_3")  # normal, sclerosed, non_glomerular
    d = Decision(temperature=1.0, threshold=0.3, positive="sclerosed")
    probs = np.array([[0.6, 0.4, 0.0], [0.8, 0.2, 0.0], [0.2, 0.2, 0.6], [0.35, 0.25, 0.4]])
    lab = d.labels(probs, scheme)
    names = [scheme.names[i] for i in lab]
    # 0.4 >= 0.3: sclerosed although normal is likelier; P(glom) 0.6 >= 0.5: a glomerulus
    assert names == ["sclerosed", "normal", "non_glomerular", "sclerosed"]
    back = Decision.from_meta(d.to_meta())
    assert back == d
    assert (Decision.from_meta({}).labels(probs, scheme) == probs.argmax(1)).all()


@pytest.mark.slow
def test_run_cv_covers_every_image_once(tmp_path):

    data = _tiny_folder(tmp_path / "data")
    cfg = _tiny_config(data, threads=1)
    out = tmp_path / "cv"
    final = tmp_path / "final.onnx"
    s = run_cv(cfg, CVConfig(by="slide", n_folds=3, out_dir=str(out), final_out=str(final)), progress=False)
    with open(out / "oof.csv") as f:
        rows = list(csv.DictReader(f))
    items = load_items(data)
    assert sorted(r["image"] for r in rows) == sorted(str(it.image) for it in items)  # each once
    by_slide: dict[str, set[str]] = {}
    for r in rows:
        by_slide.setdefault(r["slide"], set()).add(r["fold"])
        p = np.array([float(r[k]) for k in ("prob_normal", "prob_sclerosed", "prob_non_glomerular")])
        assert abs(p.sum() - 1) < 1e-4
    assert all(len(v) == 1 for v in by_slide.values())
    assert len(s["per_fold"]) == 3 and s["n_evaluated"] == 24
    assert s["real_glomeruli_called_non_glomerular"]["n"] == 24 + 2
    saved = json.loads((out / "cv.json").read_text())
    thr = saved["decision"]["decision"]["threshold"]
    assert 0.0 <= thr <= 1.0 + 1e-5
    assert (out / "reliability.png").stat().st_size > 0
    from glomkit.models.runtime import read_metadata

    meta = read_metadata(final)
    assert meta["decision"]["threshold"] == pytest.approx(thr)
    assert meta["temperature"] == pytest.approx(saved["decision"]["temperature"])
    # resuming reuses every fold's saved predictions: same figures
    s2 = run_cv(
        cfg.__class__(**{**cfg.__dict__, "resume": True}),
        CVConfig(by="slide", n_folds=3, out_dir=str(out)),
        progress=False,
    )
    assert s2["folds"] == s["folds"]


def _constant_classifier(path, probs, meta_extra):
    """An ONNX classifier that outputs ``probs`` for every patch, with extra metadata."""
    import torch

    from glomkit.models.export import export_onnx

    class Const(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = torch.nn.Parameter(torch.log(torch.tensor([probs], dtype=torch.float32)))

        def forward(self, x):
            return torch.softmax(self.logits + 0.0 * x.mean(dim=(1, 2, 3))[:, None], dim=1)

    meta = {
        "task": "classifier",
        "input_size": [16, 16],
        "classes": get_scheme("coarse_3").to_dict(),
        **meta_extra,
    }
    return export_onnx(Const().eval(), torch.zeros(1, 3, 16, 16), path, meta, ["probs"], fp16_storage=False)


def test_classify_and_decide_obeys_model_metadata(tmp_path):
    from glomkit.infer.classify import classify_and_decide
    from glomkit.models.runtime import OnnxModel

    patches = np.full((2, 20, 20, 3), 200, np.uint8)
    raw = [0.6, 0.35, 0.05]
    plain = OnnxModel(_constant_classifier(tmp_path / "plain.onnx", raw, {}))
    probs, labels = classify_and_decide(plain, patches)
    assert np.allclose(probs[0], raw, atol=1e-4) and list(labels) == [0, 0]  # argmax: normal
    d = Decision(temperature=2.0, threshold=0.3, positive="sclerosed")
    tuned = OnnxModel(_constant_classifier(tmp_path / "tuned.onnx", raw, d.to_meta()))
    probs, labels = classify_and_decide(tuned, patches)
    assert np.allclose(probs[0], apply_temperature(np.array([raw]), 2.0)[0], atol=1e-4)
    assert list(labels) == [1, 1]  # P(sclerosed)/P(glomerulus) >= 0.3: sclerosed


def _hubmap_tile(folder, stem: str, seed: int = 0, discs=((200, 250, 90),)) -> None:
    """A tiny hubmap_pas-like tile: dark discs (the glomeruli) and their GeoJSON outlines."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal([190, 120, 180], 20, (500, 700, 3)), 0, 255).astype(np.uint8)
    feats = []
    for x, y, r in discs:
        cv2.circle(img, (x, y), r, (150, 60, 140), -1)
        ring = [[x + r * np.cos(a), y + r * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 40)]
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"classification": {"name": "glomerulus"}},
            }
        )
    cv2.imwrite(str(folder / f"{stem}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (folder / f"{stem}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))


def test_hubmap_crops_edge_glomeruli_white_padded_like_the_pipeline(tmp_path):
    """A glomerulus cut by the tile edge becomes a glomerulus crop padded with white, as the
    pipeline's reader pads a patch that leaves the slide (not skipped, not a negative)."""
    from glomkit.classify.coarse_data import _square, hubmap_crops

    img = np.zeros((100, 100, 3), np.uint8)
    assert _square(img, 90, 50, 20) is None
    sq = _square(img, 90, 50, 20, pad=True)
    assert sq is not None and (sq[:, -50:] == 255).all() and (sq[:, :80] == 0).all()
    assert _square(img, 105, 50, 20, pad=True) is None  # centre outside the image

    _hubmap_tile(tmp_path, "train_57", discs=((200, 250, 90), (650, 250, 90)))
    crops = hubmap_crops(tmp_path, np.random.default_rng(0), per_tile_tissue=0, per_tile_false_positives=0)
    by_source = {c[4]: c for c in crops}
    assert sorted(by_source) == ["hubmap_glomerulus", "hubmap_glomerulus_edge"]
    assert all(c[1] == ANY_GLOMERULUS for c in crops)
    edge = by_source["hubmap_glomerulus_edge"][0]
    assert (edge[:, -3:] == 255).all() and not (by_source["hubmap_glomerulus"][0] == 255).all(axis=2).any()


def test_hubmap_crops_never_read_held_out_test_tiles(tmp_path):
    """test* tiles are the pipeline's held-out test set: no crop of them may reach the classifier."""
    from glomkit.classify.coarse_data import hubmap_crops, is_held_out_tile

    _hubmap_tile(tmp_path, "train_57")
    _hubmap_tile(tmp_path, "test_58", seed=1)
    _hubmap_tile(tmp_path, "Test_3", seed=2)
    assert is_held_out_tile(tmp_path / "test_58.jpg") and not is_held_out_tile("train_57.jpg")
    rng = np.random.default_rng(0)
    crops = hubmap_crops(tmp_path, rng, per_tile_glomeruli=1, per_tile_tissue=1, per_tile_false_positives=0)
    names = [c[3] for c in crops]
    assert names and all("train_57" in n for n in names), names
    assert not any("test" in n.lower() for n in names)


def test_hubmap_crops_real_negatives_away_from_outlines(tmp_path):
    from glomkit.classify.coarse_data import hubmap_block, hubmap_crops

    _hubmap_tile(tmp_path, "train_57")
    rng = np.random.default_rng(0)
    crops = hubmap_crops(tmp_path, rng, per_tile_glomeruli=1, per_tile_tissue=3, per_tile_false_positives=1)
    labels = [c[1] for c in crops]
    assert labels.count(ANY_GLOMERULUS) == 1 and labels.count("non_glomerular") >= 3
    assert all(c[2] == hubmap_block("train_57") == "hubmap#b1" for c in crops)
    assert all(c[0].shape == (224, 224, 3) for c in crops)
    for img_c, _label, _g, _n, source in crops:
        if source == "hubmap_tissue":  # no part of the dark disc (the glomerulus) in a negative
            assert (img_c[..., 1] < 90).mean() < 0.01


def test_run_cv_oof_from_an_earlier_run_drops_removed_images(tmp_path):
    """--oof-from: no fold retrained; rows of images gone from the data are dropped, the rest reused."""
    import shutil

    from glomkit import GlomkitError
    from glomkit.classify.train import ClassifierConfig
    from glomkit.models.runtime import read_metadata

    data = _tiny_folder(tmp_path / "data")
    cfg = _tiny_config(data)
    first = tmp_path / "cv"
    s = run_cv(cfg, CVConfig(by="slide", n_folds=3, out_dir=str(first)), progress=False)
    # the same data in another folder, minus one ungraded glomerulus (a "held-out tile" crop)
    fewer = tmp_path / "fewer"
    shutil.copytree(data, fewer)
    lines = (fewer / "labels.csv").read_text().splitlines()
    (fewer / "labels.csv").write_text("\n".join(x for x in lines if not x.startswith("hub1.png")) + "\n")
    (fewer / "hub1.png").unlink()
    final = tmp_path / "final.onnx"
    cfg2 = ClassifierConfig(**{**cfg.__dict__, "data": str(fewer)})
    s2 = run_cv(
        cfg2,
        CVConfig(out_dir=str(tmp_path / "cv2"), final_out=str(final), oof_from=str(first)),
        progress=False,
    )
    assert s2["oof_from"]["dropped_rows"] == 1
    assert s2["oof_from"]["dropped_by_source"] == {"hubmap_glomerulus": 1}
    assert s2["folds"] == s["folds"]  # the graded crops' OOF predictions are those of the first run
    assert (
        s2["real_glomeruli_called_non_glomerular"]["n"] == s["real_glomeruli_called_non_glomerular"]["n"] - 1
    )
    with open(tmp_path / "cv2" / "oof.csv") as f:
        assert not any("hub1.png" in r["image"] for r in csv.DictReader(f))
    meta = read_metadata(final)
    assert meta["cross_validation"]["oof_from"]["dropped_rows"] == 1
    assert meta["temperature"] == pytest.approx(s2["decision"]["temperature"])
    # an image the earlier run never predicted cannot be summarised
    write_png(fewer / "new.png", np.zeros((24, 24, 3), np.uint8))
    with open(fewer / "labels.csv", "a") as f:
        f.write("new.png,nonGS,SAS_0,bueno\n")
    with pytest.raises(GlomkitError, match="no row"):
        run_cv(cfg2, CVConfig(out_dir=str(tmp_path / "cv3"), oof_from=str(first)), progress=False)


def test_run_cv_with_stain_norm_records_it_and_inference_applies_it(tmp_path):
    """--stain-norm: training normalises every patch, the final model's metadata says so, and
    inference (classify_patches) applies the same transform from that metadata."""
    from glomkit.core.stain import stain_normaliser
    from glomkit.infer.classify import classify_patches
    from glomkit.models.runtime import OnnxModel

    data = _tiny_folder(tmp_path / "data", n_slides=3, per_class=1)
    cfg = _tiny_config(data, aug="colour", stain_norm="reinhard")
    final = tmp_path / "final.onnx"
    s = run_cv(cfg, CVConfig(by="site", out_dir=str(tmp_path / "cv"), final_out=str(final)), progress=False)
    assert s["config"]["train"]["stain_norm"] == "reinhard"
    model = OnnxModel(final, threads=1)
    assert model.info.typed.stain_norm == "reinhard"
    patches = np.stack([_tissue_like(k) for k in range(3)])
    # the same network without the field: fed the normalised patches by hand, same output
    meta = {k: v for k, v in model.meta.items() if k != "stain_norm"}
    plain = OnnxModel(final, threads=1)
    plain.info = type(model.info)(meta, path="plain")  # read by classify_patches
    assert plain.info.typed.stain_norm == "none"
    norm = stain_normaliser("reinhard")
    by_meta = classify_patches(model, patches)
    by_hand = classify_patches(plain, np.stack([norm(p) for p in patches]))
    assert np.allclose(by_meta, by_hand, atol=1e-5)
    assert not np.allclose(by_meta, classify_patches(plain, patches), atol=1e-4)


def _tissue_like(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([200, 120 + 20 * seed, 190])
    return np.clip(base + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)


def test_summarise_glomerulus_cut_follows_max_glomeruli_dropped():
    """The non_glomerular cut is the chosen quantile of the real glomeruli's OOF P(glomerulus):
    a lower share moves the cut down and drops fewer held-out glomeruli; by-source rates add up."""
    from glomkit.classify.cv import summarise
    from glomkit.classify.data import LabelledImage

    scheme = get_scheme("coarse_3")
    rng = np.random.default_rng(0)
    items, probs = [], []
    for i in range(400):
        slide = f"S{i % 4}"
        if i % 4 == 3:
            label, source, p_glom = "non_glomerular", "hubmap_tissue", rng.uniform(0.0, 0.3)
        else:
            label = ("GS", "nonGS", ANY_GLOMERULUS)[i % 3]
            source = "hubmap_glomerulus" if label == ANY_GLOMERULUS else "bueno"
            p_glom = rng.uniform(0.2, 1.0)
        gs = rng.uniform(0.6, 0.9) if label == "GS" else rng.uniform(0.1, 0.4)
        label = {"GS": "sclerosed", "nonGS": "normal"}.get(label, label)
        items.append(LabelledImage(image=f"{i}.png", label=label, slide=slide, source=source))
        probs.append([p_glom * (1 - gs), p_glom * gs, 1 - p_glom])
    probs = np.clip(np.asarray(probs), 1e-6, 1)
    folds = [int(it.slide[1]) for it in items]
    names = [f"fold{k}" for k in range(4)]
    loose = summarise(items, folds, names, probs, scheme, "bueno", max_glomeruli_dropped=0.10)
    tight = summarise(items, folds, names, probs, scheme, "bueno", max_glomeruli_dropped=0.01)
    cut = lambda s: s["decision"]["decision"]["glomerulus_min"]  # noqa: E731
    assert cut(tight) < cut(loose)
    dropped = lambda s: s["real_glomeruli_called_non_glomerular"]["called"]  # noqa: E731
    assert dropped(tight) < dropped(loose)
    by = loose["real_glomeruli_called_non_glomerular"]["by_source"]
    assert set(by) == {"bueno", "hubmap_glomerulus"}
    with pytest.raises(GlomkitError):
        summarise(items, folds, names, probs, scheme, "bueno", max_glomeruli_dropped=0.6)


def test_cgmh_crops_keep_test_biopsies_out_and_negatives_off_the_edge(tmp_path):
    """cgmh_he: crops are grouped by biopsy, the fixed test biopsies are never read, and no negative
    square lies within a glomerulus radius of the tile edge (edge glomeruli are often unoutlined)."""
    from glomkit.classify import coarse_data
    from glomkit.detect.data import split_groups

    biopsies = [f"S2016-{b}" for b in range(100, 106)]
    for k, b in enumerate(biopsies):
        _hubmap_tile(tmp_path, f"{b}_1_2", seed=k, discs=((400, 300, 60),))
    test = split_groups(biopsies)[2]
    seen: list[tuple[float, float]] = []
    real_square = coarse_data._square

    def spy(img, cx, cy, half, pad=False):
        if not pad and np.hypot(cx - 400, cy - 300) > 30:  # a tissue square, not the glomerulus
            seen.append((cx, cy, half))
        return real_square(img, cx, cy, half, pad)

    coarse_data._square = spy
    try:
        crops = coarse_data.cgmh_crops(tmp_path, np.random.default_rng(0))
    finally:
        coarse_data._square = real_square
    groups = {c[2] for c in crops}
    assert groups and not any(g.split("#")[1] in test for g in groups)
    assert all(g.startswith("cgmh#S2016-") for g in groups)
    tissue = [c for c in crops if c[4] == "cgmh_tissue"]
    assert tissue and {c[4] for c in crops} >= {"cgmh_glomerulus", "cgmh_tissue"}
    h, w = 500, 700  # _hubmap_tile's size
    assert seen
    for cx, cy, half in seen:
        assert min(cx - half, cy - half, w - cx - half, h - cy - half) >= 60 - 1e-6


def _fake_run(run_dir, data, items, folds, names, probs):
    """An earlier run's oof.csv and cv.json as run_cv writes them (no training)."""
    from glomkit.classify.cv import _write_oof

    run_dir.mkdir()
    _write_oof(run_dir / "oof.csv", items, folds, names, probs, get_scheme("coarse_3"))
    cv = {"by": "slide", "n_folds": len(names), "split_seed": 0}
    meta = {"config": {"train": {"data": str(data)}, "cv": cv}, "per_fold": [{"fold": n} for n in names]}
    (run_dir / "cv.json").write_text(json.dumps(meta))


def test_ensemble_oof_averages_runs_with_the_same_folds_and_refuses_others(tmp_path):
    from glomkit.classify.cv import ensemble_oof, summarise

    data = _tiny_folder(tmp_path / "data")
    items = load_items(data, {"GS": "sclerosed", "nonGS": "normal"})
    scheme = get_scheme("coarse_3")
    folds, names = cv_folds(items, "slide", 3, 0, evaluated(items, "bueno", scheme))
    rng = np.random.default_rng(0)
    a, b = (rng.dirichlet(np.ones(3), len(items)) for _ in range(2))
    _fake_run(tmp_path / "a", data, items, folds, names, a)
    _fake_run(tmp_path / "b", data, items, folds, names, b)
    f, n, mean, prov = ensemble_oof([tmp_path / "a", tmp_path / "b"], items, data, scheme)
    assert f == folds and n == names and prov["folds_identical"]
    assert np.allclose(mean, (a + b) / 2, atol=1e-6)  # oof.csv keeps 6 decimals
    s = summarise(items, f, n, mean, scheme, "bueno")
    assert s["n_evaluated"] == 24 and s["folds"]["auc"] is not None
    moved = [(x + 1) % 3 if i < 2 else x for i, x in enumerate(folds)]  # two images in other folds
    _fake_run(tmp_path / "c", data, items, moved, names, b)
    with pytest.raises(GlomkitError, match="2 images in another fold"):
        ensemble_oof([tmp_path / "a", tmp_path / "c"], items, data, scheme)
