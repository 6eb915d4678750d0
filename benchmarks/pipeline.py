"""Pipeline benchmark: wall time per stage, tiles/s, glomeruli/s, peak RSS, and the ratio to the limit.

The limit is measured in the same run: the time to read and decode exactly the pixels the
pipeline needs (every detection tile and every glomerulus patch, read one after another), plus the
pure ONNX Runtime compute for exactly the tensors it runs (the same batch shapes, timed around
``session.run`` only). The pipeline itself runs as a separate ``glomkit run`` process so that its
wall time and peak RSS are those of the real command.

    python benchmarks/pipeline.py                       # 40000x30000 at 0.25 µm/px, seed 0
    python benchmarks/pipeline.py --sizes 10000x10000,40000x40000,100000x100000 --rss-only
    python benchmarks/pipeline.py --sizes 100000x100000 --tissue-fraction 0.15 --rss-only --synth-workers 2
    python benchmarks/pipeline.py --before-after --published      # issue 15: start vs now vs published

``--before-after`` runs, in the same process one after the other, the settings at the start of
issue 15 (patches read from level 0 and full detection tiles, ``--patch-level0 --full-tiles``, and the fp32 models of commit 423f9ae,
taken with ``git show``) and the current ones (bundled models, patches from the pyramid level),
each with its own limit, and prints the speed-up. ``--published`` also times the same models run
the way the published toolkit ran them (``benchmarks/published_way.py``: PyTorch eager, batch 1,
every tile and patch through a PNG file; ``--published-subset N`` times N tiles and N patches and
extrapolates). ``--repeat N`` runs N interleaved rounds and prints the medians. The 1-minute load average is printed beside every timed figure.
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


START_REV = "423f9ae"  # the commit issue 15 started from: its bundled (fp32) models


def start_models(workdir: Path, rev: str = START_REV) -> dict[str, str]:
    """The bundled model files of commit ``rev`` (``git show``), written under ``workdir``."""
    repo = Path(__file__).resolve().parents[1]
    out = workdir / f"models_{rev}"
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for task in ("detector", "classifier", "segmenter"):
        dst = out / f"{task}.onnx"
        if not dst.exists():
            blob = subprocess.run(
                ["git", "-C", str(repo), "show", f"{rev}:src/glomkit/models/weights/{task}.onnx"],
                check=True,
                capture_output=True,
            ).stdout
            dst.write_bytes(blob)
        paths[task] = str(dst)
    return paths


def in_child(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a fresh spawned process. The limit and the published way load
    models and read pixels; done in this process, they would grow it, and a `glomkit run` child
    started after that reports this process's size in its own peak RSS (fork/vfork)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def start_code(workdir: Path, rev: str = START_REV) -> Path:
    """The ``src`` folder of commit ``rev`` (``git archive``), for running its `glomkit run`."""
    repo = Path(__file__).resolve().parents[1]
    out = workdir / f"code_{rev}"
    if not (out / "src" / "glomkit" / "cli.py").exists():
        out.mkdir(parents=True, exist_ok=True)
        tar = subprocess.run(
            ["git", "-C", str(repo), "archive", rev, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=tar, check=True)
    return out / "src"


def load() -> str:
    return f"load avg {os.getloadavg()[0]:.2f}"


def run_cli(
    slide: Path,
    out: Path,
    threads: int | None,
    models: dict[str, str] | None = None,
    start_settings: bool = False,
    code: Path | None = None,
) -> tuple[float, float, dict]:
    """Run `glomkit run` in a child process; return (wall s, peak RSS MB, summary). ``code``: a
    ``src`` folder whose glomkit runs instead of this one."""
    cmd = [sys.executable, "-m", "glomkit.cli", "run", str(slide), "-o", str(out), "--overwrite", "--quiet"]
    if threads:
        cmd += ["--threads", str(threads)]
    if start_settings:  # the settings at the start of issue 15
        cmd += ["--patch-level0", "--full-tiles"]
    for task, path in (models or {}).items():
        cmd += [f"--{task}", path]
    env = None
    if code is not None:
        env = dict(os.environ, PYTHONPATH=str(code))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
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
    slide_path: Path,
    summary: dict,
    threads: int | None,
    models: dict[str, str] | None = None,
    start_settings: bool = False,
) -> dict[str, float]:
    """Read time of exactly the needed pixels + ORT compute time of exactly the tensors run."""
    from glomkit.infer.detect import detection_tta, tile_canvas
    from glomkit.infer.patches import PATCH_SIZE, patch_box
    from glomkit.io.table import read_table
    from glomkit.pipeline import Models, PipelineConfig
    from glomkit.slide.grid import TileGrid
    from glomkit.slide.reader import Slide
    from glomkit.slide.tissue import tissue_mask

    cfg = PipelineConfig(threads=threads, **(models or {}))
    if start_settings:  # level-0 patches, full detection tiles
        cfg.patch_mpp = None
        cfg.edge_pad_px = None
    models = Models(cfg)
    det = models.detector
    model_mpp = det.info.mpp or 2.0
    tile_px = cfg.tile_px // 32 * 32
    out_dir = Path(summary["_out_dir"])
    rows = read_table(out_dir / f"{slide_path.stem}_glomeruli.csv")
    with Slide(slide_path) as slide:
        t0 = time.perf_counter()
        thumb, ds = slide.thumbnail(cfg.thumbnail_px)
        read_thumb = time.perf_counter() - t0
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
            patches.append(slide.read_patch(x0, y0, w, h, PATCH_SIZE, PATCH_SIZE, cfg.patch_mpp))
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
    # the batches detect_circles runs: consecutive tiles of one canvas shape, batch_tiles at most
    det_batches = []
    shapes = [tile_canvas(t, tile_px, cfg.edge_pad_px) for t in tiles]
    k = 0
    while k < n_tiles:
        b = 1
        while b < cfg.batch_tiles and k + b < n_tiles and shapes[k + b] == shapes[k]:
            b += 1
        det_batches.append(rng.standard_normal((b, 3, *shapes[k])).astype(np.float32))
        k += b
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
        "read_thumbnail_s": read_thumb,
        "read_tiles_s": read_tiles,
        "read_patches_s": read_patches,
        "ort_detector_s": det_s,
        "ort_classifier_s": cls_s,
        "ort_segmenter_s": seg_s,
        # the tissue thumbnail is pixels the pipeline needs too (counted since issue 15)
        "limit_s": read_thumb + read_tiles + read_patches + det_s + cls_s + seg_s,
        "limit_without_thumbnail_s": read_tiles + read_patches + det_s + cls_s + seg_s,
    }


def bench_one(
    slide: Path, out: Path, args, models: dict[str, str], start_settings: bool, label: str
) -> dict[str, float]:
    """One `glomkit run` and its limit; prints the figures, returns wall, limit, RSS."""
    wall, rss, summary = run_cli(slide, out, args.threads, models, start_settings)
    print(f"\n== {label}: {slide.name}: glomkit run wall {wall:.2f} s, peak RSS {rss:.0f} MB ({load()})")
    t = summary.get("timings", {})
    for k, v in t.items():
        print(f"   stage {k:<12} {v:8.2f} s")
    det = summary.get("detection", {})
    n_tiles = det.get("tiles", 0)
    n_det = summary.get("n_detections", len(summary.get("counts", {})))
    print(f"   tiles {n_tiles:.0f}  ({n_tiles / max(t.get('detect', 1e-9), 1e-9):.2f} tiles/s in detect)")
    print(f"   detections {n_det}  ({n_det / wall:.2f} glomeruli/s over the whole run)")
    res = {"wall_s": wall, "rss_mb": rss, "detections": float(n_det)}
    if args.rss_only:
        return res
    summary["_out_dir"] = str(out / slide.stem)
    lim = in_child(measure_limit, slide, summary, args.threads, models, start_settings)
    for k, v in lim.items():
        print(f"   limit {k:<18} {v:8.2f}")
    res["limit_s"] = lim["limit_s"]
    print(
        f"   RATIO wall / limit = {wall / lim['limit_s']:.3f}  (target ≤ 1.25; "
        f"{wall / lim['limit_without_thumbnail_s']:.3f} without the thumbnail read, the limit "
        f"before issue 15) ({load()})"
    )
    return res


def bench_round(slide: Path, out: Path, args, models: dict[str, str]) -> dict[str, dict | None]:
    """One round: START (and START CODE) when asked, then NOW; prints each and the speed-ups."""
    before = code = None
    if args.before_after:
        old = start_models(args.workdir)
        before = bench_one(slide, args.workdir / "out_start", args, old, True, f"START ({START_REV})")
    if args.before_after and args.start_code:
        src = start_code(args.workdir)
        wall, rss, _ = run_cli(slide, args.workdir / "out_code", args.threads, None, False, src)
        code = {"wall_s": wall, "rss_mb": rss}
        print(
            f"\n== START CODE ({START_REV} itself: its code, models and settings): glomkit run wall "
            f"{wall:.2f} s, peak RSS {rss:.0f} MB; ratio to the START limit "
            f"{wall / before.get('limit_s', float('nan')):.3f} ({load()})"
        )
    now = bench_one(slide, out, args, models, args.start_settings, "NOW")
    if before:
        print(
            f"\n   SPEED-UP start -> now: {before['wall_s'] / now['wall_s']:.2f}x "
            f"(wall {before['wall_s']:.2f} -> {now['wall_s']:.2f} s; target ≥ 2x); peak RSS "
            f"{before['rss_mb']:.0f} -> {now['rss_mb']:.0f} MB"
        )
        if code is not None:
            print(
                f"   SPEED-UP {START_REV} code -> now: {code['wall_s'] / now['wall_s']:.2f}x "
                f"(wall {code['wall_s']:.2f} -> {now['wall_s']:.2f} s)"
            )
        if "limit_s" in now:
            print(
                f"   limit start {before['limit_s']:.2f} s -> now {now['limit_s']:.2f} s "
                f"({before['limit_s'] / now['limit_s']:.2f}x lower)"
            )
    return {"start": before, "code": code, "now": now}


def summarise_rounds(rounds: list[dict[str, dict | None]]) -> None:
    """Medians over the rounds (and each round's speed-up), printed."""
    print(f"\n== MEDIANS over {len(rounds)} rounds")
    med = {}
    for name in ("start", "code", "now"):
        got = [r[name] for r in rounds if r[name]]
        if not got:
            continue
        med[name] = {k: float(np.median([g[k] for g in got])) for k in got[0]}
        m = med[name]
        walls = ", ".join(f"{g['wall_s']:.2f}" for g in got)
        line = f"   {name.upper():<6} wall median {m['wall_s']:.2f} s ({walls}); peak RSS median {m['rss_mb']:.0f} MB"
        if "limit_s" in m:
            line += f"; limit median {m['limit_s']:.2f} s; ratio of medians {m['wall_s'] / m['limit_s']:.3f}"
            per = [g["wall_s"] / g["limit_s"] for g in got]
            ratios = ", ".join(f"{r:.2f}" for r in per)
            line += f" (per round {ratios}; their median {float(np.median(per)):.3f})"
        print(line)
    if "start" in med:
        per = ", ".join(f"{r['start']['wall_s'] / r['now']['wall_s']:.2f}x" for r in rounds)
        print(
            f"   SPEED-UP start -> now, medians: {med['start']['wall_s'] / med['now']['wall_s']:.2f}x (per round {per})"
        )
    if "code" in med:
        per = ", ".join(f"{r['code']['wall_s'] / r['now']['wall_s']:.2f}x" for r in rounds)
        print(
            f"   SPEED-UP {START_REV} code -> now, medians: {med['code']['wall_s'] / med['now']['wall_s']:.2f}x (per round {per})"
        )


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
    ap.add_argument(
        "--start-settings",
        action="store_true",
        help="NOW run with the settings of the start (glomkit run --patch-level0 --full-tiles)",
    )
    ap.add_argument(
        "--before-after",
        action="store_true",
        help=f"also run the settings at the start of issue 15 (level-0 patches, models of {START_REV})",
    )
    ap.add_argument(
        "--start-code",
        action="store_true",
        help=f"with --before-after: also run the code of {START_REV} itself (git archive), its own models",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of START / START CODE / NOW, interleaved; medians are reported (a shared machine "
        "moves one run by 10-40 %%)",
    )
    ap.add_argument("--published", action="store_true", help="also time the published way (needs torch)")
    ap.add_argument(
        "--published-subset", type=int, default=None, help="published way: tiles and patches timed"
    )
    args = ap.parse_args()
    models = {t: getattr(args, t) for t in ("detector", "classifier", "segmenter") if getattr(args, t)}
    args.workdir.mkdir(parents=True, exist_ok=True)
    for size in args.sizes.split(","):
        slide = ensure_slide(size, args.seed, args.workdir, args.synth_workers, args.tissue_fraction)
        out = args.workdir / "out"
        with open(slide, "rb") as f:  # into the page cache, so the first timed run is not the only cold one
            while f.read(1 << 24):
                pass
        rounds = []
        for k in range(args.repeat):
            if args.repeat > 1:
                print(f"\n######## round {k + 1} of {args.repeat}")
            rounds.append(bench_round(slide, out, args, models))
        if args.repeat > 1:
            summarise_rounds(rounds)
        if args.published:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from published_way import run_published

            from glomkit.io.table import read_table

            # the fp32 files of the start: torch cannot rebuild a network from a quantised graph
            fp32 = start_models(args.workdir)
            rows = read_table(out / slide.stem / f"{slide.stem}_glomeruli.csv")
            now_wall = float(np.median([r["now"]["wall_s"] for r in rounds]))
            pub = in_child(
                run_published,
                slide,
                rows,
                (fp32["detector"], fp32["classifier"], fp32["segmenter"]),
                subset=args.published_subset,
                threads=args.threads,
            )
            how = (
                f"EXTRAPOLATED from {pub['tiles_timed']:.0f} of {pub['tiles']:.0f} tiles and "
                f"{pub['patches_timed']:.0f} of {pub['patches']:.0f} patches"
                if pub["extrapolated"]
                else "every tile and patch run"
            )
            print(
                f"\n== PUBLISHED WAY (torch eager, batch 1, PNG round trips; {how}) ({load()})\n"
                f"   {pub['per_tile_s']:.3f} s/tile, {pub['per_patch_s']:.3f} s/patch: total {pub['total_s']:.1f} s "
                f"(not counting the {pub['load_s']:.1f} s this benchmark takes to rebuild the torch networks)\n"
                f"   SPEED-UP of glomkit run (median NOW wall {now_wall:.2f} s) over the published way: "
                f"{pub['total_s'] / now_wall:.1f}x "
                f"(target ≥ 10x)"
            )


if __name__ == "__main__":
    main()
