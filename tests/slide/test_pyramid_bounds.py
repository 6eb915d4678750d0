"""Issue 23: every read of an OpenSlide slide is bounded by what its pyramid gives cheaply.

A tiny tiled TIFF that declares 200000x200000 px (every tile offset pointing at one compressed
tile) is refused in one line before any pixel is read, under a 3 GB address-space cap; the
``--max-pixels`` limit applies to OpenSlide slides; reads that would decode more than the limit
from a fine level take a coarser one that fits.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from glomkit import GlomkitError
from glomkit.slide.reader import Slide

ADDRESS_CAP = 3 << 30


def tile_bomb_tiff(path: Path, side: int, tile: int = 2048, mpp: float = 0.5) -> Path:
    """A tiled RGB TIFF declaring ``side`` x ``side`` px whose tile offsets all point at one
    deflate-compressed tile, written by hand (tens of KB, never a large file)."""
    data = zlib.compress(np.full((tile, tile, 3), 230, np.uint8).tobytes(), 9)
    n = (-(-side // tile)) ** 2
    res = (round(1e4 / mpp * 1000), 1000)
    fmt = {3: "H", 4: "I", 5: "II"}
    tags = [  # (tag, type, values); offsets (324) are filled in below
        (256, 4, [side]),
        (257, 4, [side]),
        (258, 3, [8, 8, 8]),
        (259, 3, [8]),  # deflate
        (262, 3, [2]),  # RGB
        (277, 3, [3]),
        (282, 5, [res]),
        (283, 5, [res]),
        (284, 3, [1]),
        (296, 3, [3]),  # centimetre
        (322, 3, [tile]),
        (323, 3, [tile]),
        (324, 4, [0] * n),
        (325, 4, [len(data)] * n),
    ]

    def raw(typ: int, values: list) -> bytes:
        return b"".join(struct.pack("<" + fmt[typ], *(v if isinstance(v, tuple) else (v,))) for v in values)

    extra = 8 + 2 + 12 * len(tags) + 4
    sizes = [len(raw(t, v)) for _, t, v in tags]
    blobs_len = sum(s + s % 2 for s in sizes if s > 4)
    tile_at = extra + blobs_len
    head, blobs = bytearray(b"II*\0" + struct.pack("<IH", 8, len(tags))), bytearray()
    for tag, typ, values in tags:
        body = raw(typ, [tile_at] * n if tag == 324 else values)
        if len(body) <= 4:
            head += struct.pack("<HHI", tag, typ, len(values)) + body.ljust(4, b"\0")
        else:
            head += struct.pack("<HHII", tag, typ, len(values), extra + len(blobs))
            blobs += body + b"\0" * (len(body) % 2)
    path.write_bytes(bytes(head + struct.pack("<I", 0) + blobs + data))
    return path


def _capped(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``glomkit ARGS`` in a child process under a 3 GB address-space cap."""
    code = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_CAP}, {ADDRESS_CAP}))\n"
        "sys.argv = ['glomkit', *sys.argv[1:]]\n"
        "from glomkit.cli import main\n"
        "main()\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOMKIT_THREADS="1")
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def test_the_crafted_file_is_small_and_declares_its_size(tmp_path):
    openslide = pytest.importorskip("openslide")
    p = tile_bomb_tiff(tmp_path / "bomb.tif", 200_000)
    assert p.stat().st_size < 150_000
    with openslide.OpenSlide(str(p)) as osr:  # what OpenSlide sees: one 200000² level
        assert osr.level_dimensions == ((200_000, 200_000),)
        assert np.asarray(osr.read_region((5000, 5000), 0, (4, 4)))[0, 0, 0] == 230
    with pytest.raises(GlomkitError, match=r"40,000,000,000 pixels.*--max-pixels") as e:
        Slide(p)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("side", [200_000, 1_000_000])
def test_tile_bomb_is_one_line_under_a_3gb_cap(tmp_path, side):
    p = tile_bomb_tiff(tmp_path / "bomb.tif", side)
    r = _capped(["run", str(p), "-o", str(tmp_path / "out"), "--threads", "1", "--quiet"], tmp_path)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("glomkit: error:")]
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert len(errors) == 1 and "bomb.tif" in errors[0] and "--max-pixels" in errors[0], r.stderr
    assert "MemoryError" not in r.stderr and "out of memory" not in r.stderr


def test_max_pixels_applies_to_openslide_slides(tmp_path):
    p = tile_bomb_tiff(tmp_path / "flat.tif", 4096)  # one level of 4096² px, read by OpenSlide
    with Slide(p) as s:
        assert s.format == "generic-tiff" and (s.width, s.height) == (4096, 4096)
    with pytest.raises(GlomkitError, match="limit of 1,000,000"):
        Slide(p, max_pixels=1_000_000)


def test_reads_take_a_coarser_level_that_fits(tmp_path):
    img = np.full((1024, 1024, 3), 200, np.uint8)
    img[:, :512] = (220, 40, 40)
    p = tmp_path / "pyr.tif"
    with tifffile.TiffWriter(p) as tw:
        kw = {"tile": (256, 256), "photometric": "rgb", "compression": "zlib"}
        tw.write(img, resolution=(2e4, 2e4), resolutionunit="CENTIMETER", **kw)
        tw.write(img[::4, ::4], subfiletype=1, **kw)
    with Slide(p, max_pixels=100_000) as s:  # level 0 (1024²) is over the limit, level 1 (256²) fits
        assert s.level_count == 2
        thumb, ds = s.thumbnail(1024)
        assert thumb.shape == (1024, 1024, 3) and ds == 1.0
        assert tuple(thumb[500, 100]) == pytest.approx((220, 40, 40), abs=3)
        assert tuple(thumb[500, 900]) == pytest.approx((200, 200, 200), abs=3)
        full = s.read_region_scaled(0, 0, 1024, 1024, 1024, 1024, level=0)
        assert full.shape == (1024, 1024, 3)  # read from level 1 and resized
        with pytest.raises(GlomkitError, match="limit of 10,000"):
            Slide(p, max_pixels=10_000)  # even the coarsest level is over it
