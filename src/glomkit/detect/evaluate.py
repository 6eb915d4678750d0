"""Evaluate a detector model file (ONNX Runtime, no torch) on held-out composed fields or user images.

One entry point for every detector: :func:`evaluate_detector_file` builds the fields once and
dispatches on the model's ``decode.method`` (CircleNet heatmap, or segmentation components).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from glomkit import GlomkitError
from glomkit.detect.fields import Field
from glomkit.kinds import EVAL_SCORE_THRESHOLD, kind_of


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
    its kind (``glomkit.kinds``); a segmentation detector ('components') also gets mIoU and pixel
    accuracy, and needs a bueno_pas folder. The fields are :func:`evaluation_fields` (each tile
    scored alone), the same for every detector given the same arguments, so figures compare.
    """
    from glomkit.detect.data import is_bueno_folder
    from glomkit.models.runtime import OnnxModel

    model = OnnxModel(model_path, expect_task="detector")
    evaluator = kind_of(model.info.typed, model_path)
    if evaluator.needs_masks and not is_bueno_folder(data):
        raise GlomkitError(
            f"{data}: {evaluator.name!r} detectors need glomerulus masks: evaluate on a bueno_pas folder"
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
