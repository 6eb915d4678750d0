"""Train a CircleNet detector and write it as a glomkit ONNX model file.

Seeded, resumable (a checkpoint of state dicts after every epoch, loaded with
``weights_only=True``), time-budgeted (``max_minutes``), best epoch chosen on validation AP50.
:func:`fit_detector` runs both detector kinds (this one and ``glomkit.detect.segdetect``) on the
shared training loop, ``glomkit.train.loop``.

>>> train_detector(DetectorTrainConfig(data="../shared/data/bueno_pas", out="detector.onnx"))  # doctest: +SKIP
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glomkit import GlomkitError
from glomkit.core.geometry import DEFAULT_NMS_IOU
from glomkit.models.metadata import IMAGENET_MEAN, IMAGENET_STD

TTA_MIN_GAIN = 0.01  # flip TTA triples detection time: on by default only for a clear validation gain
# the detectors' schedule: AdamW, 50 warmup updates from lr/50, cosine down to 2 % of lr
WARMUP_STEPS = 50
LR_FLOOR = 0.02
GRAD_CLIP_NORM = 10.0


@dataclass
class DetectorTrainConfig:
    """Everything a detector training run depends on (stored in the model's metadata)."""

    data: str | list[str]  # one source, or several mixed by ``data_weights``
    out: str
    backbone: str = "resnet18"
    epochs: int = 30
    batch: int = 8
    seed: int = 0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    fields: int = 256  # training fields per epoch (composed afresh each epoch)
    field_size: int = 160  # training field side, px at ``mpp``
    val_fields: int = 64
    val_size: int = 256
    mpp: float = 4.0
    input_size: int = 512
    max_minutes: float | None = None
    resume: str | None = None
    threads: int | None = None
    synthetic: bool = True
    pool: int = 48  # synthetic tissue / glomerulus pool size per split
    test_fold: int = 0
    checkpoint: str | None = None  # default: <out>.ckpt.pt
    data_mpp: float | list[float] | None = None  # µm/px of user images that lack it (one, or one per source)
    data_weights: list[float] | None = None  # sampling weight per ``data`` source
    scale_jitter: float = 0.3  # annotated images: tiles read at 1/(1+j)..(1+j) times the nominal scale
    hard_fraction: float = 0.15  # annotated images: share of tiles centred on mined false positives
    hard_mining: bool = True  # mine the model's false positives on training images after each epoch
    val_blocks: int = 5  # annotated images: contiguous blocks of file numbers
    val_block: int = -1  # the block held out for validation
    select: str = "val_AP50"  # the validation figure that picks the best epoch
    init: str | None = None  # start from a CircleNet model file, or "bundled"
    command: str = field(default_factory=lambda: " ".join(shlex.quote(a) for a in sys.argv))


def _to_batch(fields_, stride: int = 4) -> dict[str, Any]:
    import torch

    from glomkit.detect.targets import circle_targets

    imgs = np.stack([f.image for f in fields_]).astype(np.float32) / 255.0
    imgs = (imgs - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    h, w = imgs.shape[1:3]
    tg = [circle_targets(f.circles, h, w, stride) for f in fields_]
    out = {k: torch.from_numpy(np.stack([t[k] for t in tg])) for k in tg[0]}
    out["image"] = torch.from_numpy(np.ascontiguousarray(imgs.transpose(0, 3, 1, 2)))
    return out


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

    from glomkit.infer.kinds.circlenet import detect_batches

    dev = next(model.parameters()).device
    model.eval()
    mean, std = np.float32(IMAGENET_MEAN), np.float32(IMAGENET_STD)

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        xf = (x.astype(np.float32) / 255.0 - mean) / std
        xt = torch.from_numpy(np.ascontiguousarray(xf.transpose(0, 3, 1, 2))).to(dev)
        names = ("heatmap", "radius", "offset")
        return {k: t.float().cpu().numpy() for k, t in zip(names, model(xt), strict=True)}

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
    gt = {i: f.circles for i, f in enumerate(fields_)}
    out = evaluate_circles(gt, dict(enumerate(preds)))
    if threshold:
        best = f1_best_threshold(gt, dict(enumerate(preds)))
        out.update({f"at_threshold_{k}": v for k, v in best.items()})
    return out


def train_from_request(req) -> Path:
    """``glomkit train detector --arch circlenet`` (a ``glomkit.infer.kinds.TrainRequest``)."""
    return train_detector(
        DetectorTrainConfig(
            data=req.sources[0] if len(req.sources) == 1 else req.sources,
            data_weights=req.weights,
            backbone=req.backbone or "resnet18",
            data_mpp=req.data_mpp,
            scale_jitter=req.scale_jitter,
            hard_fraction=req.hard_fraction,
            val_block=req.val_block,
            select=f"val_{req.select}",
            init=req.init,
            **req.options,
        )
    )


def checkpoint_path(cfg: Any) -> Path:
    """``cfg.checkpoint``, default ``<out>.ckpt.pt``."""
    out = Path(cfg.out)
    return Path(cfg.checkpoint) if cfg.checkpoint else out.with_name(out.name + ".ckpt.pt")


def start_run(cfg: Any) -> tuple[Any, float]:
    """(device, clock start): set torch threads and seed, pick the device (CUDA when present)."""
    import torch

    from glomkit.train.loop import pick_device

    t_start = time.monotonic()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    return pick_device("auto"), t_start


def _hard_pools(source: Any) -> list[list]:
    """The hard-negative lists of a detection source's training samplers (kept in the checkpoint)."""
    pools = []
    for part in getattr(source, "parts", [source]):
        pool = getattr(getattr(part, "train", None), "hard_negatives", None)
        if isinstance(pool, list):
            pools.append(pool)
    return pools


def fit_detector(
    cfg: Any,
    model: Any,
    step: Callable[[np.random.Generator], tuple[Any, str]],
    validate: Callable[[Any, int], dict[str, float]],
    select: str,
    clock_start: float | None = None,
    keep_step_losses: bool = False,
    source: Any = None,
) -> tuple[list[dict[str, Any]], int]:
    """Train a detector on the shared loop; returns (history, best epoch).

    ``step(rng)`` samples one batch with the epoch's rng (``default_rng([seed, epoch])``) and
    returns (loss tensor, extra progress text). ``validate(model, epoch)`` returns the ``val_*``
    fields of the epoch's record; ``select`` names the one whose maximum picks the best epoch.
    A record is ``epoch``, (``steps``), ``loss``, (``losses``: per step, when
    ``keep_step_losses``), the validation fields, ``elapsed_s``. The checkpoint
    (``checkpoint_path(cfg)``) keeps the hard negatives mined so far in ``source``. On return the
    model holds the best epoch's weights, on the CPU, in eval mode.
    """
    import torch

    from glomkit.train.loop import LoopConfig, Schedule, Task, train_loop

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    pools = _hard_pools(source) if source is not None else []

    def batches(epoch: int):
        rng = np.random.default_rng([cfg.seed, epoch])
        while True:
            yield rng

    def record(stats) -> dict[str, Any]:
        rec: dict[str, Any] = {"epoch": stats.epoch}
        if keep_step_losses:
            rec["steps"] = len(stats.losses)
        rec["loss"] = stats.loss
        if keep_step_losses:
            rec["losses"] = [round(v, 5) for v in stats.losses]
        t = time.monotonic()
        rec.update(validate(model, stats.epoch))
        rec["elapsed_s"] = stats.elapsed_s + time.monotonic() - t
        return rec

    def set_state(state: dict[str, Any]) -> None:
        for pool, saved in zip(pools, state.get("hard_negatives", []), strict=False):
            pool[:] = [(int(k), float(x), float(y)) for k, x, y in saved]

    task = Task(
        model,
        opt,
        batches,
        step,
        record,
        get_state=lambda: {"hard_negatives": [list(map(list, p)) for p in pools]},
        set_state=set_state,
    )
    loop = LoopConfig(
        epochs=cfg.epochs,
        steps_per_epoch=max(cfg.fields // cfg.batch, 1),
        schedule=Schedule(warmup=WARMUP_STEPS, warmup_start=1.0 / WARMUP_STEPS, floor=LR_FLOOR),
        select=select,
        max_minutes=cfg.max_minutes or None,
        grad_clip=GRAD_CLIP_NORM,
        checkpoint=checkpoint_path(cfg),
        resume=cfg.resume,
        description=f"train {Path(cfg.out).name}",
    )
    res = train_loop(task, loop, clock_start)
    if not res.history:
        raise GlomkitError(f"{cfg.out}: no epoch finished (resumed past the last epoch?)")
    model.cpu().eval()
    return res.history, res.best_epoch


def train_detector(config: DetectorTrainConfig | dict[str, Any]) -> Path:
    """Train, pick the best epoch by validation AP50, export ONNX with metadata; returns the model path."""
    from glomkit.detect.data import load_detection_source
    from glomkit.detect.losses import circlenet_loss
    from glomkit.detect.model import build_circlenet

    cfg = config if isinstance(config, DetectorTrainConfig) else DetectorTrainConfig(**config)
    if cfg.field_size % 32 or cfg.val_size % 32:
        raise GlomkitError(f"{cfg.out}: field sizes must be multiples of 32")
    if cfg.select not in ("val_AP50", "val_AP", "val_AP75"):
        raise GlomkitError(f"{cfg.out}: select must be val_AP50, val_AP or val_AP75, not {cfg.select!r}")
    device, t_start = start_run(cfg)
    source = load_detection_source(cfg)
    model = build_circlenet({"backbone": cfg.backbone})
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
        b = _to_batch([source.sample(rng) for _ in range(cfg.batch)])
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
        "architecture": "circlenet",
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
        output_names=["heatmap", "radius", "offset"],
    )
