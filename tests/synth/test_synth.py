"""Synthetic slides: OpenSlide reads them with the right scale, truth matches pixels, seeds repeat."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from glomkit.core.schemes import FIVE_CLASS
from glomkit.synth.glomerulus import render_glomerulus
from glomkit.synth.patches import make_patch_dataset
from glomkit.synth.slide import make_scene, pyramid_downsamples, synthesize_slide, truth_of, write_truth
from glomkit.synth.stain import jitter_palette
from glomkit.synth.tissue import render_tissue

openslide = pytest.importorskip("openslide")

W, H, MPP, TILE = 1200, 900, 3.0, 256  # 3.6 x 2.7 mm, like 3600x2700 at 1 µm/px


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("synth") / "toy.tif"
    result = synthesize_slide(path, W, H, mpp=MPP, seed=3, tile=TILE)
    return path, result


def test_openslide_reads_mpp_size_and_levels(slide) -> None:
    path, _ = slide
    s = openslide.OpenSlide(str(path))
    assert float(s.properties["openslide.mpp-x"]) == pytest.approx(MPP)
    assert float(s.properties["openslide.mpp-y"]) == pytest.approx(MPP)
    assert s.dimensions == (W, H)
    assert s.level_count == len(pyramid_downsamples(W, H, TILE)) >= 3
    for got, want in zip(s.level_downsamples, [1, 4, 16], strict=False):
        assert got == pytest.approx(want, rel=0.02)


def test_truth_centres_are_tissue_not_background(slide) -> None:
    path, result = slide
    s = openslide.OpenSlide(str(path))
    background = np.asarray(s.read_region((0, 0), 0, (8, 8)).convert("RGB"), float).mean((0, 1))
    assert background.min() > 225  # glass, outside the tissue blob
    assert len(result.glomeruli) >= 5
    assert set(result.counts()) == set(FIVE_CLASS.names)
    for g in result.glomeruli:
        assert 0 < g.x < W and 0 < g.y < H
        r = int(g.radius * 0.3)
        patch = np.asarray(
            s.read_region((int(g.x) - r, int(g.y) - r), 0, (2 * r, 2 * r)).convert("RGB"), float
        )
        assert np.abs(patch.mean((0, 1)) - background).max() > 12 or patch.std((0, 1)).max() > 12, g


def test_truth_records_are_consistent(slide) -> None:
    _, result = slide
    assert result.scheme is FIVE_CLASS and result.mpp == MPP
    for g in result.glomeruli:
        assert g.score == 1.0
        assert g.probs[g.label] == 1.0 and sum(g.probs.values()) == 1.0
        assert g.is_glomerulus == (g.label != "non_glomerular")
        assert 50 / MPP * 0.9 < g.radius < 110 / MPP * 1.1
        assert g.polygon is not None and g.polygon.shape[1] == 2
        r_eq = g.diameter_um / 2 / MPP
        assert r_eq == pytest.approx(g.radius, rel=0.15)
        assert g.area_um2 == pytest.approx(np.pi * (g.diameter_um / 2) ** 2)
    # objects do not overlap
    xy = np.array([[g.x, g.y, g.radius] for g in result.glomeruli])
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    np.fill_diagonal(d, np.inf)
    assert np.all(d > xy[:, None, 2] + xy[None, :, 2])


def test_pyramid_levels_show_the_same_scene(slide) -> None:
    path, _ = slide
    s = openslide.OpenSlide(str(path))
    lw, lh = s.level_dimensions[1]
    low = np.asarray(s.read_region((0, 0), 1, (lw, lh)).convert("RGB"), np.float32)
    full = np.asarray(s.read_region((0, 0), 0, (W, H)).convert("RGB"), np.float32)
    down = cv2.resize(full, (lw, lh), interpolation=cv2.INTER_AREA)
    assert np.abs(cv2.blur(low, (9, 9)) - cv2.blur(down, (9, 9))).mean() < 12


def test_same_seed_same_truth_other_seed_differs(slide) -> None:
    path, result = slide
    again = truth_of(make_scene(W, H, MPP, seed=3), path)
    assert [(g.label, g.x, g.y, g.radius) for g in again.glomeruli] == [
        (g.label, g.x, g.y, g.radius) for g in result.glomeruli
    ]
    other = truth_of(make_scene(W, H, MPP, seed=4), path)
    assert [(g.x, g.y) for g in other.glomeruli] != [(g.x, g.y) for g in result.glomeruli]


def test_explicit_count_and_scaling_with_area() -> None:
    assert len(make_scene(W, H, MPP, seed=1, n_glomeruli=7).objects) == 7
    small = len(make_scene(W, H, MPP, seed=1).objects)
    big = len(make_scene(2 * W, 2 * H, MPP, seed=1).objects)
    assert big > 2.5 * small


@pytest.mark.parametrize("label", FIVE_CLASS.names)
def test_render_glomerulus_mask_matches_radius(label: str) -> None:
    radius = 48.0
    img, mask = render_glomerulus(label, radius, np.random.default_rng(5))
    size = int(np.ceil(2.5 * radius))
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert mask.shape == (size, size) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    if label == "non_glomerular":
        assert mask.max() == 0
    else:
        ratio = (mask > 0).sum() / (np.pi * radius**2)
        assert 0.8 < ratio < 1.25
        ys, xs = np.nonzero(mask)
        assert abs(xs.mean() - size / 2) < 3 and abs(ys.mean() - size / 2) < 3
        inside = img[mask > 0].astype(float).mean(0)
        assert img.std() > 10 and np.abs(inside - img[mask == 0].astype(float).mean(0)).max() > 3


def test_render_glomerulus_depends_on_rng_only() -> None:
    a = render_glomerulus("normal", 40, np.random.default_rng(1), size=96)
    b = render_glomerulus("normal", 40, np.random.default_rng(1), size=96)
    c = render_glomerulus("normal", 40, np.random.default_rng(2), size=96)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    with pytest.raises(ValueError, match="unknown glomerulus class"):
        render_glomerulus("sclerosed-ish", 40, np.random.default_rng(1))


def test_tissue_tiles_join_without_seams() -> None:
    pal = jitter_palette(np.random.default_rng(0))
    whole = render_tissue(128, 128, np.random.default_rng(0), mpp=2.0, seed=9, palette=pal).astype(float)
    top = render_tissue(64, 128, np.random.default_rng(1), mpp=2.0, seed=9, palette=pal)
    bottom = render_tissue(64, 128, np.random.default_rng(2), mpp=2.0, seed=9, origin=(0, 64), palette=pal)
    joined = np.concatenate([top, bottom]).astype(float)
    assert np.abs(joined - whole).mean() < 5  # only the grain noise differs
    other = render_tissue(128, 128, np.random.default_rng(0), mpp=2.0, seed=10, palette=pal).astype(float)
    assert np.abs(other - whole).mean() > 10


def test_make_patch_dataset_writes_images_masks_and_labels(tmp_path: Path) -> None:
    csv_path = make_patch_dataset(tmp_path, n_per_class=2, seed=0, size=64)
    assert csv_path == tmp_path / "labels.csv"
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 10 and set(rows[0]) == {"image", "mask", "label", "slide"}
    assert sorted({r["label"] for r in rows}) == sorted(FIVE_CLASS.names)
    for r in rows:
        img = cv2.imread(str(tmp_path / r["image"]))
        mask = cv2.imread(str(tmp_path / r["mask"]), cv2.IMREAD_GRAYSCALE)
        assert img.shape == (64, 64, 3) and mask.shape == (64, 64)
        assert set(np.unique(mask)) <= {0, 255}
        assert (mask.max() == 0) == (r["label"] == "non_glomerular")
        assert Path(r["image"]).parent.name == r["label"]
    assert 1 < len({r["slide"] for r in rows}) < 10


@pytest.mark.skipif(
    any(
        importlib.util.find_spec(m) is None
        for m in ("glomkit.io.table", "glomkit.io.geojson", "glomkit.io.imagescope")
    ),
    reason="truth writers in glomkit.io are missing",
)
def test_write_truth_writes_three_files(slide) -> None:
    path, result = slide
    paths = write_truth(result, path)
    assert [p.name for p in paths] == ["toy_truth.csv", "toy_truth.xml", "toy_truth.geojson"]
    assert all(p.stat().st_size > 0 for p in paths)
    from glomkit.io.table import read_table

    rows = read_table(paths[0])
    assert [r["label"] for r in rows] == [g.label for g in result.glomeruli]


@pytest.mark.slow
def test_cli_synth_writes_slide_and_truth(tmp_path: Path) -> None:
    from glomkit._cli.synth import synth

    out = tmp_path / "cli.tif"
    res = CliRunner().invoke(
        synth, ["-o", str(out), "--size", "600x400", "--mpp", "2", "--seed", "1", "--glomeruli", "3"]
    )
    assert res.exit_code == 0, res.output
    assert out.is_file() and (tmp_path / "cli_truth.csv").is_file()
    assert float(openslide.OpenSlide(str(out)).properties["openslide.mpp-x"]) == pytest.approx(2.0)


@pytest.mark.parametrize("bad", ["40000", "axb", "10x10", "-5x100"])
def test_cli_synth_rejects_bad_size(tmp_path: Path, bad: str) -> None:
    from glomkit._cli.synth import synth

    res = CliRunner().invoke(synth, ["-o", str(tmp_path / "x.tif"), "--size", bad])
    assert res.exit_code == 2
    assert "--size" in res.output
    assert not (tmp_path / "x.tif").exists()


@pytest.mark.slow
def test_parallel_rendering_writes_the_same_pixels(tmp_path: Path) -> None:
    a, b = tmp_path / "one.tif", tmp_path / "two.tif"
    synthesize_slide(a, 700, 500, mpp=2.0, seed=5, tile=128, n_glomeruli=4)
    synthesize_slide(b, 700, 500, mpp=2.0, seed=5, tile=128, n_glomeruli=4, workers=2)
    sa, sb = openslide.OpenSlide(str(a)), openslide.OpenSlide(str(b))
    assert sa.level_count == sb.level_count > 1
    for level in range(sa.level_count):
        size = sa.level_dimensions[level]
        pa = np.asarray(sa.read_region((0, 0), level, size))
        pb = np.asarray(sb.read_region((0, 0), level, size))
        assert np.array_equal(pa, pb)


def test_tissue_fraction_sets_the_tissue_area() -> None:
    for frac in (0.1, 0.3):
        scene = make_scene(4000, 3000, mpp=1.0, seed=2, tissue_fraction=frac)
        mask = np.zeros((300, 400), np.uint8)
        cv2.fillPoly(mask, [np.round(p / 10).astype(np.int32) for p in scene.tissue], 1)
        assert abs(mask.mean() - frac) < 0.04 * frac / 0.1
    with pytest.raises(Exception, match="tissue fraction"):
        make_scene(4000, 3000, tissue_fraction=0.9)


def test_write_truth_keeps_dots_in_the_stem(tmp_path: Path) -> None:
    scene = make_scene(2000, 1500, mpp=1.0, seed=4, n_glomeruli=2)
    path = tmp_path / "slide_t0.15.tif"
    paths = write_truth(truth_of(scene, path), path)
    assert sorted(p.name for p in paths) == [
        "slide_t0.15_truth.csv",
        "slide_t0.15_truth.geojson",
        "slide_t0.15_truth.xml",
    ]
