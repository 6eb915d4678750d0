"""Run the pipeline over many inputs: discovery, then glomkit.cohort (resume, failures, progress)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glomkit import GlomkitError
from glomkit.pipeline import PipelineConfig, find_slides


def run_inputs(
    inputs: list[Path],
    out_root: Path,
    config: PipelineConfig,
    overwrite: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
) -> list[dict[str, Any]]:
    """Run every slide found in ``inputs``; one row per slide (status ok, skipped or failed), then
    one per input that does not exist (status missing), when others do."""
    if isinstance(scheduler, str):
        check_scheduler_address(scheduler)
    missing: list[Path] = []
    slides = find_slides(inputs, missing)
    if not slides and missing:
        raise GlomkitError(f"{', '.join(map(str, missing))}: no such file or folder")
    if not slides:
        raise GlomkitError(f"{', '.join(map(str, inputs))}: no slides or images found")
    if config.mpp_table and not config.quiet:
        _warn_unmatched(config.mpp_table, slides)
    from glomkit.cohort import run_cohort

    return run_cohort(
        slides,
        Path(out_root),
        config,
        workers=workers,
        scheduler=scheduler,
        overwrite=overwrite,
        progress=not config.quiet,
        missing=missing,
    )


def _warn_unmatched(table_path: str, slides: list[Path]) -> None:
    """One line on stderr naming the scale-table rows that match no input (likely typos)."""
    import sys

    from glomkit.slide.mpp_table import load_mpp_table

    missing = load_mpp_table(table_path).unmatched(slides)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        print(
            f"glomkit: warning: --mpp-table rows match no input: {', '.join(missing[:3])}{more}",
            file=sys.stderr,
        )


def check_scheduler_address(address: str) -> None:
    """A one-line GlomkitError for a ``--dask-scheduler`` that is not a scheduler address
    (``tcp://HOST:PORT``; dask's other schemes too), checked before any slide runs. Without the
    ``cohort`` extra nothing is checked here (the cohort says that the extra is missing)."""
    try:
        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import get_backend
    except ImportError:
        return
    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            host, port = parse_host_port(location)
            if not host:
                raise ValueError("no host")
            if not 1 <= int(port) <= 65535:
                raise ValueError(f"port {port} is not 1-65535")
    except (ValueError, TypeError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise GlomkitError(
            f"--dask-scheduler {address!r}: not a scheduler address ({reason}); expected tcp://HOST:PORT"
        ) from None
