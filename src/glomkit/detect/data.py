"""Detection training sources: composed bueno fields, or the user's annotated images.

User data comes in two forms, both read at the detector's working resolution (``mpp``):

* a folder of slides / images with an ImageScope ``.xml`` or QuPath ``.geojson``/``.json`` file
  of the same stem beside each (``glomkit.io.annotations.read_annotations``);
* a CSV of circles with columns ``image,x,y,r`` (image paths relative to the CSV, coordinates in
  the image's pixels) and an optional ``mpp`` column (µm/px of that image; default: the
  ``data_mpp`` argument, else the model mpp).

Files are split, not tiles: every fifth file (sorted by name, at least one) is held out for
validation, so validation tiles never come from a training image.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glomkit import GlomkitError
from glomkit.detect.fields import (
    Field,
    FieldComposer,
    _field_dihedral,
    _stain_jitter,
    fixed_fields,
    split_samples,
)

ANNOTATION_SUFFIXES = (".xml", ".geojson", ".json")
IMAGE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class AnnotatedImage:
    """One user image or slide and its circles (N,3) x, y, r in level-0 px."""

    path: Path
    circles: np.ndarray
    mpp: float | None  # level-0 µm/px; None = the slide's own


class ComposedSource:
    """Training fields composed afresh from training-slide crops; fixed validation fields from held-out slides."""

    def __init__(
        self,
        root: str,
        mpp: float,
        size: int,
        val_size: int,
        n_val: int,
        seed: int,
        synthetic: bool = True,
        pool: int = 48,
        test_fold: int = 0,
    ) -> None:
        self.train = FieldComposer(split_samples("train", root, test_fold), mpp, size, seed, synthetic, pool)
        val_samples = split_samples("val", root, test_fold)
        self.val_composer = FieldComposer(val_samples, mpp, val_size, seed + 1, synthetic, pool)
        self.val_fields = fixed_fields(self.val_composer, n_val, seed=10_000 + seed)
        self.description = {
            "kind": "bueno_fields",
            "root": str(root),
            "split": "by source slide",
            "test_fold": test_fold,
            "split_seed": 0,
            "val_slides": sorted({s.slide for s in val_samples}),
            "field_size": size,
            "synthetic": synthetic,
        }
        self.val_description = {"fields": n_val, "size": val_size, "seed": 10_000 + seed, "split": "val"}

    def sample(self, rng: np.random.Generator) -> Field:
        return self.train.compose(rng)


def find_annotated_images(folder: str | Path, mpp: float | None = None) -> list[AnnotatedImage]:
    """Images / slides in ``folder`` with an annotation file of the same stem beside them.

    ``mpp`` overrides the images' own scale (needed for plain images that do not record it).
    """
    from glomkit.io.annotations import read_annotations

    folder = Path(folder)
    out = []
    for img in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        for suf in ANNOTATION_SUFFIXES:
            ann = img.with_suffix(suf)
            if ann.is_file():
                anns = read_annotations(ann, mpp=mpp)
                circ = np.array([a.circle() for a in anns], np.float64).reshape(-1, 3)
                out.append(AnnotatedImage(img, circ, mpp))
                break
    if not out:
        raise GlomkitError(f"{folder}: no image with an .xml/.geojson annotation file beside it")
    return out


def read_circles_csv(path: str | Path, default_mpp: float | None = None) -> list[AnnotatedImage]:
    """A CSV with columns image,x,y,r[,mpp] -> one AnnotatedImage per image (rows grouped)."""
    path = Path(path)
    groups: dict[str, list[tuple[float, float, float]]] = {}
    mpps: dict[str, float | None] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"image", "x", "y", "r"} - set(reader.fieldnames or [])
        if missing:
            raise GlomkitError(f"{path}: circles CSV lacks column(s) {', '.join(sorted(missing))}")
        for i, row in enumerate(reader, start=2):
            try:
                c = (float(row["x"]), float(row["y"]), float(row["r"]))
                m = float(row["mpp"]) if row.get("mpp") else default_mpp
            except ValueError:
                raise GlomkitError(f"{path}: line {i}: x, y, r (and mpp) must be numbers") from None
            groups.setdefault(row["image"], []).append(c)
            mpps[row["image"]] = m
    out = []
    for name, circles in groups.items():
        p = (path.parent / name).resolve()
        if not p.is_file():
            raise GlomkitError(f"{path}: image {name} not found")
        out.append(AnnotatedImage(p, np.asarray(circles, np.float64), mpps[name]))
    if not out:
        raise GlomkitError(f"{path}: no circles")
    return out


class TileSampler:
    """Tiles at ``mpp`` from annotated images, with their circles in tile pixels."""

    def __init__(self, images: list[AnnotatedImage], mpp: float) -> None:
        from glomkit.slide.reader import Slide

        self.images = images
        self.mpp = float(mpp)
        self.slides = [Slide(im.path, mpp=im.mpp) for im in images]

    def tile(self, k: int, x0: float, y0: float, size: int) -> Field:
        """The tile of ``size`` px at ``mpp`` whose top-left level-0 corner is (x0, y0)."""
        sl = self.slides[k]
        f = sl.mpp / self.mpp  # level-0 px -> tile px
        box = size / f
        img = sl.read_region_scaled(x0, y0, box, box, size, size)
        c = self.images[k].circles
        c = np.column_stack([(c[:, 0] - x0) * f, (c[:, 1] - y0) * f, c[:, 2] * f])
        inside = (c[:, 0] >= 0) & (c[:, 0] < size) & (c[:, 1] >= 0) & (c[:, 1] < size)
        return Field(np.ascontiguousarray(img[..., :3]), c[inside])

    def random_tile(self, rng: np.random.Generator, size: int) -> Field:
        k = int(rng.integers(len(self.images)))
        sl, circ = self.slides[k], self.images[k].circles
        box = size * self.mpp / sl.mpp
        w, h = sl.width, sl.height
        if len(circ) and rng.random() < 0.7:
            cx, cy = circ[int(rng.integers(len(circ))), :2] + rng.uniform(-0.4, 0.4, 2) * box
        else:
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        x0 = float(np.clip(cx - box / 2, 0, max(w - box, 0)))
        y0 = float(np.clip(cy - box / 2, 0, max(h - box, 0)))
        return self.tile(k, x0, y0, size)

    def grid_tiles(self, size: int) -> list[tuple[str, Field]]:
        """Every image cut into a non-overlapping grid of tiles (for evaluation)."""
        out = []
        for k, sl in enumerate(self.slides):
            box = size * self.mpp / sl.mpp
            w, h = sl.width, sl.height
            for y0 in np.arange(0, max(h - box, 0) + 1, box):
                for x0 in np.arange(0, max(w - box, 0) + 1, box):
                    out.append(
                        (f"{self.images[k].path.name}@{int(x0)},{int(y0)}", self.tile(k, x0, y0, size))
                    )
        return out


class AnnotatedSource:
    """Training tiles from annotated user images; validation tiles from held-out files."""

    def __init__(
        self,
        images: list[AnnotatedImage],
        mpp: float,
        size: int,
        val_size: int,
        n_val: int,
        seed: int,
        origin: str,
    ) -> None:
        if len(images) < 2:
            raise GlomkitError(
                f"{origin}: needs at least 2 annotated images (whole files are held out for validation)"
            )
        val_idx = set(range(0, len(images), 5))
        self.train = TileSampler([im for i, im in enumerate(images) if i not in val_idx], mpp)
        val = TileSampler([im for i, im in enumerate(images) if i in val_idx], mpp)
        rng = np.random.default_rng(10_000 + seed)
        self.size = size
        self.val_fields = [val.random_tile(rng, val_size) for _ in range(n_val)]
        self.description = {
            "kind": "annotated_images",
            "origin": origin,
            "val_files": [images[i].path.name for i in sorted(val_idx)],
        }
        self.val_description = {
            "tiles": n_val,
            "size": val_size,
            "seed": 10_000 + seed,
            "split": "held-out files",
        }

    def sample(self, rng: np.random.Generator) -> Field:
        f = self.train.random_tile(rng, self.size)
        img, circ = _field_dihedral(f.image, f.circles, rng)
        return Field(_stain_jitter(img.astype(np.float32), rng), circ)


def read_user_images(path: str | Path, data_mpp: float | None = None, model_mpp: float | None = None):
    """A circles CSV (images default to ``data_mpp``, else ``model_mpp``) or a folder of annotated images."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return read_circles_csv(path, data_mpp or model_mpp)
    if path.is_dir():
        return find_annotated_images(path, data_mpp)
    raise GlomkitError(f"{path}: not a bueno_pas folder, annotated image folder or circles CSV")


def is_bueno_folder(path: str | Path) -> bool:
    path = Path(path)
    return (path / "labels.csv").is_file() and (path / "masks").is_dir()


def load_detection_source(cfg: Any):
    """The training source named by ``cfg.data``: a bueno_pas folder (composed fields) or user data."""
    if is_bueno_folder(cfg.data):
        return ComposedSource(
            str(cfg.data),
            cfg.mpp,
            cfg.field_size,
            cfg.val_size,
            cfg.val_fields,
            cfg.seed,
            cfg.synthetic,
            cfg.pool,
            cfg.test_fold,
        )
    images = read_user_images(cfg.data, getattr(cfg, "data_mpp", None), cfg.mpp)
    return AnnotatedSource(
        images, cfg.mpp, cfg.field_size, cfg.val_size, cfg.val_fields, cfg.seed, str(cfg.data)
    )
