"""CLI: ``glomkit train detector`` and ``glomkit evaluate detector``."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from glomkit import GlomkitError
from glomkit._cli.options import (
    MODEL_OUT_HELP,
    data_mpp_option,
    data_option,
    max_minutes_option,
    out_option,
    schedule_options,
    seed_option,
    threads_option,
)
from glomkit._cli.tables import result_table


@click.command("detector")
@data_option("bueno_pas folder (fields are composed), folder of annotated images, or circles CSV.")
@out_option(MODEL_OUT_HELP)
@click.option(
    "--arch",
    type=click.Choice(["circlenet", "unet", "segnet"]),
    default="circlenet",
    show_default=True,
    help="circlenet (centre heatmap), or a tile segmenter decoded by connected components.",
)
@click.option(
    "--backbone",
    default=None,
    help="timm backbone / encoder, pretrained=False [default: resnet18 for circlenet, resnet10t otherwise].",
)
@schedule_options(epochs=30, batch=8, lr=2e-3)
@seed_option()
@click.option(
    "--fields", type=int, default=256, show_default=True, help="Training fields (or tiles) per epoch."
)
@click.option(
    "--field-size", type=int, default=160, show_default=True, help="Training field side (px, multiple of 32)."
)
@click.option("--val-fields", type=int, default=64, show_default=True)
@click.option("--val-size", type=int, default=256, show_default=True, help="Validation field side (px).")
@click.option(
    "--pool", type=int, default=48, show_default=True, help="Synthetic tissue/glomerulus pool size."
)
@click.option(
    "--mpp", type=float, default=4.0, show_default=True, help="Working resolution of the model (µm/px)."
)
@data_mpp_option()
@click.option("--resume", type=click.Path(path_type=Path), default=None, help="Checkpoint to continue from.")
@max_minutes_option()
@threads_option(None)
def train_cmd(data, out, arch, backbone, data_mpp, resume, **params) -> None:
    """Train a glomerulus detector (CircleNet, or U-Net/SegNet + components); writes an ONNX model."""
    from glomkit.models.runtime import read_metadata

    common = dict(data=str(data), out=str(out), resume=str(resume) if resume else None, **params)
    if arch == "circlenet":
        from glomkit.detect.train import DetectorTrainConfig, train_detector

        path = train_detector(
            DetectorTrainConfig(backbone=backbone or "resnet18", data_mpp=data_mpp, **common)
        )
    else:
        from glomkit.detect.segdetect import SegDetectorTrainConfig, train_segdetector

        path = train_segdetector(SegDetectorTrainConfig(arch=arch, encoder=backbone or "resnet10t", **common))
    val = read_metadata(path)["metrics"]["validation"]
    extra = f"  mIoU {val['mIoU']:.3f}" if "mIoU" in val else ""
    Console().print(f"wrote {path}  validation AP50 {val['AP50']:.3f}  AP {val['AP']:.3f}{extra}")


@click.command("detector")
@click.option(
    "--model",
    "model",
    required=True,
    help="Detector .onnx, or a bundled name: circlenet, unet, segnet.",
)
@data_option("bueno_pas folder (held-out composed fields), folder of annotated images, or circles CSV.")
@click.option(
    "--split",
    type=click.Choice(["test", "val"]),
    default="test",
    show_default=True,
    help="bueno_pas: which held-out slide fold the fields come from.",
)
@click.option("--fields", type=int, default=100, show_default=True, help="bueno_pas: number of fields.")
@click.option("--size", type=int, default=256, show_default=True, help="Field / tile side (px at model mpp).")
@seed_option(20_000, "bueno_pas: field seed.")
@data_mpp_option()
@click.option("--tta", is_flag=True, help="Average horizontal/vertical flips.")
@out_option("Report JSON.", required=False)
def evaluate_cmd(model, data, split, fields, size, seed, data_mpp, tta, out) -> None:
    """Circle AP (COCO-style with circle IoU) of a detector model on held-out data.

    For a segmentation detector (U-Net/SegNet, decode method 'components') also mIoU and pixel
    accuracy, on the same fields.
    """
    from glomkit.detect.evaluate import evaluate_detector_file
    from glomkit.io.atomic import write_text
    from glomkit.models.registry import resolve_model

    if size % 32:
        raise GlomkitError(f"--size {size}: must be a multiple of 32")
    model = resolve_model(model, "detector")
    report = evaluate_detector_file(
        model, data, split=split, n_fields=fields, size=size, seed=seed, data_mpp=data_mpp, tta=tta
    )
    rows = [
        (k, f"{v:.4f}" if isinstance(v, float) and not float(v).is_integer() else f"{v:g}")
        for k, v in report["metrics"].items()
    ]
    title = f"{model.name} on {report['data']['description']}"
    Console().print(result_table(title, ("metric", "value"), rows, right={"value"}))
    if out:
        write_text(out, json.dumps(report, indent=2))
        Console().print(f"wrote {out}")
