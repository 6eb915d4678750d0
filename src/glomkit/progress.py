"""The progress bar the training loops share (torch-free; rich only).

Usage::

    with training_progress() as bar:
        task = bar.add_task("train classifier", total=epochs, info="")
        bar.update(task, advance=1, info="val 0.93")
"""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def training_progress(disable: bool = False) -> Progress:
    """Description, bar, done/total, elapsed and remaining time, then the task's ``info`` field."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        disable=disable,
    )
