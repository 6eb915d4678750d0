"""Training, export, ONNX inference and the segment/evaluate commands, on a tiny data set made here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from glomkit import GlomkitError
from glomkit.infer.segment import fit_to_size, segment_patches, unfit_from_size
from glomkit.models.export import export_onnx
from glomkit.models.runtime import IMAGENET_MEAN, IMAGENET_STD, OnnxModel, prepare_batch, read_metadata
from glomkit.nets.segmenters import create_segmenter
from glomkit.segment.dataset import augment, load_samples
from glomkit.segment.train import SegTrainConfig, train_segmenter


def make_pair(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    img = np.full((size, size, 3), 235, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    c = (int(rng.integers(20, size - 20)), int(rng.integers(20, size - 20)))
    r = int(rng.integers(10, 18))
    cv2.circle(img, c, r, (150, 60, 140), -1)
    cv2.circle(mask, c, r, 255, -1)
    return img, mask


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """10 synthetic pairs of 56x56 in labels.csv form, 2 per 'slide' (5 slides)."""
    root = tmp_path_factory.mktemp("segdata")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(10):
        img, mask = make_pair(rng, 56)
        cv2.imwrite(str(root / "images" / f"g{i}.png"), img[:, :, ::-1])
        cv2.imwrite(str(root / "masks" / f"g{i}.png"), mask)
        rows.append({"image": f"images/g{i}.png", "mask": f"masks/g{i}.png", "slide": f"s{i // 2}"})
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "mask", "slide"])
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("segmodel") / "seg.onnx"
    cfg = SegTrainConfig(
        data=data_dir,
        out=out,
        arch="deeplabv3",
        encoder="resnet10t",
        size=64,
        epochs=1,
        batch=2,
        show_progress=False,
    )
    return train_segmenter(cfg)


def test_load_samples_both_layouts(data_dir: Path, tmp_path: Path) -> None:
    s = load_samples(data_dir)
    assert len(s) == 10 and s[3].slide == "s1"
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("a", "b"):
        (tmp_path / "images" / f"{name}.png").write_bytes((data_dir / "images" / "g0.png").read_bytes())
        (tmp_path / "masks" / f"{name}.png").write_bytes((data_dir / "masks" / "g0.png").read_bytes())
    s2 = load_samples(tmp_path)
    assert [x.slide for x in s2] == ["a", "b"]
    with pytest.raises(GlomkitError, match="not a segmentation data folder"):
        load_samples(tmp_path / "images")


def test_fit_and_unfit_round_trip() -> None:
    img = np.arange(40 * 30, dtype=np.float32).reshape(40, 30)
    padded = fit_to_size(img, 64, "pad")
    assert padded.shape == (64, 64) and padded.sum() == img.sum()
    assert np.array_equal(unfit_from_size(padded, (40, 30), "pad"), img)
    assert unfit_from_size(fit_to_size(img, 64, "resize"), (40, 30), "resize").shape == (40, 30)


def test_augment_keeps_image_and_mask_aligned() -> None:
    rng = np.random.default_rng(1)
    img = np.zeros((64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    img[5:20, 30:60] = 255
    mask[5:20, 30:60] = 1
    for _ in range(10):
        a, m = augment(img, mask, rng)
        assert a.shape == img.shape and m.shape == mask.shape
        bright = a.mean(axis=2) > 128
        assert (bright == m.astype(bool)).mean() > 0.95


@pytest.mark.slow
def test_train_exports_a_model_with_metadata_and_test_metrics(trained: Path) -> None:
    meta = read_metadata(trained)
    assert meta["task"] == "segmenter" and meta["architecture"] == "deeplabv3"
    assert meta["input_size"] == [64, 64] and meta["threshold"] == 0.5
    assert meta["input"]["mean"] == list(IMAGENET_MEAN)
    tr = meta["training"]
    assert not set(tr["test_slides"]) & set(tr["train_slides"])
    assert not set(tr["val_slides"]) & set(tr["train_slides"])
    assert tr["n_train"] + tr["n_val"] + tr["n_test"] == 10
    t = meta["metrics"]["test"]
    assert t["n_images"] == tr["n_test"] and 0.0 <= t["dice_mean"] <= 1.0
    assert 0.0 <= meta["metrics"]["val_dice"] <= 1.0
    hist = json.loads(trained.with_name("seg.history.json").read_text())
    assert len(hist) == 1 and hist[0]["epoch"] == 1


@pytest.mark.slow
def test_resume_continues_from_the_checkpoint(trained: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "seg.onnx"
    for name in ("seg.ckpt.pt", "seg.history.json"):
        (tmp_path / name).write_bytes(trained.with_name(name).read_bytes())
    cfg = SegTrainConfig(
        data=data_dir,
        out=out,
        encoder="resnet10t",
        size=64,
        epochs=2,
        batch=2,
        resume=True,
        show_progress=False,
    )
    train_segmenter(cfg)
    hist = json.loads((tmp_path / "seg.history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert read_metadata(out)["training"]["epochs_run"] == 2


@pytest.mark.slow
def test_onnx_matches_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    for arch in ("deeplabv3", "unet"):
        model = create_segmenter(arch, "resnet10t").eval()
        with torch.no_grad():  # the file stores fp16 weights: compare against the same rounding
            for v in model.state_dict().values():
                if v.dtype == torch.float32 and v.numel() >= 1024:
                    v.copy_(v.half().float())
        wrapped = torch.nn.Sequential(model, torch.nn.Sigmoid()).eval()
        meta = {"task": "segmenter", "architecture": arch, "input_size": [64, 64], "threshold": 0.5}
        path = export_onnx(wrapped, torch.zeros(1, 3, 64, 64), tmp_path / f"{arch}.onnx", meta, ["prob"])
        rng = np.random.default_rng(0)
        imgs = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
        onnx_model = OnnxModel(path, threads=1, expect_task="segmenter")
        x = prepare_batch(imgs, onnx_model.info)
        got = onnx_model.run(x)["prob"]
        with torch.no_grad():
            want = wrapped(torch.from_numpy(x)).numpy()
        assert got.shape == (2, 1, 64, 64)
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert IMAGENET_STD  # normalisation constants come from the runtime module


@pytest.mark.slow
def test_segment_patches_returns_masks_at_the_patch_size(trained: Path) -> None:
    model = OnnxModel(trained, threads=1)
    patches = np.random.default_rng(0).integers(0, 256, (3, 50, 70, 3), dtype=np.uint8)
    masks = segment_patches(model, patches, batch_size=2)
    assert masks.shape == (3, 50, 70) and masks.dtype == bool
    assert segment_patches(model, patches[:0]).shape == (0, 50, 70)


@pytest.mark.slow
def test_segment_command_writes_masks_at_input_size(trained: Path, data_dir: Path, tmp_path: Path) -> None:
    from glomkit._cli.run import segment_cmd

    src = tmp_path / "in" / "sub"
    src.mkdir(parents=True)
    img = cv2.imread(str(data_dir / "images" / "g0.png"))
    cv2.imwrite(str(src / "wide.png"), cv2.resize(img, (90, 40)))
    cv2.imwrite(str(tmp_path / "in" / "square.jpg"), img)
    out = tmp_path / "out"
    res = CliRunner().invoke(segment_cmd, [str(tmp_path / "in"), "-o", str(out), "--model", str(trained)])
    assert res.exit_code == 0, res.output
    wide = cv2.imread(str(out / "wide.png"), cv2.IMREAD_UNCHANGED)
    sq = cv2.imread(str(out / "square.png"), cv2.IMREAD_UNCHANGED)
    assert wide.shape == (40, 90) and sq.shape == (56, 56)
    assert set(np.unique(wide)) <= {0, 255}


@pytest.mark.slow
def test_segment_command_names_an_unreadable_image(trained: Path, tmp_path: Path) -> None:
    from glomkit._cli.run import segment_cmd

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    res = CliRunner().invoke(segment_cmd, [str(bad), "-o", str(tmp_path / "o"), "--model", str(trained)])
    assert res.exit_code != 0
    assert isinstance(res.exception, GlomkitError) and "broken.png" in str(res.exception)


@pytest.mark.slow
def test_evaluate_command_scores_the_test_slides(trained: Path, data_dir: Path, tmp_path: Path) -> None:
    from glomkit._cli.evaluate import evaluate_segmenter_cmd as evaluate_cmd

    report = tmp_path / "r.json"
    args = ["--model", str(trained), "--data", str(data_dir), "-o", str(report)]
    res = CliRunner().invoke(evaluate_cmd, args)
    assert res.exit_code == 0, res.output
    rep = json.loads(report.read_text())
    meta = read_metadata(trained)
    assert {r["slide"] for r in rep["per_image"]} == set(meta["training"]["test_slides"])
    assert rep["dice_mean"] == pytest.approx(meta["metrics"]["test"]["dice_mean"])


@pytest.mark.slow
def test_init_from_a_model_file_and_extra_training_pairs(
    trained: Path, data_dir: Path, tmp_path: Path
) -> None:
    """--init starts from an exported segmenter's function; --extra-train pairs only ever train."""
    extra = tmp_path / "extra"
    (extra / "images").mkdir(parents=True)
    (extra / "masks").mkdir()
    rng = np.random.default_rng(5)
    for i in range(4):
        img, mask = make_pair(rng, 56)
        cv2.imwrite(str(extra / "images" / f"e{i}.png"), img[:, :, ::-1])
        cv2.imwrite(str(extra / "masks" / f"e{i}.png"), mask)
    cfg = SegTrainConfig(
        data=data_dir,
        out=tmp_path / "ft.onnx",
        arch="deeplabv3",
        encoder="resnet10t",
        size=64,
        epochs=1,
        batch=2,
        lr=1e-9,  # (almost) no update: the exported function must be the initial one
        init=str(trained),
        extra_train=[str(extra)],
        show_progress=False,
    )
    meta = read_metadata(train_segmenter(cfg))
    assert meta["init"]["model"] == "seg.onnx" and meta["init"]["recalibrated_on"] > 0
    tr = meta["training"]
    assert tr["n_train"] == 6 + 4  # 3 training slides x 2, plus the 4 extra pairs
    assert not {"e0", "e1"} & set(tr["val_slides"] + tr["test_slides"])
    x = np.stack([make_pair(np.random.default_rng(9), 64)[0]])
    a = OnnxModel(trained).run_images(x)["prob"]
    b = OnnxModel(tmp_path / "ft.onnx").run_images(x)["prob"]
    assert np.abs(a - b).max() < 0.05
    with pytest.raises(GlomkitError, match="--init model"):
        train_segmenter(
            SegTrainConfig(
                data=data_dir, out=tmp_path / "x.onnx", size=64, encoder="resnet18", init=str(trained)
            )
        )
    # the network is fully convolutional: a model of another input size starts a run too
    cfg.size, cfg.out, cfg.extra_train = 96, tmp_path / "ft96.onnx", []
    meta96 = read_metadata(train_segmenter(cfg))
    assert meta96["input_size"] == [96, 96] and meta96["init"]["input_size"] == [64, 64]


def test_size_must_be_a_multiple_of_32(tmp_path: Path) -> None:
    from glomkit._cli.train import train_segmenter_cmd as train_cmd

    res = CliRunner().invoke(train_cmd, ["--data", str(tmp_path), "--size", "200"])
    assert res.exit_code == 2 and "multiple of 32" in res.output
