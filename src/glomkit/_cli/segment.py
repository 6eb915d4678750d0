"""CLI: ``glomkit train segmenter``, ``glomkit evaluate segmenter``, ``glomkit segment``, ``glomkit study segmentation``."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from glomkit import GlomkitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@click.command("segmenter")
@click.option(
    "--data", required=True, type=click.Path(path_type=Path), help="labels.csv folder or images/+masks/."
)
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output model (.onnx)."
)
@click.option(
    "--arch", type=click.Choice(["deeplabv3", "unet", "segnet"]), default="deeplabv3", show_default=True
)
@click.option(
    "--encoder", default="resnet18", show_default=True, help="timm encoder name (pretrained=False)."
)
@click.option("--size", type=click.Choice(["256", "512"]), default="256", show_default=True)
@click.option("--resize-mode", type=click.Choice(["pad", "resize"]), default="resize", show_default=True)
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint beside the model.")
@click.option(
    "--max-minutes", type=float, default=None, help="Wall-clock budget; the LR schedule follows it."
)
@click.option(
    "--test-fold", type=int, default=0, show_default=True, help="Slide fold held out as test (0-4)."
)
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads.")
def train_cmd(
    data,
    out,
    arch,
    encoder,
    size,
    resize_mode,
    epochs,
    batch,
    lr,
    seed,
    resume,
    max_minutes,
    test_fold,
    threads,
) -> None:
    """Train a glomerulus segmenter; writes an ONNX model with its held-out test metrics."""
    from glomkit.models.runtime import read_metadata
    from glomkit.segment.train import SegTrainConfig, train_segmenter

    cfg = SegTrainConfig(
        data=data,
        out=out,
        arch=arch,
        encoder=encoder,
        size=int(size),
        resize_mode=resize_mode,
        epochs=epochs,
        batch=batch,
        lr=lr,
        seed=seed,
        resume=resume,
        max_minutes=max_minutes,
        test_fold=test_fold,
        threads=threads,
    )
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
@click.option("--model", "model", default=None, help="Segmenter model (default: bundled).")
@click.option(
    "--data", required=True, type=click.Path(path_type=Path), help="labels.csv folder or images/+masks/."
)
@click.option(
    "-o", "--out", "out", type=click.Path(path_type=Path), default=None, help="Write the report JSON here."
)
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
    table = Table(title=f"{path.name} on {data} ({split})")
    for col in ("images", "Dice mean ± sd", "IoU", "mIoU", "pixel accuracy"):
        table.add_column(col)
    table.add_row(
        str(rep["n_images"]),
        f"{rep['dice_mean']:.4f} ± {rep['dice_sd']:.4f}",
        f"{rep['iou_mean']:.4f}",
        f"{rep['miou']:.4f}",
        f"{rep['pixel_accuracy']:.4f}",
    )
    con = Console()
    con.print(table)
    slides = Table(title="per-slide Dice")
    slides.add_column("slide")
    slides.add_column("Dice")
    for k, v in rep["per_slide_dice"].items():
        slides.add_row(k, f"{v:.4f}")
    con.print(slides)
    if out is not None:
        write_text(out, json.dumps(rep, indent=1))
        con.print(f"report: {out}")


def _collect_images(inputs: list[Path]) -> list[Path]:
    files = []
    for p in inputs:
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise GlomkitError(f"{p}: no such file or folder")
    if not files:
        raise GlomkitError(f"no images found in {', '.join(map(str, inputs))}")
    return files


@click.command("segment")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--model", "model", default=None, help="Segmenter model (default: bundled).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def segment_cmd(inputs, out, model, device) -> None:
    """Segment glomerulus images (files or folders, recursive); writes OUT/<stem>.png 0/255 masks."""
    import numpy as np
    from rich.progress import Progress

    from glomkit.io.atomic import write_png
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import OnnxModel
    from glomkit.segment.dataset import read_rgb
    from glomkit.segment.predict import segment_patches

    files = _collect_images(list(inputs))
    net = OnnxModel(resolve_model(model, "segmenter"), device=device, expect_task="segmenter")
    with Progress() as progress:
        task = progress.add_task("segmenting", total=len(files))
        for f in files:
            mask = segment_patches(net, read_rgb(f)[None])[0]
            write_png(Path(out) / f"{f.stem}.png", mask.astype(np.uint8) * 255)
            progress.advance(task)
    Console().print(f"{len(files)} masks written to {out}")


@click.command("segmentation")
@click.option(
    "--data", required=True, type=click.Path(path_type=Path), help="labels.csv folder or images/+masks/."
)
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Study output folder."
)
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
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--test-fold", type=int, default=4, show_default=True)
@click.option("--max-minutes-per-run", type=float, default=None)
@click.option("--threads", type=int, default=1, show_default=True)
def study_segmentation_cmd(
    data, out, archs, settings, encoder, epochs, batch, lr, seed, test_fold, max_minutes_per_run, threads
) -> None:
    """U-Net vs SegNet vs DeepLabv3 at 256 px and at 512 px (padding or resizing); tables and figures."""
    from glomkit.segment.study import StudyConfig, run_segmentation_study

    try:
        sets = tuple((int(s.split(":")[0]), s.split(":")[1]) for s in settings.split(","))
    except (ValueError, IndexError):
        raise click.BadParameter(
            f"expected SIZE:MODE,..., got {settings!r}", param_hint="--settings"
        ) from None
    cfg = StudyConfig(
        data=data,
        out=out,
        archs=tuple(a.strip() for a in archs.split(",") if a.strip()),
        settings=sets,
        encoder=encoder,
        epochs=epochs,
        batch=batch,
        lr=lr,
        seed=seed,
        test_fold=test_fold,
        max_minutes_per_run=max_minutes_per_run,
        threads=threads,
    )
    rows = run_segmentation_study(cfg)
    Console().print((Path(out) / "results.md").read_text())
    Console().print(f"{len(rows)} runs; outputs in {out}")
