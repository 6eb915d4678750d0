"""Evaluate a detector model file (ONNX Runtime, no torch) on held-out composed fields or user images.

One entry point for every detector: :func:`evaluate_detector_file` builds the fields once and
dispatches on the model's ``decode.method`` (CircleNet heatmap, or segmentation components).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from glomkit import GlomkitError
from glomkit.detect.decode import decode_circlenet, decode_method, flip_tta
from glomkit.detect.fields import Field
from glomkit.eval.detection import evaluate_circles

EVAL_SCORE_THRESHOLD = 0.05  # AP integrates over the whole score range: keep the low-score tail


def detect_images(
    model,
    images: list[np.ndarray],
    tta: bool = False,
    batch: int = 8,
    score_threshold: float = EVAL_SCORE_THRESHOLD,
) -> list[np.ndarray]:
    """Run an ``OnnxModel`` detector on same-size uint8 RGB images: list of (K,4) x, y, r, score."""
    meta = model.meta
    stride = int(meta.get("stride", 4))
    top_k = int(meta.get("decode", {}).get("top_k", 100))
    out = []
    for i in range(0, len(images), batch):
        x = np.stack(images[i : i + batch])
        o = flip_tta(model.run_images, x) if tta else model.run_images(x)
        for j in range(len(x)):
            hm, rad, off = o["heatmap"][j], o["radius"][j], o["offset"][j]
            out.append(decode_circlenet(hm, rad, off, stride, score_threshold, top_k))
    return out


def _predict_circlenet(model, images: list[np.ndarray], tta: bool) -> list[np.ndarray]:
    return detect_images(model, images, tta=tta)


def _score_circlenet(model, items: list[tuple[str, Field]], preds: list[np.ndarray]) -> dict[str, Any]:
    gt = {k: f.circles for k, f in items}
    return {"metrics": evaluate_circles(gt, {k: p for (k, _), p in zip(items, preds, strict=True)})}


def _predict_components(model, images: list[np.ndarray], tta: bool) -> list[np.ndarray]:
    from glomkit.detect.segdetect import predict_probability_onnx

    return predict_probability_onnx(model, images, tta=tta)


def _score_components(model, items: list[tuple[str, Field]], probs: list[np.ndarray]) -> dict[str, Any]:
    from glomkit.detect.segdetect import decode_settings, score_fields

    metrics = score_fields(probs, [f for _, f in items], decode_settings(model.meta))
    return {"decode": model.meta.get("decode"), "metrics": metrics}


@dataclass(frozen=True)
class FieldEvaluator:
    """How a detector with one ``decode.method`` is evaluated on fields.

    ``predict(model, images, tta)`` gives one prediction per image (circles, or a probability
    map); ``score(model, items, predictions)`` the report's metrics part. ``needs_masks``: the
    data must be a bueno_pas folder (its composed fields carry glomerulus masks).
    """

    predict: Callable[[Any, list[np.ndarray], bool], list[np.ndarray]]
    score: Callable[[Any, list[tuple[str, Field]], list[np.ndarray]], dict[str, Any]]
    needs_masks: bool = False


# decode.method in a detector's metadata -> its evaluation (as glomkit.pipeline.TILE_DECODERS for
# inference): circle AP for both, and mIoU / pixel accuracy for segmentation detectors.
FIELD_EVALUATORS: dict[str, FieldEvaluator] = {
    "circlenet": FieldEvaluator(_predict_circlenet, _score_circlenet),
    "components": FieldEvaluator(_predict_components, _score_components, needs_masks=True),
}


def evaluation_fields(
    data: str | Path,
    mpp: float,
    split: str = "test",
    n_fields: int = 100,
    size: int = 256,
    seed: int = 20_000,
    data_mpp: float | None = None,
) -> tuple[list[tuple[str, Field]], dict[str, Any]]:
    """The held-out fields of ``data`` at ``mpp`` as (key, Field) pairs, and their description.

    ``data`` a bueno_pas folder: ``n_fields`` composed fields of ``size`` px (with glomerulus
    masks) from the crops of the held-out slide fold ``split``. Otherwise annotated images or a
    circles CSV, cut into a grid of ``size`` px tiles.
    """
    from glomkit.detect.data import TileSampler, is_bueno_folder, read_user_images

    if is_bueno_folder(data):
        from glomkit.detect.fields import FieldComposer, fixed_fields, split_samples

        samples = split_samples(split, str(data))
        composer = FieldComposer(samples, mpp=mpp, size=size, seed=seed, pool=16)
        fields = fixed_fields(composer, n_fields, seed=seed)
        return [(str(i), f) for i, f in enumerate(fields)], {
            "kind": "bueno_fields",
            "split": split,
            "slides": sorted({s.slide for s in samples}),
            "fields": n_fields,
            "size": size,
            "seed": seed,
            "description": f"{n_fields} composed fields, {split} slides",
        }
    images = read_user_images(data, data_mpp, mpp)
    items = TileSampler(images, mpp).grid_tiles(size)
    return items, {
        "kind": "annotated_images",
        "tiles": len(items),
        "size": size,
        "description": f"{len(items)} tiles of {Path(data).name}",
    }


def evaluate_detector_file(
    model_path: str | Path,
    data: str | Path,
    split: str = "test",
    n_fields: int = 100,
    size: int = 256,
    seed: int = 20_000,
    data_mpp: float | None = None,
    tta: bool = False,
) -> dict[str, Any]:
    """COCO circle metrics of a detector file on ``data``; returns a JSON-able report.

    The model's metadata (``decode.method``, default 'circlenet') picks its evaluation from
    ``FIELD_EVALUATORS``; a segmentation detector ('components') also gets mIoU and pixel
    accuracy, and needs a bueno_pas folder. The fields are :func:`evaluation_fields` (each tile
    scored alone), the same for every detector given the same arguments, so figures compare.
    """
    from glomkit.detect.data import is_bueno_folder
    from glomkit.models.runtime import OnnxModel

    model = OnnxModel(model_path, expect_task="detector")
    method = decode_method(model.meta, FIELD_EVALUATORS, model_path)
    evaluator = FIELD_EVALUATORS[method]
    if evaluator.needs_masks and not is_bueno_folder(data):
        raise GlomkitError(
            f"{data}: {method!r} detectors need glomerulus masks: evaluate on a bueno_pas folder"
        )
    mpp = float(model.info.mpp or 2.0)
    items, desc = evaluation_fields(data, mpp, split, n_fields, size, seed, data_mpp)
    preds: list[np.ndarray] = []
    with Progress(transient=True) as progress:
        task = progress.add_task("detecting", total=len(items))
        for i in range(0, len(items), 8):
            chunk = [f.image for _, f in items[i : i + 8]]
            preds.extend(evaluator.predict(model, chunk, tta))
            progress.update(task, advance=len(chunk))
    return {
        "model": str(model_path),
        "data": {"path": str(data), **desc},
        "tta": tta,
        "score_threshold": EVAL_SCORE_THRESHOLD,
        **evaluator.score(model, items, preds),
    }
