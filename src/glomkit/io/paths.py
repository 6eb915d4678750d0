"""Output paths built under an output folder by construction: a path that would leave it is refused."""

from __future__ import annotations

import os
import tempfile
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


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def prepare_out_dir(out: str | Path, option: str = "-o") -> Path:
    """Create the output folder ``out`` and check that files can be written in it.

    An existing file, a folder that cannot be created (``/proc/x``) or written, is a one-line
    GlomkitError naming it, before any work is done.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GlomkitError(f"{out}: exists and is not a folder ({option} takes an output folder)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GlomkitError(f"{out}: cannot create the output folder ({_why(exc)})") from None
    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=".glomkit-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise GlomkitError(f"{out}: cannot write in the output folder ({_why(exc)})") from None
    return out


def prepare_out_file(path: str | Path, option: str = "-o") -> Path:
    """Check that the output file ``path`` can be written: not a folder, its folder writable."""
    path = Path(path)
    if path.is_dir():
        raise GlomkitError(f"{path}: is a folder ({option} takes an output file)")
    try:
        prepare_out_dir(path.parent if str(path.parent) else Path("."), option)
    except GlomkitError as exc:
        raise GlomkitError(f"{path}: cannot write the output file ({exc})") from None
    return path


def os_error_message(exc: OSError) -> str:
    """One line for an OSError met while writing outputs: the file and the reason."""
    where = exc.filename if exc.filename is not None else "output"
    return f"{where}: {_why(exc)}" + (" (the disk is full)" if exc.errno == 28 else "")
