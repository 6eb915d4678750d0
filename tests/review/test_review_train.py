"""Training on reviewed slides: patches from reviews, ``--init bundled`` (weights recovered from ONNX),
and the detector reading a review file beside its slide."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _review_data import DETECTIONS, MISSED, make_output

torch = pytest.importorskip("torch", reason="needs the 'train' extra")

from click.testing import CliRunner  # noqa: E402

from glomkit import GlomkitError  # noqa: E402
from glomkit.core.schemes import COARSE, FIVE_CLASS  # noqa: E402
from glomkit.review.session import ReviewSession  # noqa: E402


def review(out: Path) -> None:
    """Accept 1 and 2, relabel 4 and 5 to subtypes, reject 6, leave 3 unreviewed, add the missed one."""
    s = ReviewSession(out, reviewer="lab")
    s.apply({"op": "accept", "id": 1})
    s.apply({"op": "accept", "id": 2})
    s.apply({"op": "relabel", "id": 4, "label": "obsolescent"})
    s.apply({"op": "relabel", "id": 5, "label": "solidified"})
    s.apply({"op": "reject", "id": 6})
    x, y, r = MISSED
    s.apply({"op": "add", "x": x, "y": y, "radius": r, "label": "disappearing"})


@pytest.mark.slow
def test_bundled_classifier_weights_are_recovered_exactly() -> None:
    from glomkit.classify.warm_start import init_from_model
    from glomkit.models.recover import _float_session, recalibrate_batchnorm
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import OnnxModel
    from glomkit.nets.classifier import build_classifier

    net = build_classifier("resnet10t", len(COARSE))
    meta = init_from_model(net, "bundled", COARSE, 128)
    assert meta["head_rows_from"] == {n: n for n in COARSE.names}
    x = torch.randn(4, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    onnx = OnnxModel(resolve_model(None, "classifier"), expect_task="classifier")
    int8 = onnx.session.run(None, {onnx.session.get_inputs()[0].name: x.numpy()})[0]
    # the bundled file is INT8 (issue 15): exact against it with float activations (what the
    # recovered weights compute), close to it with its uint8 activations (0.043 measured for the
    # session-5 file, 0.204 for the session-6 one on these synthetic inputs; on real crops the
    # session-6 INT8 file agrees with its fp32 file on 667/667 classes: benchmarks/int8_agreement.py)
    ref = _float_session(resolve_model(None, "classifier")).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        got = torch.softmax(net.eval()(x), 1).numpy()
    assert np.abs(got - ref).max() < 1e-4
    assert np.abs(got - int8).max() < 0.3
    # recalibration keeps the eval function and makes train mode (batch statistics) agree with it
    modules = dict(net.backbone.named_modules())
    bns = [modules[n] for n in meta["recovered_batchnorms"]]
    with torch.no_grad():
        train_before = torch.softmax(net.train()(x), 1).numpy()
    assert recalibrate_batchnorm(net, bns, [x]) == 4
    with torch.no_grad():
        after = torch.softmax(net.eval()(x), 1).numpy()
        train_after = torch.softmax(net.train()(x), 1).numpy()
    assert np.abs(after - got).max() < 1e-4
    assert np.abs(train_after - got).max() < np.abs(train_before - got).max()
    # the batch is the calibration set; what is left (running var is unbiased, batch var is not:
    # a factor 4/3 for 4 images) depends on the bundled weights: 2.8e-3 for the issue-13 model,
    # 0.039 for the session-6 one (retrained without the hubmap test tiles), 0.068 for the session-10
    # one (with cgmh H&E crops)
    assert np.abs(train_after - got).max() < 0.09

    five = build_classifier("resnet10t", len(FIVE_CLASS))
    rows = init_from_model(five, "bundled", FIVE_CLASS, 128)["head_rows_from"]
    assert rows["solidified"] == "sclerosed" and rows["non_glomerular"] == "non_glomerular"
    i, j = FIVE_CLASS.index("obsolescent"), COARSE.index("sclerosed")
    assert torch.equal(five.head.weight[i], net.head.weight[j])
    with pytest.raises(GlomkitError, match="--backbone resnet10t"):
        init_from_model(build_classifier("resnet18", 3), "bundled", COARSE, 128)


def test_bundled_detector_weights_are_recovered() -> None:
    from glomkit.models.recover import load_onnx_weights
    from glomkit.models.registry import resolve_model
    from glomkit.nets.circlenet import build_circlenet

    net = build_circlenet({"backbone": "resnet10t"})
    # load_onnx_weights itself compares heatmap, radius and offset with ONNX Runtime
    fused = load_onnx_weights(
        net, resolve_model(None, "detector"), torch.randn(1, 3, 96, 96), lambda n, x: list(n(x))
    )
    assert len(fused) == 15  # 14 backbone convolutions + the neck's smoothing conv had a BatchNorm
    with pytest.raises(GlomkitError, match="layers in the model file"):
        load_onnx_weights(
            build_circlenet({"backbone": "resnet18"}),
            resolve_model(None, "detector"),
            torch.randn(1, 3, 64, 64),
            lambda n, x: list(n(x)),
        )


@pytest.mark.slow
def test_reviewed_patches_take_only_decided_glomeruli(tmp_path: Path) -> None:
    from glomkit.data.reviewed import find_reviewed, write_reviewed_patches

    for stem in ("a", "b"):
        review(make_output(tmp_path / "data", stem))
    # layout 2: a review copied beside its slide
    beside = tmp_path / "data" / "c.png"
    review(make_output(tmp_path / "other", "c"))
    shutil.copy(tmp_path / "other" / "c.png", beside)
    shutil.copy(
        tmp_path / "other" / "out" / "c" / "review" / "c_reviewed.geojson",
        tmp_path / "data" / "c_reviewed.geojson",
    )
    found = find_reviewed(tmp_path / "data")
    assert [r.stem for r in found] == ["a", "b", "c"] and found[2].mpp == 0.5
    dest, counts = write_reviewed_patches(tmp_path / "data", tmp_path / "patches")
    assert counts == {"normal": 6, "obsolescent": 3, "solidified": 3, "non_glomerular": 3, "disappearing": 3}
    rows = list(csv.DictReader((dest / "labels.csv").open()))
    assert {r["image"] for r in rows} >= {"normal/a_1.png", "disappearing/c_7.png", "non_glomerular/b_6.png"}
    assert not any(r["image"].endswith("_3.png") for r in rows)  # unreviewed: the model's guess only
    import cv2

    patch = cv2.imread(str(dest / "normal/a_1.png"))
    assert patch.shape == (256, 256, 3)
    centre, corner = patch[118:138, 118:138].mean(), patch[:12, :12].mean()
    assert centre < corner - 30  # the dark disc of glomerulus 1 is in the middle of its patch
    with pytest.raises(GlomkitError, match="no reviewed slides"):
        write_reviewed_patches(tmp_path / "patches", tmp_path / "x")
    # a class name from an annotation file becomes a folder name: it must be a plain one
    edited = tmp_path / "data" / "c_reviewed.geojson"
    data = json.loads(edited.read_text())
    data["features"][0]["properties"]["classification"]["name"] = "../../../outside"
    edited.write_text(json.dumps(data))
    with pytest.raises(GlomkitError, match="not a safe name"):
        write_reviewed_patches(tmp_path / "data", tmp_path / "patches2")
    assert not list(tmp_path.rglob("outside*"))


@pytest.mark.slow
def test_train_five_class_classifier_from_bundled_on_reviewed_slides(tmp_path: Path) -> None:
    from glomkit.cli import cli
    from glomkit.models.runtime import read_metadata

    for stem in ("s1", "s2", "s3"):
        review(make_output(tmp_path / "data", stem))
    model = tmp_path / "lab.onnx"
    args = [
        "train", "classifier", "--data", str(tmp_path / "data"), "-o", str(model), "--scheme", "glo_in_one_5",
        "--init", "bundled", "--epochs", "1", "--batch", "4", "--size", "64", "--threads", "1",
    ]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "reviewed glomeruli cut into" in res.output
    meta = read_metadata(model)
    assert meta["classes"]["name"] == "glo_in_one_5"
    assert meta["training"]["config"]["init"] == "bundled"
    assert meta["training"]["splits"]["n"] == {"train": 6, "val": 6, "test": 6}
    assert (tmp_path / "lab_patches" / "labels.csv").is_file()


def test_detector_data_reads_a_review_beside_its_slide(tmp_path: Path) -> None:
    from glomkit.detect.data import find_annotated_images

    out = make_output(tmp_path, "s")
    review(out)
    s = ReviewSession(out)
    s.apply({"op": "delete", "id": 2})
    folder = tmp_path / "det"
    folder.mkdir()
    shutil.copy(tmp_path / "s.png", folder / "s.png")
    shutil.copy(out / "review" / "s_reviewed.geojson", folder / "s_reviewed.geojson")
    (folder / "s.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))  # ignored
    (im,) = find_annotated_images(folder, mpp=0.5)
    got = sorted(map(tuple, np.round(im.circles).astype(int).tolist()))
    # 1, 3 (unreviewed but a glomerulus), 4, 5 and the added one; 2 deleted, 6 rejected
    want = sorted([(x, y, r) for i, x, y, r, _, _ in DETECTIONS if i in (1, 3, 4, 5)] + [MISSED])
    assert got == want
    # the output root itself: the slide comes from summary.json, its scale from the summary
    (im2,) = find_annotated_images(tmp_path / "out")
    assert im2.path == tmp_path / "s.png" and im2.mpp == 0.5
    assert sorted(map(tuple, np.round(im2.circles).astype(int).tolist())) == want
    with pytest.raises(GlomkitError, match="no reviewed output folder"):
        find_annotated_images(tmp_path / "out" / "s" / "patches")


@pytest.mark.slow
def test_train_detector_from_bundled_on_reviewed_slides(tmp_path: Path) -> None:
    """One tiny epoch of ``glomkit train detector --init bundled`` on two slides with reviews beside them."""
    from glomkit.cli import cli
    from glomkit.models.runtime import read_metadata

    data = tmp_path / "det"
    data.mkdir()
    for stem in ("a", "b"):
        out = make_output(tmp_path / "work", stem)
        review(out)
        shutil.copy(tmp_path / "work" / f"{stem}.png", data / f"{stem}.png")
        shutil.copy(out / "review" / f"{stem}_reviewed.geojson", data / f"{stem}_reviewed.geojson")
    model = tmp_path / "d.onnx"
    args = [
        "train", "detector", "--data", str(data), "-o", str(model), "--init", "bundled", "--epochs", "1",
        "--fields", "4", "--batch", "2", "--field-size", "64", "--val-fields", "2", "--val-size", "64",
        "--data-mpp", "0.5", "--threads", "1",
    ]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    meta = read_metadata(model)
    from glomkit.models.registry import resolve_model

    bundled = read_metadata(resolve_model(None, "detector"))
    assert (meta["backbone"], meta["mpp"]) == (bundled["backbone"], bundled["mpp"])  # the bundled model's
    assert meta["training"]["init"] == "bundled"
    assert meta["training"]["data"]["kind"] == "annotated_images"
