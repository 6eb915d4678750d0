"""The progress bar of long jobs: the training loops and the cohort runner (torch-free; rich only).

Usage::

    with job_progress() as bar:
        task = bar.add_task("train classifier", total=epochs, info="")
        bar.update(task, advance=1, info="val 0.93")
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def job_progress(disable: bool = False, console: Console | None = None) -> Progress:
    """Description, bar, done/total, elapsed and remaining time, then the task's ``info`` field.

    Every task needs an ``info`` field (``add_task(..., info="")``).
    """
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        disable=disable,
    )
