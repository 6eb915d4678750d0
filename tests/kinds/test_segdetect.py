"""Segmentation as a detector: component decoding, tiny training, ONNX export, the pipeline path."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from glomkit import GlomkitError
from glomkit.detect.fields import Field
from glomkit.kinds.components import decode_components, segmentation_counts, segmentation_metrics


def _discs(size: int, discs: list[tuple[int, int, int]]) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    for x, y, r in discs:
        cv2.circle(m, (x, y), r, 1, -1)
    return m


# -- decoding --------------------------------------------------------------------------------
def test_two_disjoint_discs_give_two_circles():
    m = _discs(96, [(25, 30, 10), (65, 60, 14)])
    prob = m.astype(np.float32) * 0.9
    for circle in ("enclosing", "area"):
        c = decode_components(prob, circle=circle)
        assert c.shape == (2, 4)
        c = c[np.argsort(c[:, 2])]
        # pixel (i, j) covers [j, j+1): the disc drawn around pixel 25 is centred at 25.5
        np.testing.assert_allclose(c[:, :2], [[25.5, 30.5], [65.5, 60.5]], atol=0.3)
        np.testing.assert_allclose(c[:, 2], [10.5, 14.5], atol=0.8)
        np.testing.assert_allclose(c[:, 3], 0.9, atol=1e-6)


def test_empty_and_tiny_components_give_nothing():
    assert decode_components(np.zeros((64, 64), np.float32)).shape == (0, 4)
    assert decode_components(np.full((64, 64), 0.49, np.float32)).shape == (0, 4)
    speck = _discs(64, [(30, 30, 1)]).astype(np.float32)
    assert decode_components(speck, min_diameter_px=5.0).shape == (0, 4)


def test_score_is_the_mean_probability_and_sorts():
    prob = _discs(96, [(25, 30, 10)]) * 0.6 + _discs(96, [(65, 60, 10)]) * 0.95
    c = decode_components(prob.astype(np.float32))
    assert c[0, 3] == pytest.approx(0.95) and c[1, 3] == pytest.approx(0.6)
    assert decode_components(prob.astype(np.float32), score_threshold=0.7).shape == (1, 4)


def test_drop_edges_removes_only_components_on_those_edges():
    m = _discs(96, [(5, 50, 10), (50, 50, 10)]).astype(np.float32)  # the first touches the left edge
    assert len(decode_components(m)) == 2
    kept = decode_components(m, drop_edges=(True, False, False, False))
    assert len(kept) == 1 and kept[0, 0] == pytest.approx(50.5, abs=0.3)
    assert len(decode_components(m, drop_edges=(False, True, True, True))) == 2


def test_watershed_splits_two_touching_discs():
    m = _discs(96, [(33, 48, 14), (59, 48, 14)]).astype(np.float32)  # overlap: one component
    assert len(decode_components(m)) == 1
    c = decode_components(m, split_touching=True)
    assert len(c) == 2
    np.testing.assert_allclose(np.sort(c[:, 0]), [33.5, 59.5], atol=2.5)


def test_segmentation_metrics_perfect_and_inverted():
    m = _discs(64, [(30, 30, 10)])
    perfect = segmentation_metrics(segmentation_counts(m.astype(np.float32), m))
    assert perfect["mIoU"] == 1.0 and perfect["pixel_accuracy"] == 1.0
    wrong = segmentation_metrics(segmentation_counts(1.0 - m, m))
    assert wrong["mIoU"] == 0.0 and wrong["pixel_accuracy"] == 0.0


# -- training and export ---------------------------------------------------------------------
class DiscSource:
    """Pale fields with dark discs and their masks: a tiny stand-in for the composed fields."""

    description = {"kind": "discs"}
    val_description = {"fields": 2}

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.val_fields = [self.sample(np.random.default_rng(100 + i)) for i in range(2)]

    def sample(self, rng: np.random.Generator) -> Field:
        img = np.full((self.size, self.size, 3), 235, np.uint8)
        discs = []
        for _ in range(2):
            x, y = (int(v) for v in rng.integers(12, self.size - 12, 2))
            discs.append((x, y, int(rng.integers(6, 10))))
            cv2.circle(img, discs[-1][:2], discs[-1][2], (150, 60, 140), -1)
        m = _discs(self.size, discs)
        return Field(img, np.array([(x + 0.5, y + 0.5, r + 0.5) for x, y, r in discs], float), m)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    from glomkit.kinds.components import SegDetectorTrainConfig, train_segdetector

    d = tmp_path_factory.mktemp("segdet")
    out = {}
    for arch in ("unet", "segnet"):
        cfg = SegDetectorTrainConfig(
            data="discs",
            out=str(d / f"{arch}.onnx"),
            arch=arch,
            epochs=1,
            batch=2,
            fields=4,
            field_size=64,
            val_fields=2,
            val_size=64,
            mpp=8.0,
            threads=1,
        )
        out[arch] = (train_segdetector(cfg, source=DiscSource()), cfg)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["unet", "segnet"])
def test_tiny_training_writes_a_detector_with_components_decode(tiny_models, arch):
    from glomkit.models.runtime import read_metadata

    path, cfg = tiny_models[arch]
    meta = read_metadata(path)
    assert meta["task"] == "detector" and meta["architecture"] == arch and meta["mpp"] == 8.0
    assert meta["decode"]["method"] == "components" and meta["decode"]["circle"] in ("enclosing", "area")
    assert meta["outputs"] == ["probability"]
    hist = meta["training"]["history"]
    assert len(hist) == 1 and hist[0]["loss"] > 0 and 0.0 <= hist[0]["val_mIoU"] <= 1.0
    val = meta["metrics"]["validation"]
    assert {"AP", "AP50", "mIoU", "pixel_accuracy"} <= set(val)
    assert len(meta["metrics"]["decode_trials"]) == 4
    assert (path.parent / f"{arch}.onnx.ckpt.pt").is_file()


@pytest.mark.slow
def test_resume_continues_from_the_checkpoint(tiny_models, tmp_path):
    from dataclasses import replace

    from glomkit.kinds.components import train_segdetector
    from glomkit.models.runtime import read_metadata

    path, cfg = tiny_models["unet"]
    out = tmp_path / "u2.onnx"
    cfg2 = replace(cfg, out=str(out), epochs=2, resume=str(path.parent / "unet.onnx.ckpt.pt"))
    train_segdetector(cfg2, source=DiscSource())
    assert [h["epoch"] for h in read_metadata(out)["training"]["history"]] == [0, 1]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["unet", "segnet"])
def test_onnx_probability_matches_torch(arch, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("timm")
    from glomkit.kinds.components import SegDetectorTrainConfig, export_segdetector
    from glomkit.models.runtime import OnnxModel
    from glomkit.nets.segmenters import create_segmenter

    torch.manual_seed(0)
    model = create_segmenter(arch, "resnet10t").eval()
    with torch.no_grad():  # fp16 weight storage: compare with the same rounded weights
        for p in model.parameters():
            if p.numel() >= 1024:
                p.copy_(p.half().float())
    cfg = SegDetectorTrainConfig(data="x", out=str(tmp_path / "m.onnx"), arch=arch, mpp=8.0)
    dec = {"threshold": 0.5, "circle": "enclosing", "split_touching": False}
    path = export_segdetector(model, tmp_path / "m.onnx", cfg, dec, {}, [], {})
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (2, 96, 128, 3), dtype=np.uint8)  # not the export example's size
    onnx_model = OnnxModel(path, threads=1)
    got = onnx_model.run_images(imgs)["probability"]
    x = (imgs.astype(np.float32) / 255 - np.float32([0.485, 0.456, 0.406])) / np.float32(
        [0.229, 0.224, 0.225]
    )
    with torch.no_grad():
        want = torch.sigmoid(model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))).numpy()
    assert got.shape == (2, 1, 96, 128)
    np.testing.assert_allclose(got, want, atol=2e-4)


# -- the pipeline path -----------------------------------------------------------------------
def _darkness_detector(path, mpp: float):
    """A hand-made 'segmenter' (dark pixels = glomerulus) exported as a components detector."""
    torch = pytest.importorskip("torch")
    from glomkit.models.export import export_onnx

    class Dark(torch.nn.Module):
        def forward(self, x):
            return torch.sigmoid(-4.0 * x.mean(1, keepdim=True))

    meta = {
        "task": "detector",
        "architecture": "darkness",
        "input_size": [128, 128],
        "mpp": mpp,
        "stride": 1,
        "decode": {
            "method": "components",
            "threshold": 0.5,
            "min_diameter_um": 40.0,
            "circle": "enclosing",
            "score_threshold": 0.5,
        },
    }
    return export_onnx(Dark(), torch.zeros(1, 3, 64, 64), path, meta, output_names=["probability"])


def test_detect_circles_dispatches_on_decode_method_and_keeps_each_disc_once(tmp_path):
    from glomkit.infer.detect import DetectOptions, detect_circles
    from glomkit.models.runtime import OnnxModel
    from glomkit.slide.reader import Slide

    mpp = 8.0
    det = OnnxModel(_darkness_detector(tmp_path / "dark.onnx", mpp), threads=1)
    img = np.full((400, 400, 3), 240, np.uint8)
    # discs across the interior edges of 128 px tiles (stride 80 with 48 px overlap), and inside
    truth = [(128, 60, 15), (60, 128, 14), (205, 210, 16), (300, 100, 12), (350, 350, 15)]
    for x, y, r in truth:
        cv2.circle(img, (x, y), r, (60, 30, 70), -1)
    cv2.imwrite(str(tmp_path / "slide.png"), img[..., ::-1])
    slide = Slide(tmp_path / "slide.png", mpp=mpp)
    opts = DetectOptions(tile_px=128, overlap_um=48 * mpp, read_threads=1, batch_tiles=3)
    found = detect_circles(slide, det, opts, None, 1.0)
    assert len(found) == len(truth)
    for x, y, r in truth:
        d = np.hypot(found[:, 0] - (x + 0.5), found[:, 1] - (y + 0.5))
        k = int(np.argmin(d))
        assert d[k] < 0.8 and abs(found[k, 2] - (r + 0.5)) < 1.0


def test_detect_circles_rejects_an_unknown_decode_method(tmp_path):
    torch = pytest.importorskip("torch")
    from glomkit.infer.detect import DetectOptions, detect_circles
    from glomkit.models.export import export_onnx
    from glomkit.models.runtime import OnnxModel
    from glomkit.slide.reader import Slide

    meta = {"task": "detector", "mpp": 8.0, "input_size": [64, 64], "decode": {"method": "tea-leaves"}}
    path = export_onnx(torch.nn.Identity(), torch.zeros(1, 3, 32, 32), tmp_path / "x.onnx", meta, ["y"])
    cv2.imwrite(str(tmp_path / "s.png"), np.full((64, 64, 3), 200, np.uint8))
    with pytest.raises(GlomkitError, match="tea-leaves"):
        detect_circles(
            Slide(tmp_path / "s.png", mpp=8.0),
            OnnxModel(path, threads=1),
            DetectOptions(tile_px=64),
            None,
            1.0,
        )


@pytest.mark.slow
def test_run_slide_with_a_tiny_trained_segdetector(tiny_models, tmp_path):
    from glomkit.models.registry import WEIGHTS_DIR
    from glomkit.pipeline import PipelineConfig, process_slide
    from glomkit.synth.slide import synthesize_slide

    if not all((WEIGHTS_DIR / f"{t}.onnx").is_file() for t in ("classifier", "segmenter")):
        pytest.skip("bundled classifier/segmenter are not built")
    path = tmp_path / "tiny.tif"
    synthesize_slide(path, 2048, 1536, mpp=2.0, seed=1)
    det, _ = tiny_models["unet"]
    cfg = PipelineConfig(detector=str(det), threads=1, read_threads=1, tile_px=128, quiet=True)
    summary = process_slide(path, tmp_path / "out", cfg)
    d = tmp_path / "out" / "tiny"
    data = json.loads((d / "summary.json").read_text())
    assert data["n_glomeruli"] == summary["n_glomeruli"]
    assert data["models"]["detector"]["architecture"] == "unet"
    assert (d / "tiny_glomeruli.csv").is_file()


# -- bundled names ---------------------------------------------------------------------------
def test_resolve_model_accepts_detector_names(tmp_path, monkeypatch):
    from glomkit.models import registry

    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    (tmp_path / "detector.onnx").write_bytes(b"x")
    (tmp_path / "detector_unet.onnx").write_bytes(b"x")
    assert registry.resolve_model("circlenet", "detector") == tmp_path / "detector.onnx"
    assert registry.resolve_model("unet", "detector") == tmp_path / "detector_unet.onnx"
    with pytest.raises(GlomkitError, match="segnet"):
        registry.resolve_model("segnet", "detector")
    with pytest.raises(GlomkitError, match="not found"):
        registry.resolve_model("unet", "classifier")


# -- composed fields carry their glomerulus mask -----------------------------------------------
@pytest.mark.shared
def test_field_mask_is_the_union_of_the_circled_glomeruli(bueno_root):
    from glomkit.detect.fields import FieldComposer, fixed_fields, split_samples

    comp = FieldComposer(split_samples("val", str(bueno_root)), mpp=8.0, size=128, seed=0, pool=2)
    fields_ = fixed_fields(comp, 6, seed=5)
    assert sum(len(f.circles) for f in fields_) >= 3
    yy, xx = np.mgrid[0:128, 0:128] + 0.5
    for f in fields_:
        assert f.mask.shape == (128, 128) and f.mask.dtype == np.uint8 and set(np.unique(f.mask)) <= {0, 1}
        inside = np.zeros((128, 128), bool)
        for x, y, r in f.circles:
            d = np.hypot(xx - x, yy - y)
            inside |= d <= r + 0.75
            if 0 <= x < 128 and 0 <= y < 128:  # the same transform as the image: the mask is there
                assert f.mask[d <= 0.5 * r].mean() > 0.5
        assert not (f.mask.astype(bool) & ~inside).any()  # nothing outside the circles
        if not len(f.circles):
            assert not f.mask.any()


@pytest.mark.slow
@pytest.mark.shared
def test_evaluate_command_reports_ap_and_miou_for_a_segdetector(tiny_models, bueno_root, tmp_path):
    from click.testing import CliRunner

    from glomkit._cli.evaluate import evaluate_detector_cmd as evaluate_cmd

    model, _ = tiny_models["segnet"]
    out = tmp_path / "report.json"
    args = ["--model", str(model), "--data", str(bueno_root), "--fields", "3", "--size", "64"]
    res = CliRunner().invoke(evaluate_cmd, [*args, "-o", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["decode"]["method"] == "components" and rep["data"]["split"] == "test"
    m = rep["metrics"]
    assert 0.0 <= m["mIoU"] <= 1.0 and 0.0 <= m["pixel_accuracy"] <= 1.0 and m["n_images"] == 3


@pytest.mark.slow
def test_the_checkpoint_keeps_the_best_value_and_resumes_to_it(tiny_models, tmp_path):
    """The checkpoint names its selection (mIoU), keeps per-step losses, and resumes."""
    torch = pytest.importorskip("torch")
    from dataclasses import replace

    from glomkit.kinds.components import train_segdetector
    from glomkit.models.runtime import read_metadata

    path, cfg = tiny_models["unet"]
    ck = torch.load(path.parent / "unet.onnx.ckpt.pt", weights_only=True)
    assert ck["best_metric"] == "val_mIoU" and ck["best_value"] == ck["history"][0]["val_mIoU"]
    assert ck["history"][0]["steps"] == len(ck["history"][0]["losses"]) == 2  # per-step losses kept
    out = tmp_path / "u3.onnx"
    resume = str(path.parent / "unet.onnx.ckpt.pt")
    train_segdetector(replace(cfg, out=str(out), epochs=2, resume=resume), source=DiscSource())
    hist = read_metadata(out)["training"]["history"]
    assert [h["epoch"] for h in hist] == [0, 1] and hist[0]["val_mIoU"] == ck["history"][0]["val_mIoU"]
    assert torch.load(tmp_path / "u3.onnx.ckpt.pt", weights_only=True)["best_metric"] == "val_mIoU"


# -- one evaluation entry point for every detector, chosen by decode.method --------------------
def _darkness_circlenet(path, mpp: float, decode: dict | None = None):
    """A hand-made CircleNet (heatmap = pooled darkness, radius 8 px) exported as a detector."""
    torch = pytest.importorskip("torch")
    from glomkit.models.export import export_onnx

    class DarkCircles(torch.nn.Module):
        def forward(self, x):
            hm = torch.nn.functional.avg_pool2d(torch.sigmoid(-4.0 * x.mean(1, keepdim=True)), 4)
            return hm, torch.full_like(hm, 8.0), torch.zeros_like(hm).repeat(1, 2, 1, 1)

    meta = {"task": "detector", "architecture": "darkness", "input_size": [64, 64], "mpp": mpp, "stride": 4}
    if decode is not None:
        meta["decode"] = decode
    return export_onnx(
        DarkCircles(), torch.zeros(1, 3, 64, 64), path, meta, output_names=["heatmap", "radius", "offset"]
    )


def _disc_csv(folder, n: int = 2, size: int = 128):
    rng = np.random.default_rng(3)
    rows = ["image,x,y,r"]
    for i in range(n):
        img = np.full((size, size, 3), 240, np.uint8)
        for x, y in rng.integers(16, size - 16, (2, 2)):
            cv2.circle(img, (int(x), int(y)), 8, (60, 30, 70), -1)
            rows.append(f"im{i}.png,{x + 0.5},{y + 0.5},8.5")
        cv2.imwrite(str(folder / f"im{i}.png"), img)
    (folder / "circles.csv").write_text("\n".join(rows) + "\n")
    return folder / "circles.csv"


def test_evaluation_picks_its_evaluator_from_the_decode_method(tmp_path, monkeypatch):
    from dataclasses import replace

    from glomkit.detect import evaluate
    from glomkit.kinds import KINDS, kinds

    chosen = []

    def recording(kind):
        def score(model, items, preds):
            chosen.append((kind.name, [k for k, _ in items], preds))
            return {"metrics": {"n": float(len(items))}}

        return replace(
            kind, predict=lambda model, images, tta: [kind.name] * len(images), score=score, needs_masks=False
        )

    for name, kind in kinds().items():  # each kind replaced by a recording one, restored afterwards
        monkeypatch.setitem(KINDS._items, name, recording(kind))
    data = _disc_csv(tmp_path)
    models = {
        "components": _darkness_detector(tmp_path / "seg.onnx", 1.0),
        "circlenet": _darkness_circlenet(tmp_path / "cn.onnx", 1.0, {"method": "circlenet"}),
        "no method": _darkness_circlenet(tmp_path / "old.onnx", 1.0, {"score_threshold": 0.3}),
    }
    for path in models.values():
        rep = evaluate.evaluate_detector_file(path, data, size=64)
        assert rep["metrics"] == {"n": 8.0} and rep["data"]["tiles"] == 8
    assert [c[0] for c in chosen] == ["components", "circlenet", "circlenet"]
    assert chosen[0][1] == chosen[1][1]  # the same tiles, built once for every kind
    assert all(p == [c[0]] * 8 for c in chosen for p in [c[2]])

    bad = _darkness_circlenet(tmp_path / "bad.onnx", 1.0, {"method": "tea-leaves"})
    with pytest.raises(GlomkitError, match="tea-leaves"):
        evaluate.evaluate_detector_file(bad, data, size=64)


def test_evaluation_scores_each_kind_with_its_own_decoder(tmp_path):
    from glomkit.detect.evaluate import evaluate_detector_file

    data = _disc_csv(tmp_path)
    rep = evaluate_detector_file(_darkness_circlenet(tmp_path / "cn.onnx", 1.0), data, size=128)
    m = rep["metrics"]
    assert m["n_images"] == 2 and m["n_gt"] == 4 and m["n_pred"] >= 4 and 0.0 <= m["AP50"] <= 1.0
    assert "decode" not in rep and "mIoU" not in m
    # a components detector needs glomerulus masks: user images have none
    seg = _darkness_detector(tmp_path / "seg.onnx", 1.0)
    with pytest.raises(GlomkitError, match="circles.csv.*bueno_pas"):
        evaluate_detector_file(seg, data, size=128)


@pytest.mark.slow
@pytest.mark.shared
def test_evaluation_of_a_components_detector_on_bueno_fields(bueno_root, tmp_path):
    from glomkit.detect.evaluate import evaluate_detector_file

    seg = _darkness_detector(tmp_path / "seg.onnx", 8.0)
    rep = evaluate_detector_file(seg, bueno_root, n_fields=3, size=64)
    assert rep["decode"]["method"] == "components" and rep["data"]["kind"] == "bueno_fields"
    m = rep["metrics"]
    assert m["n_images"] == 3 and 0.0 <= m["mIoU"] <= 1.0 and 0.0 <= m["pixel_accuracy"] <= 1.0
    cn = evaluate_detector_file(
        _darkness_circlenet(tmp_path / "cn.onnx", 8.0), bueno_root, n_fields=3, size=64
    )
    assert cn["data"] == rep["data"] and cn["metrics"]["n_gt"] == m["n_gt"]  # the same fields
