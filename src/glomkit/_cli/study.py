"""CLI: ``glomkit study label-fraction``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
from rich.console import Console

from glomkit import GlomkitError
from glomkit._cli.options import (
    aug_option,
    batch_option,
    data_option,
    epochs_option,
    label_map_option,
    out_option,
    schedule_options,
    scheme_option,
    seed_option,
    stain_norm_option,
    test_fold_option,
    threads_option,
)
from glomkit._cli.tables import command_line, result_table
from glomkit.infer.decision import MAX_REAL_GLOM_DROPPED
from glomkit.progress import bar_progress

CLASSIFIER_DATA_HELP = "labels.csv folder or one subfolder per class."
SEGMENTER_DATA_HELP = "labels.csv folder or images/+masks/."


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError as e:
        raise click.BadParameter(f"{text!r}: expected comma-separated numbers") from e


@click.command("label-fraction")
@data_option("bueno_pas folder (labels.csv).")
@click.option("--encoder", required=True, type=click.Path(path_type=Path), help="SimSiam encoder file.")
@out_option("Output folder.")
@click.option("--folds", default=5, show_default=True)
@click.option("--fractions", default="1,5,10,25,100", show_default=True, help="Label percentages.")
@click.option("--arms", default="scratch,probe,finetune", show_default=True)
@click.option("--size", default=96, show_default=True, help="Classifier input size (px).")
@epochs_option(5, "Epochs for scratch/finetune.")
@click.option(
    "--min-steps",
    default=0,
    show_default=True,
    help="Scratch/finetune: at least this many optimiser steps (small fractions get more epochs).",
)
@batch_option(32)
@click.option("--external", is_flag=True, help="Train on one site (SAS/SESCAM/VUHSK), test on the others.")
@click.option(
    "--leave-site-out",
    is_flag=True,
    help="Test on one site, train and validate on the other two (each site in turn).",
)
@seed_option()
@threads_option(1, None)
def study_label_fraction_cmd(data, encoder, out, fractions, arms, **params) -> None:
    """Label-fraction study: scratch vs linear probe vs fine-tuned SimSiam, slide-grouped CV."""
    from glomkit.studies.label_fraction import LabelFractionConfig, run_label_fraction

    if params.get("external") and params.get("leave_site_out"):
        raise click.UsageError("--external and --leave-site-out exclude each other")
    console = Console()
    cfg = LabelFractionConfig(
        data=str(data),
        encoder=str(encoder),
        out=str(out),
        fractions=_floats(fractions),
        arms=tuple(a.strip() for a in arms.split(",") if a.strip()),
        command="glomkit study label-fraction " + shlex.join(sys.argv[3:]) if len(sys.argv) > 3 else "",
        **params,
    )
    try:
        with bar_progress(console) as bar:
            task = bar.add_task("label-fraction", total=None)

            def tick(done: int, total: int, what: str) -> None:
                bar.update(task, completed=done, total=total, description=what)

            res = run_label_fraction(cfg, tick)
    except GlomkitError as e:
        raise click.ClickException(str(e)) from e
    rows = [
        (
            f"{r['fraction']:g}",
            r["arm"],
            f"{r['balanced_accuracy']:.3f} ± {r['balanced_accuracy_sd']:.3f}",
            f"{r['f1']:.3f} ± {r['f1_sd']:.3f}",
            f"{r['auc']:.3f} ± {r['auc_sd']:.3f}",
            f"{r['seconds_per_epoch']:.1f}",
        )
        for r in res["summary"]
    ]
    columns = ("label %", "arm", "bal. acc.", "F1", "AUC", "s/epoch")
    console.print(result_table("label-fraction study (mean ± sd)", columns, rows))
    console.print(f"[green]wrote[/] {out}/results.md, results.csv, confusion.png")


@click.command("classifier-cv")
@data_option(CLASSIFIER_DATA_HELP)
@out_option("Output folder: oof.csv, cv.json, reliability.png, per-fold checkpoints and predictions.")
@scheme_option()
@label_map_option()
@click.option(
    "--by",
    type=click.Choice(["slide", "site"]),
    default="slide",
    show_default=True,
    help="Folds grouped by slide, or one fold per site (leave-one-site-out).",
)
@click.option("--folds", "n_folds", default=5, show_default=True, help="Slide folds (--by slide).")
@click.option("--split-seed", default=0, show_default=True)
@click.option(
    "--only-fold",
    "only_folds",
    type=int,
    multiple=True,
    help="Train and predict only this fold (repeatable; for parallel runs into one -o folder; "
    "then rerun without it and with --resume to summarise).",
)
@click.option(
    "--eval-source",
    default="bueno",
    show_default=True,
    help="labels.csv 'source' of the graded real glomeruli whose figures are reported.",
)
@click.option("--backbone", default="resnet10t", show_default=True, help="timm backbone (pretrained=False).")
@click.option("--size", type=int, default=128, show_default=True, help="Square input size in pixels.")
@schedule_options(epochs=8, batch=32, lr=None, lr_help="Learning rate [default: 1e-3 AdamW].")
@click.option("--focal-gamma", type=float, default=2.5, show_default=True)
@aug_option()
@stain_norm_option()
@click.option(
    "--init", type=click.Path(path_type=Path), default=None, help="SimSiam encoder file to start from."
)
@seed_option()
@click.option(
    "--resume", is_flag=True, help="Reuse finished folds' predictions and continue from checkpoints."
)
@click.option(
    "--final",
    type=click.Path(path_type=Path),
    default=None,
    help="Then train one model on every slide with this recipe; write it here (ONNX) with the "
    "OOF threshold, temperature and CV figures in its metadata.",
)
@click.option(
    "--oof-from",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Train no fold: reuse the out-of-fold predictions and folds of this earlier run's folder "
    "(oof.csv, cv.json) for the images of --data (every one must be there; rows of images no "
    "longer in --data, e.g. removed held-out tiles, are dropped). Refits the summary and decision "
    "on what remains; with --final trains the final model on --data.",
)
@click.option(
    "--max-glomeruli-dropped",
    type=click.FloatRange(0.0, 0.5, max_open=True),
    default=MAX_REAL_GLOM_DROPPED,
    show_default=True,
    help="The non_glomerular cut: this share of the real glomeruli's out-of-fold P(glomerulus) "
    "lies below it.",
)
@threads_option()
def study_cv_cmd(
    data,
    out,
    label_map,
    by,
    n_folds,
    split_seed,
    only_folds,
    eval_source,
    init,
    final,
    oof_from,
    max_glomeruli_dropped,
    **params,
) -> None:
    """Cross-validate a classifier recipe by slide or site; fit threshold and temperature on OOF."""
    from glomkit.classify.cv import CVConfig, run_cv
    from glomkit.classify.data import parse_label_map
    from glomkit.classify.train import ClassifierConfig

    cfg = ClassifierConfig(
        data=str(data),
        out=str(final or Path(out) / "final.onnx"),
        label_map=parse_label_map(label_map),
        init=None if init is None else str(init),
        command=command_line("glomkit study classifier-cv"),
        **params,
    )
    cv = CVConfig(
        by=by,
        n_folds=n_folds,
        split_seed=split_seed,
        eval_source=eval_source,
        out_dir=str(out),
        final_out=None if final is None else str(final),
        only_folds=tuple(only_folds) or None,
        oof_from=None if oof_from is None else str(oof_from),
        max_glomeruli_dropped=max_glomeruli_dropped,
    )
    s = run_cv(cfg, cv)
    if only_folds:
        Console().print(f"trained and predicted {', '.join(s['folds_done'])} into {out}")
        return
    con = Console()
    con.print(_cv_table(s))
    f = s["folds"]
    rng = s["real_glomeruli_called_non_glomerular"]
    con.print(
        f"AUC {f['auc']['mean']:.3f} ± {f['auc']['sd']:.3f} (min {f['auc']['min']:.3f}); "
        f"balanced acc {f['balanced_accuracy']['mean']:.3f} ± {f['balanced_accuracy']['sd']:.3f} "
        f"(min {f['balanced_accuracy']['min']:.3f}); real glomeruli called non_glomerular "
        f"{rng['called']}/{rng['n']}; threshold {s['decision'].get('decision', {}).get('threshold', 0.5):.3f}, "
        f"temperature {s['decision']['temperature']:.3f}"
    )
    con.print(f"{out}/cv.json, {out}/oof.csv, {out}/reliability.png" + (f"; model {final}" if final else ""))


def _cv_table(s: dict):
    from rich.table import Table

    def f(v):
        return "-" if v is None else f"{v:.3f}"

    t = Table(title="cross-validation: GS vs non-GS on held-out real glomeruli")
    for col in ("fold", "slides", "n", "GS", "AUC", "bal.acc", "sens", "spec", "thr", "non-glom"):
        t.add_column(col, justify="left" if col in ("fold", "slides") else "right")
    rows = [(r["fold"], r) for r in s["per_fold"]] + [(k, v) for k, v in s["per_site"].items()]
    for name, r in rows:
        slides = r.get("slides")
        t.add_row(
            name,
            str(len(slides)) if isinstance(slides, list) else str(slides),
            str(r["n"]),
            str(r["n_ggs"]),
            f(r["auc"]),
            f(r["balanced_accuracy"]),
            f(r["sensitivity"]),
            f(r["specificity"]),
            f(r.get("threshold")),
            f"{r['called_non_glomerular']}/{r['real_glomeruli']}" if "real_glomeruli" in r else "",
        )
    return t


@click.command("segmentation")
@data_option(SEGMENTER_DATA_HELP)
@out_option("Study output folder.")
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
@schedule_options(epochs=10, batch=8, lr=2e-3)
@seed_option()
@test_fold_option(4, None)
@click.option("--max-minutes-per-run", type=float, default=None)
@threads_option(1, None)
def study_segmentation_cmd(archs, settings, **params) -> None:
    """U-Net vs SegNet vs DeepLabv3 at 256 px and at 512 px (padding or resizing); tables and figures."""
    from glomkit.segment.study import StudyConfig, run_segmentation_study

    try:
        sets = tuple((int(s.split(":")[0]), s.split(":")[1]) for s in settings.split(","))
    except (ValueError, IndexError):
        raise click.BadParameter(
            f"expected SIZE:MODE,..., got {settings!r}", param_hint="--settings"
        ) from None
    cfg = StudyConfig(archs=tuple(a.strip() for a in archs.split(",") if a.strip()), settings=sets, **params)
    rows = run_segmentation_study(cfg)
    Console().print((Path(cfg.out) / "results.md").read_text())
    Console().print(f"{len(rows)} runs; outputs in {cfg.out}")
