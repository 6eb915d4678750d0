"""CLI: ``glomkit train detector|classifier|segmenter`` and ``glomkit pretrain simsiam``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import TextColumn

from glomkit import GlomkitError
from glomkit._cli.options import (
    MODEL_OUT_HELP,
    PATH,
    aug_option,
    data_option,
    epochs_option,
    label_map_option,
    max_minutes_option,
    out_option,
    resume_flag_option,
    schedule_options,
    scheme_option,
    seed_option,
    stain_norm_option,
    test_fold_option,
    threads_option,
)
from glomkit._cli.tables import command_line, ggs_line
from glomkit.detect.augment import COLOUR_AUGS
from glomkit.kinds import architectures
from glomkit.progress import bar_progress

CLASSIFIER_TRAIN_DATA_HELP = (
    "labels.csv folder, one subfolder per class, or a folder of reviewed slides (glomkit review)."
)

SEGMENTER_DATA_HELP = "labels.csv folder or images/+masks/."


class _Architectures(click.Choice):
    """``--arch``: the registry's architectures when the command runs (a kind registered later counts)."""

    def __init__(self) -> None:
        super().__init__([])

    @property
    def choices(self) -> list[str]:  # type: ignore[override]
        return architectures()

    @choices.setter
    def choices(self, value: object) -> None:  # click.Choice.__init__ sets it; the registry is the truth
        pass


@click.command("detector")
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="bueno_pas folder (fields are composed), folder of annotated images or slides (QuPath "
    "GeoJSON / ImageScope XML of the same stem beside each), or circles CSV. Repeat to mix sources.",
)
@click.option(
    "--weight",
    "weights",
    multiple=True,
    type=click.FloatRange(min=0),
    help="Sampling weight of each --data source, in the same order [default: equal].",
)
@out_option(MODEL_OUT_HELP)
@click.option(
    "--arch",
    type=_Architectures(),
    default=architectures()[0],
    show_default=True,
    help="Network and kind (glomkit.kinds): circlenet (centre heatmap), or a tile segmenter decoded by "
    "connected components.",
)
@click.option(
    "--backbone",
    default=None,
    help="timm backbone / encoder, pretrained=False [default: the kind's].",
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
@click.option(
    "--data-mpp",
    "data_mpp",
    type=click.FloatRange(min=0, min_open=True),
    multiple=True,
    help="µm/px of user images that do not record it: one value for all --data sources, or one per source.",
)
@click.option(
    "--scale-jitter",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="Annotated images: tiles read at 1/(1+j) to (1+j) times the nominal scale.",
)
@click.option(
    "--hard-fraction",
    type=click.FloatRange(0, 0.9),
    default=0.15,
    show_default=True,
    help="Annotated images: share of training tiles centred on the model's mined false positives.",
)
@click.option(
    "--val-block",
    type=int,
    default=-1,
    show_default=True,
    help="Annotated images: which of 5 contiguous blocks of file numbers validates (test* files are never used).",
)
@click.option(
    "--select",
    type=click.Choice(["AP50", "AP", "AP75"]),
    default="AP50",
    show_default=True,
    help="Validation figure that picks the best epoch.",
)
@click.option("--resume", type=click.Path(path_type=Path), default=None, help="Checkpoint to continue from.")
@max_minutes_option()
@threads_option(None)
@click.option(
    "--init",
    default=None,
    help="Start from a detector file of the same --arch, or 'bundled' (its backbone and, unless --mpp is "
    "given, its mpp).",
)
@click.option(
    "--edge-ignore",
    "edge_ignore",
    multiple=True,
    type=click.Path(path_type=Path),
    help="An annotated --data source whose glomeruli cut by an image edge are often not outlined "
    "(cgmh_he): a band of one median glomerulus radius along its image edges gets no background loss "
    "and is left out of validation. Repeatable.",
)
@click.option(
    "--colour-aug",
    "colour_aug",
    type=click.Choice(list(COLOUR_AUGS)),
    default=COLOUR_AUGS[0],
    show_default=True,
    help="wide: also recolour every training field through a random stain basis (80 %) and grey "
    "(20 %), so that a stain never trained on looks like one that was (CircleNet only). Measured: "
    "helps on a stain absent from training, costs on one present (detector card, session 20).",
)
@click.pass_context
def train_detector_cmd(
    ctx,
    data,
    weights,
    out,
    arch,
    backbone,
    data_mpp,
    resume,
    scale_jitter,
    hard_fraction,
    val_block,
    select,
    init,
    edge_ignore,
    colour_aug,
    **params,
) -> None:
    """Train a glomerulus detector (CircleNet, or U-Net/SegNet + components); writes an ONNX model."""
    from glomkit.models.runtime import read_typed_metadata

    if weights and len(weights) != len(data):
        raise GlomkitError(f"{len(data)} --data sources but {len(weights)} --weight values")
    if init:
        from glomkit.detect.warm_start import detector_init_metadata

        _, meta = detector_init_metadata(init, arch)
        backbone = backbone or meta.backbone
        if ctx.get_parameter_source("mpp") == click.core.ParameterSource.DEFAULT:
            params["mpp"] = meta.mpp
    from glomkit.kinds import TrainRequest, kind_for_arch

    path = kind_for_arch(arch).train(
        TrainRequest(
            arch=arch,
            sources=[str(d) for d in data],
            weights=list(weights) or None,
            backbone=backbone,
            data_mpp=list(data_mpp) or None,
            options=dict(out=str(out), resume=str(resume) if resume else None, **params),
            extra=dict(
                scale_jitter=scale_jitter,
                hard_fraction=hard_fraction,
                val_block=val_block,
                select=select,
                init=init,
                edge_ignore=[str(e) for e in edge_ignore] or None,
                colour_aug=colour_aug,
            ),
        )
    )
    val = read_typed_metadata(path).metrics["validation"]
    extra = f"  mIoU {val['mIoU']:.3f}" if "mIoU" in val else ""
    Console().print(f"wrote {path}  validation AP50 {val['AP50']:.3f}  AP {val['AP']:.3f}{extra}")


@click.command("classifier")
@data_option(CLASSIFIER_TRAIN_DATA_HELP)
@out_option(MODEL_OUT_HELP)
@scheme_option()
@label_map_option()
@click.option(
    "--backbone",
    default="resnet10t",
    show_default=True,
    help="timm backbone (pretrained=False), e.g. resnet50.",
)
@click.option("--size", type=int, default=128, show_default=True, help="Square input size in pixels.")
@schedule_options(
    epochs=20, batch=32, lr=None, lr_help="Learning rate [default: 1e-3 AdamW; 30 SGD for --linear-probe]."
)
@click.option("--focal-gamma", type=float, default=2.5, show_default=True)
@aug_option()
@stain_norm_option()
@seed_option()
@resume_flag_option()
@max_minutes_option("Wall-clock budget: stop after the epoch that passes it.")
@click.option(
    "--init",
    "init",
    type=click.Path(path_type=Path),
    default=None,
    help="Start from a SimSiam encoder file, a glomkit classifier .onnx, or 'bundled' (the bundled classifier).",
)
@click.option(
    "--linear-probe/--finetune", default=False, show_default=True, help="Freeze the backbone (needs --init)."
)
@test_fold_option()
@threads_option()
def train_classifier_cmd(data, out, label_map, init, **params) -> None:
    """Train a glomerulus classifier; writes an ONNX model with its held-out test metrics."""
    from glomkit.classify.data import parse_label_map
    from glomkit.classify.train import ClassifierConfig, train_classifier
    from glomkit.data.reviewed import find_reviewed, write_reviewed_patches
    from glomkit.eval.classification import report_table
    from glomkit.models.runtime import read_typed_metadata

    if not (Path(data) / "labels.csv").is_file() and find_reviewed(data):
        data, counts = write_reviewed_patches(data, Path(out).with_name(Path(out).stem + "_patches"))
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        Console().print(f"reviewed glomeruli cut into {data}: {shown}")
    cfg = ClassifierConfig(
        data=str(data),
        out=str(out),
        label_map=parse_label_map(label_map),
        init=None if init is None else str(init),
        command=command_line("glomkit train classifier"),
        **params,
    )
    path = train_classifier(cfg)
    md = read_typed_metadata(path)
    con = Console()
    con.print(f"model: {path}  (best epoch {md.best_epoch})")
    for split in ("validation", "test"):
        rep = md.split_metrics(split)
        if rep:
            con.print(report_table(rep, f"{split} slides"))
            if rep.get("ggs"):
                con.print(ggs_line(f"{split}: GGS vs not", rep["ggs"]))


def _multiple_of_32(ctx: click.Context, param: click.Parameter, value: int) -> int:  # noqa: ARG001
    if value % 32:
        raise click.BadParameter(f"{value} is not a multiple of 32")
    return value


@click.command("segmenter")
@data_option(SEGMENTER_DATA_HELP)
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
def train_segmenter_cmd(size, extra_train, **params) -> None:
    """Train a glomerulus segmenter; writes an ONNX model with its held-out test metrics."""
    from glomkit.models.runtime import read_typed_metadata
    from glomkit.segment.train import SegTrainConfig, train_segmenter

    cfg = SegTrainConfig(size=size, extra_train=[str(p) for p in extra_train], **params)
    path = train_segmenter(cfg)
    m = read_typed_metadata(path).metrics
    con = Console()
    con.print(f"model: {path}  (best val Dice {m['val_dice']:.4f})")
    if "test" in m:
        t = m["test"]
        con.print(
            f"test slides: Dice {t['dice_mean']:.4f} ± {t['dice_sd']:.4f}, mIoU {t['miou']:.4f}, "
            f"pixel accuracy {t['pixel_accuracy']:.4f} ({t['n_images']} images)"
        )


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
@click.option(
    "--color-jitter",
    default=0.4,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Brightness/contrast/saturation jitter (hue a quarter); 0: none and no grey views.",
)
@click.option(
    "--crop-scale",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0.05, 1.0),
    help="Smallest area share of the random resized crop.",
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
        import torch

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
