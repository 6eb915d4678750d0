"""CLI: ``glomkit models``: operations on model files (``quantize``)."""

from __future__ import annotations

from pathlib import Path

import click

from glomkit._cli.options import PATH


@click.command("quantize")
@click.argument("src", type=PATH)
@click.argument("dst", type=PATH)
@click.option(
    "--calibration",
    type=PATH,
    default=None,
    help="Folder of training images for static calibration (held-out files named in the model's "
    "metadata are skipped).",
)
@click.option(
    "--mode",
    type=click.Choice(["static", "dynamic"]),
    default="static",
    show_default=True,
    help="static: QDQ int8 with calibrated activations; dynamic: int8 weights only.",
)
@click.option("--data-mpp", type=float, default=None, help="µm/px of the calibration images (detectors).")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Calibration inputs."
)
@click.option(
    "--keep-float",
    multiple=True,
    metavar="PATTERN",
    help="Leave the nodes whose names match this shell pattern in float (repeatable), "
    "e.g. '/backbone/conv1/conv1.0/*'.",
)
def quantize_cmd(
    src: Path,
    dst: Path,
    calibration: Path | None,
    mode: str,
    data_mpp: float | None,
    limit: int,
    keep_float: tuple[str, ...],
) -> None:
    """Write an INT8 copy of the glomkit model SRC to DST, keeping its metadata."""
    from glomkit.models.quantize import quantize_file

    meta = quantize_file(
        src, dst, calibration, mode=mode, data_mpp=data_mpp, limit=limit, keep_float=keep_float
    )
    q = meta["quantization"]
    size = dst.stat().st_size / 1e6
    click.echo(
        f"wrote {dst} ({size:.1f} MB, {meta['task']}, {q['mode']}; {q.get('calibration', 'no calibration')})"
    )
