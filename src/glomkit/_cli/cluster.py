"""CLI: ``glomkit cluster``."""

from __future__ import annotations

import shlex
import sys

import click
from rich.console import Console

from glomkit import GlomkitError
from glomkit._cli.options import images_option, out_option, seed_option, threads_option
from glomkit._cli.progress import stage_progress
from glomkit._cli.tables import result_table


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


@click.command("cluster")
@images_option("Image folder(s), recursive. Repeatable.")
@out_option("Output folder.")
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
@seed_option()
@threads_option(1, None)
def cluster_cmd(images, out, labels, features, reductions, k_range, encoder, threads, **params) -> None:
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
        encoder=encoder,
        command="glomkit cluster " + shlex.join(sys.argv[2:]),
        **params,
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
    cols = ["features", "reduction", "best k", "silhouette"] + (["ARI", "NMI"] if lab else [])
    rows = [
        [r["feature"], r["reduction"], str(r["best_k"]), f"{r['silhouette']:.3f}"]
        + ([f"{r['ari']:.3f}", f"{r['nmi']:.3f}"] if lab else [])
        for r in res["summary"]
    ]
    console.print(result_table(f"clustering {res['n']} images", cols, rows))
    for f, info in res["infos"].items():
        console.print(f"  {f}: {info['weights']}")
    console.print(
        f"[green]wrote[/] {out}/ (clusters.csv, metrics.csv, summary.md, metrics.png, embedding.png, grid_cluster*.png)"
    )
