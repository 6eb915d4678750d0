"""Click options that several glomkit commands share.

Each factory returns one option decorator (or, for :func:`schedule_options`, a stack of them in
``--help`` order). Defaults and help texts that differ between commands are parameters, so every
command keeps its own; a default other than ``None`` is shown in ``--help``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

PATH = click.Path(path_type=Path)

LR_BUDGET_HELP = "Wall-clock budget; the LR schedule follows it."
CHECKPOINT_RESUME_HELP = "Continue from the checkpoint beside the model."
ORT_THREADS_HELP = "ONNX Runtime threads (default: all cores)."
MODEL_OUT_HELP = "Output model (.onnx)."


def _shown(default: object, show: bool = True) -> bool | None:
    """click's ``show_default``: on where there is a default to show, else left unset."""
    return True if show and default is not None else None


def stack(*decorators: Decorator) -> Decorator:
    """One decorator applying ``decorators`` so their options appear in ``--help`` in the order given."""

    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


def data_option(help: str) -> Decorator:
    """``--data FOLDER`` (required)."""
    return click.option("--data", required=True, type=PATH, help=help)


def out_option(help: str, *, required: bool = True) -> Decorator:
    """``-o/--out PATH``; when not required its default is ``None``."""
    return click.option("-o", "--out", "out", required=required, type=PATH, help=help)


def images_option(help: str) -> Decorator:
    """``--images FOLDER`` (required, repeatable)."""
    return click.option("--images", "images", multiple=True, required=True, type=PATH, help=help)


def model_option(task: str) -> Decorator:
    """``--model FILE`` for a ``task`` ("Classifier", "Segmenter") with the bundled model as default."""
    return click.option("--model", "model", default=None, help=f"{task} model (default: bundled).")


def detector_option() -> Decorator:
    """``--detector FILE|NAME`` of the commands that run the pipeline (names: glomkit.models.registry)."""
    from glomkit.models.registry import bundled_names

    names = ", ".join(bundled_names("detector"))
    return click.option(
        "--detector",
        default=None,
        help=f"Detector: a model file, or a bundled name ({names}; default: circlenet).",
    )


def segmenter_option() -> Decorator:
    """``--segmenter FILE`` of the commands that run a segmenter inside a larger flow."""
    return click.option("--segmenter", default=None, help="Segmenter model file (default: bundled).")


def classifier_option() -> Decorator:
    """``--classifier FILE`` of the commands that run a classifier inside a larger flow."""
    return click.option("--classifier", default=None, help="Classifier model file (default: bundled).")


def scheme_option() -> Decorator:
    """``--scheme NAME``: the class scheme a classifier is trained with."""
    return click.option(
        "--scheme",
        type=click.Choice(["coarse_3", "glo_in_one_5", "gs_binary"]),
        default="coarse_3",
        show_default=True,
    )


def aug_option() -> Decorator:
    """``--aug LEVEL``: a classifier's augmentation strength (glomkit.classify.data.AUGMENTATIONS)."""
    return click.option(
        "--aug",
        type=click.Choice(["default", "strong", "colour", "strong_pale"]),
        default="default",
        show_default=True,
        help="Augmentation strength (glomkit.classify.data.AUGMENTATIONS).",
    )


def stain_norm_option() -> Decorator:
    """``--stain-norm NAME``: the stain normalisation a classifier is trained with and records in its
    metadata (glomkit.core.stain.STAIN_NORMS; inference applies the same)."""
    from glomkit.core.stain import STAIN_NORMS

    return click.option(
        "--stain-norm",
        type=click.Choice(list(STAIN_NORMS)),
        default="none",
        show_default=True,
        help="Stain normalisation of every patch, in training and (from the model's metadata) inference.",
    )


def colour_transfer_option() -> Decorator:
    """``--colour-transfer/--no-colour-transfer``: map each slide's tissue colours to the detector's
    training colours before detection (glomkit.core.colour); default: the detector's metadata."""
    return click.option(
        "--colour-transfer/--no-colour-transfer",
        default=None,
        help="Map each slide's tissue colours to the detector's training colours before detection "
        "(Reinhard); default: the detector's metadata.",
    )


def label_map_option() -> Decorator:
    """``--label-map OLD=NEW,...`` applied to labels on load."""
    return click.option(
        "--label-map", default="", help="Rename labels on load, e.g. GS=sclerosed,nonGS=normal."
    )


def device_option() -> Decorator:
    """``--device auto|cpu|cuda`` for ONNX Runtime."""
    return click.option(
        "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
    )


def data_mpp_option() -> Decorator:
    """``--data-mpp`` for user images whose resolution is not recorded."""
    return click.option(
        "--data-mpp", type=float, default=None, help="µm/px of user images that do not record it."
    )


def seed_option(default: int = 0, help: str | None = None) -> Decorator:
    """``--seed N``."""
    return click.option("--seed", type=int, default=default, show_default=True, help=help)


def threads_option(
    default: int | None = 1, help: str | None = "torch CPU threads.", *, show_default: bool = True
) -> Decorator:
    """``--threads N``; ``show_default=False`` hides a default from ``--help``."""
    return click.option(
        "--threads", type=int, default=default, show_default=_shown(default, show_default), help=help
    )


def epochs_option(default: int, help: str | None = None) -> Decorator:
    """``--epochs N``."""
    return click.option("--epochs", type=int, default=default, show_default=True, help=help)


def batch_option(default: int) -> Decorator:
    """``--batch N``."""
    return click.option("--batch", type=int, default=default, show_default=True)


def lr_option(default: float | None, help: str | None = None) -> Decorator:
    """``--lr X``."""
    return click.option("--lr", type=float, default=default, show_default=_shown(default), help=help)


def schedule_options(*, epochs: int, batch: int, lr: float | None, lr_help: str | None = None) -> Decorator:
    """``--epochs``, ``--batch``, ``--lr`` of the training commands, with the command's defaults."""
    return stack(epochs_option(epochs), batch_option(batch), lr_option(lr, lr_help))


def resume_flag_option(help: str = CHECKPOINT_RESUME_HELP) -> Decorator:
    """``--resume`` flag: continue training from the checkpoint."""
    return click.option("--resume", is_flag=True, help=help)


def max_minutes_option(help: str = LR_BUDGET_HELP, default: float | None = None) -> Decorator:
    """``--max-minutes X`` wall-clock budget."""
    return click.option("--max-minutes", type=float, default=default, show_default=_shown(default), help=help)


def test_fold_option(default: int = 0, help: str | None = "Slide fold held out as test (0-4).") -> Decorator:
    """``--test-fold K``: the slide fold held out as test."""
    return click.option("--test-fold", type=int, default=default, show_default=True, help=help)


def quiet_options() -> Decorator:
    """``--quiet`` (no progress bars; the one-line result and errors still print) and ``--silent``
    (nothing but errors, which always reach stderr)."""
    return stack(
        click.option(
            "--quiet", is_flag=True, help="No progress bars (the result line and errors still print)."
        ),
        click.option("--silent", is_flag=True, help="Print nothing but errors."),
    )


def max_pixels_option() -> Decorator:
    """``--max-pixels N``: the pixel limit of decoded images (decompression bombs); sets it for the process."""
    from glomkit.io.images import DEFAULT_MAX_PIXELS

    def set_limit(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
        from glomkit.io.images import set_max_pixels

        set_max_pixels(value)
        return value

    return click.option(
        "--max-pixels",
        type=click.IntRange(min=1),
        default=None,
        callback=set_limit,
        expose_value=True,
        help="Refuse images that declare more pixels than this (decompression bombs); for pyramidal "
        "slides, the most pixels one read may decode (its coarsest level must fit) "
        f"[default: {DEFAULT_MAX_PIXELS:,}].",
    )
