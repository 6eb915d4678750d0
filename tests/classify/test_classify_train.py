"""Classifier training on a tiny generated dataset: steps, export, ONNX parity, resume, linear probe."""

import csv

import cv2
import numpy as np
import pytest
import torch

from glomkit import GlomkitError
from glomkit.classify.data import (
    PatchDataset,
    augment,
    group_folds,
    load_items,
    pale_tuft,
    parse_label_map,
    split_by_slide,
)
from glomkit.classify.train import ClassifierConfig, export_classifier, fit_classifier, train_classifier
from glomkit.infer.classify import classify_patches
from glomkit.models.runtime import IMAGENET_MEAN, IMAGENET_STD, OnnxModel, read_metadata
from glomkit.nets.classifier import build_classifier

COLOURS = {"nonGS": (200, 120, 190), "GS": (230, 140, 160), "non_glomerular": (240, 230, 235)}


def make_tiny(root, n_slides=6, per=2, size=40, seed=0):
    """labels.csv folder: one image per (class, slide, k); classes differ in colour and texture."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_slides):
        for label, col in COLOURS.items():
            for k in range(per):
                img = np.clip(np.array(col) + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                if label == "GS":
                    cv2.circle(img, (size // 2, size // 2), size // 3, (170, 60, 140), -1)
                name = f"img/{label}_{s}_{k}.png"
                (root / "img").mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / name), img[..., ::-1])
                rows.append({"image": name, "label": label, "source_wsi": f"slide{s}"})
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "label", "source_wsi"])
        w.writeheader()
        w.writerows(rows)
    return root


def tiny_config(root, out, **kw):
    base = dict(
        data=str(root),
        out=str(out),
        scheme="coarse_3",
        label_map={"GS": "sclerosed", "nonGS": "normal"},
        backbone="resnet10t",
        size=32,
        epochs=1,
        batch=8,
        threads=1,
    )
    base.update(kw)
    return ClassifierConfig(**base)


def test_load_items_and_label_map(tmp_path):
    make_tiny(tmp_path, n_slides=2, per=1)
    items = load_items(tmp_path, parse_label_map("GS=sclerosed, nonGS=normal"))
    assert sorted({it.label for it in items}) == ["non_glomerular", "normal", "sclerosed"]
    assert {it.slide for it in items} == {"slide0", "slide1"}
    assert all(it.image.is_file() for it in items)
    with pytest.raises(GlomkitError, match="OLD=NEW"):
        parse_label_map("GS")


def test_class_folder_form(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        cv2.imwrite(str(tmp_path / c / "x.png"), np.zeros((8, 8, 3), np.uint8))
    items = load_items(tmp_path)
    assert [it.label for it in items] == ["a", "b"]


def test_split_by_slide_is_grouped(tmp_path):
    make_tiny(tmp_path, n_slides=10, per=1)
    items = load_items(tmp_path)
    tr, va, te = split_by_slide(items, test_fold=0)
    slides = [{items[i].slide for i in idx} for idx in (tr, va, te)]
    assert not (slides[0] & slides[1]) and not (slides[0] & slides[2]) and not (slides[1] & slides[2])
    assert sorted(tr + va + te) == list(range(len(items)))


def test_group_folds_spreads_every_class(bueno_root):
    from collections import Counter

    from glomkit.data.bueno import load_bueno

    s = load_bueno(bueno_root)
    folds = group_folds([x.slide for x in s], [x.label for x in s], 5, 0)
    per_slide = {}
    for x, f in zip(s, folds, strict=True):
        assert per_slide.setdefault(x.slide, f) == f  # one fold per slide
    for label in ("GS", "nonGS"):
        c = Counter(f for x, f in zip(s, folds, strict=True) if x.label == label)
        assert len(c) == 5 and min(c.values()) > 0


def test_augment_shapes_and_determinism():
    img = np.random.default_rng(0).integers(0, 255, (50, 60, 3), dtype=np.uint8)
    a = augment(img, (32, 32), np.random.default_rng(1))
    b = augment(img, (32, 32), np.random.default_rng(1))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)


def test_colour_augmentation_varies_colour_more_and_sometimes_greys():
    img = np.random.default_rng(0).integers(60, 230, (50, 60, 3), dtype=np.uint8)
    rng_s, rng_c = np.random.default_rng(1), np.random.default_rng(1)
    strong = [augment(img, (32, 32), rng_s, strength="strong").mean((0, 1)) for _ in range(200)]
    colour = [augment(img, (32, 32), rng_c, strength="colour") for _ in range(200)]
    assert all(c.shape == (32, 32, 3) and c.dtype == np.uint8 for c in colour)
    grey = [
        c for c in colour if np.array_equal(c[..., 0], c[..., 1]) and np.array_equal(c[..., 1], c[..., 2])
    ]
    assert 5 <= len(grey) <= 40  # about 10 %
    spread = np.std([c.mean((0, 1)) for c in colour], axis=0)
    assert (spread > np.std(strong, axis=0)).all()


def test_pale_tuft_makes_a_dark_centre_paler_and_greyer_than_its_surroundings():
    """strong_pale (issue 24): a dense dark tuft made pale; the change is local, so it survives
    the per-image Reinhard normalisation that training applies after augmentation."""
    import cv2

    from glomkit.core.stain import reinhard

    img = np.full((48, 48, 3), (225, 190, 215), np.uint8)  # pale pink surroundings
    cv2.circle(img, (24, 24), 14, (120, 30, 110), -1)  # a dense dark magenta tuft
    img = np.clip(img + np.random.default_rng(0).normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    out = pale_tuft(img, np.random.default_rng(3))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out, pale_tuft(img, np.random.default_rng(3)))  # seeded: reproducible

    def centre(x: np.ndarray, channel: int, space: int) -> float:
        return float(cv2.cvtColor(x, space)[18:30, 18:30, channel].astype(float).mean())

    assert centre(out, 0, cv2.COLOR_RGB2LAB) > centre(img, 0, cv2.COLOR_RGB2LAB) + 15  # lighter
    assert centre(out, 1, cv2.COLOR_RGB2HSV) < 0.8 * centre(img, 1, cv2.COLOR_RGB2HSV)  # less saturated
    lift = centre(reinhard(out), 0, cv2.COLOR_RGB2LAB) - centre(reinhard(img), 0, cv2.COLOR_RGB2LAB)
    assert lift > 5  # still paler after stain normalisation
    rng_s, rng_p = np.random.default_rng(1), np.random.default_rng(1)
    strong = [augment(img, (32, 32), rng_s, strength="strong") for _ in range(40)]
    pale = [augment(img, (32, 32), rng_p, strength="strong_pale") for _ in range(40)]
    assert all(p.shape == (32, 32, 3) and p.dtype == np.uint8 for p in pale)
    assert np.mean(pale) > np.mean(strong) + 3  # about half the images paler


def test_cli_aug_choices_are_the_augmentations():
    from glomkit._cli.options import aug_option
    from glomkit.classify.data import AUGMENTATIONS

    opt = aug_option()(lambda aug: aug).__click_params__[0]
    assert list(opt.type.choices) == list(AUGMENTATIONS)


@pytest.mark.slow
def test_train_export_and_onnx_matches_torch(tmp_path):
    root = make_tiny(tmp_path / "data")
    cfg = tiny_config(root, tmp_path / "m.onnx")
    path = train_classifier(cfg, progress=False)
    meta = read_metadata(path)
    assert meta["task"] == "classifier" and meta["input_size"] == [32, 32]
    assert [c["name"] for c in meta["classes"]["classes"]] == ["normal", "sclerosed", "non_glomerular"]
    sp = meta["training"]["splits"]
    assert not set(sp["test_slides"]) & set(sp["val_slides"])
    assert meta["metrics"]["validation"]["n"] == sp["n"]["val"]
    # ONNX probabilities equal torch softmax on the same normalised input
    net = build_classifier("resnet10t", 3)
    net.eval()
    export_classifier(net, tmp_path / "p.onnx", cfg, {})
    model = OnnxModel(tmp_path / "p.onnx", threads=1)
    items = load_items(root, cfg.label_map)
    ds = PatchDataset(
        items[:6], ["normal", "sclerosed", "non_glomerular"], 32, False, IMAGENET_MEAN, IMAGENET_STD
    )
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        ref = torch.softmax(net(x), 1).numpy()
    got = model.run(x.numpy())["probs"]
    assert got.shape == (6, 3)
    np.testing.assert_allclose(got, ref, atol=2e-2)  # fp16 weight storage
    patches = np.stack([cv2.imread(str(it.image))[..., ::-1] for it in items[:6]])
    p2 = classify_patches(model, patches, batch_size=4)
    np.testing.assert_allclose(p2, got, atol=1e-4)  # 40 px files, area-resized to 32 like the dataset
    np.testing.assert_allclose(p2.sum(1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_resume_continues_from_checkpoint(tmp_path):
    root = make_tiny(tmp_path / "data", n_slides=5, per=1)
    out = tmp_path / "m.onnx"
    train_classifier(tiny_config(root, out, epochs=2, max_minutes=0.0), progress=False)  # stops after 1 epoch
    assert read_metadata(out)["training"]["epochs_run"] == 1
    train_classifier(tiny_config(root, out, epochs=2, resume=True), progress=False)
    assert read_metadata(out)["training"]["epochs_run"] == 2


def test_linear_probe_freezes_backbone(tmp_path):
    root = make_tiny(tmp_path / "data", n_slides=4, per=1)
    enc = build_classifier("resnet10t", 3).backbone
    torch.save(
        {"backbone": "resnet10t", "state_dict": enc.state_dict(), "meta": {"epochs": 0}}, tmp_path / "enc.pt"
    )
    items = load_items(root, {"GS": "sclerosed", "nonGS": "normal"})
    cfg = tiny_config(root, tmp_path / "m.onnx", init=str(tmp_path / "enc.pt"), linear_probe=True, lr=0.5)
    net, hist = fit_classifier(items[:8], items[8:], cfg, progress=False)
    after = net.backbone.state_dict()
    for k, v in enc.state_dict().items():
        assert torch.equal(v, after[k]), k
    assert len(hist) == 1 and "seconds" in hist[0] and "balanced_accuracy" in hist[0]["val"]


def test_linear_probe_needs_encoder(tmp_path):
    root = make_tiny(tmp_path / "data", n_slides=2, per=1)
    items = load_items(root, {"GS": "sclerosed", "nonGS": "normal"})
    with pytest.raises(GlomkitError, match="--init"):
        fit_classifier(
            items, items, tiny_config(root, tmp_path / "m.onnx", linear_probe=True), progress=False
        )
