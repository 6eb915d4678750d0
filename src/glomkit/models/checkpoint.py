"""Loading torch files (training checkpoints, encoders) safely: ``weights_only=True`` always, and a
file that is refused or unreadable is one GlomkitError naming it, never a traceback."""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from glomkit import GlomkitError


def load_torch_file(
    path: str | Path, map_location: Any = "cpu", what: str = "checkpoint", keys: Iterable[str] = ()
) -> Any:
    """``torch.load(path, weights_only=True)``; a pickle holding code, a corrupt file or a dict
    missing one of ``keys`` is a one-line GlomkitError naming the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise GlomkitError(f"{path}: {what} not found")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise GlomkitError(
            f"{path}: refused to load this {what}: it is corrupt, or holds Python objects other than "
            "tensors and plain data (a pickle that could run code is never executed)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GlomkitError(f"{path}: not a readable {what} ({first[:120]})") from None
    missing = [k for k in keys if not isinstance(blob, dict) or k not in blob]
    if missing:
        raise GlomkitError(f"{path}: not a glomkit {what} (no {', '.join(map(repr, missing))})")
    return blob
