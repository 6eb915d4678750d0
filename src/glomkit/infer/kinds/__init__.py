"""The registry of detector kinds: a detector's ``decode.method`` -> how it is decoded, evaluated
and trained.

Each module of this package defines one kind as ``KIND = DetectorKind(...)`` and is found by
:func:`kinds` on import, so adding a kind means adding one file here. Decoding and evaluation are
numpy + ONNX Runtime; a kind names its trainer by import path, and the torch code it points to
is imported only when training starts.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from glomkit import GlomkitError
from glomkit.models.metadata import DetectorMetadata
from glomkit.slide.grid import Tile

# (batch outputs, index in batch, typed metadata, score threshold, tile) -> circles (K,4) in tile px
TileDecoder = Callable[[Mapping[str, np.ndarray], int, DetectorMetadata, float, Tile], np.ndarray]


@dataclass(frozen=True)
class TrainRequest:
    """What ``glomkit train detector`` asks of a kind's trainer (one shape for every kind)."""

    arch: str
    sources: list[str]
    weights: list[float] | None
    backbone: str | None
    data_mpp: float | list[float] | None
    options: dict[str, Any]  # the shared schedule / output options (out, epochs, lr, resume...)
    scale_jitter: float | None = None
    hard_fraction: float | None = None
    val_block: int | None = None
    select: str = "AP"
    init: str | None = None


@dataclass(frozen=True)
class DetectorKind:
    """One way to turn a network's outputs into circles.

    ``decode_tile`` is what ``glomkit run`` uses on each slide tile. ``predict(model, images,
    tta)`` and ``score(model, items, predictions)`` evaluate an ONNX model on fields (``items``:
    (key, Field) pairs); ``needs_masks``: the fields must carry glomerulus masks. ``architectures``
    are the ``train detector --arch`` values of this kind, and ``trainer`` the import path of its
    torch trainer (imported by :meth:`train` only). ``unflipped``: outputs that flip TTA must not
    average.
    """

    name: str
    outputs: tuple[str, ...]
    decode_tile: TileDecoder
    predict: Callable[[Any, list[np.ndarray], bool], list[np.ndarray]]
    score: Callable[[Any, list[tuple[str, Any]], list[np.ndarray]], dict[str, Any]]
    architectures: tuple[str, ...]
    trainer: str  # "module:function" taking a TrainRequest, returning the model file's Path
    needs_masks: bool = False
    unflipped: tuple[str, ...] = ()
    default_backbone: str = "resnet18"

    def train(self, request: TrainRequest) -> Any:
        """Train a model of this kind (imports the torch trainer now); returns the model file."""
        module, func = self.trainer.split(":")
        return getattr(importlib.import_module(module), func)(request)


@cache
def kinds() -> dict[str, DetectorKind]:
    """Every kind of this package by name (``decode.method``)."""
    out: dict[str, DetectorKind] = {}
    for mod in pkgutil.iter_modules(__path__):
        kind = getattr(importlib.import_module(f"{__name__}.{mod.name}"), "KIND", None)
        if isinstance(kind, DetectorKind):
            out[kind.name] = kind
    return out


def kind_of(meta: DetectorMetadata | Mapping[str, Any], path: object) -> DetectorKind:
    """The kind a detector's metadata names (``decode.method``, default 'circlenet')."""
    if isinstance(meta, DetectorMetadata):
        method = meta.method
    else:
        method = str(meta.get("decode", {}).get("method", "circlenet"))
    known = kinds()
    if method not in known:
        raise GlomkitError(f"{path}: unknown decode method {method!r}; known: {', '.join(sorted(known))}")
    return known[method]


def kind_for_arch(arch: str) -> DetectorKind:
    """The kind that ``train detector --arch ARCH`` trains."""
    for kind in kinds().values():
        if arch in kind.architectures:
            return kind
    raise GlomkitError(f"--arch {arch!r}: not a detector architecture ({', '.join(architectures())})")


def architectures() -> list[str]:
    """All trainable detector architectures, the CircleNet ones first."""
    return [a for k in sorted(kinds().values(), key=lambda k: k.name) for a in k.architectures]
