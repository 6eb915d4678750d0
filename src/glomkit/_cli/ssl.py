"""CLI: ``glomkit pretrain simsiam``."""

from __future__ import annotations

import click
import torch
from rich.console import Console
from rich.progress import TextColumn

from glomkit import GlomkitError
from glomkit._cli.options import (
    epochs_option,
    images_option,
    max_minutes_option,
    out_option,
    resume_flag_option,
    seed_option,
    threads_option,
)
from glomkit.progress import bar_progress


@click.command("simsiam")
@images_option("Folder(s) of unlabelled images (recursive; png/jpg/tif). Repeatable.")
@out_option("Encoder file (.pt).")
@click.option("--backbone", default="resnet18", show_default=True, help="timm model name (random init).")
@click.option("--size", default=224, show_default=True, help="Crop size in pixels.")
@epochs_option(100)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--base-lr", default=0.05, show_default=True, help="lr = base_lr x batch / 256.")
@click.option("--weight-decay", default=1e-4, show_default=True)
@max_minutes_option("Wall-clock budget (0: none).", default=0.0)
@click.option("--max-steps", default=0, show_default=True, help="Stop after this many steps (0: none).")
@click.option("--knn-data", default="", help="Labelled folder (labels.csv image,label) for a k-NN monitor.")
@resume_flag_option("Continue from OUT.ckpt.")
@seed_option()
@click.option("--device", default="auto", show_default=True)
@threads_option(0, "torch CPU threads (0: leave).", show_default=False)
def pretrain_simsiam_cmd(images, out, threads, **params) -> None:
    """Self-supervised SimSiam pretraining of a timm backbone on unlabelled images."""
    from glomkit.ssl.simsiam import SimSiamConfig, load_encoder, pretrain_simsiam

    if threads:
        torch.set_num_threads(threads)
    console = Console()
    cfg = SimSiamConfig(images=[str(p) for p in images], out=str(out), **params)
    try:
        with bar_progress(
            console, "SimSiam", count=TextColumn("{task.completed}/{task.total} loss {task.fields[loss]:.4f}")
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
