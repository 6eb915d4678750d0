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
    colour_transfer_option,
    detector_option,
    device_option,
    max_pixels_option,
    out_option,
    quiet_options,
    seed_option,
    segmenter_option,
    threads_option,
)
from glomkit.core.geometry import DEFAULT_NMS_IOU
from glomkit.core.units import MPP_RANGE


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
            # click caches a command's help option with the names of the first context that asked
            # for it; a command invoked on its own first (as tests do) would then lack -h here
            if getattr(cmd, "_help_option", None) is not None:
                cmd._help_option = None
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
    context_settings={"help_option_names": ["-h", "--help"]},
    lazy={
        "synth": ("glomkit._cli.synth", "synth"),
        "classify": ("glomkit._cli.classify", "classify_cmd"),
        "segment": ("glomkit._cli.segment", "segment_cmd"),
        "mine": ("glomkit._cli.mine", "mine_cmd"),
        "cluster": ("glomkit._cli.cluster", "cluster_cmd"),
        "review": ("glomkit._cli.review", "review_cmd"),
        "recount": ("glomkit._cli.review", "recount_cmd"),
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


@cli.group(
    cls=LazyGroup,
    lazy={
        "quantize": ("glomkit._cli.models", "quantize_cmd"),
        "colour-reference": ("glomkit._cli.models", "colour_reference_cmd"),
    },
)
def models() -> None:
    """Operations on model files: INT8 quantisation."""


@cli.group(cls=LazyGroup, lazy={"simsiam": ("glomkit._cli.ssl", "pretrain_simsiam_cmd")})
def pretrain() -> None:
    """Self-supervised pretraining on unlabelled images."""


@cli.group(
    cls=LazyGroup,
    lazy={
        "label-fraction": ("glomkit._cli.study", "study_label_fraction_cmd"),
        "segmentation": ("glomkit._cli.segment", "study_segmentation_cmd"),
        "classifier-cv": ("glomkit._cli.classify", "study_cv_cmd"),
    },
)
def study() -> None:
    """The published studies, rerun by command."""


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_option("Output folder.")
@click.option(
    "--mpp",
    type=click.FloatRange(*MPP_RANGE),
    default=None,
    help=f"µm per pixel, for images that do not record it ({MPP_RANGE[0]:g} to {MPP_RANGE[1]:g}); "
    "a slide recording a scale more than 5 % off is refused.",
)
@click.option(
    "--mpp-table",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV of file,mpp: each slide's µm per pixel (file: a path, file name or stem), "
    "under the same rule as --mpp.",
)
@click.option(
    "--mpp-override",
    is_flag=True,
    help="Use --mpp / --mpp-table even where a slide records another scale.",
)
@detector_option()
@classifier_option()
@segmenter_option()
@device_option()
@threads_option(None, ORT_THREADS_HELP)
@click.option(
    "--score-threshold",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Detection score threshold, 0 to 1 (default: model's).",
)
@click.option(
    "--nms-iou",
    type=click.FloatRange(0.0, 1.0),
    default=DEFAULT_NMS_IOU,
    show_default=True,
    help="Circle-IoU threshold of the NMS, 0 to 1.",
)
@click.option(
    "--tta/--no-tta",
    default=None,
    help="Average detection over h/v flips of each tile (3x detection time); default: the model's.",
)
@colour_transfer_option()
@click.option(
    "--patch-level0",
    is_flag=True,
    help="Read glomerulus patches from level 0 (default: the coarsest level at least as fine as 1 µm/px).",
)
@click.option(
    "--full-tiles",
    is_flag=True,
    help="Run every detection tile on a full 1024-px canvas (default: edge tiles keep their own size).",
)
@click.option("--overwrite", is_flag=True, help="Redo slides whose outputs are complete.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local worker processes (cohorts).",
)
@click.option(
    "--dask-scheduler", default=None, help="Run one task per slide on this dask scheduler (tcp://HOST:PORT)."
)
@click.option(
    "--xml",
    "xml",
    type=click.Choice(["both", "circles", "outlines"]),
    default="both",
    show_default=True,
    help="ImageScope layers: detection circles, segmentation outlines, or both (each layer is marked).",
)
@click.option(
    "--roi",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Analyse only inside the shapes of this QuPath GeoJSON / ImageScope XML file (e.g. cortex), "
    "or of <slide-stem>.geojson/.xml in this folder.",
)
@max_pixels_option()
@quiet_options()
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
def run(
    inputs,
    out,
    mpp,
    mpp_table,
    mpp_override,
    detector,
    classifier,
    segmenter,
    device,
    threads,
    score_threshold,
    nms_iou,
    tta,
    colour_transfer,
    patch_level0,
    full_tiles,
    overwrite,
    workers,
    dask_scheduler,
    xml,
    roi,
    max_pixels,
    quiet,
    silent,
    as_json,
) -> None:
    """Run the whole pipeline on slides, images or folders of them; write OUT/<slide-stem>/."""
    from glomkit.pipeline import PipelineConfig
    from glomkit.run_many import run_inputs

    if mpp_table is not None:
        from glomkit.slide.mpp_table import load_mpp_table

        load_mpp_table(mpp_table)  # a malformed table is refused before any slide runs
        mpp_table = mpp_table.resolve()
    if mpp_override and mpp is None and mpp_table is None:
        raise click.BadParameter("needs --mpp or --mpp-table", param_hint="--mpp-override")
    config = PipelineConfig(
        detector=detector,
        classifier=classifier,
        segmenter=segmenter,
        mpp=mpp,
        mpp_table=None if mpp_table is None else str(mpp_table),
        mpp_override=mpp_override,
        device=device,
        threads=threads,
        score_threshold=score_threshold,
        nms_iou=nms_iou,
        tta=tta,
        colour_transfer=colour_transfer,
        patch_mpp=None if patch_level0 else PipelineConfig.patch_mpp,
        edge_pad_px=None if full_tiles else PipelineConfig.edge_pad_px,
        max_pixels=max_pixels,
        xml=xml,
        roi=str(roi) if roi else None,
        quiet=quiet or silent or as_json,
    )
    rows = run_inputs(
        list(inputs), out, config, overwrite=overwrite, workers=workers, scheduler=dask_scheduler
    )
    failed = [r for r in rows if r["status"] in ("failed", "missing")]
    if as_json:
        click.echo(json.dumps({"out": str(out), "slides": rows}, indent=2, default=str))
    elif not silent:
        click.echo(result_line(rows, out), err=True)
    if failed:
        sys.exit(1)


def result_line(rows: list[dict], out: Path) -> str:
    """The one-line result of a run: slides done, skipped, failed and missing, and where the outputs are."""
    from glomkit.core.wording import count_of

    n = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", "failed", "missing")}
    glom = sum(int(r.get("n_glomeruli") or 0) for r in rows if r["status"] in ("ok", "skipped"))
    parts = [f"{n['ok']} done"] + [f"{n[s]} {s}" for s in ("skipped", "failed", "missing") if n[s]]
    return f"{count_of(len(rows), 'slide')}: {', '.join(parts)}; {count_of(glom, 'glomerulus')}; outputs in {out}/"


@cli.command()
@click.option(
    "-o", "--out", "out", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True
)
@click.option(
    "--size", default="12000x9000", show_default=True, help="Synthetic slide size WxH at 0.25 µm/px."
)
@seed_option()
@quiet_options()
def demo(out: Path, size: str, seed: int, quiet: bool, silent: bool) -> None:
    """Synthesise a small PAS-like slide and run the whole pipeline on it.

    The slide is made again when OUT holds one made with another --size or --seed.
    """
    from glomkit.io.paths import prepare_out_dir
    from glomkit.pipeline import PipelineConfig
    from glomkit.run_many import run_inputs

    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, got {size!r}", param_hint="--size") from None
    if not (64 <= w <= 100_000 and 64 <= h <= 100_000):
        raise click.BadParameter(f"each side must be 64 to 100000 px, got {size!r}", param_hint="--size")
    prepare_out_dir(out)
    slide, made = demo_slide(out, w, h, seed)
    if made and not (quiet or silent):
        click.echo(f"made {slide} ({w}x{h}, seed {seed})", err=True)
    rows = run_inputs([slide], out, PipelineConfig(quiet=quiet or silent), overwrite=True)
    r = rows[0]
    if r["status"] != "ok":
        raise GlomkitError(f"{slide}: {r.get('error')}")
    if not silent:
        click.echo(f"demo slide: {slide} (ground truth beside it: {slide.stem}_truth.csv/.xml/.geojson)")
        click.echo(f"outputs:    {out / slide.stem}/  — open report.html in a browser")


DEMO_SETTINGS = "demo_slide.json"


def demo_slide(out: Path, w: int, h: int, seed: int) -> tuple[Path, bool]:
    """OUT/demo_slide.tif made with these settings: reused when OUT/demo_slide.json records the same
    size and seed, else (re)made. Returns the path and whether it was made now."""
    from glomkit.io.atomic import write_text
    from glomkit.synth.slide import synthesize_slide, write_truth

    slide = out / "demo_slide.tif"
    settings = {"width": w, "height": h, "seed": seed, "mpp": 0.25}
    record = out / DEMO_SETTINGS
    try:
        same = slide.is_file() and json.loads(record.read_text()) == settings
    except (OSError, ValueError):
        same = False
    if same:
        return slide, False
    record.unlink(missing_ok=True)
    truth = synthesize_slide(slide, w, h, mpp=0.25, seed=seed)
    write_truth(truth, slide)
    write_text(record, json.dumps(settings) + "\n")
    return slide, True


def one_line(message: str) -> str:
    """A message on one line: its lines joined, runs of blanks reduced to one."""
    return " ".join(message.split())


def _interrupted(exc: BaseException | None) -> None:
    """Exit after Ctrl-C (130) or SIGTERM (143), saying that finished outputs are kept."""
    term = type(exc).__name__ == "_Terminated"
    click.echo(f"glomkit: {'terminated' if term else 'interrupted'}; finished outputs are kept", err=True)
    sys.exit(143 if term else 130)


def main() -> None:
    """Entry point: user mistakes end in one line on stderr and exit code 1, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except GlomkitError as exc:
        click.echo(f"glomkit: error: {one_line(str(exc))}", err=True)
        sys.exit(1)
    except click.exceptions.Abort as exc:  # click turns Ctrl-C (and SIGTERM in a cohort) into Abort
        _interrupted(exc.__cause__ or exc.__context__)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM during a cohort (glomkit.cohort)
        _interrupted(exc)
    except MemoryError:
        click.echo("glomkit: error: out of memory (an input too large? see --max-pixels)", err=True)
        sys.exit(1)
    except OSError as exc:  # a full disk, an output that cannot be written: not a bug
        from glomkit.io.paths import os_error_message

        click.echo(f"glomkit: error: {one_line(os_error_message(exc))}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
