"""CLI: ``glomkit train classifier``, ``glomkit evaluate classifier``, ``glomkit classify``."""

from __future__ import annotations

import csv
import io
import json
import shlex
from pathlib import Path

import click
from rich.console import Console

from glomkit import GlomkitError
from glomkit._cli.options import (
    MODEL_OUT_HELP,
    aug_option,
    data_option,
    label_map_option,
    max_minutes_option,
    max_pixels_option,
    model_option,
    out_option,
    resume_flag_option,
    schedule_options,
    scheme_option,
    seed_option,
    stain_norm_option,
    test_fold_option,
    threads_option,
)
from glomkit.infer.decision import MAX_REAL_GLOM_DROPPED
from glomkit.io.images import collect_images

DATA_HELP = "labels.csv folder or one subfolder per class."
TRAIN_DATA_HELP = (
    "labels.csv folder, one subfolder per class, or a folder of reviewed slides (glomkit review)."
)


@click.command("classifier")
@data_option(TRAIN_DATA_HELP)
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
def train_cmd(data, out, label_map, init, **params) -> None:
    """Train a glomerulus classifier; writes an ONNX model with its held-out test metrics."""
    from glomkit.classify.data import parse_label_map
    from glomkit.classify.train import ClassifierConfig, train_classifier
    from glomkit.data.reviewed import find_reviewed, write_reviewed_patches
    from glomkit.eval.classification import report_table
    from glomkit.models.runtime import read_metadata

    if not (Path(data) / "labels.csv").is_file() and find_reviewed(data):
        data, counts = write_reviewed_patches(data, Path(out).with_name(Path(out).stem + "_patches"))
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        Console().print(f"reviewed glomeruli cut into {data}: {shown}")
    cfg = ClassifierConfig(
        data=str(data),
        out=str(out),
        label_map=parse_label_map(label_map),
        init=None if init is None else str(init),
        command=_command_line("glomkit train classifier"),
        **params,
    )
    path = train_classifier(cfg)
    meta = read_metadata(path)
    con = Console()
    con.print(f"model: {path}  (best epoch {meta['training']['best_epoch']})")
    for split in ("validation", "test"):
        rep = meta["metrics"].get(split)
        if rep:
            con.print(report_table(rep, f"{split} slides"))
            if rep.get("ggs"):
                con.print(_ggs_line(f"{split}: GGS vs not", rep["ggs"]))


@click.command("classifier")
@model_option("Classifier")
@data_option(DATA_HELP)
@label_map_option()
@out_option("Report JSON (confusion PNG/CSV beside it).", required=False)
@click.option(
    "--split",
    type=click.Choice(["all", "test", "val"]),
    default="all",
    show_default=True,
    help="Every image, or only the held-out test / validation slides listed in the model metadata.",
)
def evaluate_cmd(model, data, label_map, out, split) -> None:
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
        splits = onnx.meta.get("training", {}).get("splits", {})
        slides = set(splits.get(f"{split}_slides", []))
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
    rows = _classify_with_progress(onnx, [it.image for it in items])
    import numpy as np

    from glomkit.infer.decision import Decision

    probs = np.array([[r[f"prob_{n}"] for n in scheme.names] for r in rows])
    pred = [scheme.index(r["label"]) for r in rows]  # the model's decision (threshold), not argmax
    y = [scheme.index(it.label) for it in items]
    rep = classification_report(y, probs, scheme.names, pred)
    rep["ggs"] = ggs_report(y, probs, scheme, Decision.from_meta(onnx.meta).threshold)
    rep["model"] = str(onnx.path)
    rep["data"] = str(data)
    rep["split"] = split
    con = Console()
    con.print(report_table(rep, f"{onnx.path.name} on {data}"))
    if rep["ggs"]:
        con.print(_ggs_line("GGS vs not (glomeruli only)", rep["ggs"]))
    if out is not None:
        out = Path(out)
        write_text(out, json.dumps(rep, indent=1))
        stem = out.with_suffix("")
        write_confusion(f"{stem}_confusion.png", f"{stem}_confusion.csv", rep["confusion"], scheme.names)
        con.print(f"report: {out}; confusion: {stem}_confusion.png/.csv")


@click.command("classify")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_option("Output CSV.")
@model_option("Classifier")
@max_pixels_option()
@click.option("--quiet", is_flag=True, help="No progress bar (the result line and errors still print).")
def classify_cmd(inputs, out, model, max_pixels, quiet) -> None:
    """Classify glomerulus patch images (files or folders, recursive) into a CSV of probabilities.

    Each image is resized to the model's input as soon as it is decoded (a large JPEG is decoded
    reduced), so memory does not grow with the images' size.
    """
    from glomkit.io.atomic import write_text
    from glomkit.io.paths import prepare_out_file
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import OnnxModel

    paths = collect_images(inputs)
    prepare_out_file(out)
    onnx = OnnxModel(resolve_model(model, "classifier"), expect_task="classifier")
    rows = _classify_with_progress(onnx, paths, disable=quiet)
    names = onnx.info.scheme.names
    cols = ["path", "label", *[f"prob_{n}" for n in names], "ggs_probability"]
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    wr.writeheader()
    for r in rows:
        wr.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text(out, buf.getvalue())
    counts = {n: sum(r["label"] == n for r in rows) for n in names}
    Console().print(f"{len(rows)} images -> {out}  " + ", ".join(f"{k}: {v}" for k, v in counts.items()))


def _ggs_line(what: str, g: dict) -> str:
    """One line of the GGS-vs-not report."""
    return f"{what}: balanced acc {g['balanced_accuracy']:.4f}, AUC {g['auc']:.4f} (n={g['n']})"


def _command_line(prefix: str) -> str:
    """The invoked command rebuilt from click's parsed options (those not left at their default)."""
    ctx = click.get_current_context()
    parts = [prefix]
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if v is None or v == p.default or not isinstance(p, click.Option):
            continue
        if p.multiple:  # repeatable option: once per value (nothing when none was given)
            for x in v:
                parts += [p.opts[-1], shlex.quote(str(x))]
        elif p.is_flag and isinstance(v, bool):
            # a flag left off is not written (its default may read None, not False)
            parts += [p.opts[0]] if v else p.secondary_opts[:1]
        else:
            parts += [p.opts[-1] if p.opts[-1].startswith("--") else p.opts[0], shlex.quote(str(v))]
    return " ".join(parts)


def _classify_with_progress(onnx, paths, disable: bool = False) -> list[dict]:
    from rich.progress import Progress

    from glomkit.infer.classify import classify_files

    with Progress(transient=True, disable=disable) as progress:
        task = progress.add_task("classifying", total=len(paths))
        return classify_files(onnx, paths, on_batch=lambda n: progress.advance(task, n))


@click.command("classifier-cv")
@data_option(DATA_HELP)
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
        command=_command_line("glomkit study classifier-cv"),
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
