"""CLI: ``glomkit cluster``."""

from __future__ import annotations

import shlex
import sys

import click
from rich.console import Console

from glomkit import GlomkitError
from glomkit._cli.options import PATH, out_option, seed_option, threads_option
from glomkit._cli.tables import result_table
from glomkit.cluster.features import STAIN_VIEWS
from glomkit.progress import bar_progress


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


@click.command("cluster")
@click.option("--images", "images", multiple=True, type=PATH, help="Image folder(s), recursive. Repeatable.")
@click.option(
    "--data",
    "data",
    multiple=True,
    type=PATH,
    help="Folder of images with glomerulus outlines (GeoJSON/XML): the glomeruli of its held-out "
    "files (split as in training), cut as the pipeline cuts them. Repeatable.",
)
@click.option(
    "--data-mpp", "data_mpps", multiple=True, type=float, help="µm/px per --data (one, or one each)."
)
@out_option("Output folder.")
@click.option("--labels", default="", help="CSV with columns image,label: ARI/NMI against it.")
@click.option(
    "--features",
    default="morphometry,pixels,autoencoder,vgg19,resnet50",
    show_default=True,
    help="pixels, morphometry (three colour-free measures of the tuft, no model), autoencoder, vgg19, "
    "resnet50, simsiam (needs --encoder).",
)
@click.option("--reductions", default="pca,isomap,tsne", show_default=True)
@click.option("--k-range", default="2:8", show_default=True, help="MIN:MAX for k-means.")
@click.option("--size", default=64, show_default=True, help="Images resized to SIZE x SIZE.")
@click.option("--dims", default=10, show_default=True, help="PCA/Isomap output dimensions.")
@click.option(
    "--encoder",
    default="",
    help="SimSiam encoder (.onnx from glomkit pretrain simsiam, run on ONNX Runtime; or its .pt): adds --features simsiam.",
)
@click.option(
    "--subset",
    type=click.Choice(["all", "held-out"]),
    default="all",
    show_default=True,
    help="held-out: only the bueno slides SimSiam pretraining leaves out (needs --labels with source_wsi).",
)
@click.option(
    "--stain",
    type=click.Choice(list(STAIN_VIEWS)),
    default="auto",
    show_default=True,
    help="Stain view of the crops before the features: normalised (reinhard, macenko) or grey; auto: "
    "each feature's own (morphometry: macenko, measured at 128 px; the others: none).",
)
@click.option(
    "--label-by",
    type=click.Choice(["label", "source"]),
    default="label",
    show_default=True,
    help="ARI/NMI against the --labels column, or against each crop's source folder (stain / lab).",
)
@click.option(
    "--score-in",
    "score_space",
    type=click.Choice(["embedding", "features"]),
    default="features",
    show_default=True,
    help="Measure the internal scores of each k-means partition in its embedding, or in the standardised "
    "features that all embeddings share (makes PCA, Isomap and t-SNE comparable).",
)
@click.option("--ae-epochs", default=10, show_default=True)
@seed_option()
@threads_option(1, None)
def cluster_cmd(
    images, data, data_mpps, out, labels, features, reductions, k_range, encoder, threads, **params
) -> None:
    """Unsupervised clustering study: features x reductions x k-means, scored (and ARI with --labels)."""
    from glomkit.cluster.study import ClusterConfig, run_clustering

    console = Console()
    try:
        kmin, kmax = (int(v) for v in k_range.split(":"))
    except ValueError as e:
        raise click.ClickException(f"--k-range {k_range!r}: expected MIN:MAX, e.g. 2:8") from e
    if not images and not data:
        raise click.ClickException("give at least one --images or --data folder")
    if data_mpps and len(data_mpps) not in (1, len(data)):
        raise click.ClickException(f"{len(data)} --data folders but {len(data_mpps)} --data-mpp values")
    mpps = list(data_mpps) * len(data) if len(data_mpps) == 1 else list(data_mpps) or [None] * len(data)
    feats = _names(features)
    if encoder and "simsiam" not in feats:
        feats += ("simsiam",)
    onnx_only = {"pixels", "morphometry"} | ({"simsiam"} if encoder.lower().endswith(".onnx") else set())
    if set(feats) - onnx_only:  # torch features: keep torch to --threads too
        import torch

        torch.set_num_threads(threads)
    cfg = ClusterConfig(
        images=[str(p) for p in images],
        out=str(out),
        labels=labels,
        features=feats,
        reductions=_names(reductions),
        k_min=kmin,
        k_max=kmax,
        encoder=encoder,
        data=[{"path": str(d), "mpp": m or None} for d, m in zip(data, mpps, strict=True)],
        threads=threads,
        command="glomkit cluster " + shlex.join(sys.argv[2:]),
        **params,
    )
    try:
        with bar_progress(console) as bar:
            task = bar.add_task("cluster", total=None)
            res = run_clustering(
                cfg, lambda d, t, what: bar.update(task, completed=d, total=t, description=what)
            )
    except GlomkitError as e:
        raise click.ClickException(str(e)) from e
    lab = bool(labels) or params["label_by"] == "source"
    cols = ["features", "reduction", "best k", "silhouette"] + (["ARI", "NMI"] if lab else [])
    rows = [
        [r["feature"], r["reduction"], str(r["best_k"]), f"{r['silhouette']:.3f}"]
        + ([f"{r['ari']:.3f}", f"{r['nmi']:.3f}"] if lab else [])
        for r in res["summary"]
    ]
    console.print(result_table(f"clustering {res['n']} images", cols, rows))
    for c in res["choices"]:
        console.print(
            f"  chosen without labels: {c['feature']} / {c['reduction']}, k = {c['k']}"
            + (f": ARI {c['ari']:.3f}, NMI {c['nmi']:.3f}" if "ari" in c else "")
        )
        if "solid_cluster" in c:
            console.print(
                f"    most solid tufts: cluster {c['solid_cluster']} ({c['solid_n']} crops)"
                + (
                    f"; it against the rest: ARI {c['ari_solid_vs_rest']:.3f}"
                    if "ari_solid_vs_rest" in c
                    else ""
                )
            )
    for f, info in res["infos"].items():
        console.print(f"  {f}: {info['weights']}")
    console.print(
        f"[green]wrote[/] {out}/ (summary.md, choice.csv, crosstab.csv, clusters.csv, metrics.csv, "
        "map*.png, gallery/, grid_cluster*.png, metrics.png, embedding.png)"
    )
