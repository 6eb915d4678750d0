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
    from glomkit.models.metadata import validate_metadata
    from glomkit.models.quantize import quantize_file

    meta = quantize_file(
        src, dst, calibration, mode=mode, data_mpp=data_mpp, limit=limit, keep_float=keep_float
    )
    md = validate_metadata(meta, dst)
    q = md.quantization
    size = dst.stat().st_size / 1e6
    click.echo(
        f"wrote {dst} ({size:.1f} MB, {md.task}, {q.mode if q else '?'}; {(q and q.calibration) or 'no calibration'})"
    )


@click.command("colour-reference")
@click.argument("src", type=PATH)
@click.argument("dst", type=PATH)
@click.option(
    "--data",
    "data",
    type=PATH,
    multiple=True,
    required=True,
    help="Folder of the detector's annotated training images (repeatable: one per source); only "
    "each folder's training split is read (glomkit.detect.data.split_annotated).",
)
@click.option("--data-mpp", type=float, multiple=True, help="µm/px of each --data folder's images.")
@click.option(
    "--on/--off",
    "on",
    default=True,
    show_default=True,
    help="Whether the pipeline maps each slide's colours to the reference by default.",
)
def colour_reference_cmd(
    src: Path, dst: Path, data: tuple[Path, ...], data_mpp: tuple[float, ...], on: bool
) -> None:
    """Write a copy of the detector SRC to DST that records its training images' tissue colours
    (input.stain_reference), so the pipeline can map each slide's colours to them before detection."""
    from glomkit.detect.data import colour_reference, read_user_images, split_annotated
    from glomkit.models.export import write_with_metadata

    if data_mpp and len(data_mpp) != len(data):
        raise click.UsageError("give one --data-mpp per --data, or none")
    mpps = list(data_mpp) or [None] * len(data)
    sources = [split_annotated(read_user_images(d, m))[0] for d, m in zip(data, mpps, strict=True)]
    ref, desc = colour_reference(sources)
    write_with_metadata(
        src, dst, {"input.stain_reference": {**ref.as_json(), **desc}, "decode.colour_transfer": on}
    )
    mean = ", ".join(f"{v:.1f}" for v in ref.mean)
    click.echo(f"wrote {dst}: stain reference L,a,b mean {mean} from {sum(len(s) for s in sources)} images")
