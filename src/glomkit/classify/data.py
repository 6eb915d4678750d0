"""Classifier datasets: a folder with ``labels.csv`` or one subfolder per class; augmentation.

(a) ``labels.csv`` with columns ``image, label`` and optional ``mask`` and ``slide``/``source_wsi``;
paths are relative to the folder (bueno_pas has exactly this form). (b) ``<folder>/<class>/*.png``.
A label map (e.g. ``{"GS": "sclerosed", "nonGS": "normal"}``) renames labels on load.
Every split is grouped by slide: crops of one slide are not independent.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from glomkit import GlomkitError
from glomkit.core.stain import hed_jitter, stain_normaliser
from glomkit.infer.classify import resize_patch
from glomkit.io.images import IMAGE_SUFFIXES, read_rgb


@dataclass(frozen=True)
class LabelledImage:
    """One training or test image: its file, class name and the slide it comes from."""

    image: Path
    label: str
    slide: str
    source: str = ""  # where it comes from (e.g. bueno, hubmap_glomerulus, synthetic); "" if not recorded


ANY_GLOMERULUS = "glomerulus"
"""A label meaning "a glomerulus of unknown grade" (real glomeruli not graded for sclerosis, e.g.
hubmap_pas). Trained with a set-valued target (the summed probability of the glomerulus classes,
:class:`glomkit.classify.losses.FocalLoss`), so it teaches glomerulus vs non-glomerular and says
nothing about the grade."""


def label_index(label: str, class_names: Sequence[str]) -> int:
    """Index of ``label`` in ``class_names``; ``len(class_names)`` for :data:`ANY_GLOMERULUS`."""
    names = list(class_names)
    if label in names:
        return names.index(label)
    if label == ANY_GLOMERULUS:
        return len(names)
    raise GlomkitError(f"label {label!r} is not a class ({', '.join(names)})")


def parse_label_map(text: str | None) -> dict[str, str]:
    """``"GS=sclerosed,nonGS=normal"`` -> ``{"GS": "sclerosed", "nonGS": "normal"}``."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise GlomkitError(f"--label-map {text}: expected OLD=NEW pairs separated by commas")
        old, new = (s.strip() for s in part.split("=", 1))
        out[old] = new
    return out


def load_items(folder: str | Path, label_map: dict[str, str] | None = None) -> list[LabelledImage]:
    """All labelled images of ``folder`` (labels.csv form, else class-subfolder form)."""
    folder = Path(folder)
    label_map = label_map or {}
    if not folder.is_dir():
        raise GlomkitError(f"{folder}: data folder not found")
    csv_path = folder / "labels.csv"
    items: list[LabelledImage] = []
    if csv_path.is_file():
        with csv_path.open(newline="") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or [])
            if not {"image", "label"} <= cols:
                raise GlomkitError(f"{csv_path}: needs columns 'image' and 'label' (has {sorted(cols)})")
            slide_col = "slide" if "slide" in cols else "source_wsi" if "source_wsi" in cols else None
            for row in reader:
                label = row["label"]
                items.append(
                    LabelledImage(
                        image=folder / row["image"],
                        label=label_map.get(label, label),
                        slide=row[slide_col] if slide_col else row["image"],
                        source=row.get("source") or "",
                    )
                )
    else:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            label = label_map.get(sub.name, sub.name)
            for p in sorted(sub.rglob("*")):
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    items.append(LabelledImage(image=p, label=label, slide=p.stem))
    if not items:
        raise GlomkitError(f"{folder}: no labelled images (expected labels.csv or one subfolder per class)")
    return items


def graded(items: Sequence[LabelledImage], class_names: Sequence[str]) -> list[LabelledImage]:
    """The items whose label is a class of the scheme (drops :data:`ANY_GLOMERULUS` items)."""
    names = set(class_names)
    return [it for it in items if it.label in names]


def check_labels(items: Sequence[LabelledImage], class_names: Sequence[str], where: str | Path) -> None:
    """Raise if a label is not a class of the scheme (nor :data:`ANY_GLOMERULUS`); suggests --label-map."""
    unknown = sorted({it.label for it in items} - set(class_names) - {ANY_GLOMERULUS})
    if unknown:
        raise GlomkitError(
            f"{where}: labels {unknown} are not classes of the scheme ({', '.join(class_names)}); use --label-map"
        )


def group_folds(groups: Sequence[str], labels: Sequence[str], n_folds: int = 5, seed: int = 0) -> list[int]:
    """A fold in [0, n_folds) per item, grouped by ``groups`` and stratified by label.

    Groups are shuffled with ``seed``, then dealt largest first, each to the fold whose share of
    every label (count / label total, summed over the group's labels) stays lowest. Unlike
    :func:`glomkit.data.bueno.slide_folds` (which balances GS only) every class is spread.
    """
    rng = np.random.default_rng(seed)
    names = sorted(set(groups))
    rng.shuffle(names)
    classes = sorted(set(labels))
    count = {g: np.zeros(len(classes)) for g in names}
    for g, lab in zip(groups, labels, strict=True):
        count[g][classes.index(lab)] += 1
    total = np.maximum(sum(count.values()), 1)
    names.sort(key=lambda g: -count[g].sum())  # stable: keeps the shuffle among ties
    load = np.zeros((n_folds, len(classes)))
    fold_of: dict[str, int] = {}
    for g in names:
        share = count[g] / total
        k = int(np.argmin([((load[f] + share) ** 2).sum() for f in range(n_folds)]))
        fold_of[g] = k
        load[k] += share
    return [fold_of[g] for g in groups]


def split_by_slide(
    items: Sequence[LabelledImage], test_fold: int = 0, n_folds: int = 5, seed: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """Indices (train, val, test): fold ``test_fold`` is test, the next fold validation, the rest train."""
    if not 0 <= test_fold < n_folds:
        raise GlomkitError(f"--test-fold {test_fold}: must be in 0..{n_folds - 1}")
    folds = group_folds([it.slide for it in items], [it.label for it in items], n_folds, seed)
    val_fold = (test_fold + 1) % n_folds
    train = [i for i, f in enumerate(folds) if f not in (test_fold, val_fold)]
    val = [i for i, f in enumerate(folds) if f == val_fold]
    test = [i for i, f in enumerate(folds) if f == test_fold]
    return train, val, test


# ---------------------------------------------------------------- augmentation

# hed_jitter (Tellez et al. 2018) lives in glomkit.core.stain, shared with the detector trainer


def hsv_jitter(
    img: np.ndarray, rng: np.random.Generator, hue: float = 0.03, sat: float = 0.15, val: float = 0.12
) -> np.ndarray:
    """Random hue shift and saturation / brightness scaling."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue, hue) * 180.0) % 180.0
    hsv[..., 1] *= rng.uniform(1 - sat, 1 + sat)
    hsv[..., 2] *= rng.uniform(1 - val, 1 + val)
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)


@dataclass(frozen=True)
class Augmentation:
    """One augmentation strength: the ranges :func:`augment` draws from."""

    min_area: float  # smallest crop area (fraction of the image)
    hed_sigma: float  # HED jitter: stain scale 1 ± sigma ...
    hed_bias: float  # ... and shift ± bias
    p_blur: float  # probability of a Gaussian blur (sigma 0.3-1.2 px)
    contrast: float = 0.0  # contrast scale 1 ± contrast about the image mean (0: off)
    brightness: float = 0.0  # brightness shift ± brightness x 255 (0: off)
    p_grey: float = 0.0  # probability of a greyscale image (3 equal channels)
    p_pale: float = 0.0  # probability of a pale, washed-out, mildly warped tuft (:func:`pale_tuft`)


AUGMENTATIONS = {
    "default": Augmentation(0.6, 0.05, 0.02, 0.0),
    "strong": Augmentation(0.45, 0.10, 0.04, 0.3),
    # strong + 3x the HED jitter, brightness / contrast and 10 % greyscale (stain and scanner shifts)
    "colour": Augmentation(0.45, 0.30, 0.08, 0.3, contrast=0.2, brightness=0.08, p_grey=0.1),
    # strong + half the images' tufts made pale, washed out and wrinkled (issue 24: pale, fibrous
    # sclerosed glomeruli called normal)
    "strong_pale": Augmentation(0.45, 0.10, 0.04, 0.3, p_pale=0.5),
}


def pale_tuft(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dense dark tuft made pale and fibrous-looking; label-preserving for a glomerulus patch.

    Inside a soft ellipse near the patch centre (where the tuft lies) the image is desaturated
    (saturation x 0.3-0.7), flattened (local contrast about a blurred copy x 0.4-0.8) and lightened
    (blended 15-45 % towards white); the whole patch is then warped by a smooth random displacement
    (1-3 px, a wrinkled outline). The change is local on purpose: per-image stain normalisation
    (Reinhard) would undo a global lightening, but keeps a tuft paler than its surroundings.
    """
    h, w = img.shape[:2]
    x = img.astype(np.float32)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] *= rng.uniform(0.3, 0.7)
    pale = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    local = cv2.GaussianBlur(pale, (0, 0), max(h, w) / 16)
    pale = local + (pale - local) * rng.uniform(0.4, 0.8)
    pale += (255.0 - pale) * rng.uniform(0.15, 0.45)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h / 2 * (1 + rng.uniform(-0.2, 0.2)), w / 2 * (1 + rng.uniform(-0.2, 0.2))
    ry, rx = h * rng.uniform(0.25, 0.45), w * rng.uniform(0.25, 0.45)
    mask = np.exp(-0.5 * (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))[..., None]
    out = x * (1 - mask) + pale * mask
    amp, smooth = rng.uniform(1.0, 3.0), max(h, w) / 8
    dy, dx = (
        cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), smooth) for _ in range(2)
    )
    dy *= amp / max(float(np.abs(dy).max()), 1e-6)
    dx *= amp / max(float(np.abs(dx).max()), 1e-6)
    out = cv2.remap(out, xx + dx, yy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def augment(
    img: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
    min_scale: float | None = None,
    strength: str = "default",
) -> np.ndarray:
    """Random scaled crop (mild aspect change), flips, 90° rotations, HED stain and HSV jitter.

    ``strength`` names a row of :data:`AUGMENTATIONS`: ``strong`` crops down to 45 % of the area
    (a wider scale range), doubles the HED jitter and blurs 30 % of the images (sigma 0.3-1.2 px,
    focus and scanner differences); ``colour`` adds to ``strong`` three times its HED jitter,
    brightness and contrast jitter and 10 % greyscale images; ``strong_pale`` adds to ``strong``
    :func:`pale_tuft` on half the images.
    """
    if strength not in AUGMENTATIONS:
        raise GlomkitError(f"augmentation {strength!r}: expected one of {', '.join(AUGMENTATIONS)}")
    spec = AUGMENTATIONS[strength]
    min_scale = spec.min_area if min_scale is None else min_scale
    h, w = img.shape[:2]
    area = rng.uniform(min_scale, 1.0) * h * w
    aspect = np.exp(rng.uniform(np.log(0.85), np.log(1 / 0.85)))
    ch = int(min(h, round(np.sqrt(area / aspect))))
    cw = int(min(w, round(np.sqrt(area * aspect))))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    out = resize_patch(img[y0 : y0 + ch, x0 : x0 + cw], size)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = np.rot90(out, int(rng.integers(0, 4)))
    out = np.ascontiguousarray(out)
    out = hed_jitter(out, rng, spec.hed_sigma, spec.hed_bias)
    if spec.p_blur > 0 and rng.random() < spec.p_blur:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.3, 1.2)))
    out = hsv_jitter(out, rng)
    # drawn only by the levels that use them, so the others' random streams are unchanged
    if spec.contrast > 0 or spec.brightness > 0:
        x = out.astype(np.float32)
        c = rng.uniform(1 - spec.contrast, 1 + spec.contrast)
        b = rng.uniform(-spec.brightness, spec.brightness) * 255.0
        out = np.clip((x - x.mean()) * c + x.mean() + b, 0, 255).astype(np.uint8)
    if spec.p_grey > 0 and rng.random() < spec.p_grey:
        out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    if spec.p_pale > 0 and rng.random() < spec.p_pale:
        out = pale_tuft(out, rng)
    return out


class PatchDataset(Dataset):
    """Images preloaded into memory (at ``cache_scale`` x the input size), augmented when training,
    then stain-normalised as ``stain_norm`` says (:func:`glomkit.core.stain.stain_normaliser`, the
    transform inference applies to a model with that metadata).

    Reproducible: the augmentation of epoch ``e`` depends only on ``seed`` and ``e`` (call
    :meth:`set_epoch`); use ``num_workers=0``.
    """

    def __init__(
        self,
        items: Sequence[LabelledImage],
        class_names: Sequence[str],
        size: int | tuple[int, int],
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int = 0,
        cache_scale: float = 1.25,
        aug: str = "default",
        stain_norm: str = "none",
    ) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.train = train
        self.aug = aug
        self.normalise = stain_normaliser(stain_norm)
        # :data:`ANY_GLOMERULUS` items get index len(class_names) (a set-valued target)
        self.labels = [label_index(it.label, class_names) for it in items]
        cache = self.size if not train else tuple(int(round(s * cache_scale)) for s in self.size)
        self.images = [resize_patch(read_rgb(it.image), cache) for it in items]
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.rng = np.random.default_rng([self.seed, epoch])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        img = (
            augment(img, self.size, self.rng, strength=self.aug)
            if self.train
            else resize_patch(img, self.size)
        )
        img = self.normalise(img)
        x = (img.astype(np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), self.labels[i]
