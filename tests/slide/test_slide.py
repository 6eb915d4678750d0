import cv2
import numpy as np
import pytest
import tifffile

from glomkit import GlomkitError
from glomkit.slide.grid import TileGrid
from glomkit.slide.reader import Slide
from glomkit.slide.tile_reader import prefetch_map
from glomkit.slide.tissue import tissue_mask


def _blob_image(h=300, w=400):
    img = np.full((h, w, 3), 245, np.uint8)
    cv2.circle(img, (150, 150), 90, (200, 80, 160), -1)
    return img


def test_plain_png_needs_mpp(tmp_path):
    p = tmp_path / "x.png"
    cv2.imwrite(str(p), _blob_image())
    with pytest.raises(GlomkitError, match="--mpp"):
        Slide(p)
    s = Slide(p, mpp=0.5)
    assert (s.width, s.height, s.mpp, s.mpp_source) == (400, 300, 0.5, "user")


def test_tiff_resolution_tags_give_mpp(tmp_path):
    p = tmp_path / "x.tif"
    tifffile.imwrite(p, _blob_image(), resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    s = Slide(p)
    assert s.mpp == pytest.approx(0.5)


def test_corrupt_and_missing_files_give_one_line_errors(tmp_path):
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"not a slide at all")
    with pytest.raises(GlomkitError, match="bad.svs"):
        Slide(bad, mpp=0.25)
    with pytest.raises(GlomkitError, match="no such file"):
        Slide(tmp_path / "missing.svs")
    odd = tmp_path / "notes.txt"
    odd.write_text("hi")
    with pytest.raises(GlomkitError, match="format"):
        Slide(odd, mpp=1)


def test_read_region_outside_is_white_and_scaled(tmp_path):
    p = tmp_path / "x.png"
    cv2.imwrite(str(p), cv2.cvtColor(_blob_image(), cv2.COLOR_RGB2BGR))
    s = Slide(p, mpp=0.25)
    r = s.read_level(-10, -10, 20, 20)
    assert r[:10, :10].min() == 255
    small = s.read_region_at_mpp(0, 0, 400, 300, 1.0)
    assert small.shape == (75, 100, 3)
    assert tuple(small[37, 37]) == pytest.approx((200, 80, 160), abs=3)


def test_real_svs_single_level(svs_path):
    s = Slide(svs_path)
    assert (s.width, s.height) == (2220, 2967)
    assert s.level_count == 1
    assert s.mpp == pytest.approx(0.499)
    thumb, ds = s.thumbnail(256)
    assert max(thumb.shape[:2]) == 256
    mask = tissue_mask(thumb)
    assert 0.1 < mask.mean() < 0.9  # real tissue and real glass


def test_strip_reduction_equals_one_shot(monkeypatch, svs_path):
    import glomkit.slide.reader as reader

    s = Slide(svs_path)
    one = s.read_region_scaled(100, 200, 1600, 1600, 200, 200)
    monkeypatch.setattr(reader, "STRIP_PX", 256)
    strips = s.read_region_scaled(100, 200, 1600, 1600, 200, 200)
    assert np.abs(one.astype(int) - strips.astype(int)).mean() < 2.0


def test_tissue_mask_finds_blob_and_all_tissue_image():
    m = tissue_mask(_blob_image())
    assert m[150, 150] and not m[10, 390]
    assert tissue_mask(np.full((50, 50, 3), (200, 80, 160), np.uint8)).all()
    assert not tissue_mask(np.full((50, 50, 3), 250, np.uint8)).any()


def test_grid_covers_bounds_with_overlap_and_skips_background():
    g = TileGrid((0, 0, 8000, 4000), slide_mpp=0.25, model_mpp=2.0, tile=512, overlap=160)
    tiles = g.tiles()
    assert all(t.w == pytest.approx(t.out_w * 8) for t in tiles)
    xs = sorted({t.x for t in tiles})
    assert xs[1] - xs[0] == pytest.approx((512 - 160) * 8)
    assert max(t.x + t.w for t in tiles) == pytest.approx(8000)
    tissue = np.zeros((40, 80), bool)
    tissue[:, :20] = True  # only the left quarter has tissue (100 level-0 px per mask px)
    kept = g.tiles(tissue, 100.0)
    assert 0 < len(kept) < len(tiles)
    assert all(t.x < 2000 for t in kept)


def test_prefetch_map_keeps_order_and_bounds_memory():
    import threading

    live = []
    lock = threading.Lock()
    peak = [0]

    def fn(i):
        with lock:
            live.append(i)
            peak[0] = max(peak[0], len(live))
        return i * i

    out = []
    for i, r in prefetch_map(fn, range(50), threads=2, depth=4):
        with lock:
            live.remove(i)
        out.append(r)
    assert out == [i * i for i in range(50)]
    assert peak[0] <= 5


def test_patch_level_is_the_coarsest_level_at_least_as_fine_as_the_target(tmp_path):
    from glomkit.synth.slide import synthesize_slide

    p = tmp_path / "pyr.tif"
    synthesize_slide(p, 2048, 1536, mpp=0.25, seed=1, tile=256)  # levels at 1, 4, 16 (0.25, 1, 4 µm/px)
    with Slide(p) as s:
        assert s.level_downsamples[:3] == pytest.approx([1, 4, 16], rel=0.01)
        assert s.level_for_mpp(0.25) == 0 and s.level_for_mpp(0.99) == 0
        assert s.level_for_mpp(1.0) == 1 and s.level_for_mpp(3.9) == 1 and s.level_for_mpp(4.0) == 2
        # a 700-px box to 256 px is 0.68 µm/px: the models' 1 µm/px is the coarser target -> level 1
        assert s.patch_level(700, 256, 1.0) == 1
        assert s.patch_level(700, 256, 0.5) == 0  # target 0.68 µm/px: no level between 0.25 and 1
        assert s.patch_level(4200, 256, 1.0) == 2  # box resolution 4.1 µm/px is the coarser target
        assert s.patch_level(700, 256, None) == 0  # the level-0 switch
        a = s.read_patch(600, 500, 700, 700, 256, 256, 1.0)
        b = s.read_patch(600, 500, 700, 700, 256, 256, None)
        assert a.shape == b.shape == (256, 256, 3)
        # the same pixels, read at 1 µm/px then resized: close to the level-0 read
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 8
        with pytest.raises(GlomkitError, match="no level 9"):
            s.read_region_scaled(0, 0, 10, 10, 5, 5, level=9)


def test_patch_level_of_a_single_level_file_is_level_0(svs_path):
    with Slide(svs_path) as s:
        assert s.patch_level(2000, 256, 1.0) == 0
        a = s.read_patch(100, 100, 700, 700, 256, 256, 1.0)
        assert np.array_equal(a, s.read_patch(100, 100, 700, 700, 256, 256, None))
