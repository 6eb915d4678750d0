"""Train the glomerulus classifier: seeded, slide-grouped validation, resumable, exported to ONNX.

``train_classifier(config)`` is the whole run (what ``glomkit train classifier`` calls).
``fit_classifier`` and ``evaluate_model`` are the in-process pieces a study runner uses:
they return the per-epoch time and validation (and optionally test) metrics.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from glomkit import GlomkitError
from glomkit.classify.data import (
    LabelledImage,
    PatchDataset,
    check_labels,
    graded,
    load_items,
    split_by_slide,
)
from glomkit.classify.losses import FocalLoss, class_weights
from glomkit.classify.warm_start import init_from_model, is_model_init, recalibrate
from glomkit.core.schemes import get_scheme
from glomkit.eval.classification import classification_report, ggs_report
from glomkit.models.runtime import IMAGENET_MEAN, IMAGENET_STD
from glomkit.nets.classifier import GlomClassifier, WithSoftmax, build_classifier, load_encoder
from glomkit.train.loop import LoopConfig, Schedule, Task, pick_device, plain, seed_everything, train_loop

# the schedule: warmup over the first 5 % of updates from 10 % of lr, then cosine down to 1 % of lr
WARMUP_FRACTION = 0.05


@dataclass
class ClassifierConfig:
    """Everything a training run depends on; stored in the checkpoint and the model metadata."""

    data: str = ""
    out: str = "classifier.onnx"
    scheme: str = "coarse_3"
    label_map: dict[str, str] = field(default_factory=dict)
    backbone: str = "resnet10t"
    size: int = 128
    epochs: int = 20
    batch: int = 32
    lr: float | None = None  # default: 1e-3 (AdamW, fine-tuning) or 30 (SGD, linear probe)
    weight_decay: float = 1e-4
    focal_gamma: float = 2.5
    aug: str = "default"  # glomkit.classify.data.AUGMENTATIONS
    stain_norm: str = "none"  # glomkit.core.stain.STAIN_NORMS; written to the model's metadata
    seed: int = 0
    resume: bool = False
    max_minutes: float | None = None
    init: str | None = None  # SimSiam encoder file, a classifier .onnx, or "bundled"
    linear_probe: bool = False
    test_fold: int = 0
    n_folds: int = 5
    split_seed: int = 0
    threads: int = 1
    device: str = "auto"
    eval_test_each_epoch: bool = False
    command: str = ""

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return 30.0 if self.linear_probe else 1e-3


def _make_net(config: ClassifierConfig, num_classes: int) -> tuple[GlomClassifier, dict]:
    net = build_classifier(config.backbone, num_classes)
    enc_meta: dict = {}
    if is_model_init(config.init):  # a classifier model file, e.g. the bundled one
        enc_meta = init_from_model(net, str(config.init), get_scheme(config.scheme), config.size)
    elif config.init:
        enc_meta = load_encoder(net, config.init)
    if config.linear_probe:
        if not config.init:
            raise GlomkitError(
                "--linear-probe needs --init ENCODER (a frozen random backbone learns nothing useful)"
            )
        for p in net.backbone.parameters():
            p.requires_grad_(False)
    return net, enc_meta


def _optimizer(net: GlomClassifier, config: ClassifierConfig) -> torch.optim.Optimizer:
    if config.linear_probe:
        return torch.optim.SGD(net.head.parameters(), lr=config.learning_rate, momentum=0.9, weight_decay=0.0)
    return torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


@torch.no_grad()
def predict_probs(
    net: torch.nn.Module, dataset: PatchDataset, batch: int = 64, device: torch.device | None = None
) -> np.ndarray:
    """Softmax probabilities (N, C) of ``net`` on a (non-augmented) dataset."""
    device = device or next(net.parameters()).device
    net.eval()
    out = []
    for x, _ in DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=0):
        out.append(torch.softmax(net(x.to(device)), dim=1).cpu().numpy())
    k = net.head.out_features if hasattr(net, "head") else 0
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.float32)


def eval_dataset(items: list[LabelledImage], names: list[str], config: ClassifierConfig) -> PatchDataset:
    """The graded ``items`` as an evaluation dataset: no augmentation, the model's stain normaliser."""
    return PatchDataset(
        graded(items, names),
        names,
        config.size,
        False,
        IMAGENET_MEAN,
        IMAGENET_STD,
        stain_norm=config.stain_norm,
    )


def evaluate_model(
    net: torch.nn.Module,
    items: list[LabelledImage],
    config: ClassifierConfig,
    device: torch.device | None = None,
) -> dict:
    """classification_report (+ ``ggs`` block: GGS vs not among glomeruli) of ``net`` on ``items``."""
    scheme = get_scheme(config.scheme)
    ds = eval_dataset(items, scheme.names, config)
    probs = predict_probs(net, ds, device=device)
    rep = classification_report(ds.labels, probs, scheme.names)
    rep["ggs"] = ggs_report(ds.labels, probs, scheme)
    return rep


def _checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt.pt")


def fit_classifier(
    train_items: list[LabelledImage],
    val_items: list[LabelledImage],
    config: ClassifierConfig,
    test_items: list[LabelledImage] | None = None,
    checkpoint: Path | None = None,
    progress: bool = True,
) -> tuple[GlomClassifier, list[dict]]:
    """Train on ``train_items``; keep the epoch with the best validation balanced accuracy.

    With no ``val_items`` the schedule is fixed and the last epoch is kept (what a
    cross-validation or a final all-slides run does: nothing held out is looked at).

    Returns (the best model, on CPU, eval mode; history: one dict per epoch with ``epoch``,
    ``seconds``, ``train_loss``, ``val`` = classification_report, and ``test`` when
    ``config.eval_test_each_epoch`` and ``test_items`` are given). With ``checkpoint``, the
    state is saved after each epoch and, with ``config.resume``, training continues from it.
    """
    scheme = get_scheme(config.scheme)
    check_labels(
        list(train_items) + list(val_items) + list(test_items or []), scheme.names, config.data or "data"
    )
    torch.set_num_threads(max(1, config.threads))
    seed_everything(config.seed)
    device = pick_device(config.device)
    net, init_meta = _make_net(config, len(scheme))
    net.to(device)
    train_ds = PatchDataset(
        train_items,
        scheme.names,
        config.size,
        True,
        IMAGENET_MEAN,
        IMAGENET_STD,
        seed=config.seed,
        aug=config.aug,
        stain_norm=config.stain_norm,
    )
    if init_meta.get("recovered_batchnorms"):
        recalibrate(net, init_meta["recovered_batchnorms"], train_ds)
    val_items = graded(val_items, scheme.names)
    val_ds = eval_dataset(val_items, scheme.names, config)
    test_ds = (
        eval_dataset(test_items, scheme.names, config) if test_items and config.eval_test_each_epoch else None
    )
    k = len(scheme)
    set_valued = any(lab == k for lab in train_ds.labels)  # ungraded glomeruli (ANY_GLOMERULUS)
    weights = class_weights(train_ds.labels, k + 1 if set_valued else k)
    group = scheme.glomerulus_indices if set_valued else ()
    loss_fn = FocalLoss(config.focal_gamma, weights, group).to(device)
    opt = _optimizer(net, config)
    steps_per_epoch = max(1, len(train_ds) // config.batch)

    def train_mode() -> None:
        net.train()
        if config.linear_probe:
            net.backbone.eval()  # frozen: keep its BatchNorm statistics

    def batches(epoch: int):
        train_ds.set_epoch(epoch)
        gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        yield from DataLoader(
            train_ds, batch_size=config.batch, shuffle=True, drop_last=True, generator=gen, num_workers=0
        )

    def loss(batch):
        x, y = batch
        return loss_fn(net(x.to(device)), y.to(device))

    def record(stats) -> dict:
        val = (
            classification_report(val_ds.labels, predict_probs(net, val_ds, device=device), scheme.names)
            if len(val_ds)
            else None
        )
        rec = {"epoch": stats.epoch, "seconds": 0.0, "train_loss": stats.loss, "val": val}
        if test_ds is not None:
            rec["test"] = classification_report(
                test_ds.labels, predict_probs(net, test_ds, device=device), scheme.names
            )
        rec["seconds"] = time.monotonic() - stats.started
        if stats.stopped == "max_minutes":
            print(
                f"stopping: --max-minutes {config.max_minutes} passed in epoch {stats.epoch}",
                file=sys.stderr,
            )
        return rec

    def summary(rec: dict) -> str:
        val = rec["val"]
        bacc = "" if val is None else f", val balanced accuracy {val['balanced_accuracy'] or 0.0:.3f}"
        return f"train loss {rec['train_loss']:.3f}{bacc}"

    total = config.epochs * steps_per_epoch
    loop = LoopConfig(
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        schedule=Schedule(warmup=int(WARMUP_FRACTION * total), warmup_start=0.1, prefix=True, floor=0.01),
        # no validation: fixed schedule, the last epoch is kept
        select="val.balanced_accuracy" if len(val_ds) else None,
        max_minutes=config.max_minutes,
        checkpoint=checkpoint,
        resume=checkpoint if checkpoint is not None and config.resume and checkpoint.is_file() else None,
        description="train classifier",
        progress=progress,
    )
    task = Task(net, opt, batches, loss, record, train_mode=train_mode, summary=summary)
    history = train_loop(task, loop).history
    return net.cpu().eval(), history


def export_classifier(
    net: GlomClassifier, path: str | Path, config: ClassifierConfig, extra_meta: dict
) -> Path:
    """Write ``net`` as a glomkit ONNX classifier (output ``probs``) with its metadata."""
    from glomkit.models.export import export_onnx

    scheme = get_scheme(config.scheme)
    meta = {
        "task": "classifier",
        "architecture": "timm-backbone+avgpool+linear",
        "backbone": config.backbone,
        "input_size": [config.size, config.size],
        "input": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "stain_norm": config.stain_norm,
        "classes": scheme.to_dict(),
        **extra_meta,
    }
    example = torch.zeros(1, 3, config.size, config.size)
    return export_onnx(WithSoftmax(net.cpu().eval()), example, path, meta, output_names=["probs"])


def train_classifier(config: ClassifierConfig, progress: bool = True) -> Path:
    """Load ``config.data``, split by slide, train, evaluate on held-out test slides, export ONNX."""
    out = Path(config.out)
    scheme = get_scheme(config.scheme)
    items = load_items(config.data, config.label_map)
    check_labels(items, scheme.names, config.data)
    tr, va, te = split_by_slide(items, config.test_fold, config.n_folds, config.split_seed)
    train_items = [items[i] for i in tr]
    val_items = [items[i] for i in va]
    test_items = [items[i] for i in te]
    if not train_items or not val_items:
        raise GlomkitError(f"{config.data}: too few slides for a train/validation/test split by slide")
    t0 = time.monotonic()
    net, history = fit_classifier(
        train_items, val_items, config, test_items, checkpoint=_checkpoint_path(out), progress=progress
    )
    best = max(history, key=lambda h: h["val"]["balanced_accuracy"] or 0.0) if history else None
    test = evaluate_model(net, test_items, config) if test_items else None
    val = evaluate_model(net, val_items, config)
    meta = {
        "training": {
            "command": config.command,
            "seed": config.seed,
            "data": str(config.data),
            "config": plain({k: v for k, v in asdict(config).items() if k not in ("command",)}),
            "splits": {
                "by": "slide",
                "test_fold": config.test_fold,
                "n_folds": config.n_folds,
                "split_seed": config.split_seed,
                "n": {"train": len(train_items), "val": len(val_items), "test": len(test_items)},
                "val_slides": sorted({it.slide for it in val_items}),
                "test_slides": sorted({it.slide for it in test_items}),
            },
            "epochs_run": len(history),
            "best_epoch": None if best is None else best["epoch"],
            "minutes": round((time.monotonic() - t0) / 60, 2),
            "epoch_seconds": [round(h["seconds"], 1) for h in history],
        },
        "metrics": plain({"validation": val, "test": test}),
    }
    return export_classifier(net, out, config, meta)
