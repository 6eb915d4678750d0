"""CLI: ``glomkit pretrain simsiam``."""

from __future__ import annotations

from pathlib import Path

import click
import torch
from rich.console import Console
from rich.progress import TextColumn

from glomkit import GlomkitError
from glomkit._cli.options import (
    PATH,
    epochs_option,
    max_minutes_option,
    out_option,
    resume_flag_option,
    seed_option,
    threads_option,
)
from glomkit.progress import bar_progress


def _sources(data: tuple, weights: tuple, mpps: tuple) -> list[dict]:
    """--data / --weight / --data-mpp triples: one weight (mpp) for all, or one per --data."""
    n = len(data)

    def per(values: tuple, name: str, default):
        if not values:
            return [default] * n
        if len(values) == 1:
            return list(values) * n
        if len(values) != n:
            raise click.ClickException(f"{n} --data sources but {len(values)} {name} values")
        return list(values)

    w, m = per(weights, "--weight", 1.0), per(mpps, "--data-mpp", None)
    return [
        {"path": str(p), "weight": wi, "mpp": mi or None}  # --data-mpp 0: the source's own (bueno: none)
        for p, wi, mi in zip(data, w, m, strict=True)
    ]


@click.command("simsiam")
@click.option(
    "--images",
    "images",
    multiple=True,
    type=PATH,
    help="Folder(s) of unlabelled images (recursive; png/jpg/tif), weight 1 each. Repeatable.",
)
@click.option(
    "--data",
    "data",
    multiple=True,
    type=PATH,
    help="A source, repeatable: a bueno_pas folder (its held-out slides are left out), a folder of "
    "images with GeoJSON/XML outlines (training files only; each glomerulus cut at the pipeline's "
    "patch scale), or a plain image folder.",
)
@click.option(
    "--weight", "weights", multiple=True, type=float, help="Draw weight per --data (one, or one each)."
)
@click.option(
    "--data-mpp",
    "data_mpps",
    multiple=True,
    type=float,
    help="µm/px per --data of annotated images (0: the image's own; one, or one each).",
)
@out_option("Encoder file (.pt); the ONNX export is written beside it (.onnx).")
@click.option("--backbone", default="resnet18", show_default=True, help="timm model name (random init).")
@click.option("--size", default=224, show_default=True, help="Crop size in pixels.")
@epochs_option(100)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--base-lr", default=0.05, show_default=True, help="lr = base_lr x batch / 256.")
@click.option("--weight-decay", default=1e-4, show_default=True)
@click.option(
    "--stain-jitter", default=0.0, show_default=True, help="HED stain jitter sigma (0.3: PAS <-> H&E)."
)
@max_minutes_option("Wall-clock budget (0: none).", default=0.0)
@click.option("--max-steps", default=0, show_default=True, help="Stop after this many steps (0: none).")
@click.option("--knn-data", default="", help="Labelled folder (labels.csv image,label) for a k-NN monitor.")
@resume_flag_option("Continue from OUT.ckpt.")
@seed_option()
@click.option("--device", default="auto", show_default=True)
@threads_option(0, "torch CPU threads (0: leave).", show_default=False)
def pretrain_simsiam_cmd(images, data, weights, data_mpps, out, threads, **params) -> None:
    """Self-supervised SimSiam pretraining of a timm backbone on an unlabelled pool."""
    from glomkit.ssl.simsiam import SimSiamConfig, export_encoder_onnx, load_encoder, pretrain_simsiam

    if threads:
        torch.set_num_threads(threads)
    if not images and not data:
        raise click.ClickException("give at least one --data or --images source")
    console = Console()
    cfg = SimSiamConfig(
        images=[str(p) for p in images], out=str(out), sources=_sources(data, weights, data_mpps), **params
    )
    try:
        with bar_progress(
            console, "SimSiam", count=TextColumn("{task.completed}/{task.total} loss {task.fields[loss]:.4f}")
        ) as bar:
            task = bar.add_task("train", total=None, loss=0.0)

            def tick(step: int, total: int, loss: float) -> None:
                bar.update(task, completed=step, total=total, loss=loss)

            path = pretrain_simsiam(cfg, tick)
        _, meta = load_encoder(path)
        onnx_path = export_encoder_onnx(path, Path(path).with_suffix(".onnx"))
    except GlomkitError as e:
        raise click.ClickException(str(e)) from e
    last = meta["history"][-1] if meta["history"] else {}
    for s in meta.get("pool", []):
        console.print(f"  {s['path']}: {s['n']} crops, weight {s['weight']} ({s['kind']})")
    console.print(
        f"[green]wrote[/] {path} and {onnx_path}: {meta['backbone']} on {meta['n_images']} crops, "
        f"{meta['epochs_done']} epochs ({meta['stopped']}), last loss {last.get('loss', float('nan')):.4f}"
        + (f", k-NN bacc {last['knn_bacc']:.3f}" if "knn_bacc" in last else "")
    )
