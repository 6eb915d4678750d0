"""The one list of a slide's annotation outputs: every writer, its file name, and its reviewed twin.

``SlideResult.save`` writes each :data:`FORMATS` entry into ``OUT/<stem>/``; ``glomkit review``
saves the formats marked ``reviewed`` as ``OUT/<stem>/review/<stem>_reviewed<suffix>``; review,
recount and the training-data readers name the files through :func:`file_name`. A new output
format is one entry here (plus its writer module and a test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glomkit.core.records import SlideRecord

REVIEWED = "_reviewed"  # what a review's file adds to the stem


def _xml(path: Path, result: SlideRecord, options: dict[str, Any]) -> Path:
    from glomkit.io.imagescope import write_imagescope_xml

    return write_imagescope_xml(path, result, contents=options.get("xml", "both"))


def _geojson(path: Path, result: SlideRecord, options: dict[str, Any]) -> Path:
    from glomkit.io.geojson import write_geojson

    return write_geojson(path, result)


def _table(path: Path, result: SlideRecord, options: dict[str, Any]) -> Path:
    from glomkit.io.table import write_table

    return write_table(path, result)


@dataclass(frozen=True)
class OutputFormat:
    """One annotation output: ``<stem><suffix>``, written by ``write(path, result, options)``."""

    name: str
    suffix: str
    write: Callable[[Path, SlideRecord, dict[str, Any]], Path]
    reviewed: bool  # also saved by a review, as <stem>_reviewed<suffix>


FORMATS: tuple[OutputFormat, ...] = (
    OutputFormat("imagescope", ".xml", _xml, reviewed=True),
    OutputFormat("geojson", ".geojson", _geojson, reviewed=True),
    OutputFormat("table", "_glomeruli.csv", _table, reviewed=False),
)


def output_format(name: str) -> OutputFormat:
    """The format called ``name`` (imagescope, geojson, table)."""
    for f in FORMATS:
        if f.name == name:
            return f
    raise KeyError(name)


def file_name(name: str, stem: str, reviewed: bool = False) -> str:
    """The file name of format ``name`` for slide ``stem`` (``reviewed``: the review's file)."""
    fmt = output_format(name)
    return f"{stem}{REVIEWED if reviewed else ''}{fmt.suffix}"


def annotation_files(stem: str) -> list[str]:
    """The annotation files of one slide's output folder, in the order they are written."""
    return [file_name(f.name, stem) for f in FORMATS]


def write_annotations(folder: Path, result: SlideRecord, **options: Any) -> list[str]:
    """Write every format of ``result`` into ``folder``; returns the file names."""
    names = annotation_files(result.stem)
    for fmt, name in zip(FORMATS, names, strict=True):
        fmt.write(folder / name, result, options)
    return names


def write_reviewed(folder: Path, result: SlideRecord, skip: tuple[str, ...] = ()) -> list[Path]:
    """Write the reviewed formats of ``result`` into ``folder`` (``skip``: names written elsewhere)."""
    out = []
    for fmt in FORMATS:
        if fmt.reviewed and fmt.name not in skip:
            out.append(fmt.write(folder / file_name(fmt.name, result.stem, reviewed=True), result, {}))
    return out


def patch_paths(out_dir: Path, stem: str) -> dict[int, str]:
    """Glomerulus id -> its patch image (relative to ``out_dir``) from the slide's table; {} without one."""
    table = Path(out_dir) / file_name("table", stem)
    if not table.is_file():
        return {}
    from glomkit.io.table import read_table

    return {int(r["id"]): str(r["patch"]) for r in read_table(table) if r.get("patch")}
