"""Run the pipeline over many inputs: progress, resume, failures reported without stopping."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from glomkit import GlomkitError
from glomkit.pipeline import Models, PipelineConfig, find_slides, outputs_complete, run_slide


def _check_stems(slides: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for s in slides:
        if s.stem in seen:
            raise GlomkitError(
                f"{s}: same name as {seen[s.stem]}; their outputs would collide in OUT/{s.stem}/"
            )
        seen[s.stem] = s


def row_from_summary(slide: Path, summary: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {
        "stem": slide.stem,
        "source": str(slide),
        "status": "ok",
        "error": "",
        "n_glomeruli": summary.get("n_glomeruli"),
        "counts": summary.get("counts", {}),
        "ggs_percent": summary.get("ggs_percent"),
        "seconds": round(seconds, 3),
    }


def run_inputs(
    inputs: list[Path],
    out_root: Path,
    config: PipelineConfig,
    overwrite: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
) -> list[dict[str, Any]]:
    """Run every slide found in ``inputs``; one row per slide (status ok, skipped or failed)."""
    slides = find_slides(inputs)
    if not slides:
        raise GlomkitError(f"{', '.join(map(str, inputs))}: no slides or images found")
    _check_stems(slides)
    out_root = Path(out_root)
    if workers > 1 or scheduler:
        from glomkit.cohort import run_cohort

        return run_cohort(
            slides,
            out_root,
            config,
            workers=workers,
            scheduler=scheduler,
            overwrite=overwrite,
            progress=not config.quiet,
        )
    return _run_sequential(slides, out_root, config, overwrite)


def _run_sequential(
    slides: list[Path], out_root: Path, config: PipelineConfig, overwrite: bool
) -> list[dict]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    rows: list[dict[str, Any]] = []
    models: Models | None = None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=config.quiet,
        transient=False,
    ) as prog:
        t_slides = prog.add_task("slides", total=len(slides))
        t_tiles = prog.add_task("tiles", total=None, visible=False)

        def hook(stage: str, done: int, total: int) -> None:
            prog.update(t_tiles, completed=done, total=total, visible=True)

        for slide in slides:
            prog.update(t_slides, description=f"slides ({slide.name})")
            if not overwrite and outputs_complete(slide, out_root):
                rows.append(
                    {
                        "stem": slide.stem,
                        "source": str(slide),
                        "status": "skipped",
                        "error": "outputs complete",
                    }
                )
                prog.advance(t_slides)
                continue
            if models is None:
                models = Models(config)  # a missing or broken model stops the run: no slide could succeed
            t0 = time.perf_counter()
            try:
                prog.update(t_tiles, completed=0, total=None)
                summary = run_slide(slide, out_root, config, models=models, progress=hook)
                rows.append(row_from_summary(slide, summary, time.perf_counter() - t0))
                if not config.quiet:
                    g = summary.get("ggs_percent")
                    console.print(
                        f"{slide.name}: {summary.get('n_glomeruli', 0)} glomeruli"
                        + (f", global sclerosis {g:.1f} %" if g is not None else "")
                        + f" -> {out_root / slide.stem}"
                    )
            except GlomkitError as exc:
                rows.append({"stem": slide.stem, "source": str(slide), "status": "failed", "error": str(exc)})
                console.print(f"[red]glomkit: error: {exc}[/red]")
            except Exception as exc:  # noqa: BLE001 - one broken slide must not stop a cohort
                msg = f"{slide}: internal error {type(exc).__name__}: {exc}"
                rows.append({"stem": slide.stem, "source": str(slide), "status": "failed", "error": msg})
                console.print(f"[red]glomkit: error: {msg}[/red]")
            prog.advance(t_slides)
    return rows
