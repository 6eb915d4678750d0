"""``<stem>_glomeruli.csv``: one row per detection, the columns of ``glomkit.core.records.table_columns``.

A value that was not measured (NaN) is written as an empty cell. ``read_table`` parses numbers
back (empty numeric cells become NaN) and ``is_glomerulus`` back to a bool.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from glomkit import GlomkitError
from glomkit.core.records import GlomerulusRecord, SlideRecord, table_columns
from glomkit.core.trust import record_uncertain
from glomkit.io.atomic import atomic_path

TEXT_COLUMNS = {"label", "patch", "mask"}
INT_COLUMNS = {"id"}
BOOL_COLUMNS = {"is_glomerulus", "uncertain"}


def _cell(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(round(v, 6))
    return v


def table_row(g: GlomerulusRecord, result: SlideRecord) -> dict[str, Any]:
    """The table row of one detection, keyed by column name."""
    mpp = float(result.mpp)
    row: dict[str, Any] = {
        "id": int(g.id),
        "x": float(g.x),
        "y": float(g.y),
        "radius": float(g.radius),
        "radius_um": float(g.radius) * mpp,
        "score": float(g.score),
        "label": g.label,
    }
    for name in result.scheme.names:
        row[f"prob_{name}"] = float(g.probs.get(name, float("nan")))
    row.update(
        ggs_probability=float(g.ggs_probability),
        is_glomerulus=bool(g.is_glomerulus),
        uncertain=record_uncertain(g, result),
        area_um2=float(g.area_um2),
        diameter_um=float(g.diameter_um),
        patch=g.patch,
        mask=g.mask,
    )
    return row


def write_table(path: str | Path, result: SlideRecord) -> Path:
    """Write the detections of ``result`` as CSV, atomically."""
    columns = table_columns(result.scheme)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for g in result.glomeruli:
            row = table_row(g, result)
            w.writerow([_cell(row[c]) for c in columns])
    return Path(path)


def _parse(column: str, text: str) -> Any:
    if column in TEXT_COLUMNS:
        return text
    if column in BOOL_COLUMNS:
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"{text!r} is not true/false")
    if column in INT_COLUMNS:
        return int(text)
    if text == "":
        return float("nan")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Read a glomeruli CSV back: one dict per row, numbers parsed (empty numeric cells -> NaN)."""
    path = Path(path)
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise GlomkitError(f"{path}: cannot read ({exc.strerror or exc})") from None
    rows = []
    with fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "id" not in reader.fieldnames:
            raise GlomkitError(f"{path}: not a glomeruli table (no 'id' column)")
        for line, raw in enumerate(reader, start=2):
            if None in raw:
                raise GlomkitError(f"{path}: line {line} has more cells than the header")
            try:
                rows.append({k: _parse(k, v if v is not None else "") for k, v in raw.items()})
            except ValueError as exc:
                raise GlomkitError(f"{path}: line {line}: {exc}") from None
    return rows
