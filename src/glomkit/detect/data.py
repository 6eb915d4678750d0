"""Detection training sources: composed bueno fields, or the user's annotated images.

User data comes in two forms, both read at the detector's working resolution (``mpp``):

* a folder of slides / images with an ImageScope ``.xml`` or QuPath ``.geojson``/``.json`` file
  of the same stem beside each (``glomkit.io.annotations.read_annotations``);
* a CSV of circles with columns ``image,x,y,r`` (image paths relative to the CSV, coordinates in
  the image's pixels) and an optional ``mpp`` column (µm/px of that image; default: the
  ``data_mpp`` argument, else the model mpp).

Files are split, not tiles (``split_annotated``): files named ``test*`` are the held-out test
set and never used in training or model selection; the others, in the order of the number in
their name, are cut into contiguous blocks and one block is held out for validation. Neighbouring
tile numbers often come from one slide, so a block split keeps a slide's tiles on one side.

Several sources can be mixed with a weight each (``MixedSource``): real annotated images, composed
bueno fields, synthetic material. Validation is then on the real images' held-out block.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from glomkit import GlomkitError
from glomkit.detect.augment import augment_tile
from glomkit.detect.fields import (
    Field,
    FieldComposer,
    fixed_fields,
    split_samples,
)
from glomkit.io.outputs import file_name

ANNOTATION_SUFFIXES = (".xml", ".geojson", ".json")
IMAGE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class AnnotatedImage:
    """One user image or slide and its circles (N,3) x, y, r in level-0 px."""

    path: Path
    circles: np.ndarray
    mpp: float | None  # level-0 µm/px; None = the slide's own
    outlines: list[np.ndarray | None] = field(default_factory=list)  # per circle: (K,2) polygon or None

    def boxes(self) -> np.ndarray:
        """(N,4) x, y, w, h per object: the outline's bounding box, else the circle's."""
        out = []
        for i, (x, y, r) in enumerate(self.circles):
            poly = self.outlines[i] if i < len(self.outlines) else None
            if poly is not None and len(poly) >= 3:
                x0, y0 = poly.min(axis=0)
                x1, y1 = poly.max(axis=0)
                out.append((x0, y0, x1 - x0, y1 - y0))
            else:
                out.append((x - r, y - r, 2 * r, 2 * r))
        return np.asarray(out, np.float64).reshape(-1, 4)


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


def is_non_glomerular(label: str) -> bool:
    """True for a label that a known class scheme marks as not a glomerulus (``non_glomerular``)."""
    from glomkit.core.schemes import SCHEMES

    low = label.strip().lower()
    return any(c.name.lower() == low and not c.is_glomerulus for s in SCHEMES.values() for c in s.classes)


def find_annotated_images(folder: str | Path, mpp: float | None = None) -> list[AnnotatedImage]:
    """Images / slides in ``folder`` with an annotation file of the same stem beside them.

    ``<stem>_reviewed.geojson`` (a ``glomkit review`` file) is preferred over ``<stem>.xml`` /
    ``.geojson`` / ``.json``. A folder without such images may hold glomkit output folders with a
    review (``glomkit.data.reviewed.find_reviewed``): their slides and reviews are used. Annotations
    labelled with a non-glomerular class (a rejected detection) are not glomeruli: they are left
    out, so they never become positives.

    ``mpp`` overrides the images' own scale (needed for plain images that do not record it).
    """
    from glomkit.io.annotations import read_annotations

    folder = Path(folder)
    out = []
    for img in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        # a review from ``glomkit review`` copied beside its slide comes first
        for ann in [img.with_name(file_name("geojson", img.stem, reviewed=True))] + [
            img.with_suffix(s) for s in ANNOTATION_SUFFIXES
        ]:
            if ann.is_file():
                anns = [a for a in read_annotations(ann, mpp=mpp) if not is_non_glomerular(a.label)]
                circ = np.array([a.circle() for a in anns], np.float64).reshape(-1, 3)
                out.append(AnnotatedImage(img, circ, mpp, [a.polygon for a in anns]))
                break
    if not out:  # glomkit output folders reviewed in ``glomkit review`` (OUT/**/<stem>/review/)
        from glomkit.data.reviewed import find_reviewed

        for rs in find_reviewed(folder):
            anns = [a for a in read_annotations(rs.annotations) if not is_non_glomerular(a.label)]
            circ = np.array([a.circle() for a in anns], np.float64).reshape(-1, 3)
            out.append(AnnotatedImage(rs.slide, circ, mpp or rs.mpp))
    if not out:
        raise GlomkitError(
            f"{folder}: no image with an .xml/.geojson annotation file beside it, and no reviewed output folder"
        )
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
    """Tiles at ``mpp`` from annotated images, with their circles in tile pixels.

    ``hard_negatives`` holds (image index, x, y) level-0 points where a model found a glomerulus
    that is not there (``AnnotatedSource.mine_hard_negatives``); some tiles are centred on them.
    """

    def __init__(self, images: list[AnnotatedImage], mpp: float, edge_band_um: float = 0.0) -> None:
        from glomkit.slide.reader import Slide

        self.images = images
        self.mpp = float(mpp)
        self.slides = [Slide(im.path, mpp=im.mpp) for im in images]
        self.hard_negatives: list[tuple[int, float, float]] = []
        self.edge_band_um = float(edge_band_um)  # > 0: fields carry an ignore map of this edge band

    def _edge_ignore(self, k: int, shape: tuple[int, int], x0: float, y0: float, fx: float, fy: float):
        """0/1 map (H,W) of the field pixels within ``edge_band_um`` of image ``k``'s edge (None if no band)."""
        if self.edge_band_um <= 0:
            return None
        sl = self.slides[k]
        band = self.edge_band_um / sl.mpp  # level-0 px
        xs = x0 + (np.arange(shape[1]) + 0.5) / fx
        ys = y0 + (np.arange(shape[0]) + 0.5) / fy
        near_x = ((xs < band) | (xs > sl.width - band)) & (xs < sl.width)
        near_y = ((ys < band) | (ys > sl.height - band)) & (ys < sl.height)
        inside = (xs < sl.width)[None, :] & (ys < sl.height)[:, None]  # not the white padding
        return ((near_x[None, :] | near_y[:, None]) & inside).astype(np.uint8)

    def tile(self, k: int, x0: float, y0: float, size: int, box: float | None = None) -> Field:
        """The level-0 square (x0, y0, ``box``) resampled to ``size`` px (default box: ``size`` at ``mpp``)."""
        sl = self.slides[k]
        box = box if box is not None else size * self.mpp / sl.mpp
        f = size / box  # level-0 px -> tile px
        img = sl.read_region_scaled(x0, y0, box, box, size, size)
        c = self.images[k].circles
        c = np.column_stack([(c[:, 0] - x0) * f, (c[:, 1] - y0) * f, c[:, 2] * f])
        inside = (c[:, 0] >= 0) & (c[:, 0] < size) & (c[:, 1] >= 0) & (c[:, 1] < size)
        mask = self._mask(k, (size, size), x0, y0, f, f)
        ignore = self._edge_ignore(k, (size, size), x0, y0, f, f)
        return Field(np.ascontiguousarray(img[..., :3]), c[inside], mask, ignore)

    def _mask(self, k: int, shape: tuple[int, int], x0: float, y0: float, fx: float, fy: float) -> np.ndarray:
        """0/1 mask (H,W) of image ``k``'s objects in a tile frame: outlines, or discs where none."""
        mask = np.zeros(shape, np.uint8)
        im = self.images[k]
        for i, (x, y, r) in enumerate(im.circles):
            poly = im.outlines[i] if i < len(im.outlines) else None
            if poly is not None and len(poly) >= 3:
                pts = np.round((poly - [x0, y0]) * [fx, fy]).astype(np.int32)
                cv2.fillPoly(mask, [pts], 1)
            else:
                cv2.circle(
                    mask, (int(round((x - x0) * fx)), int(round((y - y0) * fy))), int(round(r * fx)), 1, -1
                )
        return mask

    def random_tile(
        self,
        rng: np.random.Generator,
        size: int,
        scale_jitter: float = 0.0,
        hard_fraction: float = 0.0,
    ) -> Field:
        """A random tile: 60 % centred near a glomerulus, ``hard_fraction`` on a mined false
        positive, the rest anywhere. ``scale_jitter`` j reads a box 1/(1+j) to (1+j) times the
        nominal one (log-uniform), so the objects' apparent size varies by up to ±j."""
        s = (
            math.exp(rng.uniform(-math.log1p(scale_jitter), math.log1p(scale_jitter)))
            if scale_jitter
            else 1.0
        )
        u = rng.random()
        if self.hard_negatives and u < hard_fraction:
            k, cx, cy = self.hard_negatives[int(rng.integers(len(self.hard_negatives)))]
            sl = self.slides[k]
            box = size * self.mpp / sl.mpp * s
            cx, cy = np.array([cx, cy]) + rng.uniform(-0.3, 0.3, 2) * box
        else:
            k = int(rng.integers(len(self.images)))
            sl, circ = self.slides[k], self.images[k].circles
            box = size * self.mpp / sl.mpp * s
            if len(circ) and u < hard_fraction + 0.6:
                cx, cy = circ[int(rng.integers(len(circ))), :2] + rng.uniform(-0.4, 0.4, 2) * box
            else:
                cx, cy = rng.uniform(0, sl.width), rng.uniform(0, sl.height)
        w, h = sl.width, sl.height
        x0 = float(np.clip(cx - box / 2, 0, max(w - box, 0)))
        y0 = float(np.clip(cy - box / 2, 0, max(h - box, 0)))
        return self.tile(k, x0, y0, size, box)

    def whole_image(self, k: int, pad_to: tuple[int, int] | None = None) -> Field:
        """Image ``k`` whole at ``mpp``, padded with white to a multiple of 32 (or to ``pad_to``)."""
        sl = self.slides[k]
        f = sl.mpp / self.mpp
        ow, oh = max(1, int(round(sl.width * f))), max(1, int(round(sl.height * f)))
        img = sl.read_region_scaled(0, 0, sl.width, sl.height, ow, oh)[..., :3]
        ph, pw = pad_to if pad_to else (-(-oh // 32) * 32, -(-ow // 32) * 32)
        out = np.full((ph, pw, 3), 255, np.uint8)
        out[: min(oh, ph), : min(ow, pw)] = img[:ph, :pw]
        c = self.images[k].circles
        fx, fy = ow / sl.width, oh / sl.height
        c = np.column_stack([c[:, 0] * fx, c[:, 1] * fy, c[:, 2] * f])
        ignore = self._edge_ignore(k, (ph, pw), 0.0, 0.0, fx, fy)
        return Field(out, c, self._mask(k, (ph, pw), 0.0, 0.0, fx, fy), ignore)

    def whole_images(self) -> list[Field]:
        """Every image whole at ``mpp``, all padded to one size (so they batch together)."""
        sizes = []
        for sl in self.slides:
            f = sl.mpp / self.mpp
            sizes.append((int(round(sl.height * f)), int(round(sl.width * f))))
        ph = -(-max(h for h, _ in sizes) // 32) * 32
        pw = -(-max(w for _, w in sizes) // 32) * 32
        return [self.whole_image(k, (ph, pw)) for k in range(len(self.slides))]

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


def _number_key(p: Path) -> tuple[int, str]:
    """Sort key: the last number in the file's stem (tile number), then the name."""
    nums = re.findall(r"\d+", p.stem)
    return (int(nums[-1]) if nums else -1, p.name)


GROUP_PATTERN = re.compile(r"^(?P<group>.+?)_\d+_\d+$")  # <biopsy>_<row>_<col>: tiles of one biopsy
GROUP_TEST_SHARE = 1 / 3  # biopsies held out for test when no file is named test*
MIN_GROUPS = 6


def image_group(p: Path) -> str | None:
    """The biopsy / slide a tile comes from, when its stem reads ``<group>_<row>_<col>`` (else None)."""
    m = GROUP_PATTERN.match(p.stem)
    return m.group("group") if m else None


def _group_rank(group: str) -> str:
    """A fixed pseudo-random order of groups (sha1 of the name): the same split on every machine."""
    return hashlib.sha1(group.encode()).hexdigest()


def split_groups(groups: list[str], n_blocks: int = 5, val_block: int = -1) -> tuple[set, set, set]:
    """(train, validation, test) groups: ordered by the sha1 of their name, the first third is test
    (fixed before any training), the rest is cut into ``n_blocks`` blocks and ``val_block`` validates."""
    order = sorted(set(groups), key=_group_rank)
    n_test = max(1, int(round(len(order) * GROUP_TEST_SHARE)))
    test, rest = order[:n_test], order[n_test:]
    n = max(2, min(n_blocks, len(rest)))
    bounds = np.linspace(0, len(rest), n + 1).round().astype(int)
    b = val_block % n
    return set(rest[: bounds[b]] + rest[bounds[b + 1] :]), set(rest[bounds[b] : bounds[b + 1]]), set(test)


def split_by_group(images: list[AnnotatedImage]) -> bool:
    """Whether ``split_annotated`` splits these images by biopsy: every stem reads
    ``<group>_<row>_<col>``, no file is named ``test*``, and there are at least ``MIN_GROUPS`` groups."""
    groups = [image_group(im.path) for im in images]
    named_test = any(im.path.stem.lower().startswith("test") for im in images)
    return not named_test and all(groups) and len(set(groups)) >= MIN_GROUPS


def split_annotated(
    images: list[AnnotatedImage], n_blocks: int = 5, val_block: int = -1
) -> tuple[list[AnnotatedImage], list[AnnotatedImage], list[AnnotatedImage]]:
    """(train, validation, test) files.

    Tiles named ``<group>_<row>_<col>`` (tiles of one biopsy, as in cgmh_he) are split by group,
    never by tile: when no file is named ``test*`` and there are at least ``MIN_GROUPS`` groups,
    a fixed third of the groups (``split_groups``) is the test set, and the rest is cut into blocks
    of whole groups. Otherwise ``test*`` files are test; the others, ordered by the number in
    their name, are cut into ``n_blocks`` contiguous blocks and block ``val_block`` validates."""
    if split_by_group(images):
        groups = [image_group(im.path) for im in images]
        tr, va, te = split_groups([g for g in groups if g], n_blocks, val_block)
        pick = lambda s: [im for im, g in zip(images, groups, strict=True) if g in s]  # noqa: E731
        return pick(tr), pick(va), pick(te)
    test = [im for im in images if im.path.stem.lower().startswith("test")]
    rest = sorted((im for im in images if im not in test), key=lambda im: _number_key(im.path))
    if len(rest) < 2:
        raise GlomkitError(
            f"{images[0].path.parent if images else '?'}: needs at least 2 annotated images besides "
            "test* files (a block of files is held out for validation)"
        )
    n = max(2, min(n_blocks, len(rest)))
    bounds = np.linspace(0, len(rest), n + 1).round().astype(int)
    b = val_block % n
    val = rest[bounds[b] : bounds[b + 1]]
    train = rest[: bounds[b]] + rest[bounds[b + 1] :]
    return train, val, test


class AnnotatedSource:
    """Training tiles from annotated real images; validation on a held-out block of whole images.

    Each training tile is read with scale jitter (``scale_jitter``), some on mined false positives
    (``hard_fraction``), then augmented (``glomkit.detect.augment.augment_tile``).
    """

    def __init__(
        self,
        images: list[AnnotatedImage],
        mpp: float,
        size: int,
        seed: int,
        origin: str,
        scale_jitter: float = 0.3,
        hard_fraction: float = 0.15,
        n_blocks: int = 5,
        val_block: int = -1,
        edge_ignore: bool = False,
    ) -> None:
        train, val, test = split_annotated(images, n_blocks, val_block)
        # edge_ignore: glomeruli cut by an image edge are often not outlined (cgmh_he), so a band of
        # one median glomerulus radius along each edge is no background (training) and no test (validation)
        self.train = TileSampler(train, mpp)
        self.val_sampler = TileSampler(val, mpp)
        band = edge_band_um([self.train, self.val_sampler]) if edge_ignore else 0.0
        self.train.edge_band_um = self.val_sampler.edge_band_um = band
        self.size = size
        self.scale_jitter = scale_jitter
        self.hard_fraction = hard_fraction
        self.val_fields = self.val_sampler.whole_images()
        self.description = {
            "kind": "annotated_images",
            "origin": origin,
            "split": (
                f"by biopsy (<group>_<row>_<col>): a fixed third of groups (sha1 order) is test; "
                f"block {val_block} of {n_blocks} of the rest validates"
                if split_by_group(images)
                else f"contiguous blocks of file numbers: block {val_block} of {n_blocks} validates; "
                "test* files held out"
            ),
            "train_files": len(train),
            "val_files": [im.path.name for im in val],
            "test_files": [im.path.name for im in test],
            "scale_jitter": scale_jitter,
            "hard_fraction": hard_fraction,
            "edge_ignore_um": round(band, 1),
        }
        self.val_description = {
            "images": len(val),
            "glomeruli": int(sum(len(im.circles) for im in val)),
            "split": "held-out block of whole images",
            "origin": origin,
        }

    def sample(self, rng: np.random.Generator) -> Field:
        f = self.train.random_tile(rng, self.size, self.scale_jitter, self.hard_fraction)
        if f.ignore is None:
            img, circ, mask = augment_tile(f.image, f.circles, rng, mask=f.mask)
            return Field(img, circ, mask)
        both = f.mask | (f.ignore << 1)  # one map through the same geometry: bit 0 object, bit 1 ignore
        img, circ, both = augment_tile(f.image, f.circles, rng, mask=both)
        return Field(img, circ, both & 1, (both >> 1) & 1)

    def mine_hard_negatives(
        self,
        predict: Callable[[list[np.ndarray]], list[np.ndarray]],
        rng: np.random.Generator,
        n_images: int = 16,
        score: float = 0.3,
        keep: int = 400,
    ) -> int:
        """Run ``predict`` on ``n_images`` random training images and remember its false positives
        (score ≥ ``score``, centre outside every annotated circle and at least one median glomerulus
        radius from the image edge, where glomeruli cut by the edge are often not outlined); returns
        how many were found."""
        sampler = self.train
        ks = rng.choice(len(sampler.images), size=min(n_images, len(sampler.images)), replace=False)
        fields = [sampler.whole_image(int(k)) for k in ks]
        found = 0
        for k, p in zip(ks, _predict_each(predict, fields), strict=True):
            sl = sampler.slides[int(k)]
            back = sl.width / max(1, int(round(sl.width * sl.mpp / sampler.mpp)))  # tile px -> level-0
            gt = sampler.images[int(k)].circles
            edge = float(np.median(gt[:, 2])) if len(gt) else 0.0  # about one glomerulus radius
            for x, y, _r, s in p:
                if s < score:
                    continue
                X, Y = x * back, y * back
                if len(gt) and np.any(np.hypot(gt[:, 0] - X, gt[:, 1] - Y) < gt[:, 2] * 1.1):
                    continue
                if min(X, Y, sl.width - X, sl.height - Y) < edge:  # edge-cut glomeruli often lack outlines
                    continue
                sampler.hard_negatives.append((int(k), float(X), float(Y)))
                found += 1
        del sampler.hard_negatives[:-keep]
        return found


def edge_band_um(samplers: list[TileSampler]) -> float:
    """One median glomerulus radius (µm) over the samplers' images: the width of the edge band
    that ``AnnotatedSource(edge_ignore=True)`` ignores (0 when no image has a glomerulus)."""
    r = [
        c[2] * sl.mpp for s in samplers for im, sl in zip(s.images, s.slides, strict=True) for c in im.circles
    ]
    return float(np.median(r)) if r else 0.0


def _predict_each(predict, fields: list[Field]) -> list[np.ndarray]:
    """Predictions for fields of possibly different sizes (one call per size)."""
    out: list[np.ndarray | None] = [None] * len(fields)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, f in enumerate(fields):
        by_shape.setdefault(f.image.shape, []).append(i)
    for idx in by_shape.values():
        for i, p in zip(idx, predict([fields[i].image for i in idx]), strict=True):
            out[i] = p
    return [p if p is not None else np.zeros((0, 4)) for p in out]


class MixedSource:
    """Training fields drawn from several sources, each with a weight; validation on the held-out
    images of every real (annotated) source together, else on the first source's fields."""

    def __init__(self, parts: list[tuple[Any, float]]) -> None:
        if not parts:
            raise GlomkitError("no training source")
        w = np.array([max(float(wt), 0.0) for _, wt in parts])
        if w.sum() <= 0:
            raise GlomkitError("source weights must not all be 0")
        self.parts = [p for p, _ in parts]
        self.weights = w / w.sum()
        real = [p for p in self.parts if isinstance(p, AnnotatedSource)]
        if real:
            self.val_fields = _pad_together([f for p in real for f in p.val_fields])
            self.val_description = {
                "images": sum(p.val_description["images"] for p in real),
                "glomeruli": sum(p.val_description["glomeruli"] for p in real),
                "split": "held-out whole images of every annotated source",
                "origin": [p.description["origin"] for p in real],
            }
        else:
            self.val_fields = self.parts[0].val_fields
            self.val_description = self.parts[0].val_description
        self.description = {
            "kind": "mixed",
            "sources": [p.description for p in self.parts],
            "weights": [round(float(v), 4) for v in self.weights],
        }

    def sample(self, rng: np.random.Generator) -> Field:
        return self.parts[int(rng.choice(len(self.parts), p=self.weights))].sample(rng)

    def mine_hard_negatives(self, predict, rng: np.random.Generator) -> int:
        return sum(
            p.mine_hard_negatives(predict, rng) for p in self.parts if hasattr(p, "mine_hard_negatives")
        )


def _pad_together(fields: list[Field]) -> list[Field]:
    """Fields padded at the right and bottom (white image, empty mask) to one size, so they batch."""
    if not fields:
        return fields
    h = max(f.image.shape[0] for f in fields)
    w = max(f.image.shape[1] for f in fields)
    out = []
    for f in fields:
        img = np.full((h, w, 3), 255, np.uint8)
        img[: f.image.shape[0], : f.image.shape[1]] = f.image
        mask = ignore = None
        if f.mask is not None:
            mask = np.zeros((h, w), f.mask.dtype)
            mask[: f.mask.shape[0], : f.mask.shape[1]] = f.mask
        if f.ignore is not None:
            ignore = np.zeros((h, w), np.uint8)
            ignore[: f.ignore.shape[0], : f.ignore.shape[1]] = f.ignore
        out.append(Field(img, f.circles, mask, ignore))
    return out


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


def source_mpps(cfg: Any, n: int) -> list[float | None]:
    """The µm/px of each of ``n`` sources' images: ``cfg.data_mpp`` is one value for all, or one per source."""
    v = getattr(cfg, "data_mpp", None)
    if v is None or isinstance(v, int | float):
        return [v] * n
    v = list(v)
    if len(v) == 1:
        return v * n
    if len(v) != n:
        raise GlomkitError(f"{n} --data sources but {len(v)} --data-mpp values (give one, or one per source)")
    return v


def _one_source(path: str, cfg: Any, data_mpp: float | None = None, edge_ignore: bool = False):
    """One training source: a bueno_pas folder (composed fields) or annotated user images at ``data_mpp``
    (``edge_ignore``: see ``AnnotatedSource``)."""
    if is_bueno_folder(path):
        return ComposedSource(
            str(path),
            cfg.mpp,
            cfg.field_size,
            cfg.val_size,
            cfg.val_fields,
            cfg.seed,
            cfg.synthetic,
            cfg.pool,
            cfg.test_fold,
        )
    images = read_user_images(path, data_mpp, cfg.mpp)
    return AnnotatedSource(
        images,
        cfg.mpp,
        cfg.field_size,
        cfg.seed,
        str(path),
        scale_jitter=getattr(cfg, "scale_jitter", 0.3),
        hard_fraction=getattr(cfg, "hard_fraction", 0.15),
        n_blocks=getattr(cfg, "val_blocks", 5),
        val_block=getattr(cfg, "val_block", -1),
        edge_ignore=edge_ignore,
    )


def load_detection_source(cfg: Any):
    """The training source(s) named by ``cfg.data`` (one path, or several mixed by ``cfg.data_weights``)."""
    paths = [cfg.data] if isinstance(cfg.data, str | Path) else list(cfg.data)
    mpps = source_mpps(cfg, len(paths))
    resolved = [Path(p).resolve() for p in paths]
    marked = {Path(e).resolve(): e for e in getattr(cfg, "edge_ignore", None) or []}
    for r, e in marked.items():
        if r not in resolved:
            raise GlomkitError(f"--edge-ignore {e}: not one of the --data sources")
    edge = [r in marked for r in resolved]
    if len(paths) == 1:
        return _one_source(str(paths[0]), cfg, mpps[0], edge[0])
    weights = list(getattr(cfg, "data_weights", None) or [1.0] * len(paths))
    if len(weights) != len(paths):
        raise GlomkitError(f"{len(paths)} --data sources but {len(weights)} --weight values")
    return MixedSource(
        [(_one_source(str(p), cfg, m, e), w) for p, w, m, e in zip(paths, weights, mpps, edge, strict=True)]
    )


def colour_reference(sources: list[list[AnnotatedImage]]) -> tuple[Any, dict[str, Any]]:
    """The tissue colours a detector was trained on (``glomkit.core.colour``), for its metadata's
    ``input.stain_reference``: each image's thumbnail seen the way the pipeline sees a slide's
    (``colour_of`` at ``STATS_MPP``), averaged per source, then over the sources with equal weight.
    Returns (``LabStats``, a description naming each source's folder and image count)."""
    from glomkit.core.colour import colour_of, pooled_stats
    from glomkit.slide.reader import Slide

    per_source, desc = [], []
    for images in sources:
        stats = []
        for im in images:
            with Slide(im.path, mpp=im.mpp) as sl:
                thumb, ds = sl.thumbnail(2048)
                stats.append(colour_of(thumb, sl.mpp * ds))
        try:
            per_source.append(pooled_stats(stats))
        except ValueError:
            where = images[0].path.parent if images else "?"
            raise GlomkitError(
                f"{where}: no training image with enough tissue for colour statistics"
            ) from None
        desc.append({"path": str(images[0].path.parent), "images": len(images)})
    return pooled_stats(per_source), {"sources": desc}
