"""The one training loop (``glomkit.train.loop``): schedule, best epoch, atomic checkpoints, resume."""

from __future__ import annotations

from dataclasses import replace

import pytest

from glomkit import GlomkitError

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from glomkit.train.loop import (  # noqa: E402
    LoopConfig,
    Schedule,
    Task,
    load_checkpoint,
    make_scheduler,
    seed_everything,
    train_loop,
)


def _lrs(schedule: Schedule, total: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = make_scheduler(opt, schedule, total)
    out = []
    for t in range(total + 1):
        sched.step_update(t)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_schedule_is_warmup_then_cosine_to_the_floor():
    lrs = _lrs(Schedule(warmup=10, warmup_start=0.1, prefix=True, floor=0.01), 110)
    assert lrs[0] == pytest.approx(0.2) and lrs[10] == pytest.approx(2.0)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11], strict=True))  # warmup rises
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # then the cosine falls
    assert lrs[60] == pytest.approx(0.01 * 2 + 0.5 * (2 - 0.02))  # half way through the cosine
    assert lrs[-1] == pytest.approx(0.02)
    plain = _lrs(Schedule(), 100)  # no warmup: from lr straight down to 0
    assert plain[0] == pytest.approx(2.0) and plain[50] == pytest.approx(1.0) and plain[100] == 0.0


class Toy:
    """A linear model with dropout fit to y = 2x; batches drawn from the global torch RNG.

    ``scores``: the validation score of each epoch (the loop must keep the maximum);
    ``interrupt_at``: the loss call that raises (a run killed part way).
    """

    def __init__(self, scores=None, interrupt_at=None):
        seed_everything(3)
        self.model = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=0.05)
        self.scores, self.interrupt_at, self.calls = scores, interrupt_at, 0
        self.weights: dict[int, dict] = {}  # the weights at the end of each epoch

    def task(self) -> Task:
        def batches(epoch):
            while True:
                x = torch.rand(4, 1) * 2 - 1
                yield x, 2 * x

        def loss(batch):
            self.calls += 1
            if self.calls == self.interrupt_at:
                raise KeyboardInterrupt
            x, y = batch
            return torch.nn.functional.mse_loss(self.model(x), y)

        def record(stats):
            self.weights[stats.epoch] = {k: v.clone() for k, v in self.model.state_dict().items()}
            score = self.scores[stats.epoch] if self.scores else -stats.loss
            return {"epoch": stats.epoch, "loss": stats.loss, "lr": stats.lr, "val": {"score": score}}

        return Task(self.model, self.opt, batches, loss, record)


def _cfg(tmp_path, **kw) -> LoopConfig:
    base = dict(
        epochs=4,
        steps_per_epoch=3,
        schedule=Schedule(warmup=2, warmup_start=0.1),
        select="val.score",
        checkpoint=tmp_path / "run.ckpt.pt",
        progress=False,
    )
    return LoopConfig(**{**base, **kw})


def _same_state(a, b) -> bool:
    """Equal nested state (dicts, lists, tensors, numbers), tensors bit for bit."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def test_the_best_epoch_is_kept_and_loaded(tmp_path):
    toy = Toy(scores=[0.2, 0.9, 0.5, 0.9])  # a tie does not replace the earlier best
    res = train_loop(toy.task(), _cfg(tmp_path))
    assert res.best_epoch == 1 and res.best_value == 0.9 and res.best_record["epoch"] == 1
    assert [r["epoch"] for r in res.history] == [0, 1, 2, 3] and res.updates == 12
    assert res.stopped == "epochs" and not toy.model.training
    assert _same_state(toy.model.state_dict(), toy.weights[1])
    assert not _same_state(toy.weights[1], toy.weights[3])
    # no ``select``: the last epoch is kept
    toy = Toy(scores=[0.2, 0.9, 0.5, 0.1])
    res = train_loop(toy.task(), _cfg(tmp_path, select=None, checkpoint=None))
    assert res.best_epoch == 3 and _same_state(toy.model.state_dict(), toy.weights[3])


def test_the_checkpoint_is_atomic_and_complete(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, epochs=2)
    train_loop(Toy(scores=[0.5, 0.1]).task(), cfg)
    ck = torch.load(cfg.checkpoint, weights_only=True)  # plain data and tensors only
    assert ck["epoch"] == 1 and ck["updates"] == 6 and ck["best_epoch"] == 0 and ck["best_value"] == 0.5
    assert ck["best_metric"] == "val.score" and len(ck["history"]) == 2 and ck["stopped"] == "epochs"
    assert {"model", "optimizer", "scheduler", "best_model", "rng", "elapsed_s"} <= set(ck)
    assert not list(tmp_path.glob(".*part*"))  # no temporaries left behind
    # a save that fails part way leaves the previous checkpoint whole
    before = cfg.checkpoint.read_bytes()

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train_loop(Toy().task(), cfg)
    assert cfg.checkpoint.read_bytes() == before and not list(tmp_path.glob(".*part*"))


def test_resuming_an_interrupted_run_gives_the_uninterrupted_result(tmp_path):
    full = Toy(scores=[0.3, 0.1, 0.8, 0.4])
    ref = train_loop(full.task(), _cfg(tmp_path / "a"))
    ref_opt = full.opt.state_dict()

    first = Toy(scores=[0.3, 0.1, 0.8, 0.4], interrupt_at=8)  # killed in epoch 2 (0-based)
    cfg = _cfg(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        train_loop(first.task(), cfg)
    assert load_checkpoint(cfg.checkpoint)["epoch"] == 1
    again = Toy(scores=[0.3, 0.1, 0.8, 0.4])  # a fresh process: new model, optimizer, RNG
    torch.manual_seed(12345)
    res = train_loop(again.task(), replace(cfg, resume=cfg.checkpoint))
    assert res.history == ref.history  # same losses and learning rates, step by step
    assert res.best_epoch == ref.best_epoch == 2 and res.updates == ref.updates
    assert _same_state(again.model.state_dict(), full.model.state_dict())
    assert _same_state(again.opt.state_dict(), ref_opt)
    a = torch.load(tmp_path / "a" / "run.ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "run.ckpt.pt", weights_only=True)
    for k in ("model", "optimizer", "scheduler", "best_model", "rng", "history", "updates"):
        assert _same_state(a[k], b[k]), k  # the final checkpoints agree too
    # resuming a finished run trains nothing and returns its best
    done = Toy(scores=[0.3, 0.1, 0.8, 0.4])
    res = train_loop(done.task(), replace(cfg, resume=cfg.checkpoint))
    assert res.history == ref.history and done.calls == 0
    assert _same_state(done.model.state_dict(), full.weights[2])


def test_budgets_stop_the_run_and_the_schedule_follows_the_clock(tmp_path):
    toy = Toy()
    res = train_loop(toy.task(), _cfg(tmp_path, max_minutes=0.0))  # stops after the first update
    assert res.stopped == "max_minutes" and res.updates == 1 and len(res.history) == 1
    assert res.history[0]["lr"] == pytest.approx(0.0)  # the budget is spent: the cosine's end
    toy = Toy()
    res = train_loop(toy.task(), _cfg(tmp_path, max_steps=5))
    assert res.stopped == "max_steps" and res.updates == 5 and len(res.history) == 2
    # a resumed run whose step budget is spent runs nothing more
    res = train_loop(Toy().task(), _cfg(tmp_path, max_steps=5, resume=tmp_path / "run.ckpt.pt"))
    assert res.updates == 5 and len(res.history) == 2


def test_foreign_checkpoints_and_a_changed_selection_are_one_line_errors(tmp_path):
    old = tmp_path / "old.ckpt.pt"
    torch.save({"model": {}, "optimizer": {}, "epoch": 0, "best_ap50": 0.5}, old)
    with pytest.raises(GlomkitError, match="old.ckpt.pt: not a training checkpoint of this glomkit"):
        train_loop(Toy().task(), _cfg(tmp_path, resume=old))
    with pytest.raises(GlomkitError, match="checkpoint not found"):
        train_loop(Toy().task(), _cfg(tmp_path, resume=tmp_path / "none.pt"))
    cfg = _cfg(tmp_path, epochs=1)
    train_loop(Toy().task(), cfg)
    with pytest.raises(GlomkitError, match="picks its best epoch by 'val.score', not 'loss'"):
        train_loop(Toy().task(), replace(cfg, select="loss", resume=cfg.checkpoint))
