"""Detector kinds: a detector file's ``decode.method`` -> everything glomkit knows of that kind.

A kind is one file of this package defining ``KIND = DetectorKind(...)``:

- its **metadata schema**: output names, default stride and score threshold, and a parser of its
  own ``decode`` settings (:func:`glomkit.models.metadata.validate_metadata` asks this registry);
- its **decoding** of a tile and its **evaluation** on fields (numpy + ONNX Runtime, no torch);
- its two **training hooks**: ``network(arch, backbone)`` builds the torch network (from
  :mod:`glomkit.nets`) and ``train(request)`` runs its trainer. Both import torch code only when
  called, so ``glomkit run`` never loads torch (``tests/test_layers.py`` checks that these hooks
  are the only imports from this layer up to the training code).

:data:`KINDS` finds the files of this package; :func:`register` adds a kind from outside (a
plugin, or a test). The pipeline, ``glomkit evaluate``, ``glomkit train detector --arch`` and
``--init`` all go through it: nothing else names a kind.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glomkit import GlomkitError
from glomkit.core.registry import Registry

if TYPE_CHECKING:
    from glomkit.slide.grid import Tile

DEFAULT_KIND = "circlenet"  # what a detector file that names no decode.method is
EVAL_SCORE_THRESHOLD = 0.05  # evaluation keeps the low-score tail: AP integrates over every score

# (batch outputs, index in batch, typed metadata (glomkit.models.metadata.DetectorMetadata), score
# threshold, tile) -> circles (K,4) in tile px; the metadata module asks this one, not the reverse
TileDecoder = Callable[[Mapping[str, np.ndarray], int, Any, float, "Tile"], np.ndarray]


@dataclass(frozen=True)
class TrainRequest:
    """What ``glomkit train detector`` hands a kind's trainer (one shape for every kind).

    ``options``: the shared schedule and output (out, epochs, lr, resume, ...); ``extra``: the
    options only some trainers use (e.g. ``scale_jitter``, ``hard_fraction``, ``init``). A trainer
    refuses an ``extra`` option it cannot honour.
    """

    arch: str
    sources: list[str]
    weights: list[float] | None
    backbone: str | None
    data_mpp: list[float] | None
    options: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DetectorTrainSettings:
    """What every detector trainer's run depends on (stored in the model's metadata): the data,
    the output, the schedule and the training fields. A kind's config adds its own fields."""

    data: str | list[str]  # one source, or several (a kind that mixes sources weights them)
    out: str
    epochs: int = 30
    batch: int = 8
    seed: int = 0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    fields: int = 256  # training fields per epoch (composed afresh each epoch)
    field_size: int = 160  # training field side, px at ``mpp``
    val_fields: int = 64
    val_size: int = 256
    mpp: float = 4.0
    input_size: int = 512
    max_minutes: float | None = None
    resume: str | None = None
    threads: int | None = None
    synthetic: bool = True
    pool: int = 48  # synthetic tissue / glomerulus pool size per split
    test_fold: int = 0
    checkpoint: str | None = None  # default: <out>.ckpt.pt
    data_mpp: float | list[float] | None = None  # µm/px of user images that lack it (one, or one per source)
    command: str = field(default_factory=lambda: " ".join(shlex.quote(a) for a in sys.argv))


@dataclass(frozen=True)
class DetectorKind:
    """One way to turn a network's outputs into circles, and to train that network.

    ``decode_tile`` is what ``glomkit run`` uses on each slide tile. ``predict(model, images,
    tta)`` and ``score(model, items, predictions)`` evaluate an ONNX model on fields (``items``:
    (key, Field) pairs); ``needs_masks``: the fields must carry glomerulus masks.
    ``parse_decode(check, decode)`` returns the kind's own typed ``decode`` settings (``check``:
    the metadata module's field checker); ``unflipped``: outputs that flip TTA must not average;
    ``warm_start``: ``train detector --init FILE`` can start from a model file of this kind.
    """

    name: str
    outputs: tuple[str, ...]
    decode_tile: TileDecoder
    predict: Callable[[Any, list[np.ndarray], bool], list[np.ndarray]]
    score: Callable[[Any, list[tuple[str, Any]], list[np.ndarray]], dict[str, Any]]
    architectures: tuple[str, ...]
    network: Callable[[str, str], Any]  # (arch, backbone) -> torch module; imports torch when called
    train: Callable[[TrainRequest], Path]  # runs the trainer; imports torch when called
    default_stride: int = 4
    default_score_threshold: float = 0.3
    parse_decode: Callable[[Any, Mapping[str, Any]], Any] | None = None
    needs_masks: bool = False
    unflipped: tuple[str, ...] = ()
    default_backbone: str = "resnet18"
    warm_start: bool = False


KINDS: Registry[DetectorKind] = Registry("detector kind (decode.method)", __name__, "KIND")


def register(kind: DetectorKind) -> DetectorKind:
    """Add ``kind`` (a plugin's or a test's) to the registry; returns it."""
    return KINDS.register(kind.name, kind)


def kinds() -> dict[str, DetectorKind]:
    """Every known kind by name (``decode.method``)."""
    return dict(KINDS.items())


def kind_of(meta: Any, path: object) -> DetectorKind:
    """The kind a detector's typed metadata (``DetectorMetadata``) names by its ``method``."""
    return KINDS.get(meta.method, path)


def kind_for_arch(arch: str) -> DetectorKind:
    """The kind that ``train detector --arch ARCH`` trains."""
    for _, kind in KINDS.items():
        if arch in kind.architectures:
            return kind
    raise GlomkitError(f"--arch {arch!r}: not a detector architecture ({', '.join(architectures())})")


def architectures() -> list[str]:
    """All trainable detector architectures, the default kind's first."""
    ordered = sorted((k for _, k in KINDS.items()), key=lambda k: (k.name != DEFAULT_KIND, k.name))
    return [a for k in ordered for a in k.architectures]
