"""`glomkit train classifier`, `glomkit evaluate classifier`, `glomkit classify` on tiny data."""

import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from glomkit._cli.evaluate import evaluate_classifier_cmd as evaluate_cmd
from glomkit._cli.run import classify_cmd
from glomkit._cli.train import train_classifier_cmd as train_cmd
from glomkit.models.runtime import read_metadata


def _tiny(root, n_slides=5):
    rng = np.random.default_rng(0)
    for label, col in (
        ("GS", (230, 140, 160)),
        ("nonGS", (200, 120, 190)),
        ("non_glomerular", (240, 230, 235)),
    ):
        (root / label).mkdir(parents=True, exist_ok=True)
        for s in range(n_slides):
            img = np.clip(np.array(col) + rng.normal(0, 20, (36, 36, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / label / f"s{s}.png"), img[..., ::-1])
    return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    root = _tiny(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("model") / "cls.onnx"
    res = CliRunner().invoke(
        train_cmd,
        ["--data", str(root), "-o", str(out), "--label-map", "GS=sclerosed,nonGS=normal", "--size", "32",
         "--epochs", "1", "--batch", "4", "--backbone", "resnet10t"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return root, out


@pytest.mark.slow
def test_train_writes_model(tiny_model):
    _, out = tiny_model
    meta = read_metadata(out)
    assert meta["backbone"] == "resnet10t" and meta["training"]["seed"] == 0
    assert "--label-map" in meta["training"]["command"]


@pytest.mark.slow
def test_classify_writes_csv(tiny_model, tmp_path):
    root, model = tiny_model
    out = tmp_path / "preds.csv"
    res = CliRunner().invoke(
        classify_cmd,
        [str(root / "GS"), str(root / "nonGS" / "s0.png"), "-o", str(out), "--model", str(model)],
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6
    assert list(rows[0]) == [
        "path",
        "label",
        "prob_normal",
        "prob_sclerosed",
        "prob_non_glomerular",
        "ggs_probability",
    ]
    for r in rows:
        p = [float(r[k]) for k in ("prob_normal", "prob_sclerosed", "prob_non_glomerular")]
        assert abs(sum(p) - 1) < 1e-4 and float(r["ggs_probability"]) == pytest.approx(p[1], abs=1e-5)
        assert r["label"] in ("normal", "sclerosed", "non_glomerular")


@pytest.mark.slow
def test_classify_unreadable_image(tiny_model, tmp_path):
    _, model = tiny_model
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    res = CliRunner().invoke(classify_cmd, [str(bad), "-o", str(tmp_path / "p.csv"), "--model", str(model)])
    assert res.exit_code != 0 and "bad.png" in str(res.exception)
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.slow
def test_evaluate_writes_report(tiny_model, tmp_path):
    root, model = tiny_model
    out = tmp_path / "rep.json"
    args = [
        "--model",
        str(model),
        "--data",
        str(root),
        "--label-map",
        "GS=sclerosed,nonGS=normal",
        "-o",
        str(out),
    ]
    res = CliRunner().invoke(evaluate_cmd, args)
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["n"] == 15 and np.sum(rep["confusion"]) == 15
    assert (tmp_path / "rep_confusion.png").is_file() and (tmp_path / "rep_confusion.csv").is_file()
    res = CliRunner().invoke(evaluate_cmd, ["--model", str(model), "--data", str(root)])
    assert res.exit_code != 0 and "--label-map" in str(res.exception)


def test_predict_and_classify_command_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, glomkit.infer.classify, glomkit._cli.run; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_command_line_records_repeatable_options_and_skips_flags_left_off():
    """The command stored in a model's metadata: no '()' for an unused repeatable option, no
    flag the user did not give, each value of a repeatable option with its own flag."""
    import click
    from click.testing import CliRunner

    from glomkit._cli.tables import command_line as _command_line

    @click.command()
    @click.option("--only-fold", "only_folds", type=int, multiple=True)
    @click.option("--resume", is_flag=True)
    @click.option("--tta/--no-tta", default=True)
    def cmd(only_folds, resume, tta):
        click.echo(_command_line("glomkit x"))

    run = CliRunner().invoke
    assert run(cmd, []).output.strip() == "glomkit x"
    out = run(cmd, ["--only-fold", "1", "--only-fold", "3", "--resume", "--no-tta"]).output.strip()
    assert out == "glomkit x --only-fold 1 --only-fold 3 --resume --no-tta"
