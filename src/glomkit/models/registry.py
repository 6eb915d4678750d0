"""Bundled models: the weights that ship inside the package and that ``glomkit run`` uses by default.

One :class:`~glomkit.core.registry.Registry` per task maps a short name to a file of
``WEIGHTS_DIR``; ``default`` is the task's default (``glomkit run --detector unet`` picks another).
"""

from __future__ import annotations

from pathlib import Path

from glomkit import GlomkitError
from glomkit.core.registry import Registry

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT = "default"

# task -> short name -> file of WEIGHTS_DIR ("default": what the task uses when none is named)
_FILES = {
    "detector": {
        DEFAULT: "detector.onnx",
        "circlenet": "detector.onnx",
        "unet": "detector_unet.onnx",
        "segnet": "detector_segnet.onnx",
    },
    "classifier": {DEFAULT: "classifier.onnx"},
    "segmenter": {DEFAULT: "segmenter.onnx"},
}


def _registry(task: str) -> Registry[str]:
    reg: Registry[str] = Registry(f"bundled {task}")
    for name, file in _FILES[task].items():
        reg.register(name, file)
    return reg


BUNDLED: dict[str, Registry[str]] = {task: _registry(task) for task in _FILES}


def bundled_names(task: str) -> list[str]:
    """The short names of ``task``'s bundled models, other than ``default``."""
    return [n for n in BUNDLED[task].names() if n != DEFAULT] if task in BUNDLED else []


def bundled_path(task: str, name: str = DEFAULT) -> Path:
    """Path of the bundled model ``name`` (default: the task's default) for ``task``."""
    if task not in BUNDLED:
        raise GlomkitError(f"unknown model task {task!r}; known: {', '.join(BUNDLED)}")
    path = WEIGHTS_DIR / BUNDLED[task].get(name)
    if not path.is_file():
        what = task if name == DEFAULT else f"{task} {name!r}"
        raise GlomkitError(f"{path}: the bundled {what} is missing from this installation")
    return path


def resolve_model(spec: str | Path | None, task: str) -> Path:
    """A model given by path, by a bundled short name or file name, or None (or "default", or
    "bundled", as ``--init bundled`` says) for the bundled default."""
    if spec is None or str(spec) in (DEFAULT, "bundled"):
        return bundled_path(task)
    if task in BUNDLED and str(spec) in BUNDLED[task]:
        return bundled_path(task, str(spec))
    p = Path(spec)
    if p.is_file():
        return p
    q = WEIGHTS_DIR / str(spec)
    if q.is_file():
        return q
    raise GlomkitError(f"{spec}: model file not found")
