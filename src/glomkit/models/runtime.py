"""ONNX Runtime sessions over glomkit model files, and the metadata they carry.

A glomkit model file is a plain ONNX file whose ``metadata_props`` hold one key, ``glomkit``,
a JSON document describing the model (see docs/ARCHITECTURE.md, "Model files"). Loading a model
never executes code from the file, and inference never imports torch.
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glomkit import GlomkitError
from glomkit.models.metadata import (
    FORMAT,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelMetadata,
    check_outputs,
    validate_metadata,
)

META_KEY = "glomkit"
__all__ = ["FORMAT", "IMAGENET_MEAN", "IMAGENET_STD", "META_KEY", "ModelInfo", "OnnxModel", "read_metadata"]


def default_threads() -> int:
    """Intra-op threads: GLOMKIT_THREADS, else the CPUs this process may use."""
    env = os.environ.get("GLOMKIT_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def available_providers(device: str = "auto") -> list[str]:
    """ONNX Runtime providers for ``device`` in {auto, cpu, cuda}."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in have:
            raise GlomkitError(
                "--device cuda: ONNX Runtime has no CUDA provider here (install onnxruntime-gpu)"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


@dataclass
class ModelInfo:
    """The metadata of a model file: the raw JSON (``meta``) and its validated, typed form.

    ``typed`` is built by :func:`glomkit.models.metadata.validate_metadata` when not given.
    """

    meta: dict[str, Any]
    typed: ModelMetadata | None = None
    path: str = "model"

    def __post_init__(self) -> None:
        if self.typed is None:
            self.typed = validate_metadata(self.meta, self.path)

    @property
    def task(self) -> str:
        return self.typed.task

    @property
    def input_size(self) -> tuple[int, int]:
        return self.typed.input_size

    @property
    def mpp(self) -> float | None:
        return getattr(self.typed, "mpp", None)

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.typed.mean, dtype=np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.typed.std, dtype=np.float32)

    @property
    def scheme(self):
        scheme = getattr(self.typed, "scheme", None)
        if scheme is None:
            raise KeyError(f"model of task {self.task!r} has no class scheme")
        return scheme


def prepare_batch(images: np.ndarray, info: ModelInfo) -> np.ndarray:
    """uint8 RGB images (N,H,W,3) -> normalised float32 NCHW, as the model's metadata says.

    (x / 255 - mean) / std, computed as x * a + b per channel straight into the NCHW array (one
    pass per channel, no float copy of the NHWC batch).
    """
    x = np.asarray(images)
    n, h, w, c = x.shape
    a = (1.0 / (255.0 * info.std.astype(np.float64))).astype(np.float32)
    b = (-info.mean.astype(np.float64) / info.std.astype(np.float64)).astype(np.float32)
    out = np.empty((n, c, h, w), np.float32)
    for k in range(c):
        np.multiply(x[..., k], a[k], out=out[:, k], dtype=np.float32)
        out[:, k] += b[k]
    return out


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The glomkit metadata of an ONNX model file, read through ONNX Runtime."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise GlomkitError(f"{path}: model file not found")
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types
        raise GlomkitError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0]})") from None
    return _meta_from_session(sess, path)


def read_typed_metadata(path: str | Path):
    """The typed, validated metadata of a model file (:func:`glomkit.models.metadata.validate_metadata`)."""
    return validate_metadata(read_metadata(path), path)


def _meta_from_session(sess, path: Path) -> dict[str, Any]:
    raw = sess.get_modelmeta().custom_metadata_map.get(META_KEY)
    if raw is None:
        raise GlomkitError(f"{path}: ONNX file has no glomkit metadata (was it exported by glomkit?)")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        why = (
            f"line {exc.lineno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        )
        raise GlomkitError(f"{path}: model metadata is not valid JSON ({why})") from None
    if not isinstance(meta, dict):
        raise GlomkitError(f"{path}: model metadata is not a JSON object")
    if meta.get("format") != FORMAT:
        raise GlomkitError(f"{path}: unsupported model format {meta.get('format')!r} (expected {FORMAT})")
    validate_metadata(meta, path)
    return meta


class OnnxModel:
    """An ONNX Runtime session plus the model's metadata."""

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        threads: int | None = None,
        expect_task: str | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 0
        ):
            raise GlomkitError(
                f"threads={threads!r}: must be a whole number of threads, 1 or more (0 or None: all)"
            )
        if not self.path.is_file():
            raise GlomkitError(f"{self.path}: model file not found")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads or 0) or default_threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle intra-op threads sleep instead of spinning: the pipeline reads and encodes patches in
        # background threads while a model runs, and spinning took their cores (benchmark slide:
        # 7.5 vs 8.7 CPU-seconds per run, mean of 7 runs each; wall time within noise, 4.4 vs 4.7 s)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # No CPU arena: the arena keeps the peak of every batch shape it has seen and grew peak
        # RSS with the slide (40k² slide: 1217 MB with it, 679 MB without, same wall time).
        opts.enable_cpu_mem_arena = False
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=available_providers(device))
        except GlomkitError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise GlomkitError(
                f"{self.path}: not a readable ONNX model ({str(exc).splitlines()[0]})"
            ) from None
        meta = _meta_from_session(self.session, self.path)
        self.info = ModelInfo(meta, validate_metadata(meta, self.path), str(self.path))
        if expect_task and self.info.task != expect_task:
            raise GlomkitError(f"{self.path}: is a {self.info.task} model, expected a {expect_task}")
        check_outputs(self.info.typed, [(o.name, o.shape) for o in self.session.get_outputs()])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def meta(self) -> dict[str, Any]:
        return self.info.meta

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run a prepared float32 NCHW batch; returns outputs by name."""
        outs = self.session.run(self.output_names, {self.input_name: x})
        return dict(zip(self.output_names, outs, strict=True))

    def run_images(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run uint8 RGB images (N,H,W,3) already at the model's input size."""
        return self.run(prepare_batch(images, self.info))
