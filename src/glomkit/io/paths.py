"""Output paths built under an output folder by construction: a path that would leave it is refused."""

from __future__ import annotations

import os
from pathlib import Path

from glomkit import GlomkitError


def path_under(root: str | Path, *parts: str) -> Path:
    """``root / parts…``, checked to lie inside ``root`` (no ``..``, no absolute part, no escape by a
    link). Raises GlomkitError otherwise: an output is never written outside its folder."""
    root = Path(root)
    for part in parts:
        if not part or os.path.isabs(part) or any(p in ("", ".", "..") for p in Path(part).parts):
            raise GlomkitError(
                f"{root}: refused to write to {part!r}: not a plain path inside the output folder"
            )
    path = root.joinpath(*parts)
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise GlomkitError(f"{path}: refused to write outside the output folder {root}")
    return path
