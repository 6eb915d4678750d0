"""Training end to end on tiny user data (a circles CSV), export, and the evaluate command."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("timm")


def _disc_images(folder, n=3, size=96, seed=0):
    """Pale images with dark discs; a circles CSV with their exact circles."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        img = np.full((size, size, 3), 235, np.uint8)
        for _ in range(2):
            x, y, r = rng.uniform(20, size - 20), rng.uniform(20, size - 20), rng.uniform(8, 14)
            cv2.circle(img, (int(round(x)), int(round(y))), int(round(r)), (150, 60, 140), -1)
            rows.append((f"im{i}.png", round(x), round(y), round(r)))
        cv2.imwrite(str(folder / f"im{i}.png"), img)
    with (folder / "circles.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "x", "y", "r"])
        w.writerows(rows)
    return folder / "circles.csv"


@pytest.mark.slow
def test_train_two_steps_export_and_evaluate(tmp_path):
    from glomkit._cli.evaluate import evaluate_detector_cmd as evaluate_cmd
    from glomkit._cli.train import train_detector_cmd as train_cmd
    from glomkit.models.runtime import read_metadata

    csv_path = _disc_images(tmp_path)
    model = tmp_path / "det.onnx"
    args = [
        "--data",
        str(csv_path),
        "-o",
        str(model),
        "--backbone",
        "resnet10t",
        "--epochs",
        "1",
        "--batch",
        "2",
        "--fields",
        "4",
        "--field-size",
        "64",
        "--val-fields",
        "2",
        "--mpp",
        "2.0",
        "--threads",
        "1",
    ]
    res = CliRunner().invoke(train_cmd, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    meta = read_metadata(model)
    assert meta["task"] == "detector" and meta["architecture"] == "circlenet"
    assert meta["backbone"] == "resnet10t" and meta["stride"] == 4 and meta["mpp"] == 2.0
    assert len(meta["training"]["history"]) == 1
    assert 0.0 <= meta["metrics"]["validation"]["AP50"] <= 1.0
    # flip TTA is the model's default only when it beats no TTA on validation by a clear margin
    from glomkit.kinds.circlenet import TTA_MIN_GAIN

    m = meta["metrics"]
    assert meta["decode"]["tta"] == (
        m["validation_tta"]["AP50"] > m["validation_no_tta"]["AP50"] + TTA_MIN_GAIN
    )
    assert (tmp_path / "det.onnx.ckpt.pt").is_file()

    # resume: the checkpoint carries the epoch count, a second epoch runs on top
    res = CliRunner().invoke(
        train_cmd,
        [*args[:7], "2", *args[8:], "--resume", str(tmp_path / "det.onnx.ckpt.pt")],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert [h["epoch"] for h in read_metadata(model)["training"]["history"]] == [0, 1]

    # user images are evaluated whole, as ``glomkit run`` reads them
    report = tmp_path / "report.json"
    res = CliRunner().invoke(
        evaluate_cmd,
        ["--model", str(model), "--data", str(csv_path), "--split", "all", "-o", str(report)],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(report.read_text())
    assert rep["data"]["images"] == 3 and rep["data"]["glomeruli"] == 6
    assert rep["detector"]["box"]["n_gt"] == 6 and rep["detector"]["circle"]["n_gt"] == 6
    assert "box AP50" in res.output

    # flip TTA goes through the same evaluation (infer.tta.flip_tta on the ONNX outputs)
    res = CliRunner().invoke(
        evaluate_cmd,
        ["--model", str(model), "--data", str(csv_path), "--split", "all", "--tta", "-o", str(report)],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(report.read_text())
    assert rep["detector"]["tta"] is True and rep["detector"]["box"]["n_gt"] == 6


@pytest.mark.slow
def test_resume_continues_from_the_checkpoint(tmp_path):
    """A one-epoch run resumed with two epochs keeps its first epoch and trains the second."""
    import torch

    from glomkit.kinds.circlenet import DetectorTrainConfig, train_detector
    from glomkit.models.runtime import read_metadata

    cfg = dict(
        data=str(_disc_images(tmp_path)),
        backbone="resnet10t",
        batch=2,
        fields=2,
        field_size=64,
        val_fields=2,
        val_size=64,
        mpp=2.0,
        threads=1,
    )
    train_detector(DetectorTrainConfig(out=str(tmp_path / "a.onnx"), epochs=1, **cfg))
    ck = torch.load(tmp_path / "a.onnx.ckpt.pt", weights_only=True)
    assert ck["best_metric"] == "val_AP50" and ck["best_value"] == ck["history"][0]["val_AP50"]
    fields = {"epoch", "loss", "val_AP50", "val_AP", "val_AP75", "hard_negatives", "elapsed_s"}
    assert set(ck["history"][0]) == fields
    out = train_detector(
        DetectorTrainConfig(
            out=str(tmp_path / "b.onnx"), epochs=2, resume=str(tmp_path / "a.onnx.ckpt.pt"), **cfg
        )
    )
    hist = read_metadata(out)["training"]["history"]
    assert [h["epoch"] for h in hist] == [0, 1] and hist[0] == ck["history"][0]


def test_bad_csv_is_a_one_line_error(tmp_path):
    from glomkit import GlomkitError
    from glomkit.detect.data import read_circles_csv

    p = tmp_path / "c.csv"
    p.write_text("image,x,y\na.png,1,2\n")
    with pytest.raises(GlomkitError, match="lacks column"):
        read_circles_csv(p)
