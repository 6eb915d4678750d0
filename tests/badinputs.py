"""Bad inputs made in code, shared by the error-path tests: model files with edited metadata,
truncated, random, sparse, CMYK and huge-declared images, hostile annotation files."""

from __future__ import annotations

import copy
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from glomkit.models.registry import WEIGHTS_DIR

BUNDLED = {
    "detector": WEIGHTS_DIR / "detector.onnx",
    "classifier": WEIGHTS_DIR / "classifier.onnx",
    "segmenter": WEIGHTS_DIR / "segmenter.onnx",
}


def bundled_meta(task: str) -> dict[str, Any]:
    """The metadata of the bundled model of ``task``."""
    import onnx

    model = onnx.load(str(BUNDLED[task]), load_external_data=False)
    return json.loads(next(p.value for p in model.metadata_props if p.key == "glomkit"))


def model_with_meta(task: str, dst: Path, edit: Callable[[dict], Any] | str) -> Path:
    """The bundled model of ``task`` written to ``dst`` with its metadata edited by ``edit`` (which
    changes the dict in place), or replaced by the raw string ``edit``."""
    import onnx

    model = onnx.load(str(BUNDLED[task]))
    entry = next(p for p in model.metadata_props if p.key == "glomkit")
    if isinstance(edit, str):
        entry.value = edit
    else:
        meta = copy.deepcopy(json.loads(entry.value))
        edit(meta)
        entry.value = json.dumps(meta)
    onnx.save(model, str(dst))
    return dst


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A small PNG that declares ``width`` x ``height`` pixels (a decompression bomb's header):
    one compressed row of zeros repeated, so the file stays tiny."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (3 * width)
    data = b"".join(comp.compress(row) for _ in range(min(height, 64))) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def rgb_png(path: Path, w: int = 64, h: int = 64, seed: int = 0) -> Path:
    import cv2

    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return path


def cmyk_tiff(path: Path, w: int = 64, h: int = 64) -> Path:
    import tifffile

    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = 200  # cyan
    tifffile.imwrite(path, img, photometric="separated")
    return path


def huge_declared_tiff(path: Path, side: int = 1_000_000) -> Path:
    """A small stripped RGB TIFF whose header then declares ``side`` x ``side`` pixels."""
    import tifffile

    tifffile.imwrite(path, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    with tifffile.TiffFile(path, mode="r+b") as tf:
        tf.pages[0].tags["ImageWidth"].overwrite(side)
        tf.pages[0].tags["ImageLength"].overwrite(side)
    return path


def sparse_tiled_tiff(path: Path, side: int = 1024) -> Path:
    """A tiled TIFF in which every tile is missing (offset and byte count 0): OpenSlide opens it
    as generic-tiff and reports empty bounds."""
    import tifffile

    tifffile.imwrite(
        path,
        np.zeros((side, side, 3), np.uint8),
        tile=(256, 256),
        photometric="rgb",
        compression="zlib",
        resolution=(40000, 40000),
        resolutionunit="CENTIMETER",
    )
    with tifffile.TiffFile(path, mode="r+b") as tf:
        page = tf.pages[0]
        n = len(page.dataoffsets)
        page.tags["TileByteCounts"].overwrite([0] * n)
        page.tags["TileOffsets"].overwrite([0] * n)
    return path


def run_glomkit(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run ``glomkit ARGS`` in this process through ``glomkit.cli.main``; (exit code, stdout, stderr)."""
    import sys

    from glomkit.cli import main

    monkeypatch.setattr(sys, "argv", ["glomkit", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
