"""Train a segmenter (torch): slide-grouped split, BCE + Dice loss, best epoch by validation Dice.

The run is seeded and resumable (a checkpoint of state dicts beside the model, loaded with
``weights_only=True``), stops at ``max_minutes`` (the cosine learning-rate schedule follows
whichever of epochs or wall clock runs out first, so a time-limited run still anneals), and
writes an ONNX model whose metadata carries the split, the training settings and the held-out
test metrics measured on the exported ONNX file.

Usage::

    train_segmenter(SegTrainConfig(data="bueno_pas", out="seg.onnx", epochs=30))
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from glomkit import GlomkitError
from glomkit.data.bueno import split_train_val_test
from glomkit.io.atomic import atomic_path, write_text
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


def _lr_at(cfg: SegTrainConfig, step: int, total_steps: int, elapsed: float) -> float:
    warm = max(1, min(100, total_steps // 20))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    p = step / max(1, total_steps)
    if cfg.max_minutes:
        p = max(p, elapsed / (cfg.max_minutes * 60))
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def _warm_start(model, cfg: SegTrainConfig, tr_x: np.ndarray, device) -> dict:
    """Load ``cfg.init`` (an exported segmenter, "bundled" for the bundled one) into ``model``.

    The weights come back from the ONNX file (``glomkit.models.recover``: BatchNorm was fused at
    export), checked against ONNX Runtime; the BatchNorms then get the statistics of 64 training
    images so that training starts from the same function.
    """
    import torch

    from glomkit.models.recover import load_onnx_weights, recalibrate_batchnorm
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import read_metadata

    path = resolve_model(cfg.init, "segmenter")
    meta = read_metadata(path)
    want = (cfg.arch, cfg.encoder, [cfg.size, cfg.size])
    have = (meta.get("architecture"), meta.get("encoder"), list(meta.get("input_size") or []))
    if have != want:
        raise GlomkitError(f"{path}: --init model is {have}, this run trains {want}")
    model.cpu()
    example = _to_tensor(tr_x[:2], torch.device("cpu"))
    fused = load_onnx_weights(model, path, example, lambda n, x: [torch.sigmoid(n(x))])
    batches = (_to_tensor(tr_x[i : i + 8], torch.device("cpu")) for i in range(0, min(64, len(tr_x)), 8))
    n = recalibrate_batchnorm(model, fused, batches)
    model.to(device)
    return {"model": path.name, "created": meta.get("created"), "recalibrated_on": n}


def train_segmenter(cfg: SegTrainConfig) -> Path:
    """Train, export the best-validation-Dice epoch to ONNX, score the test slides; returns the model path."""
    import torch

    from glomkit.models.export import export_onnx
    from glomkit.progress import job_progress
    from glomkit.segment.evaluate import evaluate_segmenter
    from glomkit.segment.registry import create_segmenter

    out, ckpt_path, hist_path = _paths(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

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
    init_record = _warm_start(model, cfg, tr_x, device) if cfg.init and not cfg.resume else {}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(tr_x) // cfg.batch)
    total_steps = steps_per_epoch * cfg.epochs
    state = {"epoch": 0, "step": 0, "elapsed": 0.0, "best_dice": -1.0, "best_epoch": -1, "history": []}
    best_state = copy.deepcopy(model.state_dict())
    if cfg.resume and ckpt_path.is_file():
        from glomkit.models.checkpoint import load_torch_file

        keys = ("model", "optimizer", "best_model", "state", "rng", "torch_rng")
        ck = load_torch_file(ckpt_path, device, "training checkpoint", keys)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        best_state = ck["best_model"]
        state = json.loads(ck["state"])
        rng.bit_generator.state = json.loads(ck["rng"])
        torch.set_rng_state(ck["torch_rng"])

    t0 = time.monotonic() - state["elapsed"]
    budget = cfg.max_minutes * 60 if cfg.max_minutes else float("inf")
    stop = state["elapsed"] >= budget
    with job_progress(disable=not cfg.show_progress) as progress:
        task = progress.add_task(f"train {cfg.arch}", total=total_steps, completed=state["step"], info="")
        while state["epoch"] < cfg.epochs and not stop:
            model.train()
            order = rng.permutation(len(tr_x))
            run_loss, n_seen = 0.0, 0
            for b in range(steps_per_epoch):
                idx = order[b * cfg.batch : (b + 1) * cfg.batch]
                pairs = [augment(tr_x[i], tr_y[i], rng) for i in idx]
                x = _to_tensor(np.stack([p[0] for p in pairs]), device)
                y = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None].astype(np.float32)).to(device)
                lr = _lr_at(cfg, state["step"], total_steps, time.monotonic() - t0)
                for g in opt.param_groups:
                    g["lr"] = lr
                loss = dice_bce_loss(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                state["step"] += 1
                run_loss += float(loss.detach()) * len(idx)
                n_seen += len(idx)
                progress.update(
                    task, advance=1, info=f"epoch {state['epoch'] + 1} loss {run_loss / n_seen:.3f}"
                )
                if time.monotonic() - t0 >= budget:
                    stop = True
                    break
            val_loss, val_dice = _validate(model, va_x, va_y, device)
            state["epoch"] += 1
            state["elapsed"] = time.monotonic() - t0
            state["history"].append(
                {
                    "epoch": state["epoch"],
                    "train_loss": run_loss / max(1, n_seen),
                    "val_loss": val_loss,
                    "val_dice": val_dice,
                    "lr": lr,
                    "elapsed_s": round(state["elapsed"], 1),
                }
            )
            if val_dice > state["best_dice"]:
                state["best_dice"], state["best_epoch"] = val_dice, state["epoch"]
                best_state = copy.deepcopy(model.state_dict())
            progress.console.log(
                f"epoch {state['epoch']}: train loss {run_loss / max(1, n_seen):.4f} "
                f"val loss {val_loss:.4f} val Dice {val_dice:.4f} (best {state['best_dice']:.4f} @ {state['best_epoch']})"
            )
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(ckpt_path) as tmp:
                torch.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "best_model": best_state,
                        "state": json.dumps(state),
                        "rng": json.dumps(rng.bit_generator.state),
                        "torch_rng": torch.get_rng_state(),
                    },
                    tmp,
                )
            write_text(hist_path, json.dumps(state["history"], indent=1))

    model.load_state_dict(best_state)
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
