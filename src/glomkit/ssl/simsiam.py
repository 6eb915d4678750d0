"""SimSiam (Chen & He 2021) on a timm backbone with lightly's heads and loss.

Two augmented views, projector, predictor, stop-gradient on the target branch, symmetric
negative cosine similarity, trained on the shared loop (``glomkit.train.loop``: SGD, cosine
learning rate to 0, no warmup, checkpoint ``<out>.ckpt`` after every epoch). The saved encoder is
the backbone alone:
``{"backbone": timm_name, "state_dict": ..., "meta": {...}}`` (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from lightly.loss import NegativeCosineSimilarity
from torch import nn
from torchvision.transforms import v2

from glomkit import GlomkitError
from glomkit.io.atomic import atomic_path
from glomkit.models.metadata import ENCODER_TASK, IMAGENET_MEAN, IMAGENET_STD
from glomkit.nets.simsiam import SimSiam, make_backbone
from glomkit.ssl.images import load_resized

MEAN, STD = IMAGENET_MEAN, IMAGENET_STD  # the one normalisation (models.metadata)


@dataclass
class SimSiamConfig:
    images: list[str]
    out: str
    sources: list[dict] = field(default_factory=list)  # {"path", "weight", "mpp"} (glomkit.ssl.pool)
    backbone: str = "resnet18"
    size: int = 224
    epochs: int = 100
    batch_size: int = 64
    base_lr: float = 0.05  # lr = base_lr * batch / 256 (published)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    proj_dim: int = 2048
    pred_hidden: int = 512
    seed: int = 0
    max_minutes: float = 0.0  # 0: no limit
    max_steps: int = 0  # 0: no limit (tests)
    resume: bool = False
    knn_data: str = ""
    device: str = "auto"
    stain_jitter: float = 0.0  # HED jitter sigma (0: off); bias is a quarter of it
    color_jitter: float = 0.4  # brightness/contrast/saturation strength, hue a quarter (0: off, no grey)
    crop_scale: float = 0.2  # smallest area share of the random resized crop
    extra: dict = field(default_factory=dict)

    @property
    def lr(self) -> float:
        return self.base_lr * self.batch_size / 256


def simsiam_loss(z0: torch.Tensor, p0: torch.Tensor, z1: torch.Tensor, p1: torch.Tensor) -> torch.Tensor:
    """Symmetric negative cosine similarity, 0.5 * (D(p0, z1) + D(p1, z0)); in [-1, 1]."""
    crit = NegativeCosineSimilarity()
    return 0.5 * (crit(p0, z1.detach()) + crit(p1, z0.detach()))


class HedJitter(nn.Module):
    """Stain jitter in HED space (Tellez et al. 2018) on one uint8 CHW image: each stain's optical
    density scaled by 1 +- ``sigma`` and shifted by +- ``sigma / 4`` (``glomkit.core.stain.hed_jitter``
    in torch); wide enough (sigma ~0.3) to move between PAS and H&E looks."""

    def __init__(self, sigma: float):
        super().__init__()
        from glomkit.core.stain import HED_FROM_RGB, RGB_FROM_HED

        self.sigma = float(sigma)
        self.hed_from_rgb = torch.from_numpy(HED_FROM_RGB)
        self.rgb_from_hed = torch.from_numpy(RGB_FROM_HED)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        od = -torch.log((img.float() + 1.0) / 256.0)
        hed = od.permute(1, 2, 0) @ self.hed_from_rgb
        scale = 1 + (torch.rand(3) * 2 - 1) * self.sigma
        bias = (torch.rand(3) * 2 - 1) * self.sigma / 4
        rgb = torch.exp(-((hed * scale + bias) @ self.rgb_from_hed)) * 256.0 - 1.0
        return rgb.clamp(0, 255).round().to(torch.uint8).permute(2, 0, 1)


def view_transform(
    size: int, stain_jitter: float = 0.0, color_jitter: float = 0.4, crop_scale: float = 0.2
) -> v2.Compose:
    """SimSiam augmentation on uint8 CHW tensors: (HED stain jitter), resized crop, flip, (colour
    jitter and grey), blur. ``color_jitter=0`` keeps each crop's brightness, contrast and colour
    (a sclerosed tuft's density is a signal, not a nuisance); the published recipe is 0.4."""
    cj = color_jitter
    colour = (
        [v2.RandomApply([v2.ColorJitter(cj, cj, cj, cj / 4)], p=0.8), v2.RandomGrayscale(p=0.2)]
        if cj > 0
        else []
    )
    return v2.Compose(
        ([v2.RandomApply([HedJitter(stain_jitter)], p=0.8)] if stain_jitter > 0 else [])
        + [
            v2.RandomResizedCrop(size, scale=(crop_scale, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
        ]
        + colour
        + [
            v2.RandomApply([v2.GaussianBlur(9, sigma=(0.1, 2.0))], p=0.5),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


def load_encoder(path: str | Path) -> tuple[nn.Module, dict]:
    """(timm backbone with the saved weights, meta) from an encoder file."""
    from glomkit.models.checkpoint import load_torch_file

    path = Path(path)
    blob = load_torch_file(path, "cpu", "SimSiam encoder", ("backbone", "state_dict"))
    try:
        net, _ = make_backbone(blob["backbone"])
        net.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError, OSError, EOFError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise GlomkitError(f"{path}: not a glomkit SimSiam encoder ({first})") from None
    return net, dict(blob.get("meta", {}))


@torch.no_grad()
def embed(backbone: nn.Module, images: np.ndarray, batch: int = 64, device: str = "cpu") -> np.ndarray:
    """N x D features of N x H x W x 3 uint8 images (ImageNet normalisation)."""
    backbone.eval().to(device)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).float() / 255
        x = ((x - mean) / std).to(device)
        out.append(backbone(x).flatten(1).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def knn_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int = 5
) -> float:
    """Balanced accuracy of cosine k-NN majority vote."""
    a = train_x / (np.linalg.norm(train_x, axis=1, keepdims=True) + 1e-8)
    b = test_x / (np.linalg.norm(test_x, axis=1, keepdims=True) + 1e-8)
    nn_idx = np.argsort(-b @ a.T, axis=1)[:, :k]
    classes = np.unique(train_y)
    votes = np.stack([(train_y[nn_idx] == c).sum(1) for c in classes], 1)
    pred = classes[votes.argmax(1)]
    recalls = [np.mean(pred[test_y == c] == c) for c in np.unique(test_y)]
    return float(np.mean(recalls))


def _knn_monitor(folder: str, size: int) -> Callable[[nn.Module, torch.device], float] | None:
    """k-NN balanced accuracy on a labelled folder (labels.csv image,label[,source_wsi]), slide-grouped halves."""
    import csv

    root = Path(folder)
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise GlomkitError(f"{csv_path}: k-NN monitor needs labels.csv (image,label)")
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "image" not in rows[0] or "label" not in rows[0]:
        raise GlomkitError(f"{csv_path}: needs columns image,label")
    groups = [r.get("source_wsi") or r["image"] for r in rows]
    uniq = sorted(set(groups))
    rng = np.random.default_rng(0)
    test_groups = set(rng.permutation(uniq)[: max(1, len(uniq) // 2)])
    is_test = np.array([g in test_groups for g in groups])
    imgs = load_resized([root / r["image"] for r in rows], size)
    y = np.array([r["label"] for r in rows])

    def run(backbone: nn.Module, device: torch.device) -> float:
        feats = embed(backbone, imgs, device=str(device))
        backbone.train()
        return knn_accuracy(feats[~is_test], y[~is_test], feats[is_test], y[is_test])

    return run


def pretrain_simsiam(
    config: SimSiamConfig, progress: Callable[[int, int, float], None] | None = None
) -> Path:
    """Train SimSiam on every image under ``config.images``; write the encoder file; return its path.

    ``progress(step, total_steps, loss)`` is called after every update.
    """
    from glomkit.train.loop import LoopConfig, Task, pick_device, seed_everything, train_loop

    seed_everything(config.seed)
    out = Path(config.out)
    ckpt = out.with_name(out.name + ".ckpt")
    device = pick_device(config.device)
    from glomkit.ssl.pool import PoolSource, build_pool

    sources = [PoolSource(str(d["path"]), float(d.get("weight", 1.0)), d.get("mpp")) for d in config.sources]
    sources += [PoolSource(str(p)) for p in config.images]
    pool = build_pool(sources, config.size)
    paths = range(len(pool))
    data = torch.from_numpy(pool.images).permute(0, 3, 1, 2).contiguous()
    draw_p = torch.from_numpy(pool.sample_probabilities())
    backbone, feat_dim = make_backbone(config.backbone)
    model = SimSiam(backbone, feat_dim, config.proj_dim, config.pred_hidden).to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    batch = min(config.batch_size, len(paths))
    steps_per_epoch = max(1, len(paths) // batch)
    monitor = _knn_monitor(config.knn_data, min(config.size, 128)) if config.knn_data else None
    transform = view_transform(config.size, config.stain_jitter, config.color_jitter, config.crop_scale)
    t0 = time.monotonic()
    last_z: list[torch.Tensor] = []

    def batches(epoch: int):
        gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        draws = torch.multinomial(draw_p, steps_per_epoch * batch, replacement=True, generator=gen)
        for b in range(steps_per_epoch):
            x = data[draws[b * batch : (b + 1) * batch]]
            x0 = torch.stack([transform(im) for im in x]).to(device)  # the global torch RNG
            x1 = torch.stack([transform(im) for im in x]).to(device)
            yield x0, x1

    def loss(views):
        z0, p0 = model(views[0])
        z1, p1 = model(views[1])
        last_z[:] = [z0]
        return simsiam_loss(z0, p0, z1, p1)

    def record(stats) -> dict:
        rec = {
            "epoch": stats.epoch + 1,
            "loss": stats.loss,
            "seconds": round(time.monotonic() - stats.started, 1),
            "z_std": float(torch.nn.functional.normalize(last_z[0], dim=1).std(0).mean()),
        }
        if monitor is not None:
            rec["knn_bacc"] = monitor(model.backbone, device)
        return rec

    task = Task(model, opt, batches, loss, record, on_step=progress)
    loop = LoopConfig(
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        max_minutes=config.max_minutes or None,
        budget_schedule=False,  # the cosine is planned over the epochs; the budget only stops
        max_steps=config.max_steps or None,
        checkpoint=ckpt,
        resume=ckpt if config.resume and ckpt.is_file() else None,
        description="SimSiam",
        progress=False,  # the caller's ``progress`` shows it
    )
    res = train_loop(task, loop)
    history, step, stopped = res.history, res.updates, res.stopped
    meta = {k: v for k, v in asdict(config).items() if k not in ("extra",)}
    meta["source_share"] = [s.weight / sum(x.weight for x in sources) for s in sources]
    meta.update(
        {
            "n_images": len(paths),
            "pool": pool.description,
            "epochs_done": len(history),
            "steps_done": step,
            "stopped": stopped,
            "lr": config.lr,
            "history": history,
            "device": str(device),
            "minutes": round((time.monotonic() - t0) / 60, 2),
        }
    )
    with atomic_path(out) as tmp:
        torch.save(
            {"backbone": config.backbone, "state_dict": model.backbone.cpu().state_dict(), "meta": meta}, tmp
        )
    return out


def export_encoder_onnx(encoder: str | Path, onnx_path: str | Path, size: int | None = None) -> Path:
    """Write the backbone of an encoder file as ONNX: input ``input`` (N, 3, H, W) normalised
    float32, output ``features`` (N, D) pooled; metadata task ``encoder`` with input size, mean,
    std and the pretraining record (sources, epochs, seed). Runs on ONNX Runtime without torch
    (``glomkit.cluster.encoder.OnnxEncoder``)."""
    from glomkit.models.metadata import parse_pretraining

    net, meta = load_encoder(encoder)
    size = int(size or parse_pretraining(meta, encoder).size or 224)
    keep = (
        "backbone",
        "size",
        "epochs",
        "epochs_done",
        "steps_done",
        "stopped",
        "batch_size",
        "seed",
        "lr",
        "n_images",
        "pool",
        "source_share",
        "stain_jitter",
        "color_jitter",
        "crop_scale",
        "minutes",
        "device",
    )
    record = {k: meta[k] for k in keep if k in meta}
    if meta.get("history"):
        record["last_epoch"] = meta["history"][-1]
    from glomkit.models.export import export_onnx

    out = export_onnx(
        net.eval(),
        torch.zeros(1, 3, size, size),
        onnx_path,
        {
            "task": ENCODER_TASK,
            "input_size": [size, size],
            "input": {"mean": list(MEAN), "std": list(STD)},
            "feature_dim": int(net.num_features),
            "pretraining": record,
        },
        ["features"],
    )
    return out


def encoder_from_checkpoint(ckpt: str | Path, out: str | Path, backbone: str, size: int) -> Path:
    """The backbone of a running or stopped pretraining's checkpoint (``<out>.ckpt``) as an encoder
    file (a look at a run in progress; its meta records only the epochs done)."""
    from glomkit.models.checkpoint import load_torch_file

    ckpt = Path(ckpt)
    blob = load_torch_file(ckpt, "cpu", "SimSiam checkpoint", ("model", "history"))
    state = {k[len("backbone.") :]: v for k, v in blob["model"].items() if k.startswith("backbone.")}
    if not state:
        raise GlomkitError(f"{ckpt}: no backbone weights in this checkpoint")
    history = list(blob.get("history") or [])
    meta = {
        "backbone": backbone,
        "size": size,
        "epochs_done": len(history),
        "steps_done": int(blob.get("updates", 0)),
        "history": history,
        "from_checkpoint": str(ckpt),
    }
    out = Path(out)
    with atomic_path(out) as tmp:
        torch.save({"backbone": backbone, "state_dict": state, "meta": meta}, tmp)
    return out
