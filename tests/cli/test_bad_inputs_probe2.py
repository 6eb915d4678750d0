"""Issue 23, second bad-input probe: palette TIFFs read in colour, a ROI polygon that encloses no
area, a malformed dask scheduler address and PNG bombs in the training-side readers are one line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from badinputs import png_header_only, run_glomkit

from glomkit import GlomkitError
from glomkit.io.images import read_rgb
from glomkit.slide.reader import Slide


def _palette_tiff(path: Path) -> Path:
    """A stripped palette TIFF: index 1 is pure red, the left half uses it."""
    idx = np.zeros((32, 48), np.uint8)
    idx[:, :24] = 1
    cmap = np.zeros((3, 256), np.uint16)
    cmap[:, 0] = 65535  # white
    cmap[:, 1] = (65535, 0, 0)  # red
    tifffile.imwrite(path, idx, photometric="palette", colormap=cmap)
    return path


def test_palette_tiff_reads_in_colour(tmp_path):
    p = _palette_tiff(tmp_path / "pal.tif")
    with Slide(p, mpp=0.5) as s:
        img = s.read_level(0, 0, 48, 32)
    assert img[5, 5].tolist() == [255, 0, 0] and img[5, 40].tolist() == [255, 255, 255]
    assert read_rgb(p)[5, 5].tolist() == [255, 0, 0]


def _roi(path: Path, ring: list) -> Path:
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return path


@pytest.mark.parametrize(
    ("ring", "needle"),
    [
        ([[0, 0], [100, 100], [0, 0]], "2 distinct point(s)"),
        ([[0, 0], [50, 0], [100, 0], [0, 0]], "all on one line"),
    ],
)
def test_roi_polygon_without_area_is_one_line(tmp_path, monkeypatch, capsys, ring, needle):
    from glomkit.roi import Roi

    roi = _roi(tmp_path / "r.geojson", ring)
    with pytest.raises(GlomkitError) as e:
        Roi.read(roi)
    assert needle in str(e.value) and "\n" not in str(e.value)
    ok = _roi(tmp_path / "ok.geojson", [[0, 0], [100, 0], [100, 80], [0, 0]])
    assert len(Roi.read(ok).polygons) == 1
    slide = tmp_path / "s.png"
    cv2.imwrite(str(slide), np.full((64, 64, 3), 240, np.uint8))
    code, _, err = run_glomkit(
        monkeypatch, capsys, "run", slide, "-o", tmp_path / "o", "--mpp", "0.5", "--roi", roi
    )
    errors = [ln for ln in err.splitlines() if ln.startswith("glomkit: error:")]
    assert code == 1 and "Traceback" not in err and len(errors) == 1 and needle in errors[0]


@pytest.mark.parametrize(
    "address", ["not a url", "tcp://host:notaport", "http://x:1", "tcp://127.0.0.1:99999"]
)
def test_malformed_dask_scheduler_is_one_line(tmp_path, monkeypatch, capsys, address):
    pytest.importorskip("distributed")
    slide = tmp_path / "s.png"
    cv2.imwrite(str(slide), np.full((64, 64, 3), 240, np.uint8))
    args = ["run", slide, "-o", tmp_path / "o", "--mpp", "0.5", "--dask-scheduler", address]
    code, out, err = run_glomkit(monkeypatch, capsys, *args)
    assert code == 1 and "Traceback" not in err + out
    assert err.strip().count("\n") == 0 and "not a scheduler address" in err and "tcp://HOST:PORT" in err
    assert not (tmp_path / "o").exists()  # refused before anything runs


def test_png_bombs_in_the_training_readers(tmp_path):
    from glomkit.io.images import read_rgb as ssl_read
    from glomkit.ssl.images import load_resized

    bomb = png_header_only(tmp_path / "bomb.png", 32000, 32000)
    for read in (ssl_read, lambda p: load_resized([p], 32)):  # cluster and pretrain simsiam
        with pytest.raises(GlomkitError, match=r"bomb\.png: declares 32000x32000.*--max-pixels"):
            read(bomb)
    pytest.importorskip("onnx")
    from badinputs import bundled_meta

    from glomkit.models.quantize import calibration_images

    with pytest.raises(GlomkitError, match=r"bomb\.png: declares 32000x32000"):
        list(calibration_images(bundled_meta("classifier"), [bomb]))


def test_mine_composites_alpha_in_bounded_blocks(tmp_path):
    from glomkit.mine.curate import read_figure

    img = np.zeros((300, 200, 4), np.uint8)
    img[:, 100:] = (10, 20, 200, 255)  # BGRA: opaque red on the right, transparent on the left
    img[:, 50:100, 3] = 128
    p = tmp_path / "f.png"
    cv2.imwrite(str(p), img)
    rgb = read_figure(p)
    assert rgb.shape == (300, 200, 3)
    assert rgb[0, 0].tolist() == [255, 255, 255] and rgb[0, 150].tolist() == [200, 20, 10]
    assert rgb[0, 75].tolist() == [127, 127, 127]
