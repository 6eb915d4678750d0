"""Evaluate an ONNX segmenter on a data folder (torch-free): the held-out figures of a model.

By default only the slides the model's metadata lists as test slides are scored, so the figure
is a held-out one; ``split="all"`` scores every pair.
"""

from __future__ import annotations

from pathlib import Path

from glomkit import GlomkitError
from glomkit.eval.segmentation import segmentation_metrics
from glomkit.infer.segment import predict_probs
from glomkit.io.images import read_rgb
from glomkit.models.metadata import Splits
from glomkit.models.runtime import OnnxModel
from glomkit.segment.dataset import SegSample, load_samples, read_mask


def select_split(samples: list[SegSample], splits: Splits, split: str) -> list[SegSample]:
    """The samples of ``split`` (test/val/train by the slides the model's metadata lists, ``splits``: its
    typed ``splits``; or all)."""
    if split == "all":
        return samples
    slides = splits.slides_of(split)
    if not slides:
        raise GlomkitError(f"model metadata lists no {split} slides; use split 'all'")
    chosen = [s for s in samples if s.slide in slides]
    if not chosen:
        raise GlomkitError(f"none of the model's {split} slides are in this data folder; use split 'all'")
    return chosen


def evaluate_segmenter(
    model: OnnxModel | str | Path,
    data_dir: str | Path,
    split: str = "test",
    batch_size: int = 16,
    progress=None,
) -> dict:
    """Segmentation metrics (see :func:`segmentation_metrics`) plus per-slide Dice and the image list.

    Each image is predicted at its own size (resized to the model input and back) and compared
    with its mask binarised at > 127.
    """
    if not isinstance(model, OnnxModel):
        model = OnnxModel(model, expect_task="segmenter")
    samples = select_split(load_samples(data_dir), model.info.typed.splits, split)
    thr = model.info.typed.threshold  # the metadata's, or its one default (models.metadata)
    preds, trues = [], []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        probs = predict_probs(model, [read_rgb(s.image) for s in chunk], batch_size)
        preds += [p > thr for p in probs]
        trues += [read_mask(s.mask) for s in chunk]
        if progress is not None:
            progress(len(chunk))
    report = segmentation_metrics(preds, trues)
    for s, row in zip(samples, report["per_image"], strict=True):
        row["image"] = str(s.image)
        row["slide"] = s.slide
    per_slide: dict[str, list[float]] = {}
    for row in report["per_image"]:
        per_slide.setdefault(row["slide"], []).append(row["dice"])
    report["per_slide_dice"] = {k: float(sum(v) / len(v)) for k, v in sorted(per_slide.items())}
    report["split"] = split
    report["model"] = str(model.path)
    report["data"] = str(data_dir)
    return report
