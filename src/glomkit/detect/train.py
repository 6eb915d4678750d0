"""Train a CircleNet detector and write it as a glomkit ONNX model file.

Seeded, resumable (a checkpoint of state dicts after every epoch, loaded with
``weights_only=True``), time-budgeted (``max_minutes``), best epoch chosen on validation AP50.

>>> train_detector(DetectorTrainConfig(data="../shared/data/bueno_pas", out="detector.onnx"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glomkit import GlomkitError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class DetectorTrainConfig:
    """Everything a detector training run depends on (stored in the model's metadata)."""

    data: str
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
    data_mpp: float | None = None  # µm/px of user images that do not record it
    command: str = field(default_factory=lambda: " ".join(shlex.quote(a) for a in sys.argv))


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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

    from glomkit.detect.decode import decode_circlenet, merge_flips

    dev = next(model.parameters()).device
    model.eval()
    out: list[np.ndarray] = []
    flips = ["", "h", "v"] if tta else [""]
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = np.stack(images[i : i + batch]).astype(np.float32) / 255.0
            x = (x - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(dev)
            runs = []
            for f in flips:
                dims = [d for a, d in (("h", 3), ("v", 2)) if a in f]
                xi = torch.flip(xt, dims) if dims else xt
                runs.append([t.float().cpu().numpy() for t in model(xi)])
            for j in range(xt.shape[0]):
                hm, rad, off = merge_flips([tuple(r[k][j] for k in range(3)) for r in runs], flips)
                out.append(decode_circlenet(hm, rad, off, 4, score_threshold, top_k))
    return out


def evaluate_model_on_fields(model, fields_, tta: bool = False) -> dict[str, float]:
    """COCO circle metrics of a torch model on composed fields (low threshold: AP needs the tail)."""
    from glomkit.eval.detection import evaluate_circles

    preds = predict_fields(model, [f.image for f in fields_], tta=tta)
    gt = {i: f.circles for i, f in enumerate(fields_)}
    return evaluate_circles(gt, dict(enumerate(preds)))


def _save_atomic(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_detector(config: DetectorTrainConfig | dict[str, Any]) -> Path:
    """Train, pick the best epoch by validation AP50, export ONNX with metadata; returns the model path."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from glomkit.detect.data import load_detection_source
    from glomkit.detect.losses import circlenet_loss
    from glomkit.detect.model import build_circlenet

    cfg = config if isinstance(config, DetectorTrainConfig) else DetectorTrainConfig(**config)
    if cfg.field_size % 32 or cfg.val_size % 32:
        raise GlomkitError(f"{cfg.out}: field sizes must be multiples of 32")
    t_start = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    dev = _device()
    out = Path(cfg.out)
    ckpt_path = Path(cfg.checkpoint) if cfg.checkpoint else out.with_name(out.name + ".ckpt.pt")
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)

    source = load_detection_source(cfg)
    model = build_circlenet({"backbone": cfg.backbone}).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, best_ap50, best_state, history = 0, -1.0, None, []
    elapsed_before = 0.0
    if cfg.resume:
        rp = Path(cfg.resume)
        if not rp.is_file():
            raise GlomkitError(f"{rp}: checkpoint not found")
        ck = torch.load(rp, map_location=dev, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start_epoch, best_ap50, history = ck["epoch"] + 1, ck["best_ap50"], ck["history"]
        best_state = ck["best_model"]
        elapsed_before = ck.get("elapsed_s", 0.0)
    steps_per_epoch = max(cfg.fields // cfg.batch, 1)
    total_steps = steps_per_epoch * cfg.epochs
    budget = cfg.max_minutes * 60.0 if cfg.max_minutes else None

    def lr_at(step: int) -> float:
        p = step / total_steps
        if budget:
            p = max(p, (elapsed_before + time.time() - t_start) / budget)
        warm = min(1.0, (step + 1) / 50)
        return cfg.lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))

    stop = False
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    ) as progress:
        for epoch in range(start_epoch, cfg.epochs):
            rng = np.random.default_rng([cfg.seed, epoch])
            model.train()
            task = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, info="")
            losses = []
            for s in range(steps_per_epoch):
                step = epoch * steps_per_epoch + s
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                b = _to_batch([source.sample(rng) for _ in range(cfg.batch)])
                b = {k: v.to(dev) for k, v in b.items()}
                loss, parts = circlenet_loss(model(b["image"]), b)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                opt.step()
                losses.append(float(loss))
                progress.update(
                    task,
                    advance=1,
                    info=f"loss {np.mean(losses[-20:]):.3f} "
                    f"hm {parts['heatmap']:.3f} r {parts['radius']:.2f} off {parts['offset']:.3f}",
                )
                if budget and elapsed_before + time.time() - t_start > budget:
                    stop = True
                    break
            val = evaluate_model_on_fields(model, source.val_fields)
            rec = {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "val_AP50": val["AP50"],
                "val_AP": val["AP"],
                "val_AP75": val["AP75"],
                "elapsed_s": elapsed_before + time.time() - t_start,
            }
            history.append(rec)
            progress.console.print(json.dumps(rec))
            if val["AP50"] > best_ap50:
                best_ap50 = val["AP50"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            _save_atomic(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "epoch": epoch,
                    "best_ap50": best_ap50,
                    "best_model": best_state,
                    "history": history,
                    "elapsed_s": elapsed_before + time.time() - t_start,
                },
                ckpt_path,
            )
            if stop:
                break
    if best_state is None:
        raise GlomkitError(f"{cfg.out}: no epoch finished (resumed past the last epoch?)")
    model.load_state_dict(best_state)
    model = model.cpu().eval()
    best_epoch = max(history, key=lambda r: r["val_AP50"])["epoch"]
    val = evaluate_model_on_fields(model, source.val_fields)
    metrics = {
        "validation": {k: round(v, 4) for k, v in val.items()},
        "best_epoch": best_epoch,
        "measured_on": source.val_description,
    }
    export_detector(model, out, cfg, metrics, history, source.description)
    return out


def detector_metadata(
    cfg: DetectorTrainConfig, metrics: dict, history: list, data_desc: dict
) -> dict[str, Any]:
    """The ``glomkit`` metadata block of a detector model file."""
    return {
        "task": "detector",
        "architecture": "circlenet",
        "backbone": cfg.backbone,
        "input_size": [cfg.input_size, cfg.input_size],
        "mpp": cfg.mpp,
        "stride": 4,
        "input": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
        "decode": {"score_threshold": 0.3, "top_k": 100, "nms_iou": 0.35},
        "max_radius_um": 150.0,
        "circle_definition": "minimum enclosing circle of the glomerulus outline",
        "training": {
            **{k: v for k, v in asdict(cfg).items() if k not in ("resume",)},
            "data": data_desc,
            "history": history,
        },
        "metrics": metrics,
        "licence": "CC BY-NC-SA 4.0 (trained on bueno_pas crops)"
        if data_desc.get("kind") == "bueno_fields"
        else "as the training data",
    }


def export_detector(
    model, out: Path, cfg: DetectorTrainConfig, metrics: dict, history: list, data_desc: dict
) -> Path:
    """Export a torch CircleNet to ONNX (outputs heatmap, radius, offset) with its metadata."""
    import torch

    from glomkit.models.export import export_onnx

    example = torch.zeros(1, 3, 64, 64)
    return export_onnx(
        model.cpu().eval(),
        example,
        out,
        detector_metadata(cfg, metrics, history, data_desc),
        output_names=["heatmap", "radius", "offset"],
    )
