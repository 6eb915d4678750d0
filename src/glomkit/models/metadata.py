"""Typed, validated metadata of glomkit model files: one dataclass per task, one place for defaults.

A model file's ``glomkit`` metadata (docs/ARCHITECTURE.md, "Model files") is untrusted input: a
model can come from anywhere. :func:`validate_metadata` checks every field the pipeline obeys
when the model loads, and a bad field is a one-line :class:`~glomkit.GlomkitError` naming the
model file and the field. Keys this module does not know are kept and allowed (other parts of
glomkit add their own, e.g. a classifier's decision settings).

>>> meta = validate_metadata({"format": FORMAT, "task": "segmenter", "input_size": [256, 256]}, "m.onnx")
>>> meta.threshold, meta.resize_mode
(0.5, 'resize')
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glomkit import GlomkitError
from glomkit.core.geometry import DEFAULT_NMS_IOU
from glomkit.core.stain import STAIN_NORMS
from glomkit.kinds import DEFAULT_KIND, KINDS

FORMAT = "glomkit-model/1"
ENCODER_TASK = "encoder"  # a feature extractor (glomkit pretrain simsiam; glomkit cluster --encoder)
TASKS = ("detector", "classifier", "segmenter", ENCODER_TASK)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# One place for defaults.
# (a detector kind's own defaults live in its file: glomkit.kinds)
DEFAULT_DETECTOR_MPP = 2.0  # µm/px of a detector whose metadata does not say
DEFAULT_TOP_K = 100
DEFAULT_SEGMENTER_THRESHOLD = 0.5

# Plausible ranges: outside them the metadata is wrong, not unusual.
MODEL_MPP_RANGE = (0.05, 100.0)  # µm/px a detector can work at
MAX_INPUT_SIDE = 8192
MAX_STRIDE = 64
MAX_CLASSES = 256
RESIZE_MODES = ("resize", "pad")
# Outputs each task's models must have (by name); a detector's are its kind's (glomkit.kinds).
REQUIRED_OUTPUTS = {
    "classifier": ("probs",),
    "segmenter": ("prob",),
    ENCODER_TASK: ("features",),
}

# A class name becomes a folder name in OUT (patches/<class>/): letters, digits, '_', '-', '+',
# '.', starting with a letter or digit (so never '.', '..' or a hidden name), no '/' or '\\'.
CLASS_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+.\-]{0,63}")


def is_safe_class_name(name: object) -> bool:
    """True when ``name`` can be used as one folder name under OUT on every platform."""
    return isinstance(name, str) and CLASS_NAME_RE.fullmatch(name) is not None


class _Field:
    """Checks of one metadata field, raising a GlomkitError that names the file and the field."""

    def __init__(self, path: str | Path) -> None:
        self.path = path

    def fail(self, name: str, why: str) -> GlomkitError:
        return GlomkitError(f"{self.path}: model metadata field {name!r} {why}")

    def mapping(self, d: Mapping[str, Any], name: str, key: str) -> Mapping[str, Any]:
        v = d.get(key, {})
        if not isinstance(v, Mapping):  # null included: code reading the raw metadata expects an object
            raise self.fail(name, f"must be an object, got {_show(v)}")
        return v

    def number(
        self,
        d: Mapping[str, Any],
        name: str,
        key: str,
        default: float | None,
        lo: float | None = None,
        hi: float | None = None,
        *,
        lo_open: bool = False,
    ) -> float:
        if key not in d or d[key] is None:
            if default is None:
                raise self.fail(name, "is missing")
            return float(default)
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(name, f"must be a number, got {_show(v)}")
        try:
            f = float(v)
        except OverflowError:  # an int too large for a float
            raise self.fail(name, f"is out of range, got {_show(v)}") from None
        if not math.isfinite(f):
            raise self.fail(name, f"must be finite, got {_show(v)}")
        if lo is not None and (f <= lo if lo_open else f < lo):
            raise self.fail(name, f"must be {'>' if lo_open else '≥'} {lo:g}, got {_show(v)}")
        if hi is not None and f > hi:
            raise self.fail(name, f"must be ≤ {hi:g}, got {_show(v)}")
        return f

    def integer(
        self, d: Mapping[str, Any], name: str, key: str, default: int | None, lo: int, hi: int
    ) -> int:
        if key not in d or d[key] is None:
            if default is None:
                raise self.fail(name, "is missing")
            return default
        v = d[key]
        if isinstance(v, float) and v.is_integer() and math.isfinite(v):
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(name, f"must be an integer, got {_show(v)}")
        if not lo <= v <= hi:
            raise self.fail(name, f"must be in [{lo}, {hi}], got {_show(v)}")
        return v

    def boolean(self, d: Mapping[str, Any], name: str, key: str, default: bool) -> bool:
        v = d.get(key, default)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.fail(name, f"must be true or false, got {_show(v)}")
        return v

    def choice(self, d: Mapping[str, Any], name: str, key: str, default: str, known: Sequence[str]) -> str:
        v = d.get(key, default)
        if v is None:
            return default
        if not isinstance(v, str) or v not in known:
            raise self.fail(name, f"is {_show(v)}; known: {', '.join(known)}")
        return v

    def triple(self, d: Mapping[str, Any], name: str, key: str, default: tuple[float, ...], positive: bool):
        v = d.get(key)
        if v is None:
            return tuple(float(x) for x in default)
        if not isinstance(v, (list, tuple)) or len(v) != 3:
            raise self.fail(name, f"must be a list of 3 numbers, got {_show(v)}")
        out = []
        for i, x in enumerate(v):
            out.append(
                self.number({"v": x}, f"{name}[{i}]", "v", None, 0.0 if positive else None, lo_open=positive)
            )
        return tuple(out)


def _text(meta: Mapping[str, Any], key: str) -> str | None:
    """A provenance field as text (None when absent); never an error: it is reported, not obeyed."""
    v = meta.get(key)
    return None if v is None else str(v)


def _show(v: object, limit: int = 40) -> str:
    s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


SPLITS = ("train", "val", "test")
HELD_OUT_SPLITS = ("val", "test")


@dataclass(frozen=True)
class Splits:
    """The files and slides that a model's training record (``training``, at any depth:
    ``val_files``, ``test_slides``, ``train_slides``, ...) lists per split."""

    files: Mapping[str, frozenset[str]] = field(default_factory=dict)
    slides: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def slides_of(self, split: str) -> frozenset[str]:
        """The slides of ``split`` (train, val or test); empty when the record lists none."""
        return self.slides.get(split, frozenset())

    def held_out_files(self) -> frozenset[str]:
        """Every file listed as validation or test data."""
        return frozenset().union(*(self.files.get(s, frozenset()) for s in HELD_OUT_SPLITS))

    def held_out_slides(self) -> frozenset[str]:
        """Every slide listed as validation or test data."""
        return frozenset().union(*(self.slides.get(s, frozenset()) for s in HELD_OUT_SPLITS))


@dataclass(frozen=True)
class Quantization:
    """``quantization``: how a file was quantised (``glomkit models quantize``)."""

    mode: str
    calibration: str | None = None


@dataclass(frozen=True)
class Pretraining:
    """An encoder's pretraining record (``pretraining`` of an encoder file, or the ``meta`` of a
    SimSiam checkpoint): what it was trained on and for how long (None where it does not say)."""

    backbone: str | None = None
    epochs_done: int | None = None
    steps_done: int | None = None
    n_images: int | None = None
    size: int | None = None

    def describe(self) -> str:
        """``resnet10t (94 epochs, 1492 steps on 1028 crops)``; '?' where unknown."""
        q = lambda v: "?" if v is None else v  # noqa: E731
        return (
            f"{q(self.backbone)} ({q(self.epochs_done)} epochs, {q(self.steps_done)} steps "
            f"on {q(self.n_images)} crops)"
        )


@dataclass(frozen=True)
class DecisionFields:
    """A classifier's ``temperature`` and ``decision`` keys (``glomkit.infer.decision`` applies them):
    T, the GGS threshold (None: plain argmax), the glomerulus cut and the positive class."""

    temperature: float = 1.0
    threshold: float | None = None
    glomerulus_min: float = 0.5
    positive: str = ""


@dataclass(frozen=True)
class ModelMetadata:
    """What every glomkit model states: its task, input size and input normalisation."""

    path: str
    task: str
    input_size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # provenance, as the file states it (None where it does not): what summary.json reports
    architecture: str | None = None
    backbone: str | None = None  # the backbone, or a segmenter's encoder
    created: str | None = None
    glomkit_version: str | None = None
    # the files and slides the training record lists per split; the trainer's figures (``metrics``)
    splits: Splits = field(default_factory=Splits, compare=False)
    best_epoch: int | None = None  # ``training.best_epoch``
    metrics: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    quantization: Quantization | None = None
    pretraining: Pretraining | None = None  # encoders

    def required_outputs(self) -> tuple[str, ...]:
        return REQUIRED_OUTPUTS.get(self.task, ())

    def split_metrics(self, split: str) -> Mapping[str, Any] | None:
        """The trainer's report of ``split`` (``metrics.<split>``), or None."""
        rep = self.metrics.get(split)
        return rep if isinstance(rep, Mapping) else None


@dataclass(frozen=True)
class DetectorMetadata(ModelMetadata):
    """A detector: its working mpp, output stride and decoding settings.

    ``method`` names its kind (:mod:`glomkit.kinds`), whose file gives the stride and score
    threshold defaults and parses ``decode``: the kind's own typed settings (None for a kind
    without any).
    """

    mpp: float = DEFAULT_DETECTOR_MPP
    stride: int = 4
    method: str = DEFAULT_KIND
    score_threshold: float = 0.3
    top_k: int = DEFAULT_TOP_K
    nms_iou: float = DEFAULT_NMS_IOU
    tta: bool = False
    decode: Any = None
    max_radius_um: float | None = None
    # the tissue colours (glomkit.core.colour.LabStats) of the detector's training images
    # (``input.stain_reference``); None: no colour transfer is possible
    stain_reference: Any = None
    # map each slide's tissue colours to ``stain_reference`` before detection (``decode.colour_transfer``)
    colour_transfer: bool = False

    def required_outputs(self) -> tuple[str, ...]:
        return KINDS.get(self.method, self.path).outputs


@dataclass(frozen=True)
class ClassifierMetadata(ModelMetadata):
    """A classifier: its class scheme (the output order), with names safe to use as folder names,
    and the stain normalisation applied to every patch before its input
    (:func:`glomkit.core.stain.stain_normaliser`; ``none`` for files that do not say)."""

    scheme: Any = None  # glomkit.core.schemes.ClassScheme
    stain_norm: str = "none"
    decision: DecisionFields = DecisionFields()


@dataclass(frozen=True)
class SegmenterMetadata(ModelMetadata):
    """A segmenter: its mask threshold and how patches are fitted to its input size."""

    threshold: float = DEFAULT_SEGMENTER_THRESHOLD
    resize_mode: str = "resize"


def validate_metadata(meta: Any, path: str | Path) -> ModelMetadata:
    """The typed metadata of the model file ``path``; a GlomkitError names the file and the bad field."""
    f = _Field(path)
    if not isinstance(meta, Mapping):
        raise GlomkitError(f"{path}: model metadata is not a JSON object")
    if meta.get("format") != FORMAT:
        raise f.fail("format", f"is {_show(meta.get('format'))}, expected {FORMAT!r}")
    task = meta.get("task")
    if task is None:
        raise f.fail("task", "is missing")
    if task not in TASKS:
        raise f.fail("task", f"is {_show(task)}; known: {', '.join(TASKS)}")
    size = meta.get("input_size")
    if size is None:
        raise f.fail("input_size", "is missing")
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise f.fail("input_size", f"must be [height, width], got {_show(size)}")
    h = f.integer({"v": size[0]}, "input_size[0]", "v", None, 1, MAX_INPUT_SIDE)
    w = f.integer({"v": size[1]}, "input_size[1]", "v", None, 1, MAX_INPUT_SIDE)
    inp = f.mapping(meta, "input", "input")
    training = f.mapping(meta, "training", "training")
    common: dict[str, Any] = {
        "path": str(path),
        "task": task,
        "input_size": (h, w),
        "mean": f.triple(inp, "input.mean", "mean", IMAGENET_MEAN, positive=False),
        "std": f.triple(inp, "input.std", "std", IMAGENET_STD, positive=True),
        "raw": meta,
        "architecture": _text(meta, "architecture"),
        "backbone": _text(meta, "backbone") or _text(meta, "encoder"),
        "created": _text(meta, "created"),
        "glomkit_version": _text(meta, "glomkit_version"),
        "splits": _splits(training),
        "best_epoch": (
            f.integer(training, "training.best_epoch", "best_epoch", None, 0, 10**9)
            if training.get("best_epoch") is not None
            else None
        ),
        "metrics": f.mapping(meta, "metrics", "metrics"),
        "quantization": _quantization(f, meta),
        "pretraining": (
            parse_pretraining(f.mapping(meta, "pretraining", "pretraining"), path)
            if "pretraining" in meta
            else None
        ),
    }
    if task == "detector":
        return _detector(f, meta, common)
    if task == ENCODER_TASK:  # input and output only
        return ModelMetadata(**common)
    if task == "classifier":
        return ClassifierMetadata(
            **common,
            scheme=_scheme(f, meta),
            stain_norm=f.choice(meta, "stain_norm", "stain_norm", "none", STAIN_NORMS),
            decision=parse_decision(meta, path),
        )
    return SegmenterMetadata(
        **common,
        threshold=f.number(meta, "threshold", "threshold", DEFAULT_SEGMENTER_THRESHOLD, 0.0, 1.0),
        resize_mode=f.choice(meta, "resize_mode", "resize_mode", "resize", RESIZE_MODES),
    )


def _detector(f: _Field, meta: Mapping[str, Any], common: dict[str, Any]) -> DetectorMetadata:
    dec = f.mapping(meta, "decode", "decode")
    method = f.choice(dec, "decode.method", "method", DEFAULT_KIND, KINDS.names())
    kind = KINDS.get(method, f.path)
    lo, hi = MODEL_MPP_RANGE
    if "max_radius_um" in meta and meta["max_radius_um"] is not None:
        max_r = f.number(meta, "max_radius_um", "max_radius_um", None, 0.0, 1e5, lo_open=True)
    else:
        max_r = None
    return DetectorMetadata(
        **common,
        mpp=f.number(meta, "mpp", "mpp", DEFAULT_DETECTOR_MPP, lo, hi),
        stride=f.integer(meta, "stride", "stride", kind.default_stride, 1, MAX_STRIDE),
        method=method,
        score_threshold=f.number(
            dec, "decode.score_threshold", "score_threshold", kind.default_score_threshold, 0.0, 1.0
        ),
        top_k=f.integer(dec, "decode.top_k", "top_k", DEFAULT_TOP_K, 1, 100_000),
        nms_iou=f.number(dec, "decode.nms_iou", "nms_iou", DEFAULT_NMS_IOU, 0.0, 1.0),
        tta=f.boolean(dec, "decode.tta", "tta", False),
        decode=kind.parse_decode(f, dec) if kind.parse_decode else None,
        max_radius_um=max_r,
        stain_reference=_stain_reference(f, meta),
        colour_transfer=f.boolean(dec, "decode.colour_transfer", "colour_transfer", False),
    )


def _splits(training: Mapping[str, Any]) -> Splits:
    files: dict[str, set[str]] = {}
    slides: dict[str, set[str]] = {}

    def walk(v: object) -> None:
        if isinstance(v, Mapping):
            for k, x in v.items():
                split, _, what = str(k).partition("_")
                if split in SPLITS and what in ("files", "slides") and isinstance(x, list):
                    (files if what == "files" else slides).setdefault(split, set()).update(map(str, x))
                else:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(training)
    return Splits(
        files={k: frozenset(v) for k, v in files.items()}, slides={k: frozenset(v) for k, v in slides.items()}
    )


def _quantization(f: _Field, meta: Mapping[str, Any]) -> Quantization | None:
    q = meta.get("quantization")
    if not q:
        return None
    if not isinstance(q, Mapping):
        raise f.fail("quantization", f"must be an object, got {_show(q)}")
    cal = q.get("calibration")
    return Quantization(mode=str(q.get("mode", "unknown")), calibration=None if cal is None else str(cal))


def parse_pretraining(d: Mapping[str, Any], path: str | Path) -> Pretraining:
    """A pretraining record (an encoder file's ``pretraining``, or a SimSiam checkpoint's ``meta``), typed."""
    f = _Field(path)
    if not isinstance(d, Mapping):
        raise f.fail("pretraining", f"must be an object, got {_show(d)}")

    def count(key: str) -> int | None:
        return None if d.get(key) is None else f.integer(d, f"pretraining.{key}", key, None, 0, 10**12)

    return Pretraining(
        backbone=_text(d, "backbone"),
        epochs_done=count("epochs_done"),
        steps_done=count("steps_done"),
        n_images=count("n_images"),
        size=count("size"),
    )


def parse_decision(meta: Mapping[str, Any], path: str | Path) -> DecisionFields:
    """``temperature`` and ``decision`` (a classifier's metadata, or a CV summary's decision), checked."""
    f = _Field(path)
    d = f.mapping(meta, "decision", "decision") if meta.get("decision") is not None else {}
    thr = d.get("threshold")
    positive = d.get("positive", "")
    if not isinstance(positive, str):
        raise f.fail("decision.positive", f"must be a class name, got {_show(positive)}")
    return DecisionFields(
        temperature=f.number(meta, "temperature", "temperature", 1.0, 0.0, 1e6, lo_open=True),
        threshold=None if thr is None else f.number(d, "decision.threshold", "threshold", None, 0.0, 1.0),
        glomerulus_min=f.number(d, "decision.glomerulus_min", "glomerulus_min", 0.5, 0.0, 1.0),
        positive=positive,
    )


def _stain_reference(f: _Field, meta: Mapping[str, Any]):
    """``input.stain_reference`` ({"mean": [L, a, b], "sd": [L, a, b]}, 8-bit CIELAB) or None."""
    from glomkit.core.colour import LabStats

    ref = f.mapping(meta, "input", "input").get("stain_reference")
    if ref is None:
        return None
    if not isinstance(ref, Mapping):
        raise f.fail("input.stain_reference", f"must be an object, got {_show(ref)}")
    mean = f.triple(ref, "input.stain_reference.mean", "mean", (), positive=False)
    sd = f.triple(ref, "input.stain_reference.sd", "sd", (), positive=True)
    if len(mean) != 3 or len(sd) != 3 or not all(0.0 <= v <= 255.0 for v in (*mean, *sd)):
        raise f.fail("input.stain_reference", "needs mean and sd, 3 numbers each from 0 to 255")
    return LabStats(mean, sd)


def _scheme(f: _Field, meta: Mapping[str, Any]):
    from glomkit.core.schemes import ClassScheme, GlomClass

    d = meta.get("classes")
    if d is None:
        raise f.fail("classes", "is missing (a classifier needs its class scheme)")
    if not isinstance(d, Mapping):
        raise f.fail("classes", f"must be an object, got {_show(d)}")
    lst = d.get("classes")
    if not isinstance(lst, list) or not lst:
        raise f.fail("classes.classes", f"must be a non-empty list, got {_show(lst)}")
    if len(lst) > MAX_CLASSES:
        raise f.fail("classes.classes", f"has {len(lst)} classes, at most {MAX_CLASSES} are allowed")
    scheme_name = d.get("name", "custom")
    if not isinstance(scheme_name, str):
        raise f.fail("classes.name", f"must be a string, got {_show(scheme_name)}")
    classes = []
    seen: set[str] = set()
    for i, c in enumerate(lst):
        where = f"classes.classes[{i}]"
        if not isinstance(c, Mapping):
            raise f.fail(where, f"must be an object, got {_show(c)}")
        name = c.get("name")
        if not is_safe_class_name(name):
            raise f.fail(
                f"{where}.name",
                f"is {_show(name)}: a class name must be 1-64 letters, digits, '_', '-', '+' or '.', "
                "starting with a letter or digit",
            )
        if name in seen:
            raise f.fail(f"{where}.name", f"repeats the class {name!r}")
        seen.add(name)
        color = c.get("color")
        if not isinstance(color, (list, tuple)) or len(color) != 3:
            raise f.fail(f"{where}.color", f"must be [r, g, b], got {_show(color)}")
        rgb = tuple(
            f.integer({"v": v}, f"{where}.color[{k}]", "v", None, 0, 255) for k, v in enumerate(color)
        )
        parent = c.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise f.fail(f"{where}.parent", f"must be a string or null, got {_show(parent)}")
        desc = c.get("description", "")
        classes.append(
            GlomClass(
                name=name,
                color=rgb,  # type: ignore[arg-type]
                is_glomerulus=f.boolean(c, f"{where}.is_glomerulus", "is_glomerulus", True),
                is_ggs=f.boolean(c, f"{where}.is_ggs", "is_ggs", False),
                parent=parent,
                description=desc if isinstance(desc, str) else str(desc),
            )
        )
    desc = d.get("description", "")
    return ClassScheme(
        name=scheme_name, classes=tuple(classes), description=desc if isinstance(desc, str) else ""
    )


def check_outputs(meta: ModelMetadata, outputs: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """Check the ONNX outputs ``(name, shape)`` against the metadata: required names, class count."""
    f = _Field(meta.path)
    names = [n for n, _ in outputs]
    missing = [n for n in meta.required_outputs() if n not in names]
    if missing:
        raise GlomkitError(
            f"{meta.path}: the {meta.task} has outputs {names}, but its metadata needs {missing}"
        )
    if isinstance(meta, ClassifierMetadata):
        shape = dict(outputs)["probs"]
        n = shape[-1] if shape else None
        if isinstance(n, int) and n != len(meta.scheme):
            raise f.fail(
                "classes.classes",
                f"lists {len(meta.scheme)} classes, but the model's output 'probs' has {n}",
            )
