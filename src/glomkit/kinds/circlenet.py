"""The CircleNet kind: a centre heatmap, a radius map and a sub-pixel offset, decoded into circles.

Decoding (numpy): the one batch-and-decode loop (:func:`detect_batches`) serves the pipeline's
evaluation, the trainer's validation (a torch network behind the same ``run`` callable) and field
evaluation. Training (torch, imported inside the functions that need it): the network is
:mod:`glomkit.nets.circlenet`; :func:`train_detector` samples the sources of
:mod:`glomkit.detect.data`, runs the shared loop (:func:`glomkit.detect.train.fit_detector`) and
exports the best epoch with this kind's metadata.

>>> train_detector(DetectorTrainConfig(data="../shared/data/bueno_pas", out="detector.onnx"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from glomkit import GlomkitError
from glomkit.core.geometry import DEFAULT_NMS_IOU
from glomkit.core.tta import flip_tta
from glomkit.kinds import EVAL_SCORE_THRESHOLD, DetectorKind, DetectorTrainSettings, TrainRequest
from glomkit.models.metadata import IMAGENET_MEAN, IMAGENET_STD
from glomkit.slide.grid import Tile

OUTPUTS = ("heatmap", "radius", "offset")
TTA_MIN_GAIN = 0.01  # flip TTA triples detection time: on by default only for a clear validation gain


def decode_circlenet(
    heatmap: np.ndarray,
    radius: np.ndarray,
    offset: np.ndarray,
    stride: int = 4,
    score_threshold: float = 0.3,
    top_k: int = 100,
) -> np.ndarray:
    """Circles (K,4) = x, y, r, score in input pixels for ONE image, best score first.

    ``heatmap`` (1,h,w) or (h,w) after sigmoid, ``radius`` (1,h,w) in input px, ``offset`` (2,h,w)
    in heatmap cells. Peaks are cells equal to their 3x3 max (``cv2.dilate``) at or above
    ``score_threshold``; the ``top_k`` best are kept.
    """
    hm = np.asarray(heatmap, np.float32).reshape(np.shape(heatmap)[-2:])
    rad = np.asarray(radius, np.float32).reshape(hm.shape)
    off = np.asarray(offset, np.float32).reshape(2, *hm.shape)
    peak = cv2.dilate(hm, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero((hm >= peak) & (hm >= score_threshold))
    scores = hm[ys, xs]
    order = np.argsort(-scores, kind="stable")[:top_k]
    ys, xs, scores = ys[order], xs[order], scores[order]
    x = (xs + off[0, ys, xs]) * stride
    y = (ys + off[1, ys, xs]) * stride
    r = rad[ys, xs]
    return np.stack([x, y, r, scores], axis=1).astype(np.float64).reshape(-1, 4)


def decode_outputs(
    out: Mapping[str, np.ndarray], k: int, stride: int, score_threshold: float, top_k: int
) -> np.ndarray:
    """Circles (K,4) of image ``k`` of a batch's CircleNet outputs."""
    return decode_circlenet(
        out["heatmap"][k], out["radius"][k], out["offset"][k], stride, score_threshold, top_k
    )


def detect_batches(
    run: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    images: Sequence[np.ndarray],
    *,
    stride: int = 4,
    score_threshold: float = EVAL_SCORE_THRESHOLD,
    top_k: int = 100,
    tta: bool = False,
    batch: int = 8,
) -> list[np.ndarray]:
    """(K,4) circles per image: ``run`` (NHWC uint8 -> outputs) on same-size images in batches."""
    out: list[np.ndarray] = []
    for i in range(0, len(images), batch):
        x = np.stack(images[i : i + batch])
        o = flip_tta(run, x, unflipped_only=("offset",)) if tta else run(x)
        out.extend(decode_outputs(o, j, stride, score_threshold, top_k) for j in range(len(x)))
    return out


def detect_images(
    model,
    images: Sequence[np.ndarray],
    tta: bool = False,
    batch: int = 8,
    score_threshold: float = EVAL_SCORE_THRESHOLD,
) -> list[np.ndarray]:
    """An ``OnnxModel`` CircleNet on same-size uint8 RGB images: list of (K,4) x, y, r, score."""
    meta = model.info.typed
    return detect_batches(
        model.run_images,
        images,
        stride=meta.stride,
        score_threshold=score_threshold,
        top_k=meta.top_k,
        tta=tta,
        batch=batch,
    )


def decode_tile(
    out: Mapping[str, np.ndarray], k: int, meta: Mapping[str, Any], thr: float, tile: Tile
) -> np.ndarray:
    """Circles (K,4) in tile px of image ``k`` of a batch (CircleNet peaks are never cut by padding)."""
    return decode_outputs(out, k, meta.stride, thr, meta.top_k)


def _predict(model, images: list[np.ndarray], tta: bool) -> list[np.ndarray]:
    return detect_images(model, images, tta=tta)


def _score(model, items: list[tuple[str, Any]], preds: list[np.ndarray]) -> dict[str, Any]:
    from glomkit.eval.detection import evaluate_circles

    gt = {k: f.circles for k, f in items}
    return {"metrics": evaluate_circles(gt, {k: p for (k, _), p in zip(items, preds, strict=True)})}


# -- training (torch inside the functions) ---------------------------------------------------


@dataclass
class DetectorTrainConfig(DetectorTrainSettings):
    """Everything a CircleNet training run depends on: the shared settings and these."""

    backbone: str = "resnet18"
    data_weights: list[float] | None = None  # sampling weight per ``data`` source
    scale_jitter: float = 0.3  # annotated images: tiles read at 1/(1+j)..(1+j) times the nominal scale
    hard_fraction: float = 0.15  # annotated images: share of tiles centred on mined false positives
    hard_mining: bool = True  # mine the model's false positives on training images after each epoch
    val_blocks: int = 5  # annotated images: contiguous blocks of file numbers
    val_block: int = -1  # the block held out for validation
    select: str = "val_AP50"  # the validation figure that picks the best epoch
    init: str | None = None  # start from a CircleNet model file, or "bundled"
    # annotated sources (paths, as given to --data) whose image-edge band is no background
    edge_ignore: list[str] | None = None
    colour_aug: str = "default"  # "wide": glomkit.detect.augment.wide_colour on every training field


def ignore_cells(ignore: np.ndarray | None, h: int, w: int, stride: int = 4) -> np.ndarray:
    """A field's ignore map (H,W) 0/1 at heatmap resolution (1,h,w): a cell is ignored when any of
    its pixels is (None: nothing ignored)."""
    if ignore is None:
        return np.zeros((1, h, w), np.float32)
    m = np.asarray(ignore, np.uint8)[: h * stride, : w * stride].reshape(h, stride, w, stride)
    return m.max(axis=(1, 3)).astype(np.float32)[None]


def _to_batch(fields_, stride: int = 4) -> dict[str, Any]:
    import torch

    from glomkit.detect.targets import circle_targets

    imgs = np.stack([f.image for f in fields_]).astype(np.float32) / 255.0
    imgs = (imgs - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    h, w = imgs.shape[1:3]
    tg = [circle_targets(f.circles, h, w, stride) for f in fields_]
    out = {k: torch.from_numpy(np.stack([t[k] for t in tg])) for k in tg[0]}
    out["image"] = torch.from_numpy(np.ascontiguousarray(imgs.transpose(0, 3, 1, 2)))
    if any(f.ignore is not None for f in fields_):
        out["ignore"] = torch.from_numpy(
            np.stack([ignore_cells(f.ignore, h // stride, w // stride, stride) for f in fields_])
        )
    return out


def drop_ignored(circles: np.ndarray, ignore: np.ndarray | None) -> np.ndarray:
    """Circles (N,3+) whose centre lies outside the field's ignore map (all of them when None)."""
    c = np.asarray(circles, np.float64)
    if ignore is None or not len(c):
        return c
    h, w = ignore.shape
    ix = np.clip(c[:, 0].astype(int), 0, w - 1)
    iy = np.clip(c[:, 1].astype(int), 0, h - 1)
    return c[ignore[iy, ix] == 0]


def predict_fields(
    model,
    images: list[np.ndarray],
    batch: int = 8,
    score_threshold: float = 0.05,
    top_k: int = 100,
    tta: bool = False,
) -> list[np.ndarray]:
    """Run a torch CircleNet on uint8 RGB images (same size) and decode: list of (K,4) x, y, r, score."""
    import torch

    dev = next(model.parameters()).device
    model.eval()
    mean, std = np.float32(IMAGENET_MEAN), np.float32(IMAGENET_STD)

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        xf = (x.astype(np.float32) / 255.0 - mean) / std
        xt = torch.from_numpy(np.ascontiguousarray(xf.transpose(0, 3, 1, 2))).to(dev)
        return {k: t.float().cpu().numpy() for k, t in zip(OUTPUTS, model(xt), strict=True)}

    with torch.no_grad():
        return detect_batches(
            run, images, stride=4, score_threshold=score_threshold, top_k=top_k, tta=tta, batch=batch
        )


def evaluate_model_on_fields(model, fields_, tta: bool = False, threshold: bool = False) -> dict[str, float]:
    """COCO circle metrics of a torch model on validation fields (low threshold: AP needs the tail).

    ``threshold``: also the F1-best score threshold (``score_threshold``, with its recall and precision).
    """
    from glomkit.eval.detection import evaluate_circles, f1_best_threshold

    preds = predict_fields(model, [f.image for f in fields_], tta=tta)
    # truth and detections centred in a field's ignore band (unoutlined edge-cut glomeruli) do not count
    preds = [drop_ignored(p, f.ignore) for p, f in zip(preds, fields_, strict=True)]
    gt = {i: drop_ignored(f.circles, f.ignore) for i, f in enumerate(fields_)}
    out = evaluate_circles(gt, dict(enumerate(preds)))
    if threshold:
        best = f1_best_threshold(gt, dict(enumerate(preds)))
        out.update({f"at_threshold_{k}": v for k, v in best.items()})
    return out


def train_from_request(req: TrainRequest) -> Path:
    """``glomkit train detector --arch circlenet`` (a ``glomkit.kinds.TrainRequest``)."""
    extra = dict(req.extra)
    if "select" in extra:
        extra["select"] = f"val_{extra['select']}"
    return train_detector(
        DetectorTrainConfig(
            data=req.sources[0] if len(req.sources) == 1 else req.sources,
            data_weights=req.weights,
            backbone=req.backbone or KIND.default_backbone,
            data_mpp=req.data_mpp,
            **extra,
            **req.options,
        )
    )


def train_detector(config: DetectorTrainConfig | dict[str, Any]) -> Path:
    """Train, pick the best epoch by validation AP50, export ONNX with metadata; returns the model path."""
    from glomkit.detect.augment import COLOUR_AUGS, wide_colour
    from glomkit.detect.data import load_detection_source
    from glomkit.detect.losses import circlenet_loss
    from glomkit.detect.train import fit_detector, start_run

    cfg = config if isinstance(config, DetectorTrainConfig) else DetectorTrainConfig(**config)
    if cfg.field_size % 32 or cfg.val_size % 32:
        raise GlomkitError(f"{cfg.out}: field sizes must be multiples of 32")
    if cfg.select not in ("val_AP50", "val_AP", "val_AP75"):
        raise GlomkitError(f"{cfg.out}: select must be val_AP50, val_AP or val_AP75, not {cfg.select!r}")
    if cfg.colour_aug not in COLOUR_AUGS:
        raise GlomkitError(
            f"{cfg.out}: colour_aug must be one of {', '.join(COLOUR_AUGS)}, not {cfg.colour_aug!r}"
        )
    device, t_start = start_run(cfg)
    source = load_detection_source(cfg)
    model = KIND.network(KIND.architectures[0], cfg.backbone)
    if cfg.init:
        from glomkit.detect.warm_start import init_detector

        rng0 = np.random.default_rng(cfg.seed + 7919)  # its own stream: training draws stay as without --init
        init_detector(
            model,
            cfg.init,
            (_to_batch([source.sample(rng0) for _ in range(cfg.batch)])["image"] for _ in range(4)),
        )
    model = model.to(device)

    def step(rng: np.random.Generator):
        fields_ = [source.sample(rng) for _ in range(cfg.batch)]
        if cfg.colour_aug == "wide":
            fields_ = [replace(f, image=wide_colour(f.image, rng)) for f in fields_]
        b = _to_batch(fields_)
        b = {k: v.to(device) for k, v in b.items()}
        loss, parts = circlenet_loss(model(b["image"]), b)
        return loss, f"hm {parts['heatmap']:.3f} r {parts['radius']:.2f} off {parts['offset']:.3f}"

    def validate(m, epoch: int) -> dict[str, float]:
        val = evaluate_model_on_fields(m, source.val_fields)
        out = {"val_AP50": val["AP50"], "val_AP": val["AP"], "val_AP75": val["AP75"]}
        if cfg.hard_mining and hasattr(source, "mine_hard_negatives"):
            rng = np.random.default_rng([cfg.seed, 7, epoch])
            out["hard_negatives"] = source.mine_hard_negatives(lambda imgs: predict_fields(m, imgs), rng)
        return out

    history, best_epoch = fit_detector(cfg, model, step, validate, cfg.select, t_start, source=source)
    val = evaluate_model_on_fields(model, source.val_fields, threshold=True)
    val_tta = evaluate_model_on_fields(model, source.val_fields, tta=True, threshold=True)
    key = cfg.select.removeprefix("val_")
    # flip TTA becomes the model's default only if it clearly helps on validation
    tta = val_tta[key] > val[key] + TTA_MIN_GAIN
    metrics = {
        "validation": {k: round(v, 4) for k, v in (val_tta if tta else val).items()},
        "validation_no_tta": {k: round(v, 4) for k, v in val.items()},
        "validation_tta": {k: round(v, 4) for k, v in val_tta.items()},
        "best_epoch": best_epoch,
        "measured_on": source.val_description,
    }
    out = Path(cfg.out)
    # the decoding threshold of the pipeline: the F1-best one on validation
    thr = float((val_tta if tta else val)["at_threshold_score_threshold"])
    export_detector(model, out, cfg, metrics, history, source.description, tta=tta, score_threshold=thr)
    return out


def detector_metadata(
    cfg: DetectorTrainConfig,
    metrics: dict,
    history: list,
    data_desc: dict,
    tta: bool = False,
    score_threshold: float = 0.3,
) -> dict[str, Any]:
    """The ``glomkit`` metadata block of a detector model file (``tta``: flip TTA by default)."""
    return {
        "task": "detector",
        "architecture": KIND.architectures[0],
        "backbone": cfg.backbone,
        "input_size": [cfg.input_size, cfg.input_size],
        "mpp": cfg.mpp,
        "stride": 4,
        "input": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
        "decode": {
            "score_threshold": round(score_threshold, 3),
            "top_k": 100,
            "nms_iou": DEFAULT_NMS_IOU,
            "tta": bool(tta),
        },
        "max_radius_um": 150.0,
        "circle_definition": "minimum enclosing circle of the glomerulus outline",
        "training": {
            **{k: v for k, v in asdict(cfg).items() if k not in ("resume",)},
            "data": data_desc,
            "history": history,
        },
        "metrics": metrics,
        "licence": _licence(data_desc),
    }


def _licence(data_desc: dict) -> str:
    """The weights' licence follows the training data's."""
    kinds = [d.get("kind") for d in data_desc.get("sources", [data_desc])]
    if "bueno_fields" in kinds:
        return "CC BY-NC-SA 4.0 (trained on bueno_pas crops)"
    return "as the training data"


def export_detector(
    model,
    out: Path,
    cfg: DetectorTrainConfig,
    metrics: dict,
    history: list,
    data_desc: dict,
    tta: bool = False,
    score_threshold: float = 0.3,
) -> Path:
    """Export a torch CircleNet to ONNX (outputs heatmap, radius, offset) with its metadata."""
    import torch

    from glomkit.models.export import export_onnx

    example = torch.zeros(1, 3, 64, 64)
    return export_onnx(
        model.cpu().eval(),
        example,
        out,
        detector_metadata(cfg, metrics, history, data_desc, tta, score_threshold),
        output_names=list(OUTPUTS),
    )


def _network(arch: str, backbone: str):
    from glomkit.nets.circlenet import build_circlenet

    return build_circlenet({"backbone": backbone})


KIND = DetectorKind(
    name="circlenet",
    outputs=OUTPUTS,
    decode_tile=decode_tile,
    predict=_predict,
    score=_score,
    architectures=("circlenet",),
    network=_network,
    train=train_from_request,
    default_stride=4,
    default_score_threshold=0.3,
    unflipped=("offset",),
    warm_start=True,
)
