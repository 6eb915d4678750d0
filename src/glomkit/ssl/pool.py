"""One unlabelled pool of glomerulus crops from several sources, each with a sampling weight.

A source is one of:

* a **bueno_pas folder** (``labels.csv`` + ``images/``): its tight crops, *except* the slides held
  out for the clustering study (:func:`bueno_held_out_slides`: the fixed sha1-ranked third of
  slides of ``glomkit.detect.data.split_groups``, chosen before any training, never pretrained on);
* an **annotated-image folder** (images with a GeoJSON / ImageScope XML outline file beside them,
  read by ``glomkit.detect.data.read_user_images``): only the *training* files of
  ``split_annotated`` are used (never its validation block, its ``test*`` files or its held-out
  biopsies). Each glomerulus is cut the way ``glomkit run`` cuts it: its circle plus the
  pipeline's margin (``MARGIN_UM``, = ``PipelineConfig.margin_um``) as a square box
  (``glomkit.infer.patches.patch_box``), outside the image white, resized to the pool's size;
* a **plain image folder** (for example the panels ``glomkit mine`` keeps): every image, resized.

Each source's share of the draws is its weight over the sum of weights, whatever its size
(:meth:`Pool.sample_probabilities`).

>>> pool = build_pool([PoolSource("hubmap_pas/tiles", 1.0, 0.8)], size=64)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glomkit import GlomkitError

MARGIN_UM = 12.5  # glomkit.pipeline.PipelineConfig.margin_um: the margin of every pipeline patch


@dataclass
class PoolSource:
    """One folder of the pool, its sampling weight and (annotated images) its µm/px."""

    path: str
    weight: float = 1.0
    mpp: float | None = None


@dataclass
class Pool:
    """N crops (uint8 N x S x S x 3), the source index of each, and what each source gave."""

    images: np.ndarray
    source: np.ndarray
    sources: list[PoolSource]
    description: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def sample_probabilities(self) -> np.ndarray:
        """Per-crop draw probability: source s gets weight_s / sum(weights), spread over its crops."""
        counts = np.bincount(self.source, minlength=len(self.sources)).astype(np.float64)
        w = np.array([s.weight for s in self.sources], np.float64)
        w = np.where(counts > 0, w, 0.0)
        if w.sum() <= 0:
            raise GlomkitError("every source of the pool has weight 0 or no crop")
        per = w / w.sum() / np.maximum(counts, 1)
        return per[self.source]


def bueno_held_out_slides(slides: list[str]) -> set[str]:
    """The bueno slides held out of pretraining (the clustering study's test slides): the first
    third of slides ranked by the sha1 of their name (``split_groups``), a rule fixed in advance."""
    from glomkit.detect.data import split_groups

    return split_groups(list(slides))[2] if slides else set()


def is_bueno(path: Path) -> bool:
    return (path / "labels.csv").is_file() and (path / "images").is_dir()


def _bueno_crops(root: Path, size: int) -> tuple[np.ndarray, dict]:
    from glomkit.data.bueno import load_bueno
    from glomkit.ssl.images import load_resized

    samples = load_bueno(root)
    held = bueno_held_out_slides([s.slide for s in samples])
    keep = [s for s in samples if s.slide not in held]
    for s in keep:
        if not s.image.is_file():
            raise GlomkitError(f"{s.image}: listed in {root / 'labels.csv'} but not found")
    info = {
        "kind": "bueno_crops",
        "held_out_slides": sorted(held),
        "slides_used": sorted({s.slide for s in keep}),
        "held_out_crops": len(samples) - len(keep),
    }
    return load_resized([s.image for s in keep], size), info


def annotated_crops(
    path: Path, mpp: float | None, size: int, margin_um: float = MARGIN_UM, which: str = "train"
) -> tuple[np.ndarray, dict]:
    """Every outlined glomerulus of the training files of ``split_annotated`` (``which="held_out"``:
    of its validation and test files instead, for evaluation), cut as the pipeline cuts it.

    The description's ``names`` give each crop as ``<file stem>#<index>``."""
    from glomkit.detect.data import read_user_images, split_annotated
    from glomkit.infer.patches import patch_box, read_patch
    from glomkit.slide.reader import Slide

    images = read_user_images(path, mpp)
    train, val, test = split_annotated(images)
    if which not in ("train", "held_out"):
        raise GlomkitError(f"which={which!r}: expected 'train' or 'held_out'")
    crops, names = [], []
    for im in train if which == "train" else val + test:
        if not len(im.circles):
            continue
        sl = Slide(im.path, mpp=im.mpp)
        try:
            if sl.mpp is None or not np.isfinite(sl.mpp) or sl.mpp <= 0:
                raise GlomkitError(f"{im.path}: no µm/px recorded; give --data-mpp for {path}")
            for j, (x, y, r) in enumerate(im.circles):
                x0, y0, w, h = patch_box(float(x), float(y), float(r), margin_um / sl.mpp)
                crops.append(read_patch(sl, (x0, y0, w, h), size))
                names.append(f"{im.path.stem}#{j}")
        finally:
            sl.close()
    if not crops:
        raise GlomkitError(f"{path}: no glomerulus outline in its {which.replace('_', '-')} files")
    info = {
        "kind": "annotated_images",
        "files": which,
        "mpp": mpp,
        "margin_um": margin_um,
        "files_used": len(train),
        "files_held_out": len(val) + len(test),
        "held_out_files": sorted(im.path.name for im in val + test),
        "names": names,
    }
    return np.stack(crops).astype(np.uint8), info


def _plain_crops(path: Path, size: int) -> tuple[np.ndarray, dict]:
    from glomkit.ssl.images import find_images, load_resized

    paths = find_images([path])
    return load_resized(paths, size), {"kind": "image_folder"}


def _has_annotations(path: Path) -> bool:
    from glomkit.detect.data import ANNOTATION_SUFFIXES, IMAGE_SUFFIXES

    return any(
        p.suffix.lower() in IMAGE_SUFFIXES and any(p.with_suffix(s).is_file() for s in ANNOTATION_SUFFIXES)
        for p in path.iterdir()
    )


def source_crops(src: PoolSource, size: int) -> tuple[np.ndarray, dict]:
    """(crops, description) of one source, its kind told from the folder's contents."""
    path = Path(src.path)
    if not path.exists():
        raise GlomkitError(f"{path}: no such file or folder")
    if path.is_dir() and is_bueno(path):
        return _bueno_crops(path, size)
    if (path.is_dir() and _has_annotations(path)) or path.suffix.lower() == ".csv":
        return annotated_crops(path, src.mpp, size)
    return _plain_crops(path, size)


def build_pool(
    sources: list[PoolSource], size: int, progress: Callable[[str, int], None] | None = None
) -> Pool:
    """The crops of every source at ``size`` px; ``progress(path, n)`` after each source."""
    if not sources:
        raise GlomkitError("no pretraining source (give --data or --images)")
    for s in sources:
        if not np.isfinite(s.weight) or s.weight < 0:
            raise GlomkitError(f"{s.path}: weight {s.weight} must be a number >= 0")
    parts, idx, desc = [], [], []
    for i, s in enumerate(sources):
        crops, info = source_crops(s, size)
        if not len(crops):
            raise GlomkitError(f"{s.path}: no image")
        parts.append(crops)
        idx.append(np.full(len(crops), i, np.int64))
        info.pop("names", None)
        desc.append({"path": str(s.path), "weight": s.weight, "n": len(crops), **info})
        if progress:
            progress(str(s.path), len(crops))
    return Pool(np.concatenate(parts), np.concatenate(idx), list(sources), desc)
