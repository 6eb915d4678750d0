"""The same models run the way the published toolkit (Glo-In-One) ran them, timed beside ``glomkit run``.

The published way: PyTorch eager, batch 1, and every detection tile and every glomerulus patch
written to a PNG file on disk and read back before the network sees it (and each mask written as
a PNG). The torch networks are rebuilt from the fp32 ONNX files with
:func:`glomkit.models.recover.load_onnx_weights`, which checks that they compute what ONNX Runtime
computes. Patches are read from level 0 of the slide, as the published toolkit did.

It needs the ``train`` extra (torch, timm, onnx). Used by ``benchmarks/pipeline.py --published``;
on its own::

    python benchmarks/published_way.py SLIDE OUT_DIR_OF_A_GLOMKIT_RUN [--subset 40]

``--subset N`` times N tiles and N patches (evenly spaced) and extrapolates per tile and per
patch to the whole slide; the output says so.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def torch_models(detector: str | Path, classifier: str | Path, segmenter: str | Path):
    """(detector, classifier, segmenter) torch networks in eval mode, weights from the ONNX files."""
    import torch

    from glomkit.models.recover import load_onnx_weights
    from glomkit.models.runtime import read_metadata
    from glomkit.nets.circlenet import build_circlenet
    from glomkit.nets.classifier import build_classifier
    from glomkit.nets.segmenters import create_segmenter

    torch.manual_seed(0)
    dm, cm, sm = (read_metadata(p) for p in (detector, classifier, segmenter))
    if dm.get("architecture") != "circlenet":
        raise SystemExit(f"{detector}: the published way is timed for a CircleNet detector")
    det = build_circlenet(dm["backbone"])
    load_onnx_weights(det, detector, torch.randn(1, 3, 64, 64), lambda n, x: list(n(x)))
    cls = build_classifier(cm["backbone"], len(cm["classes"]["classes"]))
    ch, cw = cm["input_size"]
    load_onnx_weights(cls, classifier, torch.randn(2, 3, ch, cw), lambda n, x: [torch.softmax(n(x), dim=1)])
    seg = create_segmenter(sm["architecture"], sm["encoder"])
    sh, sw = sm["input_size"]
    load_onnx_weights(seg, segmenter, torch.randn(2, 3, sh, sw), lambda n, x: [torch.sigmoid(n(x))])
    return det.eval(), cls.eval(), seg.eval(), (dm, cm, sm)


def _tensor(img: np.ndarray):
    import torch

    from glomkit.models.metadata import IMAGENET_MEAN, IMAGENET_STD

    x = (img.astype(np.float32) / 255.0 - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(
        IMAGENET_STD, np.float32
    )
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))


def _png_round_trip(img: np.ndarray, path: Path) -> np.ndarray:
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def run_published(
    slide_path: Path,
    rows: list[dict],
    models: tuple[str | Path, str | Path, str | Path],
    tile_px: int = 1024,
    overlap_um: float = 320.0,
    margin_um: float = 12.5,
    subset: int | None = None,
    threads: int | None = None,
) -> dict[str, float]:
    """Seconds of the published way on ``slide_path``: detection tiles and the patches of ``rows``
    (the detections of a ``glomkit run`` of the same slide, so both do the same work).

    With ``subset``, only that many tiles and patches (evenly spaced) are run and the totals are
    extrapolated per tile and per patch (``extrapolated`` is then 1.0).
    """
    import torch

    from glomkit.infer.patches import PATCH_SIZE, patch_box
    from glomkit.slide.grid import TileGrid
    from glomkit.slide.reader import Slide
    from glomkit.slide.tissue import tissue_mask

    if threads:
        torch.set_num_threads(threads)
    t_load = time.perf_counter()
    det, cls, seg, (dm, cm, sm) = torch_models(*models)
    load_s = time.perf_counter() - t_load
    model_mpp = float(dm.get("mpp") or 2.0)
    tile = int(tile_px) // 32 * 32
    ch, cw = cm["input_size"]
    sh, sw = sm["input_size"]

    def pick(items: list, n: int | None) -> list:
        if not n or len(items) <= n:
            return items
        idx = np.linspace(0, len(items) - 1, n).round().astype(int)
        return [items[i] for i in sorted(set(idx))]

    with (
        Slide(slide_path) as slide,
        tempfile.TemporaryDirectory(prefix="published_way_") as tmp,
        torch.no_grad(),
    ):
        tmp = Path(tmp)
        thumb, ds = slide.thumbnail(2048)
        overlap = min(int(round(overlap_um / model_mpp)), tile - 32)
        tiles = TileGrid(slide.bounds, slide.mpp, model_mpp, tile, overlap).tiles(
            tissue_mask(thumb), ds, 0.01
        )
        run_tiles = pick(tiles, subset)
        t0 = time.perf_counter()
        for k, t in enumerate(run_tiles):
            img = slide.read_region_scaled(t.x, t.y, t.w, t.h, t.out_w, t.out_h)
            padded = np.full((tile, tile, 3), 255, np.uint8)
            padded[: img.shape[0], : img.shape[1]] = img
            img = _png_round_trip(padded, tmp / f"tile_{k}.png")
            det(_tensor(img))
        tiles_s = time.perf_counter() - t0
        margin = margin_um / slide.mpp
        run_rows = pick(rows, subset)
        t0 = time.perf_counter()
        for k, r in enumerate(run_rows):
            x0, y0, w, h = patch_box(float(r["x"]), float(r["y"]), float(r["radius"]), margin)
            patch = slide.read_region_scaled(x0, y0, w, h, PATCH_SIZE, PATCH_SIZE, level=0)
            patch = _png_round_trip(patch, tmp / f"patch_{k}.png")
            cls(_tensor(cv2.resize(patch, (cw, ch), interpolation=cv2.INTER_AREA)))
            prob = torch.sigmoid(seg(_tensor(cv2.resize(patch, (sw, sh), interpolation=cv2.INTER_LINEAR))))
            mask = (prob[0, 0].numpy() > 0.5).astype(np.uint8) * 255
            cv2.imwrite(str(tmp / f"mask_{k}.png"), mask)
        patches_s = time.perf_counter() - t0
    n_t, n_p = len(tiles), len(rows)
    per_tile = tiles_s / max(len(run_tiles), 1)
    per_patch = patches_s / max(len(run_rows), 1)
    # the model rebuild (timm, ONNX -> torch, checked against ONNX Runtime) is this benchmark's
    # cost, not the published toolkit's (it loads a checkpoint): left out of the total
    total = per_tile * n_t + per_patch * n_p
    return {
        "tiles": float(n_t),
        "patches": float(n_p),
        "tiles_timed": float(len(run_tiles)),
        "patches_timed": float(len(run_rows)),
        "extrapolated": float(len(run_tiles) < n_t or len(run_rows) < n_p),
        "load_s": load_s,
        "per_tile_s": per_tile,
        "per_patch_s": per_patch,
        "total_s": total,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("slide", type=Path)
    ap.add_argument("run_dir", type=Path, help="OUT/<stem>/ of a glomkit run of the same slide")
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--models", nargs=3, default=None, metavar=("DET", "CLS", "SEG"), help="fp32 model files")
    a = ap.parse_args()
    from glomkit.io.table import read_table
    from glomkit.models.registry import bundled_path

    models = a.models or [bundled_path(t) for t in ("detector", "classifier", "segmenter")]
    rows = read_table(a.run_dir / f"{a.slide.stem}_glomeruli.csv")
    res = run_published(a.slide, rows, models, subset=a.subset, threads=a.threads)
    for k, v in res.items():
        print(f"published {k:<14} {v:10.3f}")


if __name__ == "__main__":
    main()
