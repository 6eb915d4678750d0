"""CLI: ``glomkit run`` and ``glomkit demo`` (the pipeline), ``glomkit classify`` and ``glomkit segment`` (one stage on patch images). Nothing here imports torch."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import click
from rich.console import Console

from glomkit import GlomkitError
from glomkit._cli.options import (
    ORT_THREADS_HELP,
    classifier_option,
    colour_transfer_option,
    detector_option,
    device_option,
    max_pixels_option,
    model_option,
    out_option,
    quiet_options,
    seed_option,
    segmenter_option,
    threads_option,
)
from glomkit._cli.tables import classify_with_progress
from glomkit.core.geometry import DEFAULT_NMS_IOU
from glomkit.core.units import MPP_RANGE
from glomkit.io.images import collect_images


@click.command("run")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_option("Output folder.")
@click.option(
    "--mpp",
    type=click.FloatRange(*MPP_RANGE),
    default=None,
    help=f"µm per pixel, for images that do not record it ({MPP_RANGE[0]:g} to {MPP_RANGE[1]:g}); "
    "a slide recording a scale more than 5 % off is refused.",
)
@click.option(
    "--mpp-table",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV of file,mpp: each slide's µm per pixel (file: a path, file name or stem), "
    "under the same rule as --mpp.",
)
@click.option(
    "--mpp-override",
    is_flag=True,
    help="Use --mpp / --mpp-table even where a slide records another scale.",
)
@detector_option()
@classifier_option()
@segmenter_option()
@device_option()
@threads_option(None, ORT_THREADS_HELP)
@click.option(
    "--score-threshold",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Detection score threshold, 0 to 1 (default: model's).",
)
@click.option(
    "--nms-iou",
    type=click.FloatRange(0.0, 1.0),
    default=DEFAULT_NMS_IOU,
    show_default=True,
    help="Circle-IoU threshold of the NMS, 0 to 1.",
)
@click.option(
    "--tta/--no-tta",
    default=None,
    help="Average detection over h/v flips of each tile (3x detection time); default: the model's.",
)
@colour_transfer_option()
@click.option(
    "--patch-level0",
    is_flag=True,
    help="Read glomerulus patches from level 0 (default: the coarsest level at least as fine as 1 µm/px).",
)
@click.option(
    "--full-tiles",
    is_flag=True,
    help="Run every detection tile on a full 1024-px canvas (default: edge tiles keep their own size).",
)
@click.option("--overwrite", is_flag=True, help="Redo slides whose outputs are complete.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local worker processes (cohorts).",
)
@click.option(
    "--dask-scheduler", default=None, help="Run one task per slide on this dask scheduler (tcp://HOST:PORT)."
)
@click.option(
    "--xml",
    "xml",
    type=click.Choice(["both", "circles", "outlines"]),
    default="both",
    show_default=True,
    help="ImageScope layers: detection circles, segmentation outlines, or both (each layer is marked).",
)
@click.option(
    "--roi",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Analyse only inside the shapes of this QuPath GeoJSON / ImageScope XML file (e.g. cortex), "
    "or of <slide-stem>.geojson/.xml in this folder.",
)
@max_pixels_option()
@quiet_options()
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
def run(
    inputs,
    out,
    mpp,
    mpp_table,
    mpp_override,
    detector,
    classifier,
    segmenter,
    device,
    threads,
    score_threshold,
    nms_iou,
    tta,
    colour_transfer,
    patch_level0,
    full_tiles,
    overwrite,
    workers,
    dask_scheduler,
    xml,
    roi,
    max_pixels,
    quiet,
    silent,
    as_json,
) -> None:
    """Run the whole pipeline on slides, images or folders of them; write OUT/<slide-stem>/."""
    from glomkit.cohort import run_inputs
    from glomkit.pipeline import PipelineConfig

    if mpp_table is not None:
        from glomkit.slide.mpp_table import load_mpp_table

        load_mpp_table(mpp_table)  # a malformed table is refused before any slide runs
        mpp_table = mpp_table.resolve()
    if mpp_override and mpp is None and mpp_table is None:
        raise click.BadParameter("needs --mpp or --mpp-table", param_hint="--mpp-override")
    config = PipelineConfig(
        detector=detector,
        classifier=classifier,
        segmenter=segmenter,
        mpp=mpp,
        mpp_table=None if mpp_table is None else str(mpp_table),
        mpp_override=mpp_override,
        device=device,
        threads=threads,
        score_threshold=score_threshold,
        nms_iou=nms_iou,
        tta=tta,
        colour_transfer=colour_transfer,
        patch_mpp=None if patch_level0 else PipelineConfig.patch_mpp,
        edge_pad_px=None if full_tiles else PipelineConfig.edge_pad_px,
        max_pixels=max_pixels,
        xml=xml,
        roi=str(roi) if roi else None,
        quiet=quiet or silent or as_json,
    )
    rows = run_inputs(
        list(inputs), out, config, overwrite=overwrite, workers=workers, scheduler=dask_scheduler
    )
    failed = [r for r in rows if r["status"] in ("failed", "missing")]
    if as_json:
        click.echo(json.dumps({"out": str(out), "slides": rows}, indent=2, default=str))
    elif not silent:
        click.echo(result_line(rows, out), err=True)
    if failed:
        sys.exit(1)


def result_line(rows: list[dict], out: Path) -> str:
    """The one-line result of a run: slides done, skipped, failed and missing, and where the outputs are."""
    from glomkit.core.wording import count_of

    n = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", "failed", "missing")}
    glom = sum(int(r.get("n_glomeruli") or 0) for r in rows if r["status"] in ("ok", "skipped"))
    parts = [f"{n['ok']} done"] + [f"{n[s]} {s}" for s in ("skipped", "failed", "missing") if n[s]]
    return f"{count_of(len(rows), 'slide')}: {', '.join(parts)}; {count_of(glom, 'glomerulus')}; outputs in {out}/"


@click.command("demo")
@click.option(
    "-o", "--out", "out", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True
)
@click.option(
    "--size", default="12000x9000", show_default=True, help="Synthetic slide size WxH at 0.25 µm/px."
)
@seed_option()
@quiet_options()
def demo(out: Path, size: str, seed: int, quiet: bool, silent: bool) -> None:
    """Synthesise a small PAS-like slide and run the whole pipeline on it.

    The slide is made again when OUT holds one made with another --size or --seed.
    """
    from glomkit.cohort import run_inputs
    from glomkit.io.paths import prepare_out_dir
    from glomkit.pipeline import PipelineConfig
    from glomkit.synth.slide import demo_slide

    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, got {size!r}", param_hint="--size") from None
    if not (64 <= w <= 100_000 and 64 <= h <= 100_000):
        raise click.BadParameter(f"each side must be 64 to 100000 px, got {size!r}", param_hint="--size")
    prepare_out_dir(out)
    slide, made = demo_slide(out, w, h, seed)
    if made and not (quiet or silent):
        click.echo(f"made {slide} ({w}x{h}, seed {seed})", err=True)
    rows = run_inputs([slide], out, PipelineConfig(quiet=quiet or silent), overwrite=True)
    r = rows[0]
    if r["status"] != "ok":
        raise GlomkitError(f"{slide}: {r.get('error')}")
    if not silent:
        click.echo(f"demo slide: {slide} (ground truth beside it: {slide.stem}_truth.csv/.xml/.geojson)")
        click.echo(f"outputs:    {out / slide.stem}/  — open report.html in a browser")


@click.command("classify")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_option("Output CSV.")
@model_option("Classifier")
@max_pixels_option()
@click.option("--quiet", is_flag=True, help="No progress bar (the result line and errors still print).")
def classify_cmd(inputs, out, model, max_pixels, quiet) -> None:
    """Classify glomerulus patch images (files or folders, recursive) into a CSV of probabilities.

    Each image is resized to the model's input as soon as it is decoded (a large JPEG is decoded
    reduced), so memory does not grow with the images' size.
    """
    from glomkit.io.atomic import write_text
    from glomkit.io.paths import prepare_out_file
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import OnnxModel

    paths = collect_images(inputs)
    prepare_out_file(out)
    onnx = OnnxModel(resolve_model(model, "classifier"), expect_task="classifier")
    rows = classify_with_progress(onnx, paths, disable=quiet)
    names = onnx.info.scheme.names
    cols = ["path", "label", *[f"prob_{n}" for n in names], "ggs_probability"]
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    wr.writeheader()
    for r in rows:
        wr.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text(out, buf.getvalue())
    counts = {n: sum(r["label"] == n for r in rows) for n in names}
    Console().print(f"{len(rows)} images -> {out}  " + ", ".join(f"{k}: {v}" for k, v in counts.items()))


@click.command("segment")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_option("Output folder.")
@model_option("Segmenter")
@device_option()
@max_pixels_option()
@click.option("--quiet", is_flag=True, help="No progress bar (the result line and errors still print).")
def segment_cmd(inputs, out, model, device, max_pixels, quiet) -> None:
    """Segment glomerulus images (files or folders, recursive); writes OUT/<stem>.png 0/255 masks.

    Inputs must have distinct file stems (a.png and a.jpg would both write OUT/a.png): refused.
    """
    import numpy as np
    from rich.progress import Progress

    from glomkit import GlomkitError
    from glomkit.infer.segment import segment_patches
    from glomkit.io.atomic import write_png
    from glomkit.io.images import read_rgb
    from glomkit.io.paths import path_under, prepare_out_dir
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import OnnxModel

    files = collect_images(list(inputs))
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise GlomkitError(
                f"{f}: same file stem as {seen[f.stem]}; both masks would be {out}/{f.stem}.png"
            )
        seen[f.stem] = f
    net = OnnxModel(resolve_model(model, "segmenter"), device=device, expect_task="segmenter")
    prepare_out_dir(out)
    with Progress(disable=quiet, transient=True) as progress:
        task = progress.add_task("segmenting", total=len(files))
        for f in files:
            mask = segment_patches(net, read_rgb(f)[None])[0]
            write_png(path_under(out, f"{f.stem}.png"), mask.astype(np.uint8) * 255)
            progress.advance(task)
    Console().print(f"{len(files)} masks written to {out}")
