"""The result tables the commands print: a title, named columns, rows of formatted cells."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

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
