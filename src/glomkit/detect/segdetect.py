"""Segmentation as a detector (after GlomeruLearn): a tile segmenter whose mask becomes circles.

A U-Net or SegNet (``glomkit.segment.registry``, timm encoder, ``pretrained=False``) labels every
pixel of a tile glomerulus / background; :func:`decode_components` turns the probability map
into circles: connected components of the thresholded map (optionally split where glomeruli
touch, by a distance-transform watershed), one circle per component (minimum enclosing circle
or equal-area circle), score = mean probability inside the component.

Training uses the same composed fields as the CircleNet detector (``glomkit.detect.data.
ComposedSource``: same slide split, same training and validation field seeds), with the union
of the pasted glomerulus masks as target. The model file is a detector (task ``detector``)
whose metadata says how to decode it: ``decode.method = "components"``. The inference part of
this module (decoding, scoring, ONNX Runtime probability maps) imports no torch; model files are
evaluated by ``glomkit.detect.evaluate.evaluate_detector_file``, which dispatches on that method.
It trains on the shared loop through ``glomkit.detect.train.fit_detector``, as the CircleNet trainer does.

>>> train_segdetector(SegDetectorTrainConfig(data="../shared/data/bueno_pas", out="unet.onnx"))  # doctest: +SKIP
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glomkit import GlomkitError
from glomkit.core.geometry import DEFAULT_NMS_IOU
from glomkit.infer.kinds.components import KIND, score_fields
from glomkit.models.metadata import IMAGENET_MEAN, IMAGENET_STD

CIRCLE_KINDS = ("enclosing", "area")


# -- training (torch) ------------------------------------------------------------------------
@dataclass
class SegDetectorTrainConfig:
    """Everything a segmentation-detector training run depends on (stored in its metadata)."""

    data: str
    out: str
    arch: str = "unet"
    encoder: str = "resnet10t"
    epochs: int = 30
    batch: int = 8
    seed: int = 0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    fields: int = 256
    field_size: int = 160
    val_fields: int = 64
    val_size: int = 256
    mpp: float = 4.0
    input_size: int = 512
    max_minutes: float | None = None
    resume: str | None = None
    threads: int | None = None
    synthetic: bool = True
    pool: int = 48
    test_fold: int = 0
    checkpoint: str | None = None
    threshold: float = 0.5
    min_diameter_um: float = 40.0
    data_mpp: float | list[float] | None = None  # µm/px of user images that lack it (one, or one per source)
    command: str = field(default_factory=lambda: " ".join(shlex.quote(a) for a in sys.argv))


def probability_module(model):
    """``model`` (1-logit segmenter) wrapped so its output is the sigmoid probability (N,1,H,W)."""
    import torch

    class Probability(torch.nn.Module):
        def __init__(self, m) -> None:
            super().__init__()
            self.model = m

        def forward(self, x):
            return torch.sigmoid(self.model(x))

    return Probability(model)


def _normalise(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32) / 255.0
    x = (x - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def predict_probability_torch(model, images: list[np.ndarray], batch: int = 8) -> list[np.ndarray]:
    """Probability maps (H,W) of a torch segmenter (1-logit output) on same-size uint8 RGB images."""
    import torch

    dev = next(model.parameters()).device
    model.eval()
    out: list[np.ndarray] = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(_normalise(np.stack(images[i : i + batch]))).to(dev)
            out.extend(torch.sigmoid(model(x))[:, 0].float().cpu().numpy())
    return out


def choose_decode(probs: list[np.ndarray], fields_, base: dict[str, Any]) -> tuple[dict[str, Any], list]:
    """The circle kind and touching split with the best validation AP; returns (decode, trials)."""
    trials = []
    for circle in CIRCLE_KINDS:
        for split in (False, True):
            dec = {**base, "circle": circle, "split_touching": split}
            m = score_fields(probs, fields_, dec)
            trials.append({"circle": circle, "split_touching": split, "AP": m["AP"], "AP50": m["AP50"]})
    best = max(trials, key=lambda t: (t["AP"], t["AP50"]))
    return {**base, "circle": best["circle"], "split_touching": best["split_touching"]}, trials


def _source(cfg: SegDetectorTrainConfig):
    from glomkit.detect.data import load_detection_source

    return load_detection_source(cfg)  # composed bueno fields, or annotated images (outlines as masks)


def train_from_request(req) -> Path:
    """``glomkit train detector --arch unet|segnet`` (a ``glomkit.infer.kinds.TrainRequest``)."""
    if len(req.sources) > 1:
        raise GlomkitError(f"--arch {req.arch}: one --data source only")
    return train_segdetector(
        SegDetectorTrainConfig(
            arch=req.arch,
            encoder=req.backbone or "resnet10t",
            data=req.sources[0],
            data_mpp=req.data_mpp,
            **req.options,
        )
    )


def train_segdetector(config: SegDetectorTrainConfig | dict[str, Any], source: Any = None) -> Path:
    """Train, pick the best epoch by validation mIoU, choose the decode on validation AP, export ONNX.

    ``source`` (default: the composed bueno fields of ``config.data``, as the CircleNet detector's)
    is anything with ``sample(rng) -> Field`` (with a mask), ``val_fields``, ``description`` and
    ``val_description``.
    """
    import torch

    from glomkit.detect.train import fit_detector, start_run
    from glomkit.segment.registry import create_segmenter
    from glomkit.segment.train import dice_bce_loss

    cfg = config if isinstance(config, SegDetectorTrainConfig) else SegDetectorTrainConfig(**config)
    if cfg.arch not in KIND.architectures:
        raise GlomkitError(
            f"{cfg.out}: --arch {cfg.arch!r} is not a segmentation detector ({', '.join(KIND.architectures)})"
        )
    if cfg.field_size % 32 or cfg.val_size % 32:
        raise GlomkitError(f"{cfg.out}: field sizes must be multiples of 32")
    device, t_start = start_run(cfg)
    source = source if source is not None else _source(cfg)
    model = create_segmenter(cfg.arch, cfg.encoder).to(device)
    base_decode = {
        "threshold": cfg.threshold,
        "min_diameter_px": cfg.min_diameter_um / cfg.mpp,
        "circle": "enclosing",
        "split_touching": False,
    }

    def step(rng: np.random.Generator):
        fs = [source.sample(rng) for _ in range(cfg.batch)]
        x = torch.from_numpy(_normalise(np.stack([f.image for f in fs]))).to(device)
        y = torch.from_numpy(np.stack([f.mask for f in fs]).astype(np.float32)[:, None]).to(device)
        return dice_bce_loss(model(x), y), ""

    def validate(m, epoch: int) -> dict[str, float]:
        probs = predict_probability_torch(m, [f.image for f in source.val_fields])
        val = score_fields(probs, source.val_fields, base_decode)
        return {
            "val_mIoU": val["mIoU"],
            "val_pixel_accuracy": val["pixel_accuracy"],
            "val_IoU_glomerulus": val["IoU_glomerulus"],
            "val_AP": val["AP"],
            "val_AP50": val["AP50"],
        }

    history, best_epoch = fit_detector(cfg, model, step, validate, "val_mIoU", t_start, keep_step_losses=True)
    probs = predict_probability_torch(model, [f.image for f in source.val_fields])
    decode, trials = choose_decode(probs, source.val_fields, base_decode)
    val = score_fields(probs, source.val_fields, decode)
    metrics = {
        "validation": {k: round(v, 4) for k, v in val.items()},
        "best_epoch": best_epoch,
        "decode_trials": trials,
        "measured_on": source.val_description,
    }
    out = Path(cfg.out)
    export_segdetector(model, out, cfg, decode, metrics, history, source.description)
    return out


def segdetector_metadata(
    cfg: SegDetectorTrainConfig, decode: dict[str, Any], metrics: dict, history: list, data_desc: dict
) -> dict[str, Any]:
    """The ``glomkit`` metadata block of a segmentation-detector model file."""
    return {
        "task": "detector",
        "architecture": cfg.arch,
        "encoder": cfg.encoder,
        "input_size": [cfg.input_size, cfg.input_size],
        "mpp": cfg.mpp,
        "stride": 1,
        "input": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
        "decode": {
            "method": "components",
            "threshold": float(decode["threshold"]),
            "min_diameter_um": float(cfg.min_diameter_um),
            "circle": decode["circle"],
            "split_touching": bool(decode["split_touching"]),
            "score_threshold": 0.5,
            "nms_iou": DEFAULT_NMS_IOU,
        },
        "max_radius_um": 150.0,
        "circle_definition": "minimum enclosing circle of the glomerulus outline",
        "training": {
            **{k: v for k, v in asdict(cfg).items() if k not in ("resume",)},
            "data": data_desc,
            "history": [{k: v for k, v in r.items() if k != "losses"} for r in history],
        },
        "metrics": metrics,
        "licence": "CC BY-NC-SA 4.0 (trained on bueno_pas crops)",
    }


def export_segdetector(
    model,
    out: str | Path,
    cfg: SegDetectorTrainConfig,
    decode: dict[str, Any],
    metrics: dict,
    history: list,
    data_desc: dict,
) -> Path:
    """Export a torch segmenter as a detector model file (output ``probability`` (N,1,H,W))."""
    import torch

    from glomkit.models.export import export_onnx

    return export_onnx(
        probability_module(model.cpu().eval()),
        torch.zeros(1, 3, 64, 64),
        out,
        segdetector_metadata(cfg, decode, metrics, history, data_desc),
        output_names=["probability"],
    )
