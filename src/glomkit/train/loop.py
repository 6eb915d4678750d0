"""The one training loop of glomkit: detector, segmentation detector, segmenter, classifier, SimSiam.

A trainer builds its data, model and optimizer, then hands :func:`train_loop` a :class:`Task` (how
to draw an epoch's batches, the loss of one batch, and the epoch's history record, validation
included) and a :class:`LoopConfig`. The loop owns what every trainer shares:

* epochs of ``steps_per_epoch`` updates, optional gradient clipping;
* the learning-rate schedule: warmup then cosine, ``timm.scheduler.CosineLRScheduler`` stepped once
  per update. Its position is the larger of the update count and the spent share of the wall-clock
  budget (``max_minutes``), so a time-limited run still anneals (unless ``budget_schedule`` is off);
* a time budget and an update budget (``max_steps``), checked after every update; an epoch cut
  short is still validated and checkpointed;
* the best epoch (the maximum of the record field ``select``; none: the last epoch), its weights
  kept in memory (on the CPU) and loaded into the model at the end;
* an atomic checkpoint after every epoch (``glomkit.io.atomic``: written beside, then renamed):
  model, optimizer, scheduler, update count, elapsed time, the best epoch and its weights, the
  history, the RNG states (torch, CUDA, NumPy's global, Python's) and the task's own state.
  ``resume`` continues such a run exactly where it stopped; the file loads with
  ``weights_only=True``;
* one rich progress bar (``glomkit.progress.job_progress``) and a line per epoch.

>>> task = Task(model, opt, batches=lambda epoch: ..., loss=lambda b: ..., record=lambda s: {...})  # doctest: +SKIP
>>> res = train_loop(task, LoopConfig(epochs=30, steps_per_epoch=32, select="val_AP50"))  # doctest: +SKIP
>>> res.best_epoch, res.history  # doctest: +SKIP

timm schedulers hold no state beyond the update count they are given: resuming rebuilds the
schedule from the config and continues at the stored count, so a run resumed with the same
settings continues its schedule exactly, and one resumed with more epochs stretches its cosine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glomkit import GlomkitError

CHECKPOINT_FORMAT = "glomkit-train-1"


@dataclass(frozen=True)
class Schedule:
    """Linear warmup, then a cosine from the optimizer's learning rate down to ``floor`` x that rate.

    ``warmup`` updates start at ``warmup_start`` x the rate. ``prefix``: the cosine starts after the
    warmup (True) or its length counts the warmup updates (False).
    """

    warmup: int = 0
    warmup_start: float = 0.0
    prefix: bool = False
    floor: float = 0.0


@dataclass
class LoopConfig:
    """How long to train, how to pick the best epoch, where to checkpoint."""

    epochs: int
    steps_per_epoch: int
    schedule: Schedule = field(default_factory=Schedule)
    select: str | None = None  # record field (dots reach into dicts) to maximise; None: the last epoch
    max_minutes: float | None = None  # wall-clock budget of the whole run (resumed runs included)
    budget_schedule: bool = True  # the spent share of ``max_minutes`` moves the schedule on too
    max_steps: int | None = None  # stop after this many updates; the schedule keeps its length
    grad_clip: float | None = None  # max gradient norm
    checkpoint: str | Path | None = None  # written after every epoch
    resume: str | Path | None = None  # a checkpoint to continue from
    description: str = "train"
    progress: bool = True


@dataclass
class EpochStats:
    """What the loop knows of an epoch when it asks the task for the epoch's record."""

    epoch: int  # 0-based
    losses: list[float]  # one per update
    lr: float  # the last update's learning rate
    updates: int  # updates so far in the whole run
    started: float  # time.monotonic() when the epoch began
    elapsed_s: float  # run time so far, earlier (resumed) sessions included
    stopped: str | None  # "max_minutes" or "max_steps" when the epoch was cut short

    @property
    def loss(self) -> float:
        """The epoch's mean loss (0 when no batch came)."""
        return float(np.mean(self.losses)) if self.losses else 0.0


@dataclass
class Task:
    """The trainer's side of the loop.

    ``batches(epoch)`` yields the epoch's batches (the loop takes ``steps_per_epoch``); draw them
    from a generator seeded by the epoch (or from the global RNGs, which the checkpoint keeps)
    for an exact resume. ``loss(batch)`` is a loss tensor, or (loss, progress text).
    ``record(stats)`` validates the model and returns the epoch's history record.
    ``get_state``/``set_state``: extra state of the trainer (plain data) kept in the checkpoint.
    """

    model: Any
    optimizer: Any
    batches: Callable[[int], Iterable[Any]]
    loss: Callable[[Any], Any]
    record: Callable[[EpochStats], dict[str, Any]]
    train_mode: Callable[[], None] | None = None  # default: model.train()
    on_step: Callable[[int, int, float], None] | None = None  # (updates, total updates, loss)
    on_epoch: Callable[[list[dict[str, Any]]], None] | None = None  # after each checkpoint: history
    summary: Callable[[dict[str, Any]], str] | None = None  # the epoch's progress line
    get_state: Callable[[], dict[str, Any]] | None = None
    set_state: Callable[[dict[str, Any]], None] | None = None


@dataclass
class LoopResult:
    """The run's history and the kept epoch (whose weights the model now holds)."""

    history: list[dict[str, Any]]
    best_epoch: int  # the kept epoch (0-based, its place in ``history``), -1 when no epoch ran
    best_value: float | None
    updates: int
    elapsed_s: float
    stopped: str  # "epochs", "max_minutes" or "max_steps"

    @property
    def best_record(self) -> dict[str, Any] | None:
        return self.history[self.best_epoch] if 0 <= self.best_epoch < len(self.history) else None


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's RNGs."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> Any:
    """``auto``: CUDA when present, else the CPU; any other name as torch reads it."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(name)


def plain(obj: Any) -> Any:
    """JSON-like copy (dicts, lists, floats, ints, str, None) that ``weights_only`` loading accepts."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def make_scheduler(optimizer: Any, schedule: Schedule, total_updates: int) -> Any:
    """The per-update ``timm`` cosine scheduler of ``schedule`` over ``total_updates``."""
    from timm.scheduler import CosineLRScheduler

    lr = float(optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"]))
    warm = max(0, min(int(schedule.warmup), total_updates - 1))
    length = total_updates - warm if schedule.prefix else total_updates
    return CosineLRScheduler(
        optimizer,
        t_initial=max(2, length),  # timm warns on a one-update cycle
        lr_min=schedule.floor * lr,
        warmup_t=warm,
        warmup_lr_init=schedule.warmup_start * lr,
        warmup_prefix=schedule.prefix,
        t_in_epochs=False,
    )


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically (a reader never sees half a checkpoint)."""
    import torch

    from glomkit.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint of this loop (``weights_only``); anything else is a GlomkitError."""
    from glomkit.models.checkpoint import load_torch_file

    ck = load_torch_file(path, "cpu", "training checkpoint")
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise GlomkitError(
            f"{path}: not a training checkpoint of this glomkit version (checkpoints written "
            "before the shared training loop cannot be resumed: train afresh)"
        )
    return ck


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch, CUDA, NumPy's legacy global, Python's) as checkpoint data."""
    import torch

    _, key, pos, has_gauss, gauss = np.random.get_state()
    version, mt, py_gauss = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": key.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(mt), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", np.asarray(n["key"], np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _metric(record: dict[str, Any], select: str) -> float:
    v: Any = record
    for part in select.split("."):
        if not isinstance(v, dict) or part not in v:
            raise GlomkitError(f"the epoch record has no {select!r} to pick the best epoch by")
        v = v[part]
    return float("-inf") if v is None else float(v)


def _summary(record: dict[str, Any]) -> str:
    parts = []
    for k, v in record.items():
        if k == "epoch" or isinstance(v, (dict, list)):
            continue
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return ", ".join(parts)


def train_loop(task: Task, cfg: LoopConfig, clock_start: float | None = None) -> LoopResult:
    """Train ``task.model`` by ``cfg``; on return it holds the kept epoch's weights, in eval mode.

    ``clock_start`` (``time.monotonic()``): when the run's wall-clock budget began (default: now),
    so that a trainer can count its data loading.
    """
    import torch

    from glomkit.progress import job_progress

    model, opt = task.model, task.optimizer
    total = max(1, cfg.epochs * cfg.steps_per_epoch)
    sched = make_scheduler(opt, cfg.schedule, total)
    select_name = cfg.select or "last epoch"
    history: list[dict[str, Any]] = []
    start_epoch, updates, before = 0, 0, 0.0
    best_value: float | None = None
    best_epoch, best_state = -1, None
    stopped = "epochs"
    if cfg.resume:
        ck = load_checkpoint(cfg.resume)
        if ck["best_metric"] != select_name:
            raise GlomkitError(
                f"{cfg.resume}: checkpoint picks its best epoch by {ck['best_metric']!r}, not {select_name!r}"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start_epoch, updates, before = int(ck["epoch"]) + 1, int(ck["updates"]), float(ck["elapsed_s"])
        best_value, best_epoch, best_state = ck["best_value"], int(ck["best_epoch"]), ck["best_model"]
        history, stopped = list(ck["history"]), str(ck["stopped"])
        set_rng_state(ck["rng"])
        if task.set_state is not None:
            task.set_state(ck["task"])
    t0 = time.monotonic() if clock_start is None else clock_start
    budget = None if cfg.max_minutes is None else 60.0 * cfg.max_minutes

    def elapsed() -> float:
        return before + time.monotonic() - t0

    def position() -> int:  # where the schedule is: updates done, or the spent share of the budget
        if budget is None or not cfg.budget_schedule:
            return updates
        return max(updates, int(total * elapsed() / max(budget, 1e-9)))

    # a resumed run whose budget is already spent runs nothing more
    done = cfg.resume is not None and (
        (budget is not None and before >= budget) or (cfg.max_steps is not None and updates >= cfg.max_steps)
    )
    with job_progress(disable=not cfg.progress) as bar:
        task_id = bar.add_task(cfg.description, total=total, completed=updates, info="")
        for epoch in range(start_epoch, cfg.epochs):
            if done:
                break
            started = time.monotonic()
            (task.train_mode or model.train)()
            losses: list[float] = []
            lr = float(opt.param_groups[0]["lr"])
            cut: str | None = None
            for _, batch in zip(range(cfg.steps_per_epoch), task.batches(epoch), strict=False):
                sched.step_update(position())
                lr = float(opt.param_groups[0]["lr"])
                out = task.loss(batch)
                loss, info = out if isinstance(out, tuple) else (out, "")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                updates += 1
                losses.append(float(loss.detach()))
                text = f"epoch {epoch + 1}/{cfg.epochs} loss {np.mean(losses[-20:]):.3f}"
                bar.update(task_id, advance=1, info=text + (f" {info}" if info else ""))
                if task.on_step is not None:
                    task.on_step(updates, total, losses[-1])
                if cfg.max_steps is not None and updates >= cfg.max_steps:
                    cut = "max_steps"
                elif budget is not None and elapsed() >= budget:
                    cut = "max_minutes"
                if cut:
                    break
            stats = EpochStats(epoch, losses, lr, updates, started, elapsed(), cut)
            rec = task.record(stats)
            history.append(rec)
            value = _metric(rec, cfg.select) if cfg.select else float(epoch)
            if best_value is None or value > best_value:
                best_value, best_epoch = value, epoch
                if cfg.select:
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            stopped = cut or "epochs"
            done = cut is not None
            if cfg.progress:
                line = (task.summary or _summary)(rec)
                best = f" | best {select_name} {best_value:.4f} (epoch {best_epoch})" if cfg.select else ""
                bar.console.print(f"epoch {epoch + 1}/{cfg.epochs}: {line}{best}")
            if cfg.checkpoint:
                save_checkpoint(
                    {
                        "format": CHECKPOINT_FORMAT,
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": plain(sched.state_dict()),
                        "epoch": epoch,
                        "updates": updates,
                        "elapsed_s": elapsed(),
                        "best_metric": select_name,
                        "best_value": best_value,
                        "best_epoch": best_epoch,
                        "best_model": best_state,
                        "history": plain(history),
                        "stopped": stopped,
                        "rng": rng_state(),
                        "task": plain(task.get_state()) if task.get_state is not None else {},
                    },
                    cfg.checkpoint,
                )
            if task.on_epoch is not None:
                task.on_epoch(history)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return LoopResult(history, best_epoch, best_value, updates, elapsed(), stopped)
