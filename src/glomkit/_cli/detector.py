"""CLI: ``glomkit train detector`` and ``glomkit evaluate detector``."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from glomkit import GlomkitError


@click.command("detector")
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="bueno_pas folder (fields are composed), folder of annotated images, or circles CSV.",
)
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output model (.onnx)."
)
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
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
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
@click.option("--data-mpp", type=float, default=None, help="µm/px of user images that do not record it.")
@click.option("--resume", type=click.Path(path_type=Path), default=None, help="Checkpoint to continue from.")
@click.option(
    "--max-minutes", type=float, default=None, help="Wall-clock budget; the LR schedule follows it."
)
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
def train_cmd(
    data,
    out,
    arch,
    backbone,
    epochs,
    batch,
    lr,
    seed,
    fields,
    field_size,
    val_fields,
    val_size,
    pool,
    mpp,
    data_mpp,
    resume,
    max_minutes,
    threads,
) -> None:
    """Train a glomerulus detector (CircleNet, or U-Net/SegNet + components); writes an ONNX model."""
    from glomkit.models.runtime import read_metadata

    common = dict(
        data=str(data),
        out=str(out),
        epochs=epochs,
        batch=batch,
        lr=lr,
        seed=seed,
        fields=fields,
        field_size=field_size,
        val_fields=val_fields,
        val_size=val_size,
        pool=pool,
        mpp=mpp,
        resume=str(resume) if resume else None,
        max_minutes=max_minutes,
        threads=threads,
    )
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
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="bueno_pas folder (held-out composed fields), folder of annotated images, or circles CSV.",
)
@click.option(
    "--split",
    type=click.Choice(["test", "val"]),
    default="test",
    show_default=True,
    help="bueno_pas: which held-out slide fold the fields come from.",
)
@click.option("--fields", type=int, default=100, show_default=True, help="bueno_pas: number of fields.")
@click.option("--size", type=int, default=256, show_default=True, help="Field / tile side (px at model mpp).")
@click.option("--seed", type=int, default=20_000, show_default=True, help="bueno_pas: field seed.")
@click.option("--data-mpp", type=float, default=None, help="µm/px of user images that do not record it.")
@click.option("--tta", is_flag=True, help="Average horizontal/vertical flips.")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), default=None, help="Report JSON.")
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
    table = Table(title=f"{model.name} on {report['data']['description']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in report["metrics"].items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) and not float(v).is_integer() else f"{v:g}")
    Console().print(table)
    if out:
        write_text(out, json.dumps(report, indent=2))
        Console().print(f"wrote {out}")
