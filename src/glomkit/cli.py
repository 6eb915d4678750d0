"""The ``glomkit`` command: parse arguments, call the library, print.

Sub-commands live in ``glomkit._cli.*`` and are imported only when invoked, so ``glomkit run``
never imports torch and ``glomkit --help`` is fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from glomkit import GlomkitError, __version__


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
        "run": ("glomkit._cli.run", "run"),
        "demo": ("glomkit._cli.run", "demo"),
        "classify": ("glomkit._cli.run", "classify_cmd"),
        "segment": ("glomkit._cli.run", "segment_cmd"),
        "synth": ("glomkit._cli.synth", "synth"),
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
        "detector": ("glomkit._cli.train", "train_detector_cmd"),
        "classifier": ("glomkit._cli.train", "train_classifier_cmd"),
        "segmenter": ("glomkit._cli.train", "train_segmenter_cmd"),
    },
)
def train() -> None:
    """Train a detector, classifier or segmenter (needs glomkit[train])."""


@cli.group(
    cls=LazyGroup,
    lazy={
        "detector": ("glomkit._cli.evaluate", "evaluate_detector_cmd"),
        "pipeline": ("glomkit._cli.evaluate", "evaluate_pipeline_cmd"),
        "classifier": ("glomkit._cli.evaluate", "evaluate_classifier_cmd"),
        "segmenter": ("glomkit._cli.evaluate", "evaluate_segmenter_cmd"),
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


@cli.group(cls=LazyGroup, lazy={"simsiam": ("glomkit._cli.train", "pretrain_simsiam_cmd")})
def pretrain() -> None:
    """Self-supervised pretraining on unlabelled images."""


@cli.group(
    cls=LazyGroup,
    lazy={
        "label-fraction": ("glomkit._cli.study", "study_label_fraction_cmd"),
        "segmentation": ("glomkit._cli.study", "study_segmentation_cmd"),
        "classifier-cv": ("glomkit._cli.study", "study_cv_cmd"),
    },
)
def study() -> None:
    """The published studies, rerun by command."""


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
