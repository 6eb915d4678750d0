"""The epoch loop shared by the detector trainers (CircleNet and segmentation-as-detector).

A trainer builds its data source and model, then hands :func:`train_epochs` three things: a step
function (one batch: sample with the epoch's rng, return the loss), a validation function (the
``val_*`` fields of an epoch's history record) and the name of the record field that picks the
best epoch. The loop owns what both trainers share: AdamW, warmup + cosine LR driven by the step
count or a wall-clock budget (``max_minutes``), gradient clipping, a rich progress bar, one
history record per epoch, an atomic checkpoint after every epoch (state dicts only, resumed with
``weights_only=True``) and the reload of the best epoch's weights.

>>> run = TrainingRun.start(cfg)  # doctest: +SKIP
>>> model = build_model().to(run.device)  # doctest: +SKIP
>>> history, best_epoch = run.train_epochs(model, step, validate, select="val_AP50")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from glomkit import GlomkitError

# Checkpoints written before the loop was shared name their best value after the metric.
LEGACY_BEST_KEYS = {"val_AP50": "best_ap50", "val_mIoU": "best_miou"}
WARMUP_STEPS = 50
GRAD_CLIP_NORM = 10.0


class EpochLoopConfig(Protocol):
    """The training-config fields the loop reads (both trainer configs have them)."""

    out: str
    epochs: int
    batch: int
    fields: int
    seed: int
    lr: float
    weight_decay: float
    max_minutes: float | None
    resume: str | None
    threads: int | None
    checkpoint: str | None


def checkpoint_path(cfg: EpochLoopConfig) -> Path:
    """``cfg.checkpoint``, default ``<out>.ckpt.pt``."""
    out = Path(cfg.out)
    return Path(cfg.checkpoint) if cfg.checkpoint else out.with_name(out.name + ".ckpt.pt")


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` to ``path`` atomically (a reader never sees half a checkpoint)."""
    import torch

    from glomkit.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def best_value(ck: dict[str, Any], select: str, path: Path) -> float:
    """The best ``select`` value so far stored in checkpoint ``ck`` (current or legacy keys)."""
    if "best_value" in ck:
        if ck.get("best_metric") != select:
            raise GlomkitError(
                f"{path}: checkpoint picks its best epoch by {ck.get('best_metric')!r}, not {select!r}"
            )
        return float(ck["best_value"])
    legacy = LEGACY_BEST_KEYS.get(select)
    if legacy is None or legacy not in ck:
        raise GlomkitError(f"{path}: checkpoint has no best {select} value")
    return float(ck[legacy])


def lr_at(step: int, total_steps: int, lr: float, budget_fraction: float = 0.0) -> float:
    """Linear warmup over ``WARMUP_STEPS``, then cosine from ``lr`` down to ``0.02 * lr``.

    The schedule's progress is the larger of the step fraction and ``budget_fraction`` (elapsed /
    wall-clock budget), so a time-budgeted run ends its schedule when its time does.
    """
    p = max(step / total_steps, budget_fraction)
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    return lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


@dataclass
class TrainingRun:
    """A started run: seeded, on its device, with its checkpoint path and start time."""

    cfg: EpochLoopConfig
    device: Any
    checkpoint: Path
    t_start: float

    @classmethod
    def start(cls, cfg: EpochLoopConfig) -> TrainingRun:
        """Start the clock, set torch threads and seed, pick the device (CUDA when present)."""
        import torch

        t_start = time.time()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        ckpt = checkpoint_path(cfg)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        return cls(cfg, dev, ckpt, t_start)

    def train_epochs(
        self,
        model: Any,
        step: Callable[[np.random.Generator], tuple[Any, str]],
        validate: Callable[[Any], dict[str, float]],
        select: str,
        keep_step_losses: bool = False,
    ) -> tuple[list[dict[str, Any]], int]:
        """Train ``model`` for ``cfg.epochs`` (or until the budget ends); returns (history, best epoch).

        ``step(rng)`` samples one batch with the epoch's rng (``default_rng([seed, epoch])``) and
        returns (loss tensor, extra progress text). ``validate(model)`` returns the ``val_*``
        fields of the epoch's record; ``select`` names the one whose maximum picks the best epoch.
        A record is ``epoch``, (``steps``), ``loss``, (``losses``: per step, when
        ``keep_step_losses``), the validation fields, ``elapsed_s``. On return the model holds the
        best epoch's weights, on the CPU, in eval mode.
        """
        import torch

        from glomkit.progress import job_progress

        cfg, dev = self.cfg, self.device
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        start_epoch, best, best_state, history = 0, -1.0, None, []
        elapsed_before = 0.0
        if cfg.resume:
            from glomkit.models.checkpoint import load_torch_file

            rp = Path(cfg.resume)
            keys = ("model", "optimizer", "epoch", "history", "best_model")
            ck = load_torch_file(rp, dev, "training checkpoint", keys)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            start_epoch, best, history = ck["epoch"] + 1, best_value(ck, select, rp), ck["history"]
            best_state = ck["best_model"]
            elapsed_before = ck.get("elapsed_s", 0.0)
        steps_per_epoch = max(cfg.fields // cfg.batch, 1)
        total_steps = steps_per_epoch * cfg.epochs
        budget = cfg.max_minutes * 60.0 if cfg.max_minutes else None

        def elapsed() -> float:
            return elapsed_before + time.time() - self.t_start

        stop = False
        with job_progress() as progress:
            for epoch in range(start_epoch, cfg.epochs):
                rng = np.random.default_rng([cfg.seed, epoch])
                model.train()
                task = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, info="")
                losses: list[float] = []
                for s in range(steps_per_epoch):
                    lr = lr_at(
                        epoch * steps_per_epoch + s,
                        total_steps,
                        cfg.lr,
                        elapsed() / budget if budget else 0.0,
                    )
                    for g in opt.param_groups:
                        g["lr"] = lr
                    loss, info = step(rng)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
                    opt.step()
                    losses.append(loss.item())
                    text = f"loss {np.mean(losses[-20:]):.3f}" + (f" {info}" if info else "")
                    progress.update(task, advance=1, info=text)
                    if budget and elapsed() > budget:
                        stop = True
                        break
                val = validate(model)
                rec: dict[str, Any] = {"epoch": epoch}
                if keep_step_losses:
                    rec["steps"] = len(losses)
                rec["loss"] = float(np.mean(losses))
                if keep_step_losses:
                    rec["losses"] = [round(v, 5) for v in losses]
                rec.update(val)
                rec["elapsed_s"] = elapsed()
                history.append(rec)
                progress.console.print(json.dumps({k: v for k, v in rec.items() if k != "losses"}))
                if rec[select] > best:
                    best = rec[select]
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                save_checkpoint(
                    {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "epoch": epoch,
                        "best_metric": select,
                        "best_value": best,
                        "best_model": best_state,
                        "history": history,
                        "elapsed_s": elapsed(),
                    },
                    self.checkpoint,
                )
                if stop:
                    break
        if best_state is None:
            raise GlomkitError(f"{cfg.out}: no epoch finished (resumed past the last epoch?)")
        model.load_state_dict(best_state)
        model.cpu().eval()
        return history, max(history, key=lambda r: r[select])["epoch"]
