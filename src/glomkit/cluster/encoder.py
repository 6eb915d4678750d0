"""A SimSiam encoder exported to ONNX (``glomkit.ssl.simsiam.export_encoder_onnx``), run on ONNX
Runtime: uint8 RGB crops in, one pooled feature vector per crop out. No torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from glomkit import GlomkitError

ENCODER_TASK = "encoder"


class OnnxEncoder:
    """An encoder file: its metadata (task ``encoder``, input size, mean, std) and session."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        from glomkit.models.runtime import META_KEY

        self.path = Path(path)
        if not self.path.is_file():
            raise GlomkitError(f"{self.path}: encoder file not found")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            raise GlomkitError(f"{self.path}: not a readable ONNX encoder ({first})") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        try:
            meta = json.loads(raw) if raw else None
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or meta.get("task") != ENCODER_TASK:
            raise GlomkitError(
                f"{self.path}: not a glomkit encoder (export one with glomkit pretrain simsiam)"
            )
        try:
            size = [int(v) for v in meta["input_size"]]
            self.mean = np.asarray(meta.get("input", {}).get("mean", (0.485, 0.456, 0.406)), np.float32)
            self.std = np.asarray(meta.get("input", {}).get("std", (0.229, 0.224, 0.225)), np.float32)
            if len(size) != 2 or min(size) < 8 or self.mean.shape != (3,) or self.std.shape != (3,):
                raise ValueError
            if np.any(self.std <= 0):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise GlomkitError(
                f"{self.path}: encoder metadata lacks a valid input_size / mean / std"
            ) from None
        self.input_size = (size[0], size[1])
        self.meta = meta
        self.input_name = self.session.get_inputs()[0].name

    def describe(self) -> str:
        """One line: backbone, steps and crops of the pretraining."""
        p = self.meta.get("pretraining", {})
        return (
            f"SimSiam {p.get('backbone', '?')} ({p.get('epochs_done', '?')} epochs, {p.get('steps_done', '?')} "
            f"steps on {p.get('n_images', '?')} crops) from {self.path.name}, ONNX Runtime"
        )

    def features(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        """N x D float32 features of N x H x W x 3 uint8 images (resized to the encoder's input size)."""
        import cv2

        h, w = self.input_size
        out = []
        for i in range(0, len(images), batch):
            chunk = images[i : i + batch]
            if chunk.shape[1:3] != (h, w):
                chunk = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in chunk])
            x = (chunk.astype(np.float32) / 255.0 - self.mean) / self.std
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            out.append(np.asarray(self.session.run(None, {self.input_name: x})[0]).reshape(len(chunk), -1))
        if not out:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(out).astype(np.float32)
