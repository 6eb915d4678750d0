"""CLI: ``glomkit evaluate detector|pipeline|classifier|segmenter``."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from glomkit import GlomkitError
from glomkit._cli.options import (
    classifier_option,
    colour_transfer_option,
    data_mpp_option,
    data_option,
    detector_option,
    label_map_option,
    model_option,
    out_option,
    seed_option,
    segmenter_option,
)
from glomkit._cli.tables import classify_with_progress, ggs_line, result_table
from glomkit.models.registry import bundled_names

CLASSIFIER_DATA_HELP = "labels.csv folder or one subfolder per class."

SEGMENTER_DATA_HELP = "labels.csv folder or images/+masks/."


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
def evaluate_detector_cmd(
    model, data, split, fields, size, seed, data_mpp, val_block, tta, set_threshold, out
) -> None:
    """Detection AP of a detector model on held-out data.

    Annotated images are run whole, as ``glomkit run`` runs them: box AP (0.5:0.95), AP50, AP75,
    circle AP, and recall / precision at the model's score threshold. Composed bueno_pas fields
    give circle AP (and, for a U-Net/SegNet detector, mIoU and pixel accuracy).
    """
    from glomkit.evaluate_images import evaluate_detector
    from glomkit.models.registry import resolve_model

    model = resolve_model(model, "detector")
    report = evaluate_detector(
        model,
        data,
        split=split,
        val_block=val_block,
        data_mpp=data_mpp,
        tta=tta,
        n_fields=fields,
        size=size,
        seed=seed,
        set_threshold=set_threshold,
    )
    if report["evaluated_on"] == "images":
        _print_image_report(report, f"{model.name} on {report['data']['images']} {split} images of {data}")
        best = report["f1_best_threshold"]
        Console().print(
            f"F1-best score threshold {best['score_threshold']:.3f}: recall {best['recall']:.3f}, "
            f"precision {best['precision']:.3f} (circle IoU ≥ 0.5)"
        )
        if "stored_score_threshold" in report:
            Console().print(f"stored decode.score_threshold {report['stored_score_threshold']} in {model}")
    else:
        rows = [
            (k, f"{v:.4f}" if isinstance(v, float) and not float(v).is_integer() else f"{v:g}")
            for k, v in report["metrics"].items()
        ]
        title = f"{model.name} on {report['data']['description']}"
        Console().print(result_table(title, ("metric", "value"), rows, right={"value"}))
    _write_report(out, report)


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


@click.command("classifier")
@model_option("Classifier")
@data_option(CLASSIFIER_DATA_HELP)
@label_map_option()
@out_option("Report JSON (confusion PNG/CSV beside it).", required=False)
@click.option(
    "--split",
    type=click.Choice(["all", "test", "val"]),
    default="all",
    show_default=True,
    help="Every image, or only the held-out test / validation slides listed in the model metadata.",
)
def evaluate_classifier_cmd(model, data, label_map, out, split) -> None:
    """Score a classifier on every image of a data folder: balanced accuracy, F1, AUC, confusion."""
    from glomkit.classify.data import load_items, parse_label_map
    from glomkit.eval.classification import classification_report, ggs_report, report_table, write_confusion
    from glomkit.io.atomic import write_text
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import OnnxModel

    onnx = OnnxModel(resolve_model(model, "classifier"), expect_task="classifier")
    scheme = onnx.info.scheme
    items = load_items(data, parse_label_map(label_map))
    if split != "all":
        slides = onnx.info.typed.splits.slides_of(split)
        if not slides:
            raise GlomkitError(f"{onnx.path}: model metadata lists no {split} slides; use --split all")
        items = [it for it in items if it.slide in slides]
        if not items:
            raise GlomkitError(f"{data}: no image comes from the model's {split} slides")
    known = set(scheme.names)
    unknown = sorted({it.label for it in items} - known)
    if unknown:
        raise GlomkitError(
            f"{data}: labels {unknown} are not classes of the model ({', '.join(scheme.names)}); use --label-map"
        )
    rows = classify_with_progress(onnx, [it.image for it in items])
    import numpy as np

    from glomkit.infer.decision import Decision

    probs = np.array([[r[f"prob_{n}"] for n in scheme.names] for r in rows])
    pred = [scheme.index(r["label"]) for r in rows]  # the model's decision (threshold), not argmax
    y = [scheme.index(it.label) for it in items]
    rep = classification_report(y, probs, scheme.names, pred)
    rep["ggs"] = ggs_report(y, probs, scheme, Decision.of(onnx.info.typed).threshold)
    rep["model"] = str(onnx.path)
    rep["data"] = str(data)
    rep["split"] = split
    con = Console()
    con.print(report_table(rep, f"{onnx.path.name} on {data}"))
    if rep["ggs"]:
        con.print(ggs_line("GGS vs not (glomeruli only)", rep["ggs"]))
    if out is not None:
        out = Path(out)
        write_text(out, json.dumps(rep, indent=1))
        stem = out.with_suffix("")
        write_confusion(f"{stem}_confusion.png", f"{stem}_confusion.csv", rep["confusion"], scheme.names)
        con.print(f"report: {out}; confusion: {stem}_confusion.png/.csv")


@click.command("segmenter")
@model_option("Segmenter")
@data_option(SEGMENTER_DATA_HELP)
@out_option("Write the report JSON here.", required=False)
@click.option(
    "--split",
    type=click.Choice(["test", "val", "train", "all"]),
    default="test",
    show_default=True,
    help="Slides to score, as listed in the model metadata (all: every pair).",
)
def evaluate_segmenter_cmd(model, data, out, split) -> None:
    """Score a segmenter on a data folder: Dice, IoU, mIoU, pixel accuracy, per slide."""
    from rich.progress import Progress

    from glomkit.io.atomic import write_text
    from glomkit.models.registry import resolve_model
    from glomkit.segment.evaluate import evaluate_segmenter

    path = resolve_model(model, "segmenter")
    with Progress(transient=True) as progress:
        task = progress.add_task("segmenting", total=None)
        rep = evaluate_segmenter(path, data, split=split, progress=lambda n: progress.advance(task, n))
    con = Console()
    con.print(
        result_table(
            f"{path.name} on {data} ({split})",
            ("images", "Dice mean ± sd", "IoU", "mIoU", "pixel accuracy"),
            [
                (
                    str(rep["n_images"]),
                    f"{rep['dice_mean']:.4f} ± {rep['dice_sd']:.4f}",
                    f"{rep['iou_mean']:.4f}",
                    f"{rep['miou']:.4f}",
                    f"{rep['pixel_accuracy']:.4f}",
                )
            ],
        )
    )
    slides = [(k, f"{v:.4f}") for k, v in rep["per_slide_dice"].items()]
    con.print(result_table("per-slide Dice", ("slide", "Dice"), slides))
    if out is not None:
        write_text(out, json.dumps(rep, indent=1))
        con.print(f"report: {out}")
