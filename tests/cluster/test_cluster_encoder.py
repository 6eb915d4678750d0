"""``glomkit cluster --encoder FILE.onnx`` end to end with a tiny exported encoder (timm
``test_resnet``), the choice by internal scores, maps and galleries, and one-line errors."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A random-init timm test_resnet saved as a SimSiam encoder file and exported to ONNX."""
    import timm

    from glomkit.ssl.simsiam import export_encoder_onnx

    d = tmp_path_factory.mktemp("enc")
    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    meta = {"size": 32, "epochs_done": 1, "steps_done": 2, "n_images": 10, "pool": [{"path": "x", "n": 10}]}
    torch.save({"backbone": "test_resnet", "state_dict": net.state_dict(), "meta": meta}, d / "enc.pt")
    return export_encoder_onnx(d / "enc.pt", d / "enc.onnx")


def _two_kinds(root, n: int = 8):
    rng = np.random.default_rng(0)
    (root / "imgs").mkdir(parents=True)
    rows = []
    for i in range(2 * n):
        kind = "pale" if i % 2 else "dark"
        base = (220, 180, 200) if kind == "pale" else (60, 30, 90)
        img = np.clip(np.array(base) + rng.normal(0, 12, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "imgs" / f"img{i:02d}.png")
        rows.append({"image": f"imgs/img{i:02d}.png", "label": kind, "source_wsi": f"S{i % 6}"})
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "label", "source_wsi"])
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.mark.slow
def test_cluster_with_onnx_encoder_writes_choice_maps_and_galleries(tmp_path, tiny_encoder):
    from glomkit._cli.cluster import cluster_cmd

    data = _two_kinds(tmp_path / "d")
    out = tmp_path / "out"
    args = ["--images", str(data / "imgs"), "-o", str(out), "--labels", str(data / "labels.csv")]
    args += [
        "--features",
        "pixels",
        "--encoder",
        str(tiny_encoder),
        "--reductions",
        "pca",
        "--k-range",
        "2:3",
    ]
    res = CliRunner().invoke(cluster_cmd, args + ["--size", "16"])
    assert res.exit_code == 0, res.output
    assert "chosen without labels: simsiam / pca" in res.output
    with (out / "choice.csv").open() as f:
        choice = {r["feature"]: r for r in csv.DictReader(f)}
    assert set(choice) == {"pixels", "simsiam"} and "ONNX Runtime" in (out / "summary.md").read_text()
    assert float(choice["pixels"]["ari"]) > 0.5  # two obvious kinds
    # each slide here holds one kind (S{i % 6}, kind by i % 2): nothing to score within a slide
    assert float(choice["pixels"]["ari_slide"]) > 0.2 and np.isnan(
        float(choice["pixels"]["ari_within_slide"])
    )
    assert "ARI within slides" in (out / "summary.md").read_text()
    for name in ("map.png", "map_simsiam.png", "map_pixels.png", "grid_cluster0.png", "crosstab.csv"):
        assert (out / name).stat().st_size > 0, name
    k = int(choice["simsiam"]["k"])
    assert sorted(p.name for p in (out / "gallery").glob("simsiam_*.png")) == [
        f"simsiam_cluster{c}.png" for c in range(k)
    ]
    with Image.open(out / "gallery" / "simsiam_cluster0.png") as im:
        assert im.size[0] == 6 * 64
    with (out / "crosstab.csv").open() as f:
        cross = [r for r in csv.DictReader(f) if r["feature"] == "pixels"]
    assert sum(int(r["n"]) for r in cross) == 16 and {"dark", "pale"} <= set(cross[0])


def test_held_out_subset_and_source_labels(tmp_path, tiny_encoder):
    from glomkit._cli.cluster import cluster_cmd
    from glomkit.ssl.pool import bueno_held_out_slides

    data = _two_kinds(tmp_path / "d")
    out = tmp_path / "out"
    args = ["--images", str(data / "imgs"), "-o", str(out), "--labels", str(data / "labels.csv")]
    args += [
        "--features",
        "simsiam",
        "--encoder",
        str(tiny_encoder),
        "--reductions",
        "pca",
        "--k-range",
        "2:2",
    ]
    res = CliRunner().invoke(cluster_cmd, args + ["--size", "16", "--subset", "held-out", "--stain", "gray"])
    assert res.exit_code == 0, res.output
    held = bueno_held_out_slides([f"S{i}" for i in range(6)])
    with (out / "clusters.csv").open() as f:
        n = sum(1 for _ in csv.DictReader(f))
    assert n == sum(1 for i in range(16) if f"S{i % 6}" in held)


def test_encoder_runs_without_torch(tiny_encoder):
    code = (
        "import sys, numpy as np\n"
        "from glomkit.cluster.encoder import OnnxEncoder\n"
        f"e = OnnxEncoder({str(tiny_encoder)!r})\n"
        "f = e.features(np.zeros((3, 20, 20, 3), np.uint8))\n"
        "assert f.shape == (3, 96), f.shape\n"
        "assert e.input_size == (32, 32)\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_onnx_features_match_torch(tiny_encoder):
    from glomkit.cluster.encoder import OnnxEncoder
    from glomkit.ssl.simsiam import embed, load_encoder

    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    net, _ = load_encoder(tiny_encoder.with_suffix(".pt"))
    ref = embed(net, imgs)
    got = OnnxEncoder(tiny_encoder).features(imgs)
    assert np.allclose(ref, got, atol=2e-2 * (np.abs(ref).max() + 1e-6))  # fp16 weight storage


@pytest.mark.parametrize("kind", ["missing", "garbage", "not_encoder"])
def test_bad_encoder_is_a_one_line_error(tmp_path, kind):
    from glomkit._cli.cluster import cluster_cmd

    data = _two_kinds(tmp_path / "d", n=3)
    enc = tmp_path / "bad.onnx"
    if kind == "garbage":
        enc.write_bytes(b"not an onnx file")
    elif kind == "not_encoder":
        import shutil

        from glomkit.models.registry import bundled_path

        shutil.copy(bundled_path("classifier"), enc)
    res = CliRunner().invoke(
        cluster_cmd,
        [
            "--images",
            str(data / "imgs"),
            "-o",
            str(tmp_path / "o"),
            "--features",
            "simsiam",
            "--encoder",
            str(enc),
        ],
    )
    assert res.exit_code == 1 and str(enc) in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 3


def test_bad_data_and_subset_are_one_line_errors(tmp_path):
    from glomkit._cli.cluster import cluster_cmd

    data = _two_kinds(tmp_path / "d", n=3)
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(broken / "t_1.png")
    (broken / "t_1.geojson").write_text("{not json")
    run = CliRunner().invoke
    res = run(cluster_cmd, ["--data", str(broken), "-o", str(tmp_path / "o"), "--features", "pixels"])
    assert res.exit_code == 1 and "t_1.geojson" in res.output and "Traceback" not in res.output
    (tmp_path / "nowsi.csv").write_text("image,label\nimgs/img00.png,dark\n")
    res = run(
        cluster_cmd,
        ["--images", str(data / "imgs"), "-o", str(tmp_path / "o"), "--labels", str(tmp_path / "nowsi.csv")]
        + ["--subset", "held-out", "--features", "pixels"],
    )
    assert res.exit_code == 1 and "needs a source_wsi column" in res.output


def test_choice_uses_internal_scores_only():
    from glomkit.cluster.study import choose_by_internal_scores

    rows = [
        {"k": 2, "silhouette": 0.3, "davies_bouldin": 1.2, "calinski_harabasz": 50.0, "ari": 0.9},
        {"k": 3, "silhouette": 0.5, "davies_bouldin": 0.8, "calinski_harabasz": 90.0, "ari": 0.1},
        {"k": 4, "silhouette": 0.4, "davies_bouldin": 1.0, "calinski_harabasz": 70.0, "ari": 0.5},
    ]
    assert choose_by_internal_scores(rows) == 1
    # the labels' agreement plays no part
    for r in rows:
        r["ari"] = -r["ari"]
    assert choose_by_internal_scores(rows) == 1


def test_slide_scores_tell_a_site_split_from_a_label_split():
    """Labels that cluster by slide: a partition that only finds the slide matches the labels well
    overall, and not at all within a slide."""
    from sklearn.metrics import adjusted_rand_score

    from glomkit.cluster.study import slide_scores

    slides = ["A"] * 10 + ["B"] * 10 + [None] * 2
    y = np.array([1] * 8 + [0] * 2 + [0] * 9 + [1] + [0, 1])  # slide A mostly 1, B mostly 0
    by_slide = np.array([1] * 10 + [0] * 10 + [0, 1])
    s = slide_scores(y, by_slide, slides)
    assert adjusted_rand_score(y[:20], by_slide[:20]) > 0.3
    assert s["ari_slide"] == pytest.approx(1.0) and s["ari_within_slide"] == pytest.approx(0.0)
    s = slide_scores(y, y.copy(), slides)
    assert s["ari_within_slide"] == pytest.approx(1.0) and s["ari_slide"] < 0.5
    y[:20] = np.where(np.arange(20) < 10, 1, 0)  # one class per slide: nothing to score within
    assert np.isnan(slide_scores(y, by_slide, slides)["ari_within_slide"])
