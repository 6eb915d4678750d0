"""CLI: ``glomkit study label-fraction``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
from rich.console import Console

from glomkit import GlomkitError
from glomkit._cli.options import (
    batch_option,
    data_option,
    epochs_option,
    out_option,
    seed_option,
    threads_option,
)
from glomkit._cli.tables import result_table
from glomkit.progress import bar_progress


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
