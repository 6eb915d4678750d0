"""CLI: ``glomkit train segmenter``, ``glomkit evaluate segmenter``, ``glomkit segment``, ``glomkit study segmentation``."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from glomkit._cli.options import (
    MODEL_OUT_HELP,
    data_option,
    device_option,
    max_minutes_option,
    max_pixels_option,
    model_option,
    out_option,
    resume_flag_option,
    schedule_options,
    seed_option,
    test_fold_option,
    threads_option,
)
from glomkit._cli.tables import result_table
from glomkit.io.images import collect_images

DATA_HELP = "labels.csv folder or images/+masks/."


def _multiple_of_32(ctx: click.Context, param: click.Parameter, value: int) -> int:  # noqa: ARG001
    if value % 32:
        raise click.BadParameter(f"{value} is not a multiple of 32")
    return value


@click.command("segmenter")
@data_option(DATA_HELP)
@out_option(MODEL_OUT_HELP)
@click.option(
    "--arch", type=click.Choice(["deeplabv3", "unet", "segnet"]), default="deeplabv3", show_default=True
)
@click.option(
    "--encoder", default="resnet18", show_default=True, help="timm encoder name (pretrained=False)."
)
@click.option(
    "--size",
    type=click.IntRange(64, 1024),
    default=256,
    show_default=True,
    callback=_multiple_of_32,
    help="Square input size in pixels (a multiple of 32).",
)
@click.option("--resize-mode", type=click.Choice(["pad", "resize"]), default="resize", show_default=True)
@schedule_options(epochs=30, batch=8, lr=1e-3)
@seed_option()
@resume_flag_option()
@max_minutes_option()
@test_fold_option()
@threads_option()
@click.option(
    "--extra-train",
    "extra_train",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Folder of image/mask pairs added to training only (never validation or test), e.g. "
    "in-context patches from python -m glomkit.segment.context_data. Repeatable.",
)
@click.option(
    "--init",
    default=None,
    help="Start from a segmenter model file, or 'bundled' (weights recovered from the ONNX file).",
)
def train_cmd(size, extra_train, **params) -> None:
    """Train a glomerulus segmenter; writes an ONNX model with its held-out test metrics."""
    from glomkit.models.runtime import read_metadata
    from glomkit.segment.train import SegTrainConfig, train_segmenter

    cfg = SegTrainConfig(size=size, extra_train=[str(p) for p in extra_train], **params)
    path = train_segmenter(cfg)
    m = read_metadata(path)["metrics"]
    con = Console()
    con.print(f"model: {path}  (best val Dice {m['val_dice']:.4f})")
    if "test" in m:
        t = m["test"]
        con.print(
            f"test slides: Dice {t['dice_mean']:.4f} ± {t['dice_sd']:.4f}, mIoU {t['miou']:.4f}, "
            f"pixel accuracy {t['pixel_accuracy']:.4f} ({t['n_images']} images)"
        )


@click.command("segmenter")
@model_option("Segmenter")
@data_option(DATA_HELP)
@out_option("Write the report JSON here.", required=False)
@click.option(
    "--split",
    type=click.Choice(["test", "val", "train", "all"]),
    default="test",
    show_default=True,
    help="Slides to score, as listed in the model metadata (all: every pair).",
)
def evaluate_cmd(model, data, out, split) -> None:
    """Score a segmenter on a data folder: Dice, IoU, mIoU, pixel accuracy, per slide."""
    from rich.progress import Progress

    from glomkit.io.atomic import write_text
    from glomkit.models.registry import resolve_model
    from glomkit.segment.evaluate import evaluate_segmenter

    path = resolve_model(model, "segmenter")
    with Progress(transient=True) as progress:
        task = progress.add_task("segmenting", total=None)
        rep = evaluate_segmenter(path, data, split=split, progress=lambda n: progress.advance(task, n))
    con = Console()
    con.print(
        result_table(
            f"{path.name} on {data} ({split})",
            ("images", "Dice mean ± sd", "IoU", "mIoU", "pixel accuracy"),
            [
                (
                    str(rep["n_images"]),
                    f"{rep['dice_mean']:.4f} ± {rep['dice_sd']:.4f}",
                    f"{rep['iou_mean']:.4f}",
                    f"{rep['miou']:.4f}",
                    f"{rep['pixel_accuracy']:.4f}",
                )
            ],
        )
    )
    slides = [(k, f"{v:.4f}") for k, v in rep["per_slide_dice"].items()]
    con.print(result_table("per-slide Dice", ("slide", "Dice"), slides))
    if out is not None:
        write_text(out, json.dumps(rep, indent=1))
        con.print(f"report: {out}")


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
    from glomkit.io.paths import path_under, prepare_out_dir
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import OnnxModel
    from glomkit.segment.dataset import read_rgb

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


@click.command("segmentation")
@data_option(DATA_HELP)
@out_option("Study output folder.")
@click.option(
    "--archs", default="unet,segnet,deeplabv3", show_default=True, help="Comma-separated architectures."
)
@click.option(
    "--settings",
    default="256:resize,512:pad,512:resize",
    show_default=True,
    help="Comma-separated SIZE:MODE input settings.",
)
@click.option("--encoder", default="resnet10t", show_default=True)
@schedule_options(epochs=10, batch=8, lr=2e-3)
@seed_option()
@test_fold_option(4, None)
@click.option("--max-minutes-per-run", type=float, default=None)
@threads_option(1, None)
def study_segmentation_cmd(archs, settings, **params) -> None:
    """U-Net vs SegNet vs DeepLabv3 at 256 px and at 512 px (padding or resizing); tables and figures."""
    from glomkit.segment.study import StudyConfig, run_segmentation_study

    try:
        sets = tuple((int(s.split(":")[0]), s.split(":")[1]) for s in settings.split(","))
    except (ValueError, IndexError):
        raise click.BadParameter(
            f"expected SIZE:MODE,..., got {settings!r}", param_hint="--settings"
        ) from None
    cfg = StudyConfig(archs=tuple(a.strip() for a in archs.split(",") if a.strip()), settings=sets, **params)
    rows = run_segmentation_study(cfg)
    Console().print((Path(cfg.out) / "results.md").read_text())
    Console().print(f"{len(rows)} runs; outputs in {cfg.out}")
