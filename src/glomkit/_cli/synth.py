"""CLI: ``glomkit synth``: write a synthetic PAS-like slide and its ground truth."""

from __future__ import annotations

import re
from pathlib import Path

import click
from rich.console import Console
from rich.progress import TimeRemainingColumn

from glomkit._cli.options import out_option, seed_option
from glomkit.progress import bar_progress

SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """``"40000x30000"`` -> (40000, 30000); raises ValueError with a one-line reason."""
    m = SIZE_RE.match(text)
    if not m:
        raise ValueError(f"expected WIDTHxHEIGHT (e.g. 40000x30000), got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if w < 64 or h < 64:
        raise ValueError(f"{w}x{h} is too small (at least 64x64)")
    return w, h


@click.command("synth")
@out_option("Output slide (.tif).")
@click.option("--size", default="40000x30000", show_default=True, help="Level-0 size, WIDTHxHEIGHT in px.")
@click.option("--mpp", type=click.FloatRange(min=0.01), default=0.25, show_default=True, help="µm per px.")
@seed_option()
@click.option(
    "--glomeruli",
    type=click.IntRange(min=0),
    default=None,
    help="Number of objects (default: by tissue area).",
)
@click.option("--tile", type=int, default=512, show_default=True, help="TIFF tile size (multiple of 16).")
@click.option("--quality", type=click.IntRange(1, 100), default=85, show_default=True, help="JPEG quality.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes rendering tile rows (same file for any number).",
)
@click.option(
    "--tissue-fraction",
    type=click.FloatRange(0.01, 0.75),
    default=None,
    help="Share of the slide covered by tissue (default: 0.45-0.65 at random).",
)
def synth(
    out: Path,
    size: str,
    mpp: float,
    seed: int,
    glomeruli: int | None,
    tile: int,
    quality: int,
    workers: int,
    tissue_fraction: float | None,
) -> None:
    """Write a synthetic PAS-like pyramidal TIFF with <stem>_truth.{csv,xml,geojson} beside it."""
    from glomkit.synth.slide import count_tiles, synthesize_slide, write_truth

    try:
        width, height = parse_size(size)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--size") from None
    console = Console()
    total = count_tiles(width, height, tile)
    with bar_progress(
        console, "[bold]synth[/] {task.description}", clock=TimeRemainingColumn(), transient=False
    ) as bar:
        task = bar.add_task(f"{width}x{height} @ {mpp:g} µm/px", total=total)
        result = synthesize_slide(
            out,
            width,
            height,
            mpp=mpp,
            seed=seed,
            n_glomeruli=glomeruli,
            tile=tile,
            quality=quality,
            progress=lambda n: bar.advance(task, n),
            workers=workers,
            tissue_fraction=tissue_fraction,
        )
    paths = write_truth(result, out)
    counts = ", ".join(f"{k} {v}" for k, v in result.counts().items())
    console.print(
        f"slide: [bold]{out}[/] ({width}x{height} px, {mpp:g} µm/px, {len(result.glomeruli)} objects: {counts})"
    )
    for p in paths:
        console.print(f"truth: {p}")
