"""The ``glomkit`` command: parse arguments, call the library, print.

Sub-commands live in ``glomkit._cli.*`` and are imported only when invoked, so ``glomkit run``
never imports torch and ``glomkit --help`` is fast.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import click

from glomkit import GlomkitError, __version__
from glomkit._cli.options import (
    ORT_THREADS_HELP,
    classifier_option,
    device_option,
    out_option,
    seed_option,
    threads_option,
)


class LazyGroup(click.Group):
    """A click group whose commands are ``module:attribute`` strings imported on first use."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name]
            try:
                cmd = getattr(importlib.import_module(module), attr)
            except ImportError as exc:
                missing = getattr(exc, "name", "") or str(exc)
                return _unavailable(
                    name, f"needs the 'train' extra ({missing} is missing): pip install 'glomkit[train]'"
                )
            return cmd
        return super().get_command(ctx, name)


def _unavailable(name: str, why: str) -> click.Command:
    @click.command(name, help=f"(unavailable: {why})", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args) -> None:
        raise GlomkitError(f"glomkit {name}: {why}")

    return cmd


@click.group(
    cls=LazyGroup,
    lazy={
        "synth": ("glomkit._cli.synth", "synth"),
        "classify": ("glomkit._cli.classify", "classify_cmd"),
        "segment": ("glomkit._cli.segment", "segment_cmd"),
        "mine": ("glomkit._cli.mine", "mine_cmd"),
        "cluster": ("glomkit._cli.cluster", "cluster_cmd"),
    },
)
@click.version_option(__version__, prog_name="glomkit")
def cli() -> None:
    """glomkit: find, outline and grade glomeruli in kidney whole-slide images."""


@cli.group(
    cls=LazyGroup,
    lazy={
        "detector": ("glomkit._cli.detector", "train_cmd"),
        "classifier": ("glomkit._cli.classify", "train_cmd"),
        "segmenter": ("glomkit._cli.segment", "train_cmd"),
    },
)
def train() -> None:
    """Train a detector, classifier or segmenter (needs glomkit[train])."""


@cli.group(
    cls=LazyGroup,
    lazy={
        "detector": ("glomkit._cli.detector", "evaluate_cmd"),
        "pipeline": ("glomkit._cli.detector", "evaluate_pipeline_cmd"),
        "classifier": ("glomkit._cli.classify", "evaluate_cmd"),
        "segmenter": ("glomkit._cli.segment", "evaluate_cmd"),
    },
)
def evaluate() -> None:
    """Evaluate a model on held-out data: JSON plus a readable table."""


@cli.group(cls=LazyGroup, lazy={"simsiam": ("glomkit._cli.ssl", "pretrain_simsiam_cmd")})
def pretrain() -> None:
    """Self-supervised pretraining on unlabelled images."""


@cli.group(
    cls=LazyGroup,
    lazy={
        "label-fraction": ("glomkit._cli.study", "study_label_fraction_cmd"),
        "segmentation": ("glomkit._cli.segment", "study_segmentation_cmd"),
    },
)
def study() -> None:
    """The published studies, rerun by command."""


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_option("Output folder.")
@click.option("--mpp", type=float, default=None, help="µm per pixel, for images that do not record it.")
@click.option(
    "--detector", default=None, help="Detector: circlenet (default), unet, segnet, or a model file."
)
@classifier_option()
@click.option("--segmenter", default=None, help="Segmenter model file (default: bundled).")
@device_option()
@threads_option(None, ORT_THREADS_HELP)
@click.option(
    "--score-threshold", type=float, default=None, help="Detection score threshold (default: model's)."
)
@click.option(
    "--nms-iou", type=float, default=0.35, show_default=True, help="Circle-IoU threshold of the NMS."
)
@click.option(
    "--tta/--no-tta",
    default=None,
    help="Average detection over h/v flips of each tile (3x detection time); default: the model's.",
)
@click.option("--overwrite", is_flag=True, help="Redo slides whose outputs are complete.")
@click.option("--workers", type=int, default=1, show_default=True, help="Local worker processes (cohorts).")
@click.option(
    "--dask-scheduler", default=None, help="Run one task per slide on this dask scheduler (tcp://HOST:PORT)."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
def run(
    inputs,
    out,
    mpp,
    detector,
    classifier,
    segmenter,
    device,
    threads,
    score_threshold,
    nms_iou,
    tta,
    overwrite,
    workers,
    dask_scheduler,
    quiet,
    as_json,
) -> None:
    """Run the whole pipeline on slides, images or folders of them; write OUT/<slide-stem>/."""
    from glomkit.pipeline import PipelineConfig
    from glomkit.run_many import run_inputs

    if workers < 1:
        raise click.BadParameter("must be ≥ 1", param_hint="--workers")
    config = PipelineConfig(
        detector=detector,
        classifier=classifier,
        segmenter=segmenter,
        mpp=mpp,
        device=device,
        threads=threads,
        score_threshold=score_threshold,
        nms_iou=nms_iou,
        tta=tta,
        quiet=quiet or as_json,
    )
    rows = run_inputs(
        list(inputs), out, config, overwrite=overwrite, workers=workers, scheduler=dask_scheduler
    )
    failed = [r for r in rows if r["status"] == "failed"]
    if as_json:
        click.echo(json.dumps({"out": str(out), "slides": rows}, indent=2, default=str))
    if failed:
        sys.exit(1)


@cli.command()
@click.option(
    "-o", "--out", "out", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True
)
@click.option(
    "--size", default="12000x9000", show_default=True, help="Synthetic slide size WxH at 0.25 µm/px."
)
@seed_option()
@click.option("--quiet", is_flag=True)
def demo(out: Path, size: str, seed: int, quiet: bool) -> None:
    """Synthesise a small PAS-like slide and run the whole pipeline on it."""
    from glomkit.pipeline import PipelineConfig
    from glomkit.run_many import run_inputs
    from glomkit.synth.slide import synthesize_slide, write_truth

    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, got {size!r}", param_hint="--size") from None
    out.mkdir(parents=True, exist_ok=True)
    slide = out / "demo_slide.tif"
    if not slide.exists():
        truth = synthesize_slide(slide, w, h, mpp=0.25, seed=seed)
        write_truth(truth, slide)
    rows = run_inputs([slide], out, PipelineConfig(quiet=quiet), overwrite=True)
    r = rows[0]
    if r["status"] != "ok":
        raise GlomkitError(f"{slide}: {r.get('error')}")
    click.echo(f"demo slide: {slide} (ground truth beside it: {slide.stem}_truth.csv/.xml/.geojson)")
    click.echo(f"outputs:    {out / slide.stem}/  — open report.html in a browser")


def main() -> None:
    """Entry point: user mistakes end in one line on stderr and exit code 1, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except GlomkitError as exc:
        click.echo(f"glomkit: error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("glomkit: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("glomkit: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
