"""The unlabelled SimSiam pool: held-out files and slides never enter it; each source's draw share
is its weight (tiny synthetic folders)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image


def _disc_tile(path, value: int, circles: list[tuple[int, int, int]], size: int = 120) -> None:
    """A grey tile of one ``value`` with white-ringed discs and their outlines in a GeoJSON beside it."""
    img = np.full((size, size, 3), value, np.uint8)
    feats = []
    for x, y, r in circles:
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        ring = [[float(x + r * np.cos(a)), float(y + r * np.sin(a))] for a in t]
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring + [ring[0]]]},
                "properties": {"classification": {"name": "glomerulus"}},
            }
        )
    Image.fromarray(img).save(path.with_suffix(".png"))
    path.with_suffix(".geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))


def annotated_folder(root, n_train: int = 5):
    """``tile_<i>`` files (value 10 * i) and one ``test_0`` file (value 250), one disc each."""
    root.mkdir(parents=True)
    for i in range(n_train):
        _disc_tile(root / f"tile_{i}", 10 * (i + 1), [(60, 60, 20)])
    _disc_tile(root / "test_0", 250, [(60, 60, 20)])
    return root


def bueno_folder(root, slides=("SAS_1", "SAS_2", "SESCAM_3", "VUHSK_4", "VUHSK_5", "SAS_6")):
    """A bueno_pas-like folder: two crops per slide, each crop a flat colour coded by its slide."""
    (root / "images" / "GS").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for j, s in enumerate(slides):
        for c in range(2):
            name = f"{s}-{c}.png"
            Image.fromarray(np.full((24, 24, 3), 20 * j + 5, np.uint8)).save(root / "images" / "GS" / name)
            Image.fromarray(np.full((24, 24), 255, np.uint8)).save(root / "masks" / name)
            rows.append(
                {"image": f"images/GS/{name}", "mask": f"masks/{name}", "label": "GS", "source_wsi": s}
            )
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "mask", "label", "source_wsi"])
        w.writeheader()
        w.writerows(rows)
    return root, slides


def test_pool_respects_splits_and_weights(tmp_path):
    from glomkit.detect.data import read_user_images, split_annotated
    from glomkit.ssl.pool import PoolSource, bueno_held_out_slides, build_pool

    ann = annotated_folder(tmp_path / "ann")
    bueno, slides = bueno_folder(tmp_path / "bueno")
    plain = tmp_path / "plain"
    plain.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(plain / f"p{i}.png")
    pool = build_pool(
        [PoolSource(str(ann), 1.0, 1.0), PoolSource(str(bueno), 3.0), PoolSource(str(plain), 0.0)], size=16
    )
    train, val, test = split_annotated(read_user_images(ann, 1.0))
    # annotated: one crop per training file; never the validation block nor test_0 (value 250)
    a = pool.images[pool.source == 0]
    assert len(a) == len(train) < 6
    held_values = {int(im.path.stem.split("_")[1]) * 10 + 10 for im in val if im.path.stem.startswith("tile")}
    centre = {int(v) for v in a[:, 8, 8, 0]}
    assert 250 not in centre and not (held_values & centre)
    # bueno: the held-out slides' crops are left out
    held = bueno_held_out_slides(list(slides))
    assert held and len(held) < len(slides)
    kept = {int(v) for v in pool.images[pool.source == 1][:, 8, 8, 0]}
    assert kept == {20 * j + 5 for j, s in enumerate(slides) if s not in held}
    assert pool.description[1]["held_out_slides"] == sorted(held)
    # draw shares follow the weights (plain: weight 0, never drawn), whatever the source sizes
    p = pool.sample_probabilities()
    assert p.sum() == pytest.approx(1.0)
    assert p[pool.source == 0].sum() == pytest.approx(0.25)
    assert p[pool.source == 1].sum() == pytest.approx(0.75)
    assert p[pool.source == 2].sum() == 0


def test_held_out_slides_are_a_fixed_rule():
    from glomkit.ssl.pool import bueno_held_out_slides

    slides = [f"S{i}" for i in range(21)]
    a = bueno_held_out_slides(slides)
    assert a == bueno_held_out_slides(list(reversed(slides))) and len(a) == 7


def test_margin_is_the_pipelines():
    from glomkit.pipeline import PipelineConfig
    from glomkit.ssl.pool import MARGIN_UM

    assert PipelineConfig.margin_um == MARGIN_UM


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--data", "{tmp}/nope"], "nope: no such file or folder"),
        (
            ["--data", "{tmp}/ann", "--data", "{tmp}/ann", "--weight", "1", "--weight", "2", "--weight", "3"],
            "--weight",
        ),
        (["--data", "{tmp}/ann", "--weight", "-1"], "weight -1.0"),
        (["--data", "{tmp}/broken"], "broken"),
        ([], "at least one --data or --images"),
    ],
)
def test_pretrain_bad_sources_are_one_line_errors(tmp_path, args, needle):
    from glomkit._cli.train import pretrain_simsiam_cmd

    annotated_folder(tmp_path / "ann")
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(broken / "t_1.png")
    (broken / "t_1.geojson").write_text("{not json")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args] + [
        "-o",
        str(tmp_path / "e.pt"),
        "--max-steps",
        "1",
    ]
    res = CliRunner().invoke(pretrain_simsiam_cmd, argv)
    assert res.exit_code != 0
    assert needle in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 3


def test_encoder_from_checkpoint_and_bad_checkpoint(tmp_path):
    import torch

    from glomkit import GlomkitError
    from glomkit.nets.simsiam import SimSiam, make_backbone
    from glomkit.ssl.simsiam import encoder_from_checkpoint, load_encoder

    bb, d = make_backbone("test_resnet")
    model = SimSiam(bb, d, proj_dim=16, pred_hidden=8)
    torch.save({"model": model.state_dict(), "history": [{"loss": -0.1}], "updates": 3}, tmp_path / "r.ckpt")
    enc = encoder_from_checkpoint(tmp_path / "r.ckpt", tmp_path / "e.pt", "test_resnet", 32)
    net, meta = load_encoder(enc)
    assert meta["steps_done"] == 3 and meta["epochs_done"] == 1
    assert torch.equal(net.state_dict()["conv1.0.weight"], bb.state_dict()["conv1.0.weight"])
    (tmp_path / "bad.ckpt").write_bytes(b"garbage")
    with pytest.raises(GlomkitError, match="bad.ckpt"):
        encoder_from_checkpoint(tmp_path / "bad.ckpt", tmp_path / "x.pt", "test_resnet", 32)


@pytest.mark.slow
def test_pretrain_command_on_two_sources_writes_encoder_and_onnx(tmp_path):
    from glomkit._cli.train import pretrain_simsiam_cmd
    from glomkit.cluster.encoder import OnnxEncoder
    from glomkit.ssl.simsiam import load_encoder

    ann = annotated_folder(tmp_path / "ann")
    bueno, _ = bueno_folder(tmp_path / "bueno")
    out = tmp_path / "enc.pt"
    args = ["--data", str(ann), "--data", str(bueno), "--weight", "1", "--weight", "3", "--data-mpp", "1.0"]
    args += [
        "--data-mpp",
        "0",
        "-o",
        str(out),
        "--backbone",
        "test_resnet",
        "--size",
        "32",
        "--batch-size",
        "4",
    ]
    res = CliRunner().invoke(
        pretrain_simsiam_cmd, args + ["--epochs", "1", "--max-steps", "2", "--stain-jitter", "0.3"]
    )
    assert res.exit_code == 0, res.output
    _, meta = load_encoder(out)
    assert [s["kind"] for s in meta["pool"]] == ["annotated_images", "bueno_crops"]
    assert meta["source_share"] == [0.25, 0.75] and meta["steps_done"] == 2
    enc = OnnxEncoder(out.with_suffix(".onnx"))
    assert enc.input_size == (32, 32) and enc.meta["pretraining"]["pool"][1]["held_out_slides"]
