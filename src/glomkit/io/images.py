"""Patch image files: what counts as one, and finding them among files and folders."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from glomkit import GlomkitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def is_image_file(path: Path) -> bool:
    """A file whose suffix is one of ``IMAGE_SUFFIXES`` (any case)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def collect_images(inputs: Iterable[str | Path], skip_dirs: Iterable[str] = ()) -> list[Path]:
    """Files given as such, plus every image under the given folders (recursive, sorted).

    Folders named in ``skip_dirs`` (e.g. ``masks``) are not searched. A missing input, or no image
    at all, is a one-line ``GlomkitError``.
    """
    inputs = [Path(p) for p in inputs]
    skip = set(skip_dirs)
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            out += sorted(
                q for q in p.rglob("*") if is_image_file(q) and not skip & set(q.relative_to(p).parts)
            )
        elif p.is_file():
            out.append(p)
        else:
            raise GlomkitError(f"{p}: no such file or folder")
    if not out:
        raise GlomkitError(f"{', '.join(map(str, inputs))}: no images found")
    return out
