"""Held-out figures on annotated real images: the detector alone, and the whole pipeline after it.

The images are run the way ``glomkit run`` runs a slide (``glomkit.infer.detect.detect_circles``:
tissue mask, tiles at the detector's mpp, decoding, slide-wide NMS), at a low score threshold so
that AP sees the whole score range. Then, for the pipeline figures, every circle is cut, classified
and segmented as in a run, and circles the classifier calls non-glomerular are dropped.

Reported, for the detector alone and after the non-glomerular filter:

* box AP (0.5:0.95), AP50, AP75 (pycocotools, truth = the bounding box of each outline; the
  detector's box is its circle's, the pipeline's the box of its outline: a circle's box cannot fit
  an oval glomerulus's, so circle boxes are also reported for the pipeline as ``circle_boxes``);
* circle AP, AP50, AP75 (truth = the minimum enclosing circle of each outline);
* recall, precision and F1 at the detector's default score threshold (box IoU ≥ 0.5);
* the pipeline's outlines against the true outlines: Dice of each matched glomerulus.

>>> report = evaluate_images("hubmap_pas/tiles", data_mpp=0.8, split="test")  # doctest: +SKIP
>>> report["pipeline"]["box"]["AP50"]  # doctest: +SKIP
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from glomkit import GlomkitError
from glomkit.detect.data import AnnotatedImage, read_user_images, split_annotated
from glomkit.eval.detection import (
    box_iou,
    circle_boxes,
    evaluate_boxes,
    evaluate_circles,
    f1_best_threshold,
    greedy_match,
    recall_precision,
)
from glomkit.kinds import EVAL_SCORE_THRESHOLD

SPLITS = ("test", "val", "train", "all")


def select_images(
    data: str | Path, split: str, data_mpp: float | None, val_block: int = -1, model_mpp: float | None = None
) -> list[AnnotatedImage]:
    """The annotated images of ``data`` in ``split`` (see ``glomkit.detect.data.split_annotated``).

    A circles CSV without an mpp column is at ``data_mpp``, else at ``model_mpp``."""
    images = read_user_images(data, data_mpp, model_mpp)
    if split == "all":
        return images
    if split not in SPLITS:
        raise GlomkitError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    train, val, test = split_annotated(images, val_block=val_block)
    chosen = {"train": train, "val": val, "test": test}[split]
    if not chosen:
        raise GlomkitError(f"{data}: no {split} images (test images are the files named test*)")
    return chosen


def outline_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two polygons (K,2) in the same pixel frame, rasterised at 1 px."""
    a = np.asarray(a, np.float64).reshape(-1, 2)
    b = np.asarray(b, np.float64).reshape(-1, 2)
    lo = np.floor(np.minimum(a.min(0), b.min(0))) - 1
    hi = np.ceil(np.maximum(a.max(0), b.max(0))) + 1
    w, h = int(hi[0] - lo[0]) + 1, int(hi[1] - lo[1]) + 1
    if w * h > 64_000_000:
        raise GlomkitError("outline too large to rasterise")
    ma = np.zeros((h, w), np.uint8)
    mb = np.zeros((h, w), np.uint8)
    cv2.fillPoly(ma, [np.round(a - lo).astype(np.int32)], 1)
    cv2.fillPoly(mb, [np.round(b - lo).astype(np.int32)], 1)
    s = int(ma.sum()) + int(mb.sum())
    return 2.0 * int((ma & mb).sum()) / s if s else float("nan")


def _detect_image(
    path: Path, mpp: float | None, detector, config
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """The detector alone on one image, as the pipeline runs it: (circles, seconds, (width, height))."""
    from glomkit.infer.detect import detect_slide
    from glomkit.slide.reader import Slide

    with Slide(path, mpp=mpp) as slide:
        t0 = time.perf_counter()
        circles = detect_slide(slide, detector, config.detect_options(), thumbnail_px=config.thumbnail_px)
        return circles, time.perf_counter() - t0, (slide.width, slide.height)


def _figures(
    truth: dict[str, AnnotatedImage],
    preds: dict[str, np.ndarray],
    thr: float,
    boxes: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Box and circle AP on all predictions; recall / precision at ``thr``.

    ``preds[k]`` (M,4) x, y, r, score; ``boxes[k]`` (M,4) x, y, w, h of the same predictions
    (default: the circles' boxes).
    """
    gt_boxes = {k: im.boxes() for k, im in truth.items()}
    pb = {}
    for k, p in preds.items():
        b = boxes[k] if boxes is not None else circle_boxes(p[:, :3]) if len(p) else np.zeros((0, 4))
        pb[k] = np.column_stack([b, p[:, 3]]) if len(p) else np.zeros((0, 5))
    kept = {k: b[b[:, 4] >= thr] for k, b in pb.items()}
    return {
        "box": evaluate_boxes(gt_boxes, pb),
        "circle": evaluate_circles({k: im.circles for k, im in truth.items()}, preds),
        "at_threshold": {"score_threshold": thr, **recall_precision(gt_boxes, kept)},
    }


def evaluate_images(
    data: str | Path,
    *,
    detector: str | None = None,
    classifier: str | None = None,
    segmenter: str | None = None,
    data_mpp: float | None = None,
    split: str = "test",
    val_block: int = -1,
    pipeline: bool = True,
    tta: bool | None = None,
    colour_transfer: bool | None = None,
    threads: int | None = None,
    outline_margin_um: float | None = -1.0,
    edge_ignore: bool = False,
) -> dict[str, Any]:
    """Figures of the detector (and, with ``pipeline``, of the whole pipeline) on annotated images.

    ``edge_ignore``: glomeruli cut by the image edge are ignore regions (``edge_ignored``), for
    tile sets such as cgmh_he where such glomeruli are often not outlined.

    ``data``: a folder of images or slides with GeoJSON / ImageScope XML beside them, or a circles
    CSV. ``data_mpp`` is the µm/px of images that do not record it. ``outline_margin_um``: as
    ``PipelineConfig.outline_margin_um`` (-1: the pipeline's default).
    """
    from glomkit.infer.detect import colour_transfer_to
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import OnnxModel
    from glomkit.pipeline import Models, PipelineConfig, analyse_slide
    from glomkit.slide.reader import Slide

    config = PipelineConfig(
        detector=detector,
        classifier=classifier,
        segmenter=segmenter,
        mpp=data_mpp,
        score_threshold=EVAL_SCORE_THRESHOLD,
        tta=tta,
        colour_transfer=colour_transfer,
        write_images=False,
        threads=threads,
    )
    if outline_margin_um is None or outline_margin_um >= 0:
        config.outline_margin_um = outline_margin_um
    if pipeline:
        models = Models(config)
        det = models.detector
    else:
        det = OnnxModel(resolve_model(detector, "detector"), expect_task="detector", threads=threads)
        models = None
    images = select_images(data, split, data_mpp, val_block, det.info.mpp)
    default_thr = det.info.typed.score_threshold
    truth: dict[str, AnnotatedImage] = {}
    raw: dict[str, np.ndarray] = {}
    kept: dict[str, np.ndarray] = {}
    kept_boxes: dict[str, np.ndarray] = {}
    dice: list[float] = []
    lost_to_filter = 0
    matched_default = 0
    det_seconds = 0.0
    n_ignored = [0, 0]  # truth objects, predictions

    def ignore_edges(im: AnnotatedImage, boxes: np.ndarray, size: tuple[int, int]):
        kept, keep = edge_ignored(im, boxes, *size)
        n_ignored[0] += len(im.circles) - len(kept.circles)
        n_ignored[1] += int((~keep).sum())
        return kept, keep

    def circles_of(records) -> np.ndarray:
        return np.array([[r.x, r.y, r.radius, r.score] for r in records], np.float64).reshape(-1, 4)

    for im in images:
        key = im.path.name
        if models is None:
            circles, secs, size = _detect_image(im.path, im.mpp, det, config)
            det_seconds += secs
            if edge_ignore:
                im, keep_p = ignore_edges(im, circle_boxes(circles[:, :3]), size)
                circles = circles[keep_p]
            truth[key] = im
            raw[key] = circles
            continue
        with Slide(im.path, mpp=im.mpp) as slide:
            res = analyse_slide(slide, config, models)
            size = (slide.width, slide.height)
        det_seconds += res.timings["tissue"] + res.timings["detect"]
        records = res.glomeruli
        arr = circles_of(records)
        boxes = np.array([_record_box(r) for r in records], np.float64).reshape(-1, 4)
        raw[key] = arr
        if edge_ignore:
            # each column judged by its own boxes: the detector's by the circle (as without the
            # pipeline), the pipeline's by the outline it reports
            _, keep_c = edge_ignored(im, circle_boxes(arr[:, :3]), *size)
            raw[key] = arr[keep_c]
            im, keep_p = ignore_edges(im, boxes, size)
            records = [r for r, k in zip(records, keep_p, strict=True) if k]
            arr, boxes = arr[keep_p], boxes[keep_p]
        truth[key] = im
        keep = np.array([r.is_glomerulus for r in records], bool)
        kept[key] = arr[keep]
        kept_boxes[key] = boxes[keep]
        # Outline Dice and filter losses: detections above the default threshold matched to truth.
        above = [r for r in records if r.score >= default_thr]
        if not above or not len(im.circles):
            continue
        pb = circle_boxes(np.array([r.circle() for r in above]))
        pairs = greedy_match(box_iou(pb, im.boxes()), np.array([r.score for r in above]), 0.5)
        matched_default += len(pairs)
        for i, j in pairs:
            rec = above[i]
            if not rec.is_glomerulus:
                lost_to_filter += 1
                continue
            poly = im.outlines[j] if j < len(im.outlines) else None
            if poly is not None and rec.polygon is not None and len(rec.polygon) >= 3:
                dice.append(outline_dice(rec.polygon, poly))
    report: dict[str, Any] = {
        "data": {
            "path": str(data),
            "split": split,
            "images": len(images),
            "glomeruli": int(sum(len(im.circles) for im in images)),
            "data_mpp": data_mpp,
            "edge_ignore": edge_ignore,
            "ignored_truth": n_ignored[0],
            "ignored_predictions": n_ignored[1],
        },
        "detector": {
            "model": str(det.path),
            "mpp": det.info.mpp,
            "tta": config.tta,
            "colour_transfer": colour_transfer_to(config.detect_options(), det.info.typed, True) is not None,
            **_figures(truth, raw, default_thr),
        },
        "f1_best_threshold": f1_best_threshold({k: im.circles for k, im in truth.items()}, raw),
        "detect_seconds": round(det_seconds, 3),
        "score_threshold_for_ap": EVAL_SCORE_THRESHOLD,
    }
    if models is not None:
        d = np.array(dice)
        report["pipeline"] = {
            "classifier": str(models.classifier.path),
            "segmenter": str(models.segmenter.path),
            "boxes": "bounding box of the pipeline's outline (the circle's box where it has none)",
            **_figures(truth, kept, default_thr, kept_boxes),
            "circle_boxes": _figures(truth, kept, default_thr)["box"],
            # the detection threshold that is F1-best for what the pipeline reports (after the
            # non-glomerular filter), for a threshold rule on the whole pipeline
            "f1_best_threshold": f1_best_threshold({k: im.circles for k, im in truth.items()}, kept),
            "matched_at_threshold": matched_default,
            "lost_to_non_glomerular": lost_to_filter,
            "lost_fraction": lost_to_filter / matched_default if matched_default else float("nan"),
            "outline_dice": {
                "n": len(d),
                "mean": float(d.mean()) if len(d) else float("nan"),
                "median": float(np.median(d)) if len(d) else float("nan"),
                "sd": float(d.std()) if len(d) else float("nan"),
                "min": float(d.min()) if len(d) else float("nan"),
            },
        }
    return report


EDGE_PX = 2.0  # an outline within this many px of the image border is cut by it


def evaluate_detector(
    model: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    val_block: int = -1,
    data_mpp: float | None = None,
    tta: bool = False,
    n_fields: int = 100,
    size: int = 256,
    seed: int = 20_000,
    set_threshold: bool = False,
) -> dict[str, Any]:
    """A detector model on held-out data; ``report["evaluated_on"]`` says how.

    - ``images``: a folder of annotated images (or slides, or a circles CSV), run whole as
      ``glomkit run`` runs them (:func:`evaluate_images`, detector alone); with
      ``set_threshold`` (validation split only) the F1-best score threshold is stored in the
      model file (``report["stored_score_threshold"]``).
    - ``fields``: a bueno_pas folder, scored on composed fields
      (:func:`glomkit.detect.evaluate.evaluate_detector_file`).
    """
    from glomkit.detect.data import is_bueno_folder

    model = Path(model)
    if set_threshold and split != "val":
        raise GlomkitError(f"--set-threshold: choose thresholds on --split val, not {split}")
    if not is_bueno_folder(data):
        report = evaluate_images(
            data,
            detector=str(model),
            data_mpp=data_mpp,
            split=split,
            val_block=val_block,
            pipeline=False,
            tta=tta or None,
        )
        report["evaluated_on"] = "images"
        if set_threshold:
            from glomkit.models.export import store_score_threshold

            report["stored_score_threshold"] = store_score_threshold(
                model, report["f1_best_threshold"], report["data"], val_block=val_block
            )
        return report
    if set_threshold:
        raise GlomkitError("--set-threshold: needs a folder of annotated images")
    if split not in ("test", "val"):
        raise GlomkitError(f"--split {split}: bueno_pas folders have test and val folds")
    if size % 32:
        raise GlomkitError(f"--size {size}: must be a multiple of 32")
    from glomkit.detect.evaluate import evaluate_detector_file

    report = evaluate_detector_file(
        model, data, split=split, n_fields=n_fields, size=size, seed=seed, data_mpp=data_mpp, tta=tta
    )
    report["evaluated_on"] = "fields"
    return report


def edge_ignored(
    im: AnnotatedImage, pred_boxes: np.ndarray, width: float, height: float
) -> tuple[AnnotatedImage, np.ndarray]:
    """``im`` without the glomeruli cut by the image edge, and a keep-mask of the predictions.

    Truth whose box touches the border (within ``EDGE_PX``) is an ignore region; a prediction is
    ignored when it matches an ignored truth (box IoU ≥ 0.5), or when its box touches or crosses
    the border and it matches no kept truth (an edge-cut glomerulus nobody outlined). The same
    test as the truth's, so that a box clipped to the image (an outline) is judged as a circle's
    box that runs past it. Everything else counts.
    """
    boxes = im.boxes()
    edge = (
        (boxes[:, 0] <= EDGE_PX)
        | (boxes[:, 1] <= EDGE_PX)
        | (boxes[:, 0] + boxes[:, 2] >= width - EDGE_PX)
        | (boxes[:, 1] + boxes[:, 3] >= height - EDGE_PX)
    )
    pb = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    keep = np.ones(len(pb), bool)
    if len(pb):
        iou = box_iou(pb, boxes) if len(boxes) else np.zeros((len(pb), 0))
        on_ignored = (iou[:, edge] >= 0.5).any(axis=1) if edge.any() else np.zeros(len(pb), bool)
        on_kept = (iou[:, ~edge] >= 0.5).any(axis=1) if (~edge).any() else np.zeros(len(pb), bool)
        touches = (
            (pb[:, 0] <= EDGE_PX)
            | (pb[:, 1] <= EDGE_PX)
            | (pb[:, 0] + pb[:, 2] >= width - EDGE_PX)
            | (pb[:, 1] + pb[:, 3] >= height - EDGE_PX)
        )
        keep = ~(on_ignored & ~on_kept) & ~(touches & ~on_kept)
    kept = [i for i in range(len(im.circles)) if not edge[i]]
    outlines = [im.outlines[i] if i < len(im.outlines) else None for i in kept]
    return AnnotatedImage(im.path, im.circles[kept].reshape(-1, 3), im.mpp, outlines), keep


def _record_box(rec) -> tuple[float, float, float, float]:
    """x, y, w, h of a record's outline, or of its circle when it has no outline."""
    if rec.polygon is not None and len(rec.polygon) >= 3:
        lo, hi = rec.polygon.min(axis=0), rec.polygon.max(axis=0)
        return (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))
    return (rec.x - rec.radius, rec.y - rec.radius, 2 * rec.radius, 2 * rec.radius)
