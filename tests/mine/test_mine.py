"""Compound-figure separation, modality filter, duplicates, and `glomkit mine` end to end."""

from __future__ import annotations

import csv
import os

import cv2
import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from glomkit import GlomkitError
from glomkit.mine.dedupe import DuplicateIndex, hamming, phash
from glomkit.mine.modality import is_light_microscopy
from glomkit.mine.separate import Box, box_iou, separate_panels
from glomkit.mine.synthetic_figures import chart_panel, em_panel, fluorescence_panel, make_compound_figure
from glomkit.synth.tissue import render_tissue


def pas_panel(rng: np.random.Generator, h: int = 120, w: int = 120) -> np.ndarray:
    return render_tissue(h, w, rng, 0.5)


def matched(truth: list[Box], pred: list[Box], thr: float = 0.5) -> int:
    used: set[int] = set()
    n = 0
    for t in truth:
        cands = [(box_iou(t, p), j) for j, p in enumerate(pred) if j not in used]
        iou, j = max(cands, default=(0.0, -1))
        if iou >= thr:
            used.add(j)
            n += 1
    return n


@pytest.mark.parametrize(
    "case",
    [
        dict(per_row=[2, 2], gutter=10, gutter_colour=255, border=0, letters="none", caption_lines=0),
        dict(per_row=[3, 1], gutter=6, gutter_colour=0, border=0, letters="none", caption_lines=0),
        dict(per_row=[1, 3, 2], gutter=4, gutter_colour=255, border=2, letters="none", caption_lines=0),
        dict(per_row=[2, 1], gutter=12, gutter_colour=255, border=0, letters="inside_box", caption_lines=0),
        dict(per_row=[2, 2], gutter=8, gutter_colour=0, border=0, letters="inside", caption_lines=0),
        dict(per_row=[3], gutter=5, gutter_colour=255, border=0, letters="gutter", caption_lines=3),
    ],
    ids=["white", "black", "uneven_borders", "letter_boxes", "letters_black", "gutter_letters_caption"],
)
def test_separation_recovers_known_boxes(case: dict) -> None:
    rng = np.random.default_rng(3)
    n = sum(case["per_row"])
    panels = [pas_panel(rng, 100 + 10 * k, 120) for k in range(n - 1)] + [chart_panel(rng, 150, 200)]
    fig, truth = make_compound_figure(panels, rng, row_heights=(90, 160), **case)
    pred = separate_panels(fig).panels
    assert len(pred) == n
    assert matched(truth, pred) == n


def test_separation_of_single_panel_is_the_whole_panel() -> None:
    img = pas_panel(np.random.default_rng(0), 150, 130)
    pred = separate_panels(img).panels
    assert len(pred) == 1 and box_iou(pred[0], Box(0, 0, 130, 150)) > 0.95


def test_caption_lines_are_fragments_not_panels() -> None:
    rng = np.random.default_rng(1)
    fig, truth = make_compound_figure(
        [pas_panel(rng), pas_panel(rng)], rng, per_row=[2], gutter=10, gutter_colour=255, caption_lines=2
    )
    sep = separate_panels(fig)
    assert len(sep.panels) == 2
    caption_top = max(b.y + b.h for b in truth)
    assert sep.fragments and all(f.y >= caption_top for f in sep.fragments)


def test_modality_filter() -> None:
    rng = np.random.default_rng(5)
    assert is_light_microscopy(pas_panel(rng, 160, 160))[0]
    ok, modality, _ = is_light_microscopy(chart_panel(rng))
    assert not ok and modality == "chart_or_diagram"
    ok, modality, _ = is_light_microscopy(fluorescence_panel(rng))
    assert not ok and modality == "fluorescence"
    ok, modality, _ = is_light_microscopy(em_panel(rng))
    assert not ok and modality == "greyscale"


def test_real_pas_crops_pass_modality_filter(bueno_root) -> None:
    from glomkit.data.bueno import load_bueno

    samples = load_bueno(bueno_root)[::60]
    for s in samples:
        rgb = cv2.cvtColor(cv2.imread(str(s.image)), cv2.COLOR_BGR2RGB)
        assert is_light_microscopy(rgb)[0], s.image


def test_phash_finds_near_duplicates_only() -> None:
    rng = np.random.default_rng(2)
    a = pas_panel(rng, 128, 128)
    b = pas_panel(rng, 128, 128)
    a_small = cv2.resize(a, (90, 90), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", a_small, [cv2.IMWRITE_JPEG_QUALITY, 70])
    a_jpeg = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    assert hamming(phash(a), phash(a_jpeg)) <= 8
    assert hamming(phash(a), phash(b)) > 8
    index = DuplicateIndex(8)
    index.add(phash(a), "a")
    assert index.find(phash(a_jpeg)) == "a"
    assert index.find(phash(b)) is None


def tiny_classifier(path, non_glomerular_bias: float) -> None:
    """A 3-class coarse classifier whose output is set by its bias: P(non_glomerular) high or low."""
    import torch

    from glomkit.core.schemes import COARSE
    from glomkit.models.export import export_onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
        torch.nn.Softmax(dim=1),
    )
    with torch.no_grad():
        net[3].weight.zero_()
        net[3].bias.copy_(torch.tensor([1.0, 0.0, non_glomerular_bias]))
    meta = {
        "task": "classifier",
        "input_size": [32, 32],
        "input": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "classes": COARSE.to_dict(),
    }
    export_onnx(net, torch.zeros(1, 3, 32, 32), path, meta, ["probs"])


@pytest.fixture(scope="module")
def figures_dir(tmp_path_factory):
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("figs")
    pas = [pas_panel(rng, 120, 120) for _ in range(3)]
    fig1, _ = make_compound_figure(
        [pas[0], pas[1], chart_panel(rng, 150, 180)],
        rng,
        per_row=[3],
        gutter=10,
        gutter_colour=255,
        border=0,
        letters="inside_box",
        caption_lines=1,
    )
    fig2, _ = make_compound_figure(
        [pas[0], fluorescence_panel(rng, 120, 120), pas[2]],
        rng,
        per_row=[2, 1],
        gutter=8,
        gutter_colour=0,
        border=0,
        letters="none",
        caption_lines=0,
    )
    cv2.imwrite(str(root / "fig1.png"), cv2.cvtColor(fig1, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "fig2.jpg"), cv2.cvtColor(fig2, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    (root / "broken.png").write_bytes(b"not a png at all")
    return root


def read_manifest(out):
    with (out / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # imports torch to export the tiny model: ~3 s alone, more on a loaded machine
def test_mine_end_to_end(figures_dir, tmp_path) -> None:
    from click.testing import CliRunner

    from glomkit._cli.mine import mine_cmd

    model = tmp_path / "tiny.onnx"
    tiny_classifier(model, non_glomerular_bias=-3.0)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        mine_cmd, [str(figures_dir), "-o", str(out), "--classifier", str(model), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    rows = read_manifest(out)
    by_reason = {}
    for r in rows:
        by_reason.setdefault(r["reason"].split(":")[0], []).append(r)
    assert [r["source"] for r in by_reason["unreadable"]] == ["broken.png"]
    kept = [r for r in rows if r["kept"] == "True"]
    assert len(kept) == 3  # pas[0], pas[1] from fig1 and pas[2] from fig2
    assert {r["modality"] for r in kept} == {"brightfield"}
    assert all(float(r["score"]) >= 0.7 for r in kept)
    assert len(by_reason["not_light_microscopy"]) == 2  # the chart and the fluorescence panel
    dup = by_reason["duplicate_of"]
    assert len(dup) == 1 and dup[0]["source"] == "fig2.jpg" and dup[0]["reason"] == "duplicate_of:fig1_p01"
    assert sorted(p.stem for p in (out / "panels").glob("*.png")) == sorted(r["name"] for r in kept)
    for r in kept:
        img = cv2.imread(str(out / "panels" / f"{r['name']}.png"))
        assert img.shape[:2] == (int(r["h"]), int(r["w"]))
    html = (out / "index.html").read_text()
    assert "duplicate_of:fig1_p01" in html and "not_light_microscopy" in html


@pytest.mark.slow
def test_mine_threshold_rejects_non_glomerular(figures_dir, tmp_path) -> None:
    from glomkit.mine.curate import MineConfig, mine_figures

    model = tmp_path / "tiny_neg.onnx"
    tiny_classifier(model, non_glomerular_bias=4.0)
    res = mine_figures(figures_dir, tmp_path / "out", MineConfig(classifier=model))
    assert res.n_kept == 0
    assert res.count("below_threshold") == 4  # every brightfield panel, duplicates included
    assert list((tmp_path / "out" / "panels").glob("*.png")) == []


def test_mine_bad_folder(tmp_path) -> None:
    from glomkit.mine.curate import mine_figures

    with pytest.raises(GlomkitError, match="not found"):
        mine_figures(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GlomkitError, match="no figure images"):
        mine_figures(tmp_path / "empty", tmp_path / "out")
