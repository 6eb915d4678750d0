"""CLI: ``glomkit pretrain simsiam``."""

from __future__ import annotations

from pathlib import Path

import click
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from glomkit import GlomkitError


@click.command("simsiam")
@click.option(
    "--images",
    "images",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Folder(s) of unlabelled images (recursive; png/jpg/tif). Repeatable.",
)
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Encoder file (.pt)."
)
@click.option("--backbone", default="resnet18", show_default=True, help="timm model name (random init).")
@click.option("--size", default=224, show_default=True, help="Crop size in pixels.")
@click.option("--epochs", default=100, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--base-lr", default=0.05, show_default=True, help="lr = base_lr x batch / 256.")
@click.option("--weight-decay", default=1e-4, show_default=True)
@click.option("--max-minutes", default=0.0, show_default=True, help="Wall-clock budget (0: none).")
@click.option("--max-steps", default=0, show_default=True, help="Stop after this many steps (0: none).")
@click.option("--knn-data", default="", help="Labelled folder (labels.csv image,label) for a k-NN monitor.")
@click.option("--resume", is_flag=True, help="Continue from OUT.ckpt.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", default=0, help="torch CPU threads (0: leave).")
def pretrain_simsiam_cmd(
    images,
    out,
    backbone,
    size,
    epochs,
    batch_size,
    base_lr,
    weight_decay,
    max_minutes,
    max_steps,
    knn_data,
    resume,
    seed,
    device,
    threads,
) -> None:
    """Self-supervised SimSiam pretraining of a timm backbone on unlabelled images."""
    from glomkit.ssl.simsiam import SimSiamConfig, load_encoder, pretrain_simsiam

    if threads:
        torch.set_num_threads(threads)
    console = Console()
    cfg = SimSiamConfig(
        images=[str(p) for p in images],
        out=str(out),
        backbone=backbone,
        size=size,
        epochs=epochs,
        batch_size=batch_size,
        base_lr=base_lr,
        weight_decay=weight_decay,
        max_minutes=max_minutes,
        max_steps=max_steps,
        knn_data=knn_data,
        resume=resume,
        seed=seed,
        device=device,
    )
    try:
        with Progress(
            TextColumn("SimSiam"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("train", total=None, loss=0.0)

            def tick(step: int, total: int, loss: float) -> None:
                bar.update(task, completed=step, total=total, loss=loss)

            path = pretrain_simsiam(cfg, tick)
        _, meta = load_encoder(path)
    except GlomkitError as e:
        raise click.ClickException(str(e)) from e
    last = meta["history"][-1] if meta["history"] else {}
    console.print(
        f"[green]wrote[/] {path}: {meta['backbone']} on {meta['n_images']} images, "
        f"{meta['epochs_done']} epochs ({meta['stopped']}), last loss {last.get('loss', float('nan')):.4f}"
        + (f", k-NN bacc {last['knn_bacc']:.3f}" if "knn_bacc" in last else "")
    )
