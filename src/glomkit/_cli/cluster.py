"""CLI: ``glomkit cluster``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from glomkit import GlomkitError
from glomkit._cli.progress import stage_progress


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


@click.command("cluster")
@click.option(
    "--images",
    "images",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Image folder(s), recursive. Repeatable.",
)
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--labels", default="", help="CSV with columns image,label: ARI/NMI against it.")
@click.option(
    "--features",
    default="pixels,autoencoder,vgg19,resnet50",
    show_default=True,
    help="pixels, autoencoder, vgg19, resnet50, simsiam (needs --encoder).",
)
@click.option("--reductions", default="pca,isomap,tsne", show_default=True)
@click.option("--k-range", default="2:8", show_default=True, help="MIN:MAX for k-means.")
@click.option("--size", default=64, show_default=True, help="Images resized to SIZE x SIZE.")
@click.option("--dims", default=10, show_default=True, help="PCA/Isomap output dimensions.")
@click.option("--encoder", default="", help="SimSiam encoder file for --features simsiam.")
@click.option("--ae-epochs", default=10, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", default=1, show_default=True)
def cluster_cmd(
    images, out, labels, features, reductions, k_range, size, dims, encoder, ae_epochs, seed, threads
) -> None:
    """Unsupervised clustering study: features x reductions x k-means, scored (and ARI with --labels)."""
    import torch

    from glomkit.cluster.study import ClusterConfig, run_clustering

    torch.set_num_threads(threads)
    console = Console()
    try:
        kmin, kmax = (int(v) for v in k_range.split(":"))
    except ValueError as e:
        raise click.ClickException(f"--k-range {k_range!r}: expected MIN:MAX, e.g. 2:8") from e
    feats = _names(features)
    if encoder and "simsiam" not in feats:
        feats += ("simsiam",)
    cfg = ClusterConfig(
        images=[str(p) for p in images],
        out=str(out),
        labels=labels,
        features=feats,
        reductions=_names(reductions),
        k_min=kmin,
        k_max=kmax,
        size=size,
        dims=dims,
        encoder=encoder,
        ae_epochs=ae_epochs,
        seed=seed,
        command="glomkit cluster " + shlex.join(sys.argv[2:]),
    )
    try:
        with stage_progress(console) as bar:
            task = bar.add_task("cluster", total=None)
            res = run_clustering(
                cfg, lambda d, t, what: bar.update(task, completed=d, total=t, description=what)
            )
    except GlomkitError as e:
        raise click.ClickException(str(e)) from e
    lab = bool(labels)
    table = Table(title=f"clustering {res['n']} images")
    for c in ["features", "reduction", "best k", "silhouette"] + (["ARI", "NMI"] if lab else []):
        table.add_column(c)
    for r in res["summary"]:
        row = [r["feature"], r["reduction"], str(r["best_k"]), f"{r['silhouette']:.3f}"]
        if lab:
            row += [f"{r['ari']:.3f}", f"{r['nmi']:.3f}"]
        table.add_row(*row)
    console.print(table)
    for f, info in res["infos"].items():
        console.print(f"  {f}: {info['weights']}")
    console.print(
        f"[green]wrote[/] {out}/ (clusters.csv, metrics.csv, summary.md, metrics.png, embedding.png, grid_cluster*.png)"
    )
