"""Cohort benchmark: wall time of N synthetic slides with 1 and with more local worker processes.

Each run starts from an empty output folder and goes through ``run_cohort`` exactly as
``glomkit run FOLDER --workers W`` does (W = 1: in this process; W > 1: a process pool, each
worker's ONNX Runtime getting cores // W threads). The time includes starting the workers and
loading the models in each of them. The machine's load average is printed beside each figure:
on a shared machine, other work steals cores and the speed-up is then a lower bound.

    python benchmarks/cohort.py                          # 4 slides of 8000x6000 at 0.5 µm/px, 1 and 2 workers
    python benchmarks/cohort.py --slides 8 --workers 1,2,4 --size 12000x9000 --repeat 2
    python benchmarks/cohort.py --slides 8 --workers 1,2 --dask 2   # + a dask LocalCluster of 2 workers

``--dask N`` also runs the cohort on a ``distributed.LocalCluster`` of N worker processes of one
thread each, every worker's ONNX Runtime getting cores // N threads; the cluster is started before
the clock starts (a cluster outlives a cohort), the models are loaded inside the timed run, once per
worker. Slides per hour are printed for every row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path


def make_cohort(n: int, size: str, mpp: float, workdir: Path) -> list[Path]:
    from glomkit.synth.slide import synthesize_slide

    w, h = (int(v) for v in size.lower().split("x"))
    folder = workdir / f"slides_{w}x{h}_{mpp}"
    folder.mkdir(parents=True, exist_ok=True)
    slides = []
    for seed in range(n):
        path = folder / f"synth_s{seed}.tif"
        if not path.exists():
            t0 = time.perf_counter()
            synthesize_slide(path, w, h, mpp=mpp, seed=seed)
            print(f"synthesised {path.name} in {time.perf_counter() - t0:.1f} s")
        slides.append(path)
    return slides


def time_cohort(
    slides: list[Path], out: Path, workers: int, config, scheduler=None
) -> tuple[float, list[dict]]:
    from glomkit.cohort import run_cohort

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    rows = run_cohort(slides, out, config, workers=workers, scheduler=scheduler, progress=False)
    return time.perf_counter() - t0, rows


def time_dask(slides: list[Path], out: Path, n: int, config) -> tuple[float, list[dict], int]:
    """The cohort on a LocalCluster of ``n`` one-thread worker processes (started before the clock)."""
    from dataclasses import replace

    from distributed import LocalCluster

    from glomkit.cohort import usable_cores

    threads = config.threads or max(1, usable_cores() // n)
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        wall, rows = time_cohort(slides, out, 1, replace(config, threads=threads), scheduler=cluster)
    return wall, rows, threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slides", type=int, default=4, help="number of synthetic slides")
    ap.add_argument("--size", default="8000x6000", help="slide size WxH in pixels")
    ap.add_argument("--mpp", type=float, default=0.5, help="µm per pixel of the synthetic slides")
    ap.add_argument(
        "--workers", default="1,2", help="comma-separated worker counts; the first is the baseline"
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per worker count; the best is kept")
    ap.add_argument("--dask", type=int, default=0, help="also a dask LocalCluster of this many workers")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/glomkit_cohort_bench"))
    for task in ("detector", "classifier", "segmenter"):
        ap.add_argument(f"--{task}", default=None, help=f"{task} model file (default: bundled)")
    args = ap.parse_args()

    from glomkit.cohort import threads_per_worker, usable_cores
    from glomkit.pipeline import PipelineConfig

    config = PipelineConfig(
        detector=args.detector, classifier=args.classifier, segmenter=args.segmenter, quiet=True
    )
    slides = make_cohort(args.slides, args.size, args.mpp, args.workdir)
    counts = [int(w) for w in args.workers.split(",")]
    print(
        f"{len(slides)} slides of {args.size} px at {args.mpp} µm/px; {usable_cores()} usable cores; "
        f"GLOMKIT_THREADS={os.environ.get('GLOMKIT_THREADS', 'unset')}"
    )
    print(
        f"{'workers':>7} {'ONNX threads each':>17} {'wall s':>8} {'s/slide':>8} {'slides/h':>8} "
        f"{'speed-up':>8} {'load avg':>9}"
    )
    base = None
    for w in counts:
        best, rows = float("inf"), []
        for _ in range(args.repeat):
            load = os.getloadavg()[0]
            wall, rows = time_cohort(slides, args.workdir / f"out_w{w}", w, config)
            if wall < best:
                best, best_load = wall, load
        bad = [r for r in rows if r["status"] != "ok"]
        if bad:
            raise SystemExit(f"{len(bad)} slide(s) did not run: {bad[0]['error']}")
        base = base or best
        threads = threads_per_worker(config, w) or os.environ["GLOMKIT_THREADS"]
        print(
            f"{w:>7} {threads:>17} {best:>8.1f} {best / len(slides):>8.2f} {3600 * len(slides) / best:>8.0f} "
            f"{base / best:>7.2f}x {best_load:>9.2f}"
        )
    if args.dask:
        best, rows, threads = float("inf"), [], 0
        for _ in range(args.repeat):
            load = os.getloadavg()[0]
            wall, rows, threads = time_dask(slides, args.workdir / "out_dask", args.dask, config)
            if wall < best:
                best, best_load = wall, load
        bad = [r for r in rows if r["status"] != "ok"]
        if bad:
            raise SystemExit(f"{len(bad)} slide(s) did not run on dask: {bad[0]['error']}")
        label = f"dask {args.dask}"
        print(
            f"{label:>7} {threads:>17} {best:>8.1f} {best / len(slides):>8.2f} {3600 * len(slides) / best:>8.0f} "
            f"{(base or best) / best:>7.2f}x {best_load:>9.2f}"
        )
    n_glom = sum(r["n_glomeruli"] or 0 for r in rows)
    print(f"glomeruli found in the cohort: {n_glom}")


if __name__ == "__main__":
    main()
