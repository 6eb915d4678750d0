"""Inputs read correctly or refused clearly: CMYK TIFFs, empty OpenSlide bounds, stale partial
folders, output paths kept under OUT, the pixel limit, refused pickles."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from badinputs import cmyk_tiff, png_header_only, rgb_png, run_glomkit

from glomkit import GlomkitError


def test_cmyk_tiff_is_converted_to_rgb(tmp_path):
    from glomkit.slide.reader import Slide

    p = cmyk_tiff(tmp_path / "c.tif")  # 200/255 cyan ink, no black: RGB (55, 255, 255)
    with Slide(p, mpp=0.5) as s:
        px = s.read_level(0, 0, 4, 4)[0, 0]
    assert tuple(px) == (55, 255, 255)


def test_cmyk_patch_image_is_converted(tmp_path):
    from glomkit.io.images import to_rgb8

    cmyk = np.zeros((2, 2, 4), np.uint8)
    cmyk[..., 3] = 255  # full black
    assert (to_rgb8(cmyk, 5, "x.tif") == 0).all()
    cmyk[..., 3] = 0
    cmyk[..., 1] = 255  # magenta -> (255, 0, 255)
    assert tuple(to_rgb8(cmyk, 5, "x.tif")[0, 0]) == (255, 0, 255)


def test_empty_openslide_bounds_are_an_error_not_zero_division():
    from glomkit.slide.reader import slide_bounds

    props = {
        "openslide.bounds-x": "0",
        "openslide.bounds-y": "0",
        "openslide.bounds-width": "0",
        "openslide.bounds-height": "0",
    }
    assert slide_bounds(props, 100, 80) == (0, 0, 0, 0)
    assert slide_bounds({}, 100, 80) == (0, 0, 100, 80)
    assert slide_bounds({"openslide.bounds-x": "junk"}, 100, 80) == (0, 0, 100, 80)


def test_sparse_slide_gives_clear_error(tmp_path, monkeypatch):
    import openslide

    import glomkit.slide.reader as reader

    class Sparse:
        level_dimensions = ((1024, 1024),)
        level_downsamples = (1.0,)
        properties = {
            "openslide.bounds-width": "0",
            "openslide.bounds-height": "0",
            "openslide.mpp-x": "0.25",
        }

        def __init__(self, path):
            pass

        @staticmethod
        def detect_format(path):
            return "generic-tiff"

        def close(self):
            pass

    monkeypatch.setattr(openslide, "OpenSlide", Sparse)
    p = tmp_path / "sparse.tif"
    p.write_bytes(b"II*\x00")
    with pytest.raises(GlomkitError, match="no image data"):
        reader.Slide(p)


def test_slide_mpp_out_of_range(tmp_path):
    import cv2

    from glomkit.slide.reader import Slide

    cv2.imwrite(str(tmp_path / "s.png"), np.zeros((8, 8, 3), np.uint8))
    for bad in (0.0, -1.0, 25.0, 1e300, float("nan")):
        with pytest.raises(GlomkitError, match="s.png"):
            Slide(tmp_path / "s.png", mpp=bad)


def test_absurd_grid_is_refused():
    from glomkit.slide.grid import TileGrid

    TileGrid((0, 0, 100_000, 80_000), 0.25, 8.0, 1024, 40).check_size("ok.svs")
    with pytest.raises(GlomkitError, match="big.svs"):
        TileGrid((0, 0, 1_000_000, 1_000_000), 10.0, 0.5, 1024, 40).check_size("big.svs")


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    from glomkit.io.images import check_pixels, declared_size, read_rgb

    bomb = png_header_only(tmp_path / "bomb.png", 32000, 32000)
    assert bomb.stat().st_size < 200_000
    assert declared_size(bomb) == (32000, 32000)
    with pytest.raises(GlomkitError, match=r"bomb.png: declares 32000x32000"):
        read_rgb(bomb)
    check_pixels(bomb, limit=32000 * 32000)  # raised limit: accepted


def test_large_jpeg_is_decoded_reduced(tmp_path):
    import cv2

    from glomkit.io.images import read_rgb

    cv2.imwrite(str(tmp_path / "big.jpg"), np.full((1600, 1200, 3), 128, np.uint8))
    assert read_rgb(tmp_path / "big.jpg", (128, 128)).shape == (200, 150, 3)  # 1/8 by libjpeg
    assert read_rgb(tmp_path / "big.jpg").shape == (1600, 1200, 3)


def test_path_under_refuses_escapes(tmp_path):
    from glomkit.io.paths import path_under

    assert path_under(tmp_path, "patches", "normal", "a.png") == tmp_path / "patches" / "normal" / "a.png"
    for bad in (("..", "x"), ("patches", "../../x"), ("/etc/passwd",), ("a/../../b",), ("",)):
        with pytest.raises(GlomkitError, match="refused"):
            path_under(tmp_path, *bad)
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(GlomkitError, match="outside"):
        path_under(tmp_path, "link", "x.png")


def test_stale_partials_of_dead_owners_are_removed(tmp_path):
    from glomkit.io.partial import (
        ORPHAN_AGE_S,
        OWNER,
        _host_tag,
        clean_stale_partials,
        make_partial_dir,
    )

    mine = make_partial_dir(tmp_path, "s")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    gone = tmp_path / ".s.abc123.partial"
    gone.mkdir()
    import socket

    (gone / OWNER).write_text(f"{socket.gethostname()} {int(dead.stdout)}\n")
    live = tmp_path / ".s.live99.partial"
    live.mkdir()
    (live / OWNER).write_text(f"{socket.gethostname()} {os.getppid()}\n")
    other = tmp_path / ".s2.zzz.partial"  # another slide's: not touched
    other.mkdir()
    # the owner in the name: no window in which a killed run leaves a folder nobody can judge
    assert not list(mine.iterdir()) and f"-{os.getpid()}-" in mine.name
    host = _host_tag()
    named_gone = tmp_path / f".s.{host}-{int(dead.stdout)}-q1.partial"
    named_live = tmp_path / f".s.{host}-{os.getppid()}-q2.partial"
    elsewhere = tmp_path / f".s.{_host_tag('another-host')}-{int(dead.stdout)}-q3.partial"
    unknown = tmp_path / ".s.noowner.partial"  # no owner at all: kept until it is a day old
    for d in (named_gone, named_live, elsewhere, unknown):
        d.mkdir()
    removed = clean_stale_partials(tmp_path, "s")
    # this process's own earlier attempt counts as finished
    assert set(removed) == {gone, mine, named_gone}
    assert live.exists() and other.exists() and named_live.exists() and elsewhere.exists()
    assert unknown.exists()
    old = time.time() - 2 * ORPHAN_AGE_S
    os.utime(unknown, (old, old))
    assert clean_stale_partials(tmp_path, "s") == [unknown]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_partial_of_a_zombie_owner_is_stale(tmp_path):
    """A killed worker that nobody reaped (a zombie: os.kill(pid, 0) still succeeds) is gone."""
    from glomkit.io.partial import _host_tag, clean_stale_partials, process_alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stat = Path(f"/proc/{child.pid}/stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":
                break
            time.sleep(0.05)
        assert not process_alive(child.pid)
        folder = tmp_path / f".s.{_host_tag()}-{child.pid}-z1.partial"
        folder.mkdir()
        assert clean_stale_partials(tmp_path, "s") == [folder]
    finally:
        child.wait()
    assert process_alive(os.getpid())


def test_refused_pickle_is_one_line_error(tmp_path):
    pytest.importorskip("torch")
    from glomkit.models.checkpoint import load_torch_file

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    p = tmp_path / "ck.pt"
    p.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(GlomkitError, match="refused to load") as err:
        load_torch_file(p, what="training checkpoint")
    assert "\n" not in str(err.value) and str(p) in str(err.value)
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(GlomkitError, match="junk.pt: refused to load this checkpoint: it is corrupt"):
        load_torch_file(tmp_path / "junk.pt")
    with pytest.raises(GlomkitError, match="no 'model'"):
        import torch

        torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
        load_torch_file(tmp_path / "plain.pt", keys=("model",))


def test_cluster_encoder_pickle_through_the_cli(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    enc = tmp_path / "enc.pt"
    enc.write_bytes(pickle.dumps({"backbone": "resnet10t", "state_dict": Evil()}, protocol=2))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(4):
        rgb_png(imgs / f"p{i}.png", 32, 32, seed=i)
    code, _, err = run_glomkit(
        monkeypatch,
        capsys,
        "cluster",
        "--images",
        imgs,
        "-o",
        tmp_path / "o",
        "--features",
        "simsiam",
        "--encoder",
        enc,
        "--reductions",
        "pca",
        "--k-range",
        "2:3",
        "--size",
        "32",
    )
    assert code == 1 and "Traceback" not in err and not (tmp_path / "pwned").exists()
    lines = [ln for ln in err.strip().splitlines() if "enc.pt" in ln]
    assert len(lines) == 1 and "refused to load this SimSiam encoder" in lines[0]
    from glomkit.nets.classifier import build_classifier
    from glomkit.nets.classifier import load_encoder as load_into_classifier

    with pytest.raises(GlomkitError, match="refused"):  # the classifier's --init reader
        load_into_classifier(build_classifier("resnet10t", 3), enc)
