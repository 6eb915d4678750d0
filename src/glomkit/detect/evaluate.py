"""Evaluate a detector model file (ONNX Runtime, no torch) on held-out composed fields or user images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.progress import Progress

from glomkit.detect.decode import decode_circlenet, merge_flips
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
    flips = ["", "h", "v"] if tta else [""]
    out = []
    for i in range(0, len(images), batch):
        x = np.stack(images[i : i + batch])
        runs = []
        for f in flips:
            xi = x
            if "h" in f:
                xi = xi[:, :, ::-1]
            if "v" in f:
                xi = xi[:, ::-1]
            o = model.run_images(np.ascontiguousarray(xi))
            runs.append((o["heatmap"], o["radius"], o["offset"]))
        for j in range(len(x)):
            hm, rad, off = merge_flips([(r[0][j], r[1][j], r[2][j]) for r in runs], flips)
            out.append(decode_circlenet(hm, rad, off, stride, score_threshold, top_k))
    return out


def evaluate_detector_file(
    model_path: str | Path,
    data: str | Path,
    split: str = "test",
    n_fields: int = 100,
    size: int = 256,
    seed: int = 20_000,
    data_mpp: float | None = None,
    tta: bool = False,
) -> dict:
    """COCO circle metrics of a detector file on ``data``; returns a JSON-able report.

    ``data`` a bueno_pas folder: ``n_fields`` composed fields of ``size`` px from the crops of the
    held-out slide fold ``split`` (never seen in training). Otherwise annotated images or a
    circles CSV, cut into a grid of ``size`` px tiles at the model's mpp (each tile scored alone).
    """
    from glomkit.detect.data import TileSampler, is_bueno_folder, read_user_images
    from glomkit.models.runtime import OnnxModel

    model = OnnxModel(model_path, expect_task="detector")
    mpp = float(model.info.mpp or 2.0)
    if is_bueno_folder(data):
        from glomkit.detect.fields import FieldComposer, fixed_fields, split_samples

        samples = split_samples(split, str(data))
        composer = FieldComposer(samples, mpp=mpp, size=size, seed=seed, pool=16)
        fields = fixed_fields(composer, n_fields, seed=seed)
        items = [(str(i), f) for i, f in enumerate(fields)]
        desc = {
            "kind": "bueno_fields",
            "split": split,
            "slides": sorted({s.slide for s in samples}),
            "fields": n_fields,
            "size": size,
            "seed": seed,
            "description": f"{n_fields} composed fields, {split} slides",
        }
    else:
        images = read_user_images(data, data_mpp, mpp)
        items = TileSampler(images, mpp).grid_tiles(size)
        desc = {
            "kind": "annotated_images",
            "tiles": len(items),
            "size": size,
            "description": f"{len(items)} tiles of {Path(data).name}",
        }
    preds = []
    with Progress(transient=True) as progress:
        task = progress.add_task("detecting", total=len(items))
        for i in range(0, len(items), 8):
            chunk = [f.image for _, f in items[i : i + 8]]
            preds.extend(detect_images(model, chunk, tta=tta))
            progress.update(task, advance=len(chunk))
    metrics = evaluate_circles(
        {k: f.circles for k, f in items}, {k: p for (k, _), p in zip(items, preds, strict=True)}
    )
    return {
        "model": str(model_path),
        "data": {"path": str(data), **desc},
        "tta": tta,
        "score_threshold": EVAL_SCORE_THRESHOLD,
        "metrics": metrics,
    }
