"""The detector trainers on the shared loop (``detect.train.fit_detector``): schedule, seeding,
records, checkpoints, resume."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from glomkit import GlomkitError
from glomkit.detect.train import LR_FLOOR, WARMUP_STEPS, checkpoint_path, fit_detector, start_run

torch = pytest.importorskip("torch")


def loop_config(out: str, **kw):
    """A detector training config for a tiny loop run (the loop reads only the shared fields)."""
    from glomkit.kinds.circlenet import DetectorTrainConfig

    base = dict(epochs=3, batch=4, fields=8, seed=7, lr=0.05, weight_decay=0.0, threads=1)
    return DetectorTrainConfig(data="unused", out=out, **{**base, **kw})


def test_lr_warms_up_then_follows_the_cosine_to_two_percent():
    from glomkit.train.loop import Schedule, make_scheduler

    total = 1000
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, Schedule(WARMUP_STEPS, 1 / WARMUP_STEPS, floor=LR_FLOOR), total)

    def lr(t):
        sched.step_update(t)
        return opt.param_groups[0]["lr"]

    assert lr(0) == pytest.approx(1 / WARMUP_STEPS)
    assert lr(WARMUP_STEPS - 1) == pytest.approx(1 - (1 - 1 / WARMUP_STEPS) / WARMUP_STEPS)
    lrs = [lr(s) for s in range(WARMUP_STEPS, total)]
    assert lrs[0] == pytest.approx(1.0, abs=0.01)
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))  # monotone after warmup
    assert lr(total) == pytest.approx(LR_FLOOR)


def _train(cfg, seen: list | None = None, interrupt_at: int | None = None, source=None):
    """A linear model fit to y = 2x by the loop; validation score 1 / (1 + MSE) on fixed points.

    ``interrupt_at``: the step call that raises (a run killed part way). ``source``: its
    ``train.hard_negatives`` gets one point per epoch, as hard-negative mining would add.
    """
    _, t_start = start_run(cfg)
    model = torch.nn.Linear(1, 1)
    xv = torch.linspace(-1, 1, 5)[:, None]

    calls = []

    def step(rng):
        calls.append(1)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        x = torch.from_numpy(rng.uniform(-1, 1, (cfg.batch, 1)).astype(np.float32))
        if seen is not None:
            seen.append(float(x[0, 0]))
        return torch.nn.functional.mse_loss(model(x), 2 * x), "lin"

    def validate(m, epoch):
        if source is not None:
            source.train.hard_negatives.append((epoch, float(m.weight), float(m.bias)))
        with torch.no_grad():
            return {"val_score": 1.0 / (1.0 + float(torch.nn.functional.mse_loss(m(xv), 2 * xv)))}

    out = fit_detector(cfg, model, step, validate, "val_score", t_start, keep_step_losses=True, source=source)
    return out, model, checkpoint_path(cfg)


def test_loop_records_checkpoints_and_returns_the_best_epoch(tmp_path):
    cfg = loop_config(out=str(tmp_path / "m.onnx"))
    seen: list[float] = []
    (history, best_epoch), model, ckpt = _train(cfg, seen)
    assert [list(r) for r in history] == [["epoch", "steps", "loss", "losses", "val_score", "elapsed_s"]] * 3
    assert [r["steps"] for r in history] == [2, 2, 2] and all(len(r["losses"]) == 2 for r in history)
    assert best_epoch == max(history, key=lambda r: r["val_score"])["epoch"]
    # each epoch's batches come from default_rng([seed, epoch])
    assert seen[0] == pytest.approx(np.random.default_rng([7, 0]).uniform(-1, 1), abs=1e-6)
    assert seen[2] == pytest.approx(np.random.default_rng([7, 1]).uniform(-1, 1), abs=1e-6)
    ck = torch.load(ckpt, weights_only=True)
    assert ckpt == tmp_path / "m.onnx.ckpt.pt"
    assert ck["epoch"] == 2 and ck["best_metric"] == "val_score"
    assert ck["best_value"] == max(r["val_score"] for r in history)
    # the model holds the best epoch's weights, on the CPU, in eval mode
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck["best_model"][k])
    assert not list(tmp_path.glob("*.part*"))  # atomic save leaves no temporaries


def test_a_seeded_run_repeats_and_resuming_equals_running_through(tmp_path):
    full, _, _ = _train(loop_config(out=str(tmp_path / "a.onnx")))
    again, _, _ = _train(loop_config(out=str(tmp_path / "b.onnx")))
    strip = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in full[0]]
    assert strip == [{k: v for k, v in r.items() if k != "elapsed_s"} for r in again[0]]

    first = loop_config(out=str(tmp_path / "c.onnx"))
    with pytest.raises(KeyboardInterrupt):
        _train(first, interrupt_at=4)  # killed in epoch 1: the checkpoint holds epoch 0
    ck_path = tmp_path / "c.onnx.ckpt.pt"
    assert torch.load(ck_path, weights_only=True)["epoch"] == 0
    (history, _), _, _ = _train(replace(first, out=str(tmp_path / "d.onnx"), resume=str(ck_path)))
    # same seeds per epoch, same LR schedule, restored optimizer: the resumed run is the same run
    assert [{k: v for k, v in r.items() if k != "elapsed_s"} for r in history] == strip


def test_missing_checkpoint_is_an_error_and_a_finished_run_resumes_to_its_best(tmp_path):
    with pytest.raises(GlomkitError, match="checkpoint not found"):
        _train(loop_config(out=str(tmp_path / "m.onnx"), resume=str(tmp_path / "none.pt")))
    (history, best_epoch), _, _ = _train(loop_config(out=str(tmp_path / "m.onnx"), epochs=2))
    resumed = loop_config(out=str(tmp_path / "n.onnx"), epochs=2, resume=str(tmp_path / "m.onnx.ckpt.pt"))
    (again, again_best), model, _ = _train(resumed)  # nothing left to run: the stored best comes back
    assert again == history and again_best == best_epoch and not model.training


def test_mined_hard_negatives_survive_a_resume(tmp_path):
    from types import SimpleNamespace

    def source():
        return SimpleNamespace(train=SimpleNamespace(hard_negatives=[]))

    full = source()
    _train(loop_config(out=str(tmp_path / "a.onnx")), source=full)
    assert [k for k, _, _ in full.train.hard_negatives] == [0, 1, 2]
    first = loop_config(out=str(tmp_path / "b.onnx"))
    with pytest.raises(KeyboardInterrupt):
        _train(first, interrupt_at=4, source=source())
    again = source()
    _train(
        replace(first, out=str(tmp_path / "c.onnx"), resume=str(tmp_path / "b.onnx.ckpt.pt")), source=again
    )
    assert again.train.hard_negatives == full.train.hard_negatives
