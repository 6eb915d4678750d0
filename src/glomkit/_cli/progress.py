"""The progress bars the commands share: a label, a bar, a count and a clock."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)


def bar_progress(
    console: Console,
    label: str = "{task.description}",
    *,
    count: ProgressColumn | None = None,
    clock: ProgressColumn | None = None,
    transient: bool = True,
) -> Progress:
    """A rich progress bar: ``label`` text, bar, ``count`` (done/total) and ``clock`` (elapsed time)."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        count or MofNCompleteColumn(),
        clock or TimeElapsedColumn(),
        console=console,
        transient=transient,
    )


def stage_progress(console: Console) -> Progress:
    """A transient rich progress bar for a command's stages."""
    return bar_progress(console)
