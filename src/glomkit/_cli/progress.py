"""The stage progress bar the study and cluster commands share (built on :func:`glomkit.progress.bar_progress`)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import Progress

from glomkit.progress import bar_progress


def stage_progress(console: Console) -> Progress:
    """A transient rich progress bar for a command's stages."""
    return bar_progress(console)
