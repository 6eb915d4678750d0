"""The shared click options (glomkit._cli.options) and the commands that pass them on to a config."""

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from glomkit import GlomkitError
from glomkit._cli.options import schedule_options, seed_option, stack, threads_option
from glomkit.cli import cli


def _command_paths(group: click.Group, ctx: click.Context, prefix: list[str]) -> list[list[str]]:
    paths = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        paths.append([*prefix, name])
        if isinstance(cmd, click.Group):
            paths += _command_paths(cmd, click.Context(cmd, info_name=name, parent=ctx), [*prefix, name])
    return paths


def test_every_command_prints_help():
    paths = _command_paths(cli, click.Context(cli, info_name="glomkit"), [])
    assert ["train", "segmenter"] in paths and ["study", "label-fraction"] in paths
    for path in paths:
        res = CliRunner().invoke(cli, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert "(unavailable" not in res.output, path


def test_stack_keeps_help_order_and_each_commands_defaults():
    @click.command()
    @stack(schedule_options(epochs=7, batch=3, lr=0.5), seed_option(9))
    @threads_option(None, "some threads.")
    def cmd(**params):
        click.echo(repr(sorted(params.items())))

    names = [p.name for p in cmd.params]
    assert names == ["epochs", "batch", "lr", "seed", "threads"]
    res = CliRunner().invoke(cmd, [])
    assert res.output.strip() == repr(
        sorted({"epochs": 7, "batch": 3, "lr": 0.5, "seed": 9, "threads": None}.items())
    )
    text = CliRunner().invoke(cmd, ["--help"]).output
    assert "[default: 7]" in text and "[default: 0.5]" in text and "some threads." in text
    assert text.index("--epochs") < text.index("--batch") < text.index("--lr") < text.index("--seed")


def _config_passed(monkeypatch, module: str, name: str, cmd: click.Command, args: str):
    """Invoke ``cmd`` with ``args`` (split on spaces), ``module.name`` replaced by a recorder; its config."""
    import importlib

    seen: list = []

    def record(cfg, *_args, **_kwargs):
        seen.append(cfg)
        raise GlomkitError("captured")

    monkeypatch.setattr(importlib.import_module(module), name, record)
    res = CliRunner().invoke(cmd, args.split())
    assert seen, res.output
    assert "captured" in str(res.exception) or "Error: captured" in res.output, res.output
    return seen[0]


def test_train_segmenter_passes_options_to_config(monkeypatch, tmp_path):
    from glomkit._cli.train import train_segmenter_cmd as train_cmd

    args = f"--data {tmp_path} -o {tmp_path}/m.onnx --size 512 --lr 0.01 --resume"
    cfg = _config_passed(monkeypatch, "glomkit.segment.train", "train_segmenter", train_cmd, args)
    assert cfg.size == 512 and cfg.lr == 0.01 and cfg.resume is True
    assert (cfg.epochs, cfg.batch, cfg.seed, cfg.test_fold, cfg.threads) == (30, 8, 0, 0, 1)
    assert cfg.data == tmp_path and cfg.max_minutes is None and cfg.arch == "deeplabv3"


@pytest.mark.parametrize(
    "arch, module, name",
    [
        ("circlenet", "glomkit.kinds.circlenet", "train_detector"),
        ("unet", "glomkit.kinds.components", "train_segdetector"),
    ],
)
def test_train_detector_passes_options_to_config(monkeypatch, tmp_path, arch, module, name):
    from glomkit._cli.train import train_detector_cmd as train_cmd

    args = (
        f"--data {tmp_path} -o {tmp_path}/d.onnx --arch {arch} --epochs 2 --resume {tmp_path}/c.pt --pool 5"
    )
    cfg = _config_passed(monkeypatch, module, name, train_cmd, args)
    assert (cfg.epochs, cfg.batch, cfg.lr, cfg.pool, cfg.threads) == (2, 8, 2e-3, 5, None)
    assert cfg.data == str(tmp_path) and cfg.resume == str(tmp_path / "c.pt")
    if arch == "circlenet":
        assert cfg.backbone == "resnet18" and cfg.data_mpp is None
    else:
        assert cfg.arch == "unet" and cfg.encoder == "resnet10t"


def test_study_segmentation_passes_options_to_config(monkeypatch, tmp_path):
    from glomkit._cli.study import study_segmentation_cmd

    args = (
        f"--data {tmp_path} -o {tmp_path}/s --archs unet,segnet --settings 256:pad --max-minutes-per-run 1.5"
    )
    cfg = _config_passed(
        monkeypatch, "glomkit.segment.study", "run_segmentation_study", study_segmentation_cmd, args
    )
    assert cfg.archs == ("unet", "segnet") and cfg.settings == ((256, "pad"),)
    assert (cfg.epochs, cfg.batch, cfg.lr, cfg.test_fold, cfg.max_minutes_per_run) == (10, 8, 2e-3, 4, 1.5)
    assert cfg.out == tmp_path / "s"


def test_study_label_fraction_passes_options_to_config(monkeypatch, tmp_path):
    from glomkit._cli.study import study_label_fraction_cmd

    args = f"--data {tmp_path} --encoder {tmp_path}/enc.pt -o {tmp_path}/lf --fractions 5,50 --external --batch 16"
    cfg = _config_passed(
        monkeypatch, "glomkit.studies.label_fraction", "run_label_fraction", study_label_fraction_cmd, args
    )
    assert cfg.fractions == (5.0, 50.0) and cfg.arms == ("scratch", "probe", "finetune")
    assert (cfg.epochs, cfg.batch, cfg.folds, cfg.external, cfg.threads) == (5, 16, 5, True, 1)
    assert cfg.encoder == str(tmp_path / "enc.pt") and Path(cfg.out) == tmp_path / "lf"
