"""Clustering study on ~20 tiny images of two obvious kinds."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

torch.set_num_threads(1)


def _two_kinds(root, n: int = 10):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    rows = []
    for i in range(2 * n):
        kind = "pale" if i % 2 else "dark"
        base = (220, 180, 200) if kind == "pale" else (60, 30, 90)
        img = np.clip(np.array(base) + rng.normal(0, 12, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"img{i:02d}.png")
        rows.append({"image": f"img{i:02d}.png", "label": kind})
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "label"])
        w.writeheader()
        w.writerows(rows)
    return root


def test_cluster_command_pixels_separates_two_kinds(tmp_path):
    from glomkit._cli.cluster import cluster_cmd

    data = _two_kinds(tmp_path / "imgs")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cluster_cmd,
        [
            "--images",
            str(data),
            "-o",
            str(out),
            "--labels",
            str(data / "labels.csv"),
            "--features",
            "pixels",
            "--reductions",
            "pca,tsne",
            "--k-range",
            "2:4",
            "--size",
            "16",
        ],
    )
    assert res.exit_code == 0, res.output
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    pca = [r for r in rows if r["reduction"] == "pca"][0]
    assert float(pca["ari"]) > 0.5
    for name in (
        "clusters.csv",
        "metrics.csv",
        "summary.md",
        "metrics.png",
        "embedding.png",
        "grid_cluster0.png",
        "grid_cluster1.png",
    ):
        assert (out / name).stat().st_size > 0, name
    for png in out.glob("*.png"):
        assert png.stat().st_size < 300_000
    with (out / "clusters.csv").open() as f:
        cl = list(csv.DictReader(f))
    assert len(cl) == 20 and "pixels_pca" in cl[0]


@pytest.mark.slow
def test_cluster_autoencoder_and_simsiam_features(tmp_path):
    from glomkit.cluster.features import extract
    from glomkit.ssl.simsiam import SimSiamConfig, pretrain_simsiam

    data = _two_kinds(tmp_path / "imgs", n=4)
    imgs = np.stack([np.asarray(Image.open(p)) for p in sorted(data.glob("*.png"))])
    x, info = extract("autoencoder", imgs, ae_epochs=2)
    assert x.shape == (8, 128) and len(info["mse_history"]) == 2
    enc = pretrain_simsiam(
        SimSiamConfig(
            images=[str(data)],
            out=str(tmp_path / "e.pt"),
            backbone="resnet10t",
            size=32,
            epochs=1,
            batch_size=4,
            max_steps=1,
        )
    )
    x, info = extract("simsiam", imgs, encoder=str(enc))
    assert x.shape[0] == 8 and "SimSiam resnet10t" in info["weights"]


def test_bad_labels_csv(tmp_path):
    from glomkit._cli.cluster import cluster_cmd

    data = _two_kinds(tmp_path / "imgs", n=3)
    (tmp_path / "bad.csv").write_text("file,kind\na,b\n")
    res = CliRunner().invoke(
        cluster_cmd, ["--images", str(data), "-o", str(tmp_path / "o"), "--labels", str(tmp_path / "bad.csv")]
    )
    assert res.exit_code == 1 and "needs columns image,label" in res.output


def test_scores_in_shared_features_differ_from_embedding_scores():
    """--score-in features: the same k-means partition is scored in the features, not in its embedding."""
    from glomkit.cluster.study import kmeans_scan

    rng = np.random.default_rng(0)
    # two groups far apart in the first feature; the "embedding" keeps only a noisy second feature
    x = np.column_stack([np.repeat([0.0, 10.0], 20), rng.normal(0, 1, 40)])
    z = x[:, :1] + rng.normal(0, 3, (40, 1))
    in_embedding = kmeans_scan(z, range(2, 3), 0)[2][1]["silhouette"]
    a, m = kmeans_scan(z, range(2, 3), 0, score_on=x)[2]
    from sklearn.metrics import silhouette_score

    assert m["silhouette"] == pytest.approx(silhouette_score(x, a))
    assert m["silhouette"] != pytest.approx(in_embedding)


def test_bad_score_space_is_a_clear_error(tmp_path):
    from glomkit import GlomkitError
    from glomkit.cluster.study import ClusterConfig, run_clustering

    with pytest.raises(GlomkitError, match="--score-in"):
        run_clustering(ClusterConfig(images=[str(tmp_path)], out=str(tmp_path / "o"), score_space="pca"))
