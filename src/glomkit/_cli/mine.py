"""``glomkit mine``: harvest unlabelled glomerulus panels from a folder of published figures."""

from __future__ import annotations

from pathlib import Path

import click

from glomkit._cli.options import (
    ORT_THREADS_HELP,
    classifier_option,
    device_option,
    max_pixels_option,
    out_option,
    threads_option,
)


@click.command("mine")
@click.argument("figures_dir", type=click.Path(path_type=Path))
@out_option("Output folder.")
@classifier_option()
@click.option(
    "--no-classifier",
    is_flag=True,
    help="Keep every light-microscopy panel (modality filter and de-duplication only, no scoring).",
)
@click.option(
    "--threshold",
    type=float,
    default=0.7,
    show_default=True,
    help="Keep panels with glomerulus score ≥ this.",
)
@click.option(
    "--max-hash-distance",
    type=int,
    default=8,
    show_default=True,
    help="pHash Hamming distance (of 64 bits) at or below which two panels are duplicates.",
)
@click.option("--min-panel", type=int, default=48, show_default=True, help="Smallest panel side in pixels.")
@device_option()
@threads_option(None, ORT_THREADS_HELP)
@max_pixels_option()
@click.option("--quiet", is_flag=True, help="No progress bar (the result lines and errors still print).")
def mine_cmd(
    figures_dir: Path,
    out: Path,
    classifier: str | None,
    no_classifier: bool,
    threshold: float,
    max_hash_distance: int,
    min_panel: int,
    device: str,
    threads: int | None,
    max_pixels: int | None,
    quiet: bool,
) -> None:
    """Split the figures in FIGURES_DIR into panels; keep the glomerulus micrographs in OUT/panels.

    Also writes OUT/manifest.csv (every panel, kept or not, with the reason) and OUT/index.html.
    OUT/panels feeds `glomkit pretrain simsiam --images OUT/panels`.
    """
    from rich.console import Console
    from rich.progress import Progress

    from glomkit.io.paths import prepare_out_dir
    from glomkit.mine.curate import MineConfig, list_figures, mine_figures
    from glomkit.mine.separate import SeparationConfig

    if not 0.0 <= threshold <= 1.0:
        raise click.BadParameter("must be in [0, 1]", param_hint="--threshold")
    config = MineConfig(
        classifier=classifier,
        use_classifier=not no_classifier,
        threshold=threshold,
        max_hash_distance=max_hash_distance,
        separation=SeparationConfig(min_panel=min_panel),
        device=device,
        threads=threads,
    )
    n = len(list_figures(figures_dir))
    prepare_out_dir(out)
    with Progress(disable=quiet, transient=True) as progress:
        task = progress.add_task("figures", total=n)
        result = mine_figures(figures_dir, out, config, on_figure=lambda _p: progress.advance(task))
    console = Console()
    panels = [r for r in result.rows if r["reason"] not in ("too_small", "unreadable")]
    console.print(
        f"{result.n_figures} figures ({result.n_unreadable} unreadable), {len(panels)} panels: "
        f"[green]{result.n_kept} kept[/green], {result.count('not_light_microscopy')} not light microscopy, "
        f"{result.count('below_threshold')} below threshold, {result.count('duplicate_of')} duplicates"
    )
    console.print(
        f"panels:   {out / 'panels'}/\nmanifest: {out / 'manifest.csv'}\nsheet:    {out / 'index.html'}"
    )
