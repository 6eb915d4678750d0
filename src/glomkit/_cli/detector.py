"""CLI: ``glomkit train detector`` and ``glomkit evaluate detector``."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from glomkit import GlomkitError
from glomkit._cli.options import (
    MODEL_OUT_HELP,
    classifier_option,
    colour_transfer_option,
    data_mpp_option,
    data_option,
    detector_option,
    max_minutes_option,
    out_option,
    schedule_options,
    seed_option,
    segmenter_option,
    threads_option,
)
from glomkit._cli.tables import result_table
from glomkit.kinds import architectures
from glomkit.models.registry import bundled_names


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
@click.pass_context
def train_cmd(
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
    **params,
) -> None:
    """Train a glomerulus detector (CircleNet, or U-Net/SegNet + components); writes an ONNX model."""
    from glomkit.models.runtime import read_metadata

    if weights and len(weights) != len(data):
        raise GlomkitError(f"{len(data)} --data sources but {len(weights)} --weight values")
    if init:
        from glomkit.detect.warm_start import detector_init_metadata

        _, meta = detector_init_metadata(init, arch)
        backbone = backbone or meta.get("backbone")
        if ctx.get_parameter_source("mpp") == click.core.ParameterSource.DEFAULT:
            params["mpp"] = float(meta.get("mpp", params["mpp"]))
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
            ),
        )
    )
    val = read_metadata(path)["metrics"]["validation"]
    extra = f"  mIoU {val['mIoU']:.3f}" if "mIoU" in val else ""
    Console().print(f"wrote {path}  validation AP50 {val['AP50']:.3f}  AP {val['AP']:.3f}{extra}")


@click.command("detector")
@click.option(
    "--model",
    "model",
    required=True,
    help=f"Detector .onnx, or a bundled name: {', '.join(bundled_names('detector'))}.",
)
@data_option(
    "bueno_pas folder (held-out composed fields), folder of annotated images or slides, or circles CSV."
)
@click.option(
    "--split",
    type=click.Choice(["test", "val", "train", "all"]),
    default="test",
    show_default=True,
    help="bueno_pas: the held-out slide fold of the fields (test or val). Annotated images: test = "
    "the files named test*, val = the held-out block of file numbers (see --val-block).",
)
@click.option("--fields", type=int, default=100, show_default=True, help="bueno_pas: number of fields.")
@click.option(
    "--size", type=int, default=256, show_default=True, help="bueno_pas: field side (px at model mpp)."
)
@seed_option(20_000, "bueno_pas: field seed.")
@data_mpp_option()
@click.option(
    "--val-block", type=int, default=-1, show_default=True, help="Annotated images: validation block."
)
@click.option("--tta", is_flag=True, help="Average horizontal/vertical flips.")
@click.option(
    "--set-threshold",
    is_flag=True,
    help="Annotated images, --split val only: store the F1-best score threshold in the model file "
    "(decode.score_threshold, the pipeline's default).",
)
@out_option("Report JSON.", required=False)
def evaluate_cmd(
    model, data, split, fields, size, seed, data_mpp, val_block, tta, set_threshold, out
) -> None:
    """Detection AP of a detector model on held-out data.

    Annotated images are run whole, as ``glomkit run`` runs them: box AP (0.5:0.95), AP50, AP75,
    circle AP, and recall / precision at the model's score threshold. Composed bueno_pas fields
    give circle AP (and, for a U-Net/SegNet detector, mIoU and pixel accuracy).
    """
    from glomkit.detect.data import is_bueno_folder
    from glomkit.models.registry import resolve_model

    model = resolve_model(model, "detector")
    if set_threshold and split != "val":
        raise GlomkitError(f"--set-threshold: choose thresholds on --split val, not {split}")
    if not is_bueno_folder(data):
        from glomkit.evaluate_images import evaluate_images

        report = evaluate_images(
            data,
            detector=str(model),
            data_mpp=data_mpp,
            split=split,
            val_block=val_block,
            pipeline=False,
            tta=tta or None,
        )
        _print_image_report(report, f"{model.name} on {report['data']['images']} {split} images of {data}")
        best = report["f1_best_threshold"]
        Console().print(
            f"F1-best score threshold {best['score_threshold']:.3f}: recall {best['recall']:.3f}, "
            f"precision {best['precision']:.3f} (circle IoU ≥ 0.5)"
        )
        if set_threshold:
            _store_threshold(model, report, val_block)
        _write_report(out, report)
        return
    if set_threshold:
        raise GlomkitError("--set-threshold: needs a folder of annotated images")
    from glomkit.detect.evaluate import evaluate_detector_file

    if split not in ("test", "val"):
        raise GlomkitError(f"--split {split}: bueno_pas folders have test and val folds")
    if size % 32:
        raise GlomkitError(f"--size {size}: must be a multiple of 32")
    report = evaluate_detector_file(
        model, data, split=split, n_fields=fields, size=size, seed=seed, data_mpp=data_mpp, tta=tta
    )
    rows = [
        (k, f"{v:.4f}" if isinstance(v, float) and not float(v).is_integer() else f"{v:g}")
        for k, v in report["metrics"].items()
    ]
    title = f"{model.name} on {report['data']['description']}"
    Console().print(result_table(title, ("metric", "value"), rows, right={"value"}))
    _write_report(out, report)


def _store_threshold(model: Path, report: dict, val_block: int) -> None:
    """Write the F1-best threshold of a validation run into the model's decode block."""
    from glomkit.models.export import update_metadata
    from glomkit.models.runtime import read_metadata

    meta = read_metadata(model)
    best = report["f1_best_threshold"]
    decode = {**meta.get("decode", {}), "score_threshold": round(best["score_threshold"], 3)}
    metrics = {
        **meta.get("metrics", {}),
        "threshold_choice": {**best, "data": report["data"], "val_block": val_block},
    }
    update_metadata(model, {"decode": decode, "metrics": metrics})
    Console().print(f"stored decode.score_threshold {decode['score_threshold']} in {model}")


def _write_report(out: Path | None, report: dict) -> None:
    from glomkit.io.atomic import write_text

    if out:
        write_text(out, json.dumps(report, indent=2))
        Console().print(f"wrote {out}")


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) and not float(v).is_integer() else f"{v:g}"


def _print_image_report(report: dict, title: str) -> None:
    """One table: rows are figures, columns the detector alone and (if present) the pipeline."""
    cols = [c for c in ("detector", "pipeline") if c in report]
    rows = []
    for part, keys in (
        ("box", ("AP", "AP50", "AP75")),
        ("circle", ("AP", "AP50", "AP75")),
        ("at_threshold", ("recall", "precision", "f1", "n_gt", "n_pred")),
    ):
        for k in keys:
            rows.append((f"{part} {k}", *(_fmt(report[c][part][k]) for c in cols)))
    if "pipeline" in report:
        p = report["pipeline"]
        rows.append(
            ("lost to non_glomerular", "", f"{p['lost_to_non_glomerular']} of {p['matched_at_threshold']}")
        )
        d = p["outline_dice"]
        rows.append(("outline Dice (mean, median)", "", f"{d['mean']:.4f}, {d['median']:.4f} (n={d['n']})"))
    Console().print(result_table(title, ("figure", *cols), rows, right=set(cols)))


@click.command("pipeline")
@data_option("Folder of annotated images or slides (GeoJSON / ImageScope XML beside each), or circles CSV.")
@detector_option()
@classifier_option()
@segmenter_option()
@click.option(
    "--split",
    type=click.Choice(["test", "val", "train", "all"]),
    default="test",
    show_default=True,
    help="test = the files named test* (tiles named <biopsy>_<row>_<col>: a fixed third of the "
    "biopsies), val = the held-out block (see --val-block).",
)
@click.option("--val-block", type=int, default=-1, show_default=True, help="The validation block.")
@data_mpp_option()
@click.option(
    "--tta/--no-tta", default=None, help="Flip TTA of the detector [default: the model's metadata]."
)
@colour_transfer_option()
@click.option(
    "--outline-margin",
    type=float,
    default=-1.0,
    show_default=True,
    help="Segment each patch cut down to its circle plus this many µm (-1: the pipeline's default).",
)
@click.option(
    "--edge-ignore",
    is_flag=True,
    help="Glomeruli cut by an image's edge are ignore regions (tile sets that often leave them unoutlined).",
)
@click.option(
    "--no-pipeline",
    "detector_only",
    is_flag=True,
    help="The detector alone, as the pipeline runs it (no filter, no outlines).",
)
@out_option("Report JSON.", required=False)
def evaluate_pipeline_cmd(
    data,
    detector,
    classifier,
    segmenter,
    split,
    val_block,
    data_mpp,
    tta,
    colour_transfer,
    outline_margin,
    edge_ignore,
    detector_only,
    out,
) -> None:
    """The whole pipeline on annotated images: detection before and after the non-glomerular
    filter (box and circle AP, recall, precision) and the outlines' Dice against the true ones."""
    from glomkit.evaluate_images import evaluate_images

    report = evaluate_images(
        data,
        detector=detector,
        classifier=classifier,
        segmenter=segmenter,
        data_mpp=data_mpp,
        split=split,
        val_block=val_block,
        pipeline=not detector_only,
        tta=tta,
        colour_transfer=colour_transfer,
        outline_margin_um=outline_margin,
        edge_ignore=edge_ignore,
    )
    _print_image_report(report, f"pipeline on {report['data']['images']} {split} images of {data}")
    _write_report(out, report)
