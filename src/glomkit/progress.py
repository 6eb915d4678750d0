"""The rich progress bars of glomkit: a label, a bar, a count and a clock, plus extra columns.

``job_progress`` is the bar of long jobs (the training loops and the cohort runner); the CLI's
stage bars (``glomkit study``, ``glomkit cluster``) are :func:`bar_progress` too.

Usage::

    with job_progress() as bar:
        task = bar.add_task("train classifier", total=epochs, info="")
        bar.update(task, advance=1, info="val 0.93")
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def bar_progress(
    console: Console | None = None,
    label: str = "{task.description}",
    *,
    count: ProgressColumn | None = None,
    clock: ProgressColumn | None = None,
    extra: Sequence[ProgressColumn] = (),
    transient: bool = True,
    disable: bool = False,
) -> Progress:
    """``label`` text, bar, ``count`` (done/total), ``clock`` (elapsed time), then ``extra`` columns."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        count or MofNCompleteColumn(),
        clock or TimeElapsedColumn(),
        *extra,
        console=console,
        transient=transient,
        disable=disable,
    )


def job_progress(disable: bool = False, console: Console | None = None) -> Progress:
    """Description, bar, done/total, elapsed and remaining time, then the task's ``info`` field.

    Every task needs an ``info`` field (``add_task(..., info="")``).
    """
    return bar_progress(
        console,
        extra=(TimeRemainingColumn(), TextColumn("{task.fields[info]}")),
        transient=False,
        disable=disable,
    )
