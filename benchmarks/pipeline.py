"""Pipeline benchmark: wall time per stage, tiles/s, glomeruli/s, peak RSS, and the ratio to the limit.

The limit is measured in the same run: the time to read and decode exactly the pixels the
pipeline needs (every detection tile and every glomerulus patch, read one after another), plus the
pure ONNX Runtime compute for exactly the tensors it runs (the same batch shapes, timed around
``session.run`` only). The pipeline itself runs as a separate ``glomkit run`` process so that its
wall time and peak RSS are those of the real command.

    python benchmarks/pipeline.py                       # 40000x30000 at 0.25 µm/px, seed 0
    python benchmarks/pipeline.py --sizes 10000x10000,40000x40000,100000x100000 --rss-only
    python benchmarks/pipeline.py --sizes 100000x100000 --tissue-fraction 0.15 --rss-only --synth-workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def ensure_slide(
    size: str, seed: int, workdir: Path, workers: int = 1, tissue_fraction: float | None = None
) -> Path:
    from glomkit.synth.slide import synthesize_slide, write_truth

    w, h = (int(v) for v in size.split("x"))
    tag = "" if tissue_fraction is None else f"_t{round(100 * tissue_fraction)}"
    path = workdir / f"synth_{w}x{h}_s{seed}{tag}.tif"
    if not path.exists():
        t0 = time.perf_counter()
        truth = synthesize_slide(
            path, w, h, mpp=0.25, seed=seed, workers=workers, tissue_fraction=tissue_fraction
        )
        write_truth(truth, path)
        print(f"synthesised {path.name} in {time.perf_counter() - t0:.1f} s ({len(truth.glomeruli)} objects)")
    return path


def run_cli(
    slide: Path, out: Path, threads: int | None, models: dict[str, str] | None = None
) -> tuple[float, float, dict]:
    """Run `glomkit run` in a child process; return (wall s, peak RSS MB, summary)."""
    cmd = [sys.executable, "-m", "glomkit.cli", "run", str(slide), "-o", str(out), "--overwrite", "--quiet"]
    if threads:
        cmd += ["--threads", str(threads)]
    for task, path in (models or {}).items():
        cmd += [f"--{task}", path]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    # this child's own rusage (RUSAGE_CHILDREN would also hold the slide generator's workers)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"glomkit run failed on {slide} (exit {proc.returncode})")
    peak = usage.ru_maxrss  # KiB on Linux
    summary = json.loads((out / slide.stem / "summary.json").read_text())
    return wall, peak / 1024.0, summary


def measure_limit(
    slide_path: Path, summary: dict, threads: int | None, models: dict[str, str] | None = None
) -> dict[str, float]:
    """Read time of exactly the needed pixels + ORT compute time of exactly the tensors run."""
    from glomkit.infer.detect import detection_tta
    from glomkit.infer.patches import PATCH_SIZE, patch_box
    from glomkit.io.table import read_table
    from glomkit.pipeline import Models, PipelineConfig
    from glomkit.slide.grid import TileGrid
    from glomkit.slide.reader import Slide
    from glomkit.slide.tissue import tissue_mask

    cfg = PipelineConfig(threads=threads, **(models or {}))
    models = Models(cfg)
    det = models.detector
    model_mpp = det.info.mpp or 2.0
    tile_px = cfg.tile_px // 32 * 32
    out_dir = Path(summary["_out_dir"])
    rows = read_table(out_dir / f"{slide_path.stem}_glomeruli.csv")
    with Slide(slide_path) as slide:
        thumb, ds = slide.thumbnail(cfg.thumbnail_px)
        tissue = tissue_mask(thumb)
        overlap = min(int(round(cfg.overlap_um / model_mpp)), tile_px - 32)
        tiles = TileGrid(slide.bounds, slide.mpp, model_mpp, tile_px, overlap).tiles(
            tissue, ds, cfg.min_tissue
        )
        t0 = time.perf_counter()
        for t in tiles:
            slide.read_region_scaled(t.x, t.y, t.w, t.h, t.out_w, t.out_h)
        read_tiles = time.perf_counter() - t0
        margin = cfg.margin_um / slide.mpp
        t0 = time.perf_counter()
        patches = []
        for r in rows:
            x0, y0, w, h = patch_box(float(r["x"]), float(r["y"]), float(r["radius"]), margin)
            patches.append(slide.read_region_scaled(x0, y0, w, h, PATCH_SIZE, PATCH_SIZE))
        read_patches = time.perf_counter() - t0

    def ort_time(model, batches: list[np.ndarray]) -> float:
        total = 0.0
        for x in batches:
            t0 = time.perf_counter()
            model.session.run(model.output_names, {model.input_name: x})
            total += time.perf_counter() - t0
        return total

    rng = np.random.default_rng(0)
    n_tiles = len(tiles)
    det_batches = []
    for k in range(0, n_tiles, cfg.batch_tiles):
        b = min(cfg.batch_tiles, n_tiles - k)
        det_batches.append(rng.standard_normal((b, 3, tile_px, tile_px)).astype(np.float32))
    runs_per_batch = 3 if detection_tta(cfg.tta, det.info.typed) else 1  # flip TTA: unflipped, h, v
    det_s = ort_time(det, det_batches * runs_per_batch)
    n = len(patches)
    cls_s = seg_s = 0.0
    if n:
        # the same tensor shapes the predict functions build from the patches
        ch, cw = models.classifier.info.input_size
        sh, sw = models.segmenter.info.input_size
        for k in range(0, n, cfg.batch_patches):
            b = min(cfg.batch_patches, n - k)
            cls_s += ort_time(models.classifier, [rng.standard_normal((b, 3, ch, cw)).astype(np.float32)])
            seg_s += ort_time(models.segmenter, [rng.standard_normal((b, 3, sh, sw)).astype(np.float32)])
    return {
        "tiles": n_tiles,
        "glomeruli": n,
        "read_tiles_s": read_tiles,
        "read_patches_s": read_patches,
        "ort_detector_s": det_s,
        "ort_classifier_s": cls_s,
        "ort_segmenter_s": seg_s,
        "limit_s": read_tiles + read_patches + det_s + cls_s + seg_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="40000x30000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "glomkit_bench")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--synth-workers", type=int, default=1, help="processes rendering a missing slide")
    ap.add_argument("--tissue-fraction", type=float, default=None, help="tissue share of new slides")
    ap.add_argument("--rss-only", action="store_true", help="only wall time and peak RSS per size")
    for task in ("detector", "classifier", "segmenter"):
        ap.add_argument(f"--{task}", default=None, help=f"{task} model file (default: bundled)")
    args = ap.parse_args()
    models = {t: getattr(args, t) for t in ("detector", "classifier", "segmenter") if getattr(args, t)}
    args.workdir.mkdir(parents=True, exist_ok=True)
    for size in args.sizes.split(","):
        slide = ensure_slide(size, args.seed, args.workdir, args.synth_workers, args.tissue_fraction)
        out = args.workdir / "out"
        wall, rss, summary = run_cli(slide, out, args.threads, models)
        print(f"\n== {slide.name}: glomkit run wall {wall:.2f} s, peak RSS {rss:.0f} MB")
        t = summary.get("timings", {})
        for k, v in t.items():
            print(f"   stage {k:<12} {v:8.2f} s")
        det = summary.get("detection", {})
        n_tiles = det.get("tiles", 0)
        n_det = summary.get("n_detections", len(summary.get("counts", {})))
        print(f"   tiles {n_tiles:.0f}  ({n_tiles / max(t.get('detect', 1e-9), 1e-9):.2f} tiles/s in detect)")
        print(f"   detections {n_det}  ({n_det / wall:.2f} glomeruli/s over the whole run)")
        if args.rss_only:
            continue
        summary["_out_dir"] = str(out / slide.stem)
        lim = measure_limit(slide, summary, args.threads, models)
        for k, v in lim.items():
            print(f"   limit {k:<18} {v:8.2f}")
        print(f"   RATIO wall / limit = {wall / lim['limit_s']:.3f}  (target ≤ 1.3)")


if __name__ == "__main__":
    main()
