"""Segmentation as a detector: a tile segmenter's probability map -> connected components -> circles.

A component is one 8-connected region of the thresholded map (optionally split where glomeruli
touch, by a distance-transform watershed), its circle the minimum enclosing circle or the
equal-area circle, its score the mean probability inside (after GlomeruLearn). The model files
say ``decode.method = "components"``; their own decode settings are :class:`ComponentDecode`.

Training (torch, imported inside the functions that need it): a U-Net or SegNet of
:mod:`glomkit.nets` (timm encoder, ``pretrained=False``) labels every pixel of a tile; it trains on
the same fields as the CircleNet detector (:mod:`glomkit.detect.data`), with the union of the
glomerulus masks as target, on the shared loop (:func:`glomkit.detect.train.fit_detector`); the
best epoch is chosen by validation mIoU and the decode (circle, touching split) by validation AP.

>>> train_segdetector(SegDetectorTrainConfig(data="../shared/data/bueno_pas", out="unet.onnx"))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from glomkit import GlomkitError
from glomkit.core.geometry import DEFAULT_NMS_IOU
from glomkit.core.tta import flip_tta
from glomkit.kinds import EVAL_SCORE_THRESHOLD, DetectorKind, DetectorTrainSettings, TrainRequest
from glomkit.models.metadata import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from glomkit.models.metadata import DetectorMetadata
    from glomkit.slide.grid import Tile

CIRCLES = ("enclosing", "area")  # minimum enclosing circle, or centroid and equal-area radius


@dataclass(frozen=True)
class ComponentDecode:
    """A components detector's own ``decode`` settings (the metadata's defaults live here)."""

    threshold: float = 0.5  # probability threshold of a glomerulus pixel
    min_diameter_um: float = 40.0  # smaller components are dropped
    circle: str = "enclosing"  # one of CIRCLES
    split_touching: bool = False  # split touching glomeruli (distance-transform seeds)


def parse_decode(check: Any, dec: Mapping[str, Any]) -> ComponentDecode:
    """The typed :class:`ComponentDecode` of a model's ``decode`` block (``check``: the field checker)."""
    d = ComponentDecode()
    return ComponentDecode(
        threshold=check.number(dec, "decode.threshold", "threshold", d.threshold, 0.0, 1.0),
        min_diameter_um=check.number(
            dec, "decode.min_diameter_um", "min_diameter_um", d.min_diameter_um, 0.0, 1e5
        ),
        circle=check.choice(dec, "decode.circle", "circle", d.circle, CIRCLES),
        split_touching=check.boolean(dec, "decode.split_touching", "split_touching", d.split_touching),
    )


def _split_touching(comp: np.ndarray, min_sep_px: float) -> np.ndarray:
    """Labels of a 0/1 mask split where round objects touch (seeded geodesic growth).

    Seeds are maxima of the distance transform over a window of ``2 * min_sep_px`` lying at least
    ``min_sep_px / 2`` inside the mask; a component without such a seed keeps its own label. The
    seeds grow inside the mask one pixel per step (a cheap stand-in for a distance-transform
    watershed), so each pixel joins the seed geodesically nearest to it.
    """
    n_cc, cc = cv2.connectedComponents(comp, connectivity=8)
    dist = cv2.distanceTransform(comp, cv2.DIST_L2, 5)
    k = max(int(2 * min_sep_px) | 1, 3)
    peak = cv2.dilate(dist, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    seeds = ((dist >= peak) & (dist >= 0.5 * min_sep_px)).astype(np.uint8)
    n, markers = cv2.connectedComponents(seeds, connectivity=8)
    if n <= 2:  # one seed (or none): nothing to split
        return cc
    labels = markers.astype(np.float32)
    seeded = np.zeros(n_cc, bool)
    seeded[np.unique(cc[seeds > 0])] = True
    for lab in np.nonzero(~seeded[1:])[0] + 1:  # unseeded components are their own seed
        labels[cc == lab] = n
        n += 1
    inside = comp > 0
    cross = np.ones((3, 3), np.uint8)
    while True:
        todo = inside & (labels == 0)
        if not todo.any():
            break
        grown = cv2.dilate(labels, cross)
        take = todo & (grown > 0)
        if not take.any():
            break
        labels[take] = grown[take]
    return labels.astype(np.int32)


def decode_components(
    prob: np.ndarray,
    threshold: float = 0.5,
    min_diameter_px: float = 5.0,
    circle: str = "enclosing",
    split_touching: bool = False,
    score_threshold: float = 0.0,
    drop_edges: tuple[bool, bool, bool, bool] = (False, False, False, False),
) -> np.ndarray:
    """Circles (K,4) = x, y, r, score in input pixels for ONE probability map, best score first.

    ``prob`` (H,W) or (1,H,W) in [0,1]. Components are 8-connected regions of ``prob >=
    threshold`` with an equal-area diameter of at least ``min_diameter_px``. ``circle``:
    'enclosing' (minimum enclosing circle of the component's pixels, the ground-truth
    definition) or 'area' (centroid and equal-area radius). ``split_touching`` separates touching
    glomeruli by a watershed on the distance transform. ``drop_edges`` (left, top, right, bottom)
    drops components touching those image edges (cut by a tile edge). Coordinates are
    continuous: pixel (i, j) covers [j, j+1) x [i, i+1).
    """
    p = np.asarray(prob, np.float32).reshape(np.shape(prob)[-2:])
    fg = (p >= threshold).astype(np.uint8)
    if not fg.any():
        return np.zeros((0, 4))
    if split_touching:
        labels = _split_touching(fg, max(min_diameter_px, 2.0))
    else:
        labels = cv2.connectedComponents(fg, connectivity=8)[1]
    h, w = p.shape
    out = []
    min_area = math.pi * (min_diameter_px / 2.0) ** 2
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(1, int(labels.max()) + 2))
    for lab in range(1, int(labels.max()) + 1):
        idx = order[bounds[lab - 1] : bounds[lab]]
        if len(idx) == 0 or len(idx) < min_area:
            continue
        ys, xs = np.divmod(idx, w)
        left, top, right, bottom = drop_edges
        if (
            (left and xs.min() == 0)
            or (top and ys.min() == 0)
            or (right and xs.max() == w - 1)
            or (bottom and ys.max() == h - 1)
        ):
            continue
        score = float(p.ravel()[idx].mean())
        if score < score_threshold:
            continue
        if circle == "area":
            cx, cy, r = xs.mean() + 0.5, ys.mean() + 0.5, math.sqrt(len(idx) / math.pi)
        else:
            pts = np.stack([xs, ys], axis=1).astype(np.float32)
            (ex, ey), er = cv2.minEnclosingCircle(cv2.convexHull(pts))
            cx, cy, r = ex + 0.5, ey + 0.5, er + 0.5
        out.append((cx, cy, r, score))
    if not out:
        return np.zeros((0, 4))
    arr = np.asarray(out, np.float64)
    return arr[np.argsort(-arr[:, 3], kind="stable")]


def decode_settings(meta: DetectorMetadata) -> dict[str, Any]:
    """Keyword arguments of :func:`decode_components` from a model's typed metadata (px at its mpp)."""
    d = asdict(meta.decode)
    d["min_diameter_px"] = d.pop("min_diameter_um") / meta.mpp
    return d


def segmentation_counts(prob: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Pixel counts (tp, fp, fn, tn) of the thresholded ``prob`` against a 0/1 ``mask``."""
    pred = np.asarray(prob).reshape(mask.shape) >= threshold
    gt = mask.astype(bool)
    tp = int((pred & gt).sum())
    fp = int((pred & ~gt).sum())
    fn = int((~pred & gt).sum())
    return np.array([tp, fp, fn, pred.size - tp - fp - fn], np.int64)


def segmentation_metrics(counts: np.ndarray) -> dict[str, float]:
    """Mean IoU (glomerulus and background, pixels pooled over all fields), the glomerulus IoU and
    pixel accuracy from summed (tp, fp, fn, tn) counts."""
    tp, fp, fn, tn = (float(v) for v in counts)
    iou_fg = tp / max(tp + fp + fn, 1.0)
    iou_bg = tn / max(tn + fp + fn, 1.0)
    return {
        "mIoU": (iou_fg + iou_bg) / 2.0,
        "IoU_glomerulus": iou_fg,
        "IoU_background": iou_bg,
        "pixel_accuracy": (tp + tn) / max(tp + fp + fn + tn, 1.0),
    }


def score_fields(probs: list[np.ndarray], fields_, decode: dict[str, Any]) -> dict[str, float]:
    """Circle AP (COCO, circle IoU) and segmentation metrics of probability maps on fields with masks."""
    from glomkit.eval.detection import evaluate_circles

    counts = np.zeros(4, np.int64)
    preds = {}
    for i, (p, f) in enumerate(zip(probs, fields_, strict=True)):
        if f.mask is None:
            raise GlomkitError("segmentation metrics need fields with masks")
        counts += segmentation_counts(p, f.mask, decode.get("threshold", 0.5))
        preds[i] = decode_components(p, score_threshold=EVAL_SCORE_THRESHOLD, **decode)
    out = evaluate_circles({i: f.circles for i, f in enumerate(fields_)}, preds)
    out.update(segmentation_metrics(counts))
    return out


def predict_probability_onnx(model, images: list[np.ndarray], batch: int = 8, tta: bool = False):
    """Probability maps (H,W) of an ``OnnxModel`` segmentation detector on same-size uint8 RGB images."""
    out = []
    name = model.output_names[0]
    for i in range(0, len(images), batch):
        x = np.stack(images[i : i + batch])
        o = flip_tta(model.run_images, x) if tta else model.run_images(x)
        out.extend(o[name][:, 0])
    return out


def decode_tile(
    out: Mapping[str, np.ndarray], k: int, meta: Mapping[str, Any], thr: float, tile: Tile
) -> np.ndarray:
    """Circles (K,4) in tile px from image ``k`` of a batch's probability maps.

    Components touching an interior tile edge are dropped (cut; whole in a neighbouring tile),
    and so is the padding beyond a partial tile.
    """
    prob = out["probability"][k, 0, : tile.out_h, : tile.out_w]
    edges = (not tile.at_left, not tile.at_top, not tile.at_right, not tile.at_bottom)
    return decode_components(prob, score_threshold=thr, drop_edges=edges, **decode_settings(meta))


def _score(model, items: list[tuple[str, Any]], probs: list[np.ndarray]) -> dict[str, Any]:
    metrics = score_fields(probs, [f for _, f in items], decode_settings(model.info.typed))
    md = model.info.typed
    return {
        "decode": {"method": md.method, "score_threshold": md.score_threshold, **asdict(md.decode)},
        "metrics": metrics,
    }


# -- training (torch inside the functions) ---------------------------------------------------


@dataclass
class SegDetectorTrainConfig(DetectorTrainSettings):
    """Everything a segmentation-detector training run depends on: the shared settings and these."""

    arch: str = "unet"
    encoder: str = "resnet10t"
    threshold: float = 0.5
    min_diameter_um: float = 40.0


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
    for circle in CIRCLES:
        for split in (False, True):
            dec = {**base, "circle": circle, "split_touching": split}
            m = score_fields(probs, fields_, dec)
            trials.append({"circle": circle, "split_touching": split, "AP": m["AP"], "AP50": m["AP50"]})
    best = max(trials, key=lambda t: (t["AP"], t["AP50"]))
    return {**base, "circle": best["circle"], "split_touching": best["split_touching"]}, trials


def _source(cfg: SegDetectorTrainConfig):
    from glomkit.detect.data import load_detection_source

    return load_detection_source(cfg)  # composed bueno fields, or annotated images (outlines as masks)


def train_from_request(req: TrainRequest) -> Path:
    """``glomkit train detector --arch unet|segnet`` (a ``glomkit.kinds.TrainRequest``)."""
    if len(req.sources) > 1:
        raise GlomkitError(f"--arch {req.arch}: one --data source only")
    if req.extra.get("init"):
        raise GlomkitError(f"--init: a {req.arch} detector cannot start from a model file")
    if req.extra.get("edge_ignore"):
        raise GlomkitError(f"--edge-ignore: a {req.arch} detector does not support it (CircleNet only)")
    if req.extra.get("colour_aug", "default") != "default":
        raise GlomkitError(f"--colour-aug: a {req.arch} detector does not support it (CircleNet only)")
    return train_segdetector(
        SegDetectorTrainConfig(
            arch=req.arch,
            encoder=req.backbone or KIND.default_backbone,
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
    model = KIND.network(cfg.arch, cfg.encoder).to(device)
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
            "method": KIND.name,
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


def _network(arch: str, backbone: str):
    from glomkit.nets.segmenters import create_segmenter

    return create_segmenter(arch, backbone)


KIND = DetectorKind(
    name="components",
    outputs=("probability",),
    decode_tile=decode_tile,
    predict=lambda model, images, tta: predict_probability_onnx(model, images, tta=tta),
    score=_score,
    architectures=("unet", "segnet"),
    network=_network,
    train=train_from_request,
    default_stride=1,
    default_score_threshold=0.5,
    parse_decode=parse_decode,
    needs_masks=True,
    default_backbone="resnet10t",
)
