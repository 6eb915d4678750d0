"""Colour-free morphometry features of a crop's central disc, on tiny drawn tufts."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner
from PIL import Image

from glomkit.cluster.features import MORPHOMETRY, extract, morphometry_features


def _tuft(patent: bool, seed: int, colour=(170, 90, 150), size: int = 64) -> np.ndarray:
    """A glomerulus-like disc: solid and even (sclerosed) or with glass holes and dark nuclei."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 240, np.uint8)
    c = size // 2
    cv2.circle(img, (c, c), int(size * 0.45), colour, -1)
    img = np.clip(img.astype(np.int16) + rng.integers(-4, 5, img.shape), 0, 255).astype(np.uint8)
    if patent:
        for _ in range(25):
            x, y = rng.integers(c - size // 3, c + size // 3, 2)
            cv2.circle(img, (int(x), int(y)), 2, (245, 240, 245), -1)  # open capillary lumen
        for _ in range(30):
            x, y = rng.integers(c - size // 3, c + size // 3, 2)
            cv2.circle(img, (int(x), int(y)), 1, (60, 40, 110), -1)  # nucleus
    return img


def _run_labelled(tmp_path, crops: list[tuple[str, np.ndarray]], opts: str) -> tuple[Path, list[dict]]:
    """Save labelled crops with a labels.csv, run ``glomkit cluster`` with the labels, return its
    output folder and the rows."""
    from glomkit._cli.cluster import cluster_cmd

    root = tmp_path / "imgs"
    root.mkdir()
    rows = []
    for i, (kind, img) in enumerate(crops):
        Image.fromarray(img).save(root / f"g{i:02d}.png")
        rows.append({"image": f"g{i:02d}.png", "label": kind})
    (root / "labels.csv").write_text("image,label\n" + "".join(f"{r['image']},{r['label']}\n" for r in rows))
    out = tmp_path / "out"
    args = ["--images", str(root), "-o", str(out), "--labels", str(root / "labels.csv"), *opts.split()]
    res = CliRunner().invoke(cluster_cmd, args)
    assert res.exit_code == 0, res.output
    return out, rows


def test_patent_tufts_score_higher_than_solid_ones_on_every_measure():
    solid = np.stack([_tuft(False, s) for s in range(4)])
    patent = np.stack([_tuft(True, s) for s in range(4)])
    f_solid, f_patent = morphometry_features(solid), morphometry_features(patent)
    assert f_solid.shape == (4, len(MORPHOMETRY)) and np.isfinite(f_solid).all()
    assert (f_patent.min(axis=0) > f_solid.max(axis=0)).all(), (f_solid, f_patent)


def test_hue_does_not_enter_and_intensity_moves_heterogeneity_little():
    pas = morphometry_features(_tuft(True, 0, colour=(170, 90, 150))[None])[0]
    blue = morphometry_features(_tuft(True, 0, colour=(150, 90, 170))[None])[0]  # hue turned
    assert np.allclose(pas, blue, atol=0.05)
    dark = morphometry_features(_tuft(True, 0, colour=(140, 60, 120))[None])[0]
    assert abs(dark[0] - pas[0]) < 0.5  # a log coefficient of variation: a ratio


def test_cluster_cli_morphometry_separates_solid_from_patent(tmp_path):
    crops = [("patent" if i % 2 else "solid", _tuft(bool(i % 2), i)) for i in range(16)]
    opts = "--features morphometry --reductions pca --k-range 2:2 --size 64 --score-in features"
    out, _ = _run_labelled(tmp_path, crops, opts)
    with (out / "choice.csv").open() as f:
        choice = list(csv.DictReader(f))[0]
    assert choice["feature"] == "morphometry" and int(choice["k"]) == 2  # one k: the split is tested
    assert float(choice["ari"]) == 1.0


def test_extract_names_the_measures():
    x, info = extract("morphometry", np.stack([_tuft(True, 0), _tuft(False, 0)]))
    assert x.shape == (2, 3) and "no model" in info["weights"]


def test_auto_view_gives_each_feature_its_own_view_and_size(tmp_path):
    from glomkit._cli.cluster import cluster_cmd

    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(8):
        Image.fromarray(_tuft(bool(i % 2), i, size=48)).save(root / f"g{i}.png")
    out = tmp_path / "out"
    args = ["--images", str(root), "-o", str(out), "--features", "morphometry,pixels", "--reductions", "pca"]
    res = CliRunner().invoke(cluster_cmd, [*args, "--k-range", "2:3", "--size", "16"])
    assert res.exit_code == 0, res.output
    md = (out / "summary.md").read_text()
    assert "| morphometry | macenko, 128 |" in md and "| pixels | none, 16 |" in md
    from glomkit.cluster.features import view_of

    assert view_of("morphometry", "gray") == "gray" and view_of("vgg19", "auto") == "none"


def test_the_white_padding_of_an_edge_cut_glomerulus_is_not_open_space():
    """The pipeline pads a glomerulus cut by the image edge with white: that strip is not glass."""
    from glomkit.cluster.features import padding_mask

    solid = _tuft(False, 0)
    cut = solid.copy()
    cut[:20] = 255  # the image ended here
    cut[:, -8:] = 255
    mask = padding_mask(cut)
    assert mask[:21].all() and mask[:, -9:].all() and not mask[22:, :-10].any()
    assert not padding_mask(solid).any()
    f_solid, f_cut = morphometry_features(np.stack([solid, cut]))
    f_patent = morphometry_features(np.stack([_tuft(True, s) for s in range(4)]))
    assert abs(f_cut[1] - f_solid[1]) < 0.5  # open space: the padding is left out
    assert (f_patent.min(axis=0) > f_cut).all()  # a padded solid tuft still reads as solid


def test_the_most_solid_cluster_is_read_against_the_rest(tmp_path):
    """Three kinds (solid, and patent in two colours): at k = 3 the solid one against the rest is
    the two-way grouping, written to clusters.csv and scored."""
    from glomkit.cluster.features import solid_cluster

    x = np.array([[0.1, 0], [0.2, 0], [0.9, 0], [1.0, 0]])
    assert solid_cluster(x, np.array([1, 1, 0, 0])) == 1
    crops = []
    for i in range(18):
        kind = ("solid", "patent", "patent")[i % 3]
        colour = (170, 90, 150) if i % 3 < 2 else (120, 60, 160)
        crops.append((kind, _tuft(kind == "patent", i, colour=colour)))
    out, rows = _run_labelled(tmp_path, crops, "--features morphometry --reductions pca --k-range 3:3")
    with (out / "choice.csv").open() as f:
        choice = list(csv.DictReader(f))[0]
    assert float(choice["ari_solid_vs_rest"]) == 1.0 and int(choice["solid_n"]) == 6
    with (out / "clusters.csv").open() as f:
        got = {r["image"].split("/")[-1]: r["morphometry_solid_vs_rest"] for r in csv.DictReader(f)}
    assert {got[r["image"]] for r in rows if r["label"] == "solid"} == {"1"}
    assert "holds the most solid tufts" in (out / "summary.md").read_text()
