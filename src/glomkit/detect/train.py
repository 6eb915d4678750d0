"""The detector trainers' shared part: seeding, device, checkpoint path and the epoch loop.

Every detector kind's trainer (``glomkit.kinds.circlenet``, ``glomkit.kinds.components``) runs on
:func:`fit_detector`, itself on the one training loop ``glomkit.train.loop``: seeded, resumable
(a checkpoint of state dicts after every epoch, loaded with ``weights_only=True``), time-budgeted
(``max_minutes``), the best epoch chosen on a validation figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from glomkit import GlomkitError

# the detectors' schedule: AdamW, 50 warmup updates from lr/50, cosine down to 2 % of lr
WARMUP_STEPS = 50
LR_FLOOR = 0.02
GRAD_CLIP_NORM = 10.0


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
