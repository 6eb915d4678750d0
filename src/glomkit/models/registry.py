"""Bundled models: the weights that ship inside the package and that ``glomkit run`` uses by default."""

from __future__ import annotations

from pathlib import Path

from glomkit import GlomkitError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# task -> file name of the default model of that task
DEFAULTS: dict[str, str] = {
    "detector": "detector.onnx",
    "classifier": "classifier.onnx",
    "segmenter": "segmenter.onnx",
}

# task -> short names of bundled alternatives (``glomkit run --detector unet``)
NAMED: dict[str, dict[str, str]] = {
    "detector": {
        "circlenet": "detector.onnx",
        "unet": "detector_unet.onnx",
        "segnet": "detector_segnet.onnx",
    },
}


def bundled_path(task: str) -> Path:
    """Path of the bundled default model for ``task``."""
    if task not in DEFAULTS:
        raise GlomkitError(f"unknown model task {task!r}; known: {', '.join(DEFAULTS)}")
    path = WEIGHTS_DIR / DEFAULTS[task]
    if not path.is_file():
        raise GlomkitError(f"{path}: the bundled {task} is missing from this installation")
    return path


def resolve_model(spec: str | Path | None, task: str) -> Path:
    """A model given by path, by a bundled short name (``NAMED``) or file name, or None (or
    "default", or "bundled", as ``--init bundled`` says) for the bundled default."""
    if spec is None or str(spec) in ("default", "bundled"):
        return bundled_path(task)
    named = NAMED.get(task, {})
    if str(spec) in named:
        path = WEIGHTS_DIR / named[str(spec)]
        if not path.is_file():
            raise GlomkitError(f"{path}: the bundled {task} {spec!r} is missing from this installation")
        return path
    p = Path(spec)
    if p.is_file():
        return p
    q = WEIGHTS_DIR / str(spec)
    if q.is_file():
        return q
    raise GlomkitError(f"{spec}: model file not found")
