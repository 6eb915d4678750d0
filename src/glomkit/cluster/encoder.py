"""A SimSiam encoder exported to ONNX (``glomkit.ssl.simsiam.export_encoder_onnx``), run on ONNX
Runtime: uint8 RGB crops in, one pooled feature vector per crop out. No torch.

It is a glomkit model file of task ``encoder``: loaded, validated and normalised by
``glomkit.models.runtime.OnnxModel`` like the detector, classifier and segmenter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from glomkit.models.metadata import ENCODER_TASK, Pretraining


class OnnxEncoder:
    """An encoder file (task ``encoder``, output ``features``) and its ONNX Runtime session."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        from glomkit.models.runtime import OnnxModel

        self.model = OnnxModel(path, threads=max(1, int(threads)), expect_task=ENCODER_TASK)
        self.path = self.model.path
        self.meta = self.model.meta
        self.input_size = self.model.info.input_size

    def describe(self) -> str:
        """One line: backbone, steps and crops of the pretraining."""
        p = self.model.info.typed.pretraining or Pretraining()
        return f"SimSiam {p.describe()} from {self.path.name}, ONNX Runtime"

    def features(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        """N x D float32 features of N x H x W x 3 uint8 images (resized to the encoder's input size)."""
        import cv2

        h, w = self.input_size
        out = []
        for i in range(0, len(images), batch):
            chunk = images[i : i + batch]
            if chunk.shape[1:3] != (h, w):
                chunk = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in chunk])
            feats = self.model.run_images(np.ascontiguousarray(chunk))["features"]
            out.append(np.asarray(feats).reshape(len(chunk), -1))
        if not out:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(out).astype(np.float32)
