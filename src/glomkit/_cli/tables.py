"""What several commands print or record: result tables, the GGS line, the command line, classification with a progress bar."""

from __future__ import annotations

import shlex
from collections.abc import Collection, Iterable, Sequence

import click
from rich.table import Table


def result_table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], *, right: Collection[str] = ()
) -> Table:
    """A rich table of already formatted cells; columns named in ``right`` are right-justified."""
    table = Table(title=title)
    for name in columns:
        table.add_column(name, justify="right" if name in right else "left")
    for row in rows:
        table.add_row(*row)
    return table


def ggs_line(what: str, g: dict) -> str:
    """One line of the GGS-vs-not report."""
    return f"{what}: balanced acc {g['balanced_accuracy']:.4f}, AUC {g['auc']:.4f} (n={g['n']})"


def command_line(prefix: str) -> str:
    """The invoked command rebuilt from click's parsed options (those not left at their default)."""
    ctx = click.get_current_context()
    parts = [prefix]
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if v is None or v == p.default or not isinstance(p, click.Option):
            continue
        if p.multiple:  # repeatable option: once per value (nothing when none was given)
            for x in v:
                parts += [p.opts[-1], shlex.quote(str(x))]
        elif p.is_flag and isinstance(v, bool):
            # a flag left off is not written (its default may read None, not False)
            parts += [p.opts[0]] if v else p.secondary_opts[:1]
        else:
            parts += [p.opts[-1] if p.opts[-1].startswith("--") else p.opts[0], shlex.quote(str(v))]
    return " ".join(parts)


def classify_with_progress(onnx, paths, disable: bool = False) -> list[dict]:
    from rich.progress import Progress

    from glomkit.infer.classify import classify_files

    with Progress(transient=True, disable=disable) as progress:
        task = progress.add_task("classifying", total=len(paths))
        return classify_files(onnx, paths, on_batch=lambda n: progress.advance(task, n))
