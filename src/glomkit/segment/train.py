"""Train a segmenter (torch): slide-grouped split, BCE + Dice loss, best epoch by validation Dice.

The run is seeded and resumable (a checkpoint of state dicts beside the model, loaded with
``weights_only=True``), stops at ``max_minutes`` (the cosine learning-rate schedule follows
whichever of epochs or wall clock runs out first, so a time-limited run still anneals), trains
on the shared loop (``glomkit.train.loop``), and
writes an ONNX model whose metadata carries the split, the training settings and the held-out
test metrics measured on the exported ONNX file.

Usage::

    train_segmenter(SegTrainConfig(data="bueno_pas", out="seg.onnx", epochs=30))
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from glomkit import GlomkitError
from glomkit.data.bueno import split_train_val_test
from glomkit.io.atomic import write_text
from glomkit.models.export import update_metadata
from glomkit.models.runtime import IMAGENET_MEAN, IMAGENET_STD
from glomkit.segment.dataset import augment, load_arrays, load_samples

AUGMENTATION = (
    "rot90 x4, horizontal flip, scale 0.85-1.15 (p=0.5), brightness/contrast/saturation/channel jitter"
)


@dataclass
class SegTrainConfig:
    data: str | Path
    out: str | Path
    arch: str = "deeplabv3"
    encoder: str = "resnet18"
    size: int = 256
    resize_mode: str = "resize"
    epochs: int = 30
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    resume: bool = False
    max_minutes: float | None = None
    test_fold: int = 0
    n_folds: int = 5
    split_seed: int = 0
    threads: int | None = 1
    device: str = "auto"
    checkpoint: str | Path | None = None  # default: <out>.ckpt.pt
    history: str | Path | None = None  # default: <out>.history.json
    show_progress: bool = True
    extra_meta: dict = field(default_factory=dict)
    extra_train: list[str] = field(default_factory=list)  # folders whose pairs only ever train
    init: str | None = None  # start from a segmenter model file ("bundled": the bundled one)


def _paths(cfg: SegTrainConfig) -> tuple[Path, Path, Path]:
    out = Path(cfg.out)
    ckpt = Path(cfg.checkpoint) if cfg.checkpoint else out.with_name(out.stem + ".ckpt.pt")
    hist = Path(cfg.history) if cfg.history else out.with_name(out.stem + ".history.json")
    return out, ckpt, hist


def dice_bce_loss(logits, target):
    """Binary cross-entropy + (1 - soft Dice), Dice averaged over images."""
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = logits.sigmoid().flatten(1)
    t = target.flatten(1)
    dice = (2 * (p * t).sum(1) + 1.0) / (p.sum(1) + t.sum(1) + 1.0)
    return bce + (1 - dice).mean()


def _to_tensor(imgs: np.ndarray, device):
    import torch

    mean = np.asarray(IMAGENET_MEAN, np.float32) * 255
    std = np.asarray(IMAGENET_STD, np.float32) * 255
    x = (imgs.astype(np.float32) - mean) / std
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)


def _validate(model, imgs: np.ndarray, masks: np.ndarray, device, batch: int = 16) -> tuple[float, float]:
    """(mean loss, mean per-image Dice at 0.5) of ``model`` on fitted arrays."""
    import torch

    model.eval()
    losses, dices = [], []
    with torch.no_grad():
        for s in range(0, len(imgs), batch):
            x = _to_tensor(imgs[s : s + batch], device)
            t = torch.from_numpy(masks[s : s + batch, None].astype(np.float32)).to(device)
            logits = model(x)
            losses.append(float(dice_bce_loss(logits, t)) * len(x))
            p = (logits > 0).float().flatten(1)
            tt = t.flatten(1)
            den = p.sum(1) + tt.sum(1)
            d = torch.where(den > 0, 2 * (p * tt).sum(1) / den.clamp(min=1), torch.ones_like(den))
            dices += d.tolist()
    return float(sum(losses) / len(imgs)), float(np.mean(dices))


def _warm_start(model, cfg: SegTrainConfig, tr_x: np.ndarray, device) -> dict:
    """Load ``cfg.init`` (an exported segmenter, "bundled" for the bundled one) into ``model``.

    The weights come back from the ONNX file (``glomkit.models.recover``: BatchNorm was fused at
    export), checked against ONNX Runtime; the BatchNorms then get the statistics of 64 training
    images so that training starts from the same function.
    """
    import torch

    from glomkit.models.recover import load_onnx_weights, recalibrate_batchnorm
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import read_typed_metadata

    path = resolve_model(cfg.init, "segmenter")
    meta = read_typed_metadata(path)
    want = (cfg.arch, cfg.encoder)  # the network is fully convolutional: any input size
    have = (meta.architecture, meta.backbone)
    if have != want:
        raise GlomkitError(f"{path}: --init model is {have}, this run trains {want}")
    model.cpu()
    example = _to_tensor(tr_x[:2], torch.device("cpu"))
    fused = load_onnx_weights(model, path, example, lambda n, x: [torch.sigmoid(n(x))])
    batches = (_to_tensor(tr_x[i : i + 8], torch.device("cpu")) for i in range(0, min(64, len(tr_x)), 8))
    n = recalibrate_batchnorm(model, fused, batches)
    model.to(device)
    return {
        "model": path.name,
        "created": meta.created,
        "input_size": list(meta.input_size),
        "recalibrated_on": n,
    }


def train_segmenter(cfg: SegTrainConfig) -> Path:
    """Train, export the best-validation-Dice epoch to ONNX, score the test slides; returns the model path."""
    import torch

    from glomkit.models.export import export_onnx
    from glomkit.nets.segmenters import create_segmenter
    from glomkit.segment.evaluate import evaluate_segmenter
    from glomkit.train.loop import LoopConfig, Schedule, Task, pick_device, train_loop

    out, ckpt_path, hist_path = _paths(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device("auto" if cfg.device in ("auto", "cuda") else cfg.device)
    torch.manual_seed(cfg.seed)

    samples = load_samples(cfg.data)
    if len({s.slide for s in samples}) < cfg.n_folds:
        raise GlomkitError(f"{cfg.data}: fewer than {cfg.n_folds} slides/groups; cannot split by slide")
    if not 0 <= cfg.test_fold < cfg.n_folds:
        raise GlomkitError(f"--test-fold {cfg.test_fold}: must be in 0..{cfg.n_folds - 1}")
    tr, va, te = split_train_val_test(samples, cfg.test_fold, cfg.n_folds, cfg.split_seed)
    tr_x, tr_y = load_arrays([samples[i] for i in tr], cfg.size, cfg.resize_mode)
    for folder in cfg.extra_train:  # e.g. in-context patches (glomkit.segment.context_data)
        ex, ey = load_arrays(load_samples(folder), cfg.size, cfg.resize_mode)
        tr_x, tr_y = np.concatenate([tr_x, ex]), np.concatenate([tr_y, ey])
    va_x, va_y = load_arrays([samples[i] for i in va], cfg.size, cfg.resize_mode)

    model = create_segmenter(cfg.arch, cfg.encoder).to(device)
    resume = cfg.resume and ckpt_path.is_file()
    init_record = _warm_start(model, cfg, tr_x, device) if cfg.init and not resume else {}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(tr_x) // cfg.batch)
    warmup = max(1, min(100, steps_per_epoch * cfg.epochs // 20))

    def batches(epoch: int):
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(len(tr_x))
        for b in range(steps_per_epoch):
            pairs = [augment(tr_x[i], tr_y[i], rng) for i in order[b * cfg.batch : (b + 1) * cfg.batch]]
            x = _to_tensor(np.stack([p[0] for p in pairs]), device)
            y = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None].astype(np.float32)).to(device)
            yield x, y

    def record(stats) -> dict:
        val_loss, val_dice = _validate(model, va_x, va_y, device)
        return {
            "epoch": stats.epoch + 1,
            "train_loss": stats.loss,
            "val_loss": val_loss,
            "val_dice": val_dice,
            "lr": stats.lr,
            "elapsed_s": round(stats.elapsed_s, 1),
        }

    task = Task(
        model,
        opt,
        batches,
        lambda b: dice_bce_loss(model(b[0]), b[1]),
        record,
        on_epoch=lambda history: write_text(hist_path, json.dumps(history, indent=1)),
    )
    loop = LoopConfig(
        epochs=cfg.epochs,
        steps_per_epoch=steps_per_epoch,
        # linear warmup from lr/warmup over 5 % of the updates (at most 100), cosine to 0 over the run
        schedule=Schedule(warmup=warmup, warmup_start=1.0 / warmup),
        select="val_dice",
        max_minutes=cfg.max_minutes or None,
        checkpoint=ckpt_path,
        resume=ckpt_path if resume else None,
        description=f"train {cfg.arch}",
        progress=cfg.show_progress,
    )
    res = train_loop(task, loop)
    best = res.best_record or {}
    state = {
        "epoch": len(res.history),
        "elapsed": res.elapsed_s,
        "best_dice": best.get("val_dice", -1.0),
        "best_epoch": best.get("epoch", -1),
    }
    model = model.to("cpu").eval()
    slides = lambda idx: sorted({samples[i].slide for i in idx})  # noqa: E731
    cfg_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    meta = {
        "task": "segmenter",
        "architecture": cfg.arch,
        "encoder": cfg.encoder,
        "input_size": [cfg.size, cfg.size],
        "resize_mode": cfg.resize_mode,
        "input": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "threshold": 0.5,
        "training": {
            "data": os.path.basename(os.path.normpath(str(cfg.data))),
            "split": f"by slide: test fold {cfg.test_fold}, val fold {(cfg.test_fold + 1) % cfg.n_folds} "
            f"of {cfg.n_folds} (glomkit.data.bueno.slide_folds, seed {cfg.split_seed})",
            "train_slides": slides(tr),
            "val_slides": slides(va),
            "test_slides": slides(te),
            "n_train": len(tr_x),
            "n_val": len(va),
            "n_test": len(te),
            "loss": "BCE + soft Dice",
            "optimizer": f"AdamW lr {cfg.lr} wd {cfg.weight_decay}, warmup + cosine (epochs or wall clock)",
            "augmentation": AUGMENTATION,
            "epochs_run": state["epoch"],
            "best_epoch": state["best_epoch"],
            "minutes": round(state["elapsed"] / 60, 1),
            "device": str(device),
            "config": {k: v for k, v in cfg_dict.items() if k not in ("extra_meta", "show_progress")},
        },
        "metrics": {"val_dice": state["best_dice"]},
        **({"init": init_record} if init_record else {}),
        **cfg.extra_meta,
    }
    example = torch.zeros(1, 3, cfg.size, cfg.size)
    wrapped = torch.nn.Sequential(model, torch.nn.Sigmoid())
    export_onnx(wrapped, example, out, meta, output_names=["prob"])
    if te:
        rep = evaluate_segmenter(out, cfg.data, split="test")
        keys = ("dice_mean", "dice_sd", "iou_mean", "miou", "pixel_accuracy", "n_images")
        meta["metrics"]["test"] = {k: rep[k] for k in keys}
        meta["metrics"]["test_per_slide_dice"] = rep["per_slide_dice"]
        update_metadata(out, {"metrics": meta["metrics"]})
    return out
