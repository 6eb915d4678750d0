"""Synthetic PAS-like whole-slide images with ground truth.

A slide is a vector scene (tissue outline polygons and round objects with a seed each), rendered
tile by tile and level by level straight from the scene, so memory stays bounded for any size.
The file is a tiled, JPEG-compressed, pyramidal TIFF with an Aperio-style description, which
OpenSlide opens with its aperio reader (``openslide.mpp-x`` = the requested mpp).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from glomkit import GlomkitError
from glomkit.core.records import GlomerulusRecord, SlideRecord
from glomkit.core.schemes import FIVE_CLASS
from glomkit.io.atomic import atomic_path
from glomkit.synth.glomerulus import RoundShape, draw_shape, render_glomerulus_layer
from glomkit.synth.stain import jitter_palette
from glomkit.synth.tissue import render_tissue

# about 150 objects on 40000 x 30000 px at 0.25 µm/px with ~55 % tissue
DENSITY_PER_UM2 = 150.0 / (0.55 * 40000 * 30000 * 0.25 * 0.25)
CLASS_MIX = {
    "normal": 0.5,
    "obsolescent": 0.12,
    "solidified": 0.1,
    "disappearing": 0.08,
    "non_glomerular": 0.2,
}
RADIUS_UM = {  # (low, high) capsule radius per class
    "normal": (65.0, 110.0),
    "obsolescent": (50.0, 85.0),
    "solidified": (55.0, 95.0),
    "disappearing": (50.0, 80.0),
    "non_glomerular": (50.0, 100.0),
}
GAP_UM = 15.0  # minimum space between two objects
FRAME_MARGIN = 1.25  # an object's layer frame extends to this many radii
MASK_MAX_SIDE = 2048  # side of the low-resolution tissue mask used for placement


@dataclass
class SceneObject:
    """One round object: class, centre and capsule radius in level-0 px, and its render seed."""

    id: int
    label: str
    x: float
    y: float
    radius: float
    seed: tuple[int, ...]
    shape: RoundShape

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(list(self.seed))


@dataclass
class Scene:
    """The vector description of a slide; rendering any region at any scale reads only this."""

    width: int
    height: int
    mpp: float
    seed: int
    tissue: list[np.ndarray]  # outline polygons, (K, 2) level-0 px
    objects: list[SceneObject] = field(default_factory=list)
    palette: dict[str, np.ndarray] = field(default_factory=dict)
    tissue_seed: int = 0


def _blob_polygon(rng: np.random.Generator, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    """An irregular tissue outline: an ellipse with a random multi-harmonic wobble."""
    th = np.linspace(0, 2 * np.pi, 512, endpoint=False)
    r = np.ones_like(th)
    for k in range(2, 12):
        r += rng.normal(0, 0.09 / k**0.8) * np.cos(k * th + rng.uniform(0, 2 * np.pi))
    ang = rng.uniform(-0.3, 0.3)
    ex, ey = a * r * np.cos(th), b * r * np.sin(th)
    c, s = np.cos(ang), np.sin(ang)
    return np.stack([cx + c * ex - s * ey, cy + s * ex + c * ey], axis=1)


def make_scene(
    width: int,
    height: int,
    mpp: float = 0.25,
    seed: int = 0,
    n_glomeruli: int | None = None,
    tissue_fraction: float | None = None,
) -> Scene:
    """Draw the tissue outline and the objects of a slide (all random choices come from ``seed``).

    ``tissue_fraction`` sets the share of the slide covered by tissue (default: 0.45-0.65 at random).
    """
    if width < 64 or height < 64:
        raise GlomkitError(f"slide size {width}x{height} is too small (at least 64x64 px)")
    if not mpp > 0:
        raise GlomkitError(f"mpp must be positive, got {mpp}")
    if tissue_fraction is not None and not 0.01 <= tissue_fraction <= 0.75:
        raise GlomkitError(f"tissue fraction must be within 0.01-0.75, got {tissue_fraction}")
    rng = np.random.default_rng([seed, 1])
    frac = rng.uniform(0.45, 0.65)
    if tissue_fraction is not None:
        frac = float(tissue_fraction)
    two = rng.random() < 0.5
    if two:
        long_x = width >= height
        tissue = []
        for i in range(2):
            if long_x:
                cx, cy, w, h = width * (0.25 + 0.5 * i), height / 2, width / 2, height
            else:
                cx, cy, w, h = width / 2, height * (0.25 + 0.5 * i), width, height / 2
            asp = rng.uniform(0.85, 1.15)
            k = np.sqrt(frac / np.pi)
            tissue.append(_blob_polygon(rng, cx, cy, w * k * asp, h * k / asp))
    else:
        asp = rng.uniform(0.85, 1.15)
        k = np.sqrt(frac / np.pi)
        cx = width * rng.uniform(0.45, 0.55)
        cy = height * rng.uniform(0.45, 0.55)
        tissue = [_blob_polygon(rng, cx, cy, width * k * asp, height * k / asp)]

    # low-resolution tissue mask for area and placement
    s = min(1.0, MASK_MAX_SIDE / max(width, height))
    mw, mh = max(int(width * s), 1), max(int(height * s), 1)
    mask = np.zeros((mh, mw), np.uint8)
    cv2.fillPoly(mask, [np.round(p * s).astype(np.int32) for p in tissue], 1)
    area_um2 = float(mask.sum()) / (s * s) * mpp * mpp
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5) / s  # level-0 px to the tissue edge
    if n_glomeruli is None:
        n_glomeruli = int(round(DENSITY_PER_UM2 * area_um2))
    if n_glomeruli < 0:
        raise GlomkitError(f"number of glomeruli must be >= 0, got {n_glomeruli}")

    names = list(CLASS_MIX)
    labels = names[: min(n_glomeruli, len(names))]
    labels += list(rng.choice(names, size=max(n_glomeruli - len(labels), 0), p=list(CLASS_MIX.values())))
    rng.shuffle(labels)

    scene = Scene(width, height, mpp, seed, tissue)
    scene.palette = jitter_palette(np.random.default_rng([seed, 2]))
    scene.tissue_seed = int(np.random.default_rng([seed, 3]).integers(0, 2**31 - 1))
    placed = np.zeros((0, 3))
    ys, xs = np.nonzero(dist > 0)
    if len(xs) == 0:
        return scene
    for label in labels:
        lo, hi = RADIUS_UM[str(label)]
        r_um = rng.uniform(lo, hi)
        r = r_um / mpp
        for _ in range(200):
            i = rng.integers(len(xs))
            x = (xs[i] + rng.random()) / s
            y = (ys[i] + rng.random()) / s
            if dist[ys[i], xs[i]] < r * 1.3 + GAP_UM / mpp:
                continue
            if len(placed):
                d = np.hypot(placed[:, 0] - x, placed[:, 1] - y)
                if np.any(d < (placed[:, 2] + r) * 1.15 + GAP_UM / mpp):
                    continue
            break
        else:
            continue  # no room left for this one
        oid = len(scene.objects) + 1
        obj_seed = (seed, 7, oid)
        shape = draw_shape(np.random.default_rng(list(obj_seed)))
        scene.objects.append(SceneObject(oid, str(label), float(x), float(y), float(r), obj_seed, shape))
        placed = np.vstack([placed, [x, y, r]])
    return scene


def truth_of(scene: Scene, path: str | Path) -> SlideRecord:
    """The scene's objects as a five-class SlideRecord (label = true class, score 1)."""
    path = Path(path)
    records = []
    for o in scene.objects:
        poly = o.shape.polygon(o.x, o.y, o.radius)
        area_px = float(cv2.contourArea(poly.astype(np.float32)))
        area_um2 = area_px * scene.mpp**2
        is_glom = FIVE_CLASS.get(o.label).is_glomerulus
        rec = GlomerulusRecord(
            id=o.id,
            x=o.x,
            y=o.y,
            radius=o.radius,
            score=1.0,
            label=o.label,
            probs={n: float(n == o.label) for n in FIVE_CLASS.names},
            ggs_probability=float(FIVE_CLASS.get(o.label).is_ggs),
            is_glomerulus=is_glom,
            area_um2=area_um2,
            diameter_um=2.0 * float(np.sqrt(area_um2 / np.pi)),
            polygon=poly,
        )
        records.append(rec)
    return SlideRecord(
        stem=path.stem,
        source=str(path),
        mpp=scene.mpp,
        width=scene.width,
        height=scene.height,
        scheme=FIVE_CLASS,
        glomeruli=records,
        extra={"synthetic": True, "seed": scene.seed},
    )


def pyramid_downsamples(width: int, height: int, tile: int = 512, factor: int = 4) -> list[int]:
    """Downsamples 1, 4, 16, ... down to the first level that fits in one tile."""
    ds = [1]
    while max(width, height) / ds[-1] > tile:
        ds.append(ds[-1] * factor)
    return ds


class SceneRenderer:
    """Renders tiles of any pyramid level from a scene, caching object layers per tile row."""

    def __init__(self, scene: Scene, tile: int = 512) -> None:
        self.scene = scene
        self.tile = tile
        self._cache: dict[tuple[int, int], tuple[int, int, np.ndarray, np.ndarray]] = {}
        self._bg = np.asarray(scene.palette["background"], np.float32)
        self._glass: list[np.ndarray] | None = None  # ready-made tissue-free tiles, made on first use

    def _glass_tile(self, rng: np.random.Generator) -> np.ndarray:
        """A tissue-free tile: glass colour plus sensor noise, drawn from a small seeded bank.

        Most tiles of a large slide are empty glass; drawing fresh noise for each one was the
        largest cost of writing a 100k² slide.
        """
        if self._glass is None:
            bank = np.random.default_rng([self.scene.seed, 13])
            t = self.tile
            self._glass = [
                np.clip(self._bg + bank.normal(0.0, 1.5, (t, t, 3)).astype(np.float32), 0, 255).astype(
                    np.uint8
                )
                for _ in range(8)
            ]
        return self._glass[int(rng.integers(len(self._glass)))]

    def level_size(self, ds: int) -> tuple[int, int]:
        return max(1, int(np.ceil(self.scene.width / ds))), max(1, int(np.ceil(self.scene.height / ds)))

    def _layer(self, o: SceneObject, ds: int) -> tuple[int, int, np.ndarray, np.ndarray]:
        key = (ds, o.id)
        if key not in self._cache:
            r = o.radius / ds
            size = int(np.ceil(2 * FRAME_MARGIN * r)) + 4
            cx, cy = o.x / ds, o.y / ds
            ox, oy = int(np.floor(cx - size / 2)), int(np.floor(cy - size / 2))
            layer = render_glomerulus_layer(
                o.label, r, o.rng(), size, centre=(cx - ox, cy - oy), palette=self.scene.palette
            )
            rgb = np.clip(layer.rgb, 0, 255).astype(np.uint8)
            alpha = np.clip(layer.alpha * 255.0, 0, 255).astype(np.uint8)
            self._cache[key] = (ox, oy, rgb, alpha)
        return self._cache[key]

    def _evict(self, ds: int, y0: int) -> None:
        for key in list(self._cache):
            lds, _ = key
            _, oy, rgb, _ = self._cache[key]
            if lds != ds or oy + rgb.shape[0] <= y0:
                del self._cache[key]

    def render(self, ds: int, tx: int, ty: int) -> np.ndarray:
        """The full (tile, tile, 3) uint8 tile (tx, ty) of the level with downsample ``ds``."""
        t = self.tile
        sc = self.scene
        x0, y0 = tx * t, ty * t
        if tx == 0:
            self._evict(ds, y0)
        tissue_mask = np.zeros((t, t), np.uint8)
        polys = []
        for p in sc.tissue:
            q = p / ds - (x0, y0)
            if q[:, 0].max() < -2 or q[:, 1].max() < -2 or q[:, 0].min() > t + 2 or q[:, 1].min() > t + 2:
                continue
            polys.append(np.round(q * 16).astype(np.int32))
        rng = np.random.default_rng([sc.seed, 11, ds, tx, ty])
        if polys:
            cv2.fillPoly(tissue_mask, polys, 255, lineType=cv2.LINE_AA, shift=4)
        if not tissue_mask.any():
            return self._glass_tile(rng).copy()
        img = np.empty((t, t, 3), np.float32)
        img[:] = self._bg
        m = cv2.GaussianBlur(tissue_mask, (0, 0), 1.0).astype(np.float32)[..., None] / 255.0
        tissue = render_tissue(
            t, t, rng, mpp=sc.mpp * ds, origin=(x0, y0), seed=sc.tissue_seed, palette=sc.palette
        ).astype(np.float32)
        img = img * (1.0 - m) + tissue * m
        for o in sc.objects:
            ext = o.radius * FRAME_MARGIN / ds + 3
            cx, cy = o.x / ds, o.y / ds
            if cx + ext < x0 or cx - ext > x0 + t or cy + ext < y0 or cy - ext > y0 + t:
                continue
            ox, oy, rgb, alpha = self._layer(o, ds)
            h, w = alpha.shape
            ax0, ay0 = max(ox, x0), max(oy, y0)
            ax1, ay1 = min(ox + w, x0 + t), min(oy + h, y0 + t)
            if ax1 <= ax0 or ay1 <= ay0:
                continue
            a = alpha[ay0 - oy : ay1 - oy, ax0 - ox : ax1 - ox].astype(np.float32)[..., None] / 255.0
            src = rgb[ay0 - oy : ay1 - oy, ax0 - ox : ax1 - ox].astype(np.float32)
            dst = img[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
            dst *= 1.0 - a
            dst += src * a
        img += rng.normal(0.0, 1.5, img.shape).astype(np.float32)
        return np.clip(img, 0, 255).astype(np.uint8)

    def render_row(self, ds: int, ty: int) -> list[np.ndarray]:
        """All tiles of row ``ty`` of one level, left to right."""
        w, _ = self.level_size(ds)
        return [self.render(ds, tx, ty) for tx in range(int(np.ceil(w / self.tile)))]

    def tiles(
        self, ds: int, progress: Callable[[int], None] | None = None, pool: Any = None
    ) -> Iterator[np.ndarray]:
        """All tiles of one level, row by row (the order TIFF expects).

        With ``pool`` (from :func:`_render_pool`) rows are rendered in worker processes, in order,
        a few rows ahead of the writer; every tile depends only on the scene, so the file is the
        same either way.
        """
        _, h = self.level_size(ds)
        rows = range(int(np.ceil(h / self.tile)))
        if pool is None:
            it: Iterator[list[np.ndarray]] = (self.render_row(ds, ty) for ty in rows)
        else:
            it = pool.imap(_render_row_in_worker, [(ds, ty) for ty in rows], chunksize=1)
        for row in it:
            for tile in row:
                if progress is not None:
                    progress(1)
                yield tile
        self._cache.clear()


_WORKER_RENDERER: SceneRenderer | None = None


def _init_render_worker(scene: Scene, tile: int) -> None:
    global _WORKER_RENDERER
    _WORKER_RENDERER = SceneRenderer(scene, tile)


def _render_row_in_worker(args: tuple[int, int]) -> list[np.ndarray]:
    assert _WORKER_RENDERER is not None
    return _WORKER_RENDERER.render_row(*args)


def _render_pool(scene: Scene, tile: int, workers: int):
    """A process pool whose workers each hold a renderer of ``scene`` (None for one worker)."""
    if workers <= 1:
        return None
    import multiprocessing as mp

    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    return ctx.Pool(workers, initializer=_init_render_worker, initargs=(scene, tile))


def aperio_description(width: int, height: int, mpp: float, tile: int, quality: int) -> str:
    """An Aperio-style ImageDescription (OpenSlide's aperio reader reads MPP and AppMag from it)."""
    mag = 10.0 / mpp
    return (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) "
        f"JPEG/RGB Q={quality}|AppMag = {mag:g}|MPP = {mpp:g}|Filename = glomkit-synth"
    )


def count_tiles(width: int, height: int, tile: int = 512) -> int:
    """Tiles over all pyramid levels (for progress bars)."""
    n = 0
    for ds in pyramid_downsamples(width, height, tile):
        w, h = int(np.ceil(width / ds)), int(np.ceil(height / ds))
        n += int(np.ceil(w / tile)) * int(np.ceil(h / tile))
    return n


def synthesize_slide(
    path: str | Path,
    width: int,
    height: int,
    mpp: float = 0.25,
    seed: int = 0,
    n_glomeruli: int | None = None,
    tile: int = 512,
    quality: int = 85,
    *,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    tissue_fraction: float | None = None,
) -> SlideRecord:
    """Write a synthetic pyramidal TIFF at ``path`` and return its ground truth.

    ``progress`` is called with the number of tiles just written (see :func:`count_tiles`);
    ``workers`` > 1 renders tile rows in that many processes (the output is identical);
    ``tissue_fraction`` is passed to :func:`make_scene`.
    """
    import tifffile

    if tile % 16 or tile < 16:
        raise GlomkitError(f"tile size must be a multiple of 16, got {tile}")
    path = Path(path)
    scene = make_scene(width, height, mpp, seed, n_glomeruli, tissue_fraction)
    renderer = SceneRenderer(scene, tile)
    downsamples = pyramid_downsamples(width, height, tile)
    thumb = None
    pool = _render_pool(scene, tile, workers)
    with atomic_path(path) as tmp, contextlib.ExitStack() as stack:
        if pool is not None:
            stack.callback(pool.terminate)
        with tifffile.TiffWriter(tmp, bigtiff=width * height > 2**31 // 4) as tw:
            for i, ds in enumerate(downsamples):
                lw, lh = renderer.level_size(ds)
                desc = aperio_description(width, height, mpp, tile, quality)
                if i > 0:
                    desc = f"Aperio Image Library v12.0.15 \r\n{width}x{height} -> {lw}x{lh} - |MPP = {mpp * ds:g}"
                tw.write(
                    renderer.tiles(ds, progress, pool),
                    shape=(lh, lw, 3),
                    dtype=np.uint8,
                    tile=(tile, tile),
                    photometric="rgb",
                    compression="jpeg",
                    compressionargs={"level": quality},
                    description=desc,
                    metadata=None,
                    subfiletype=0 if i == 0 else 1,
                )
            ds = downsamples[-1]
            lw, lh = renderer.level_size(ds)
            thumb = np.concatenate(
                [
                    np.concatenate(
                        [renderer.render(ds, tx, ty) for tx in range(int(np.ceil(lw / tile)))], axis=1
                    )
                    for ty in range(int(np.ceil(lh / tile)))
                ],
                axis=0,
            )[:lh, :lw]
    result = truth_of(scene, path)
    result.thumbnail = thumb
    result.thumbnail_downsample = float(width) / thumb.shape[1]
    return result


def write_truth(result: SlideRecord, slide_path: str | Path) -> list[Path]:
    """Write ``<stem>_truth.csv``, ``.xml`` and ``.geojson`` beside the slide; return the paths."""
    from glomkit.io.geojson import write_geojson
    from glomkit.io.imagescope import write_imagescope_xml
    from glomkit.io.table import write_table

    slide_path = Path(slide_path)
    base = f"{slide_path.stem}_truth"  # not with_suffix: a stem may hold dots
    d = slide_path.parent
    return [
        write_table(d / f"{base}.csv", result),
        write_imagescope_xml(d / f"{base}.xml", result),
        write_geojson(d / f"{base}.geojson", result),
    ]


DEMO_SETTINGS = "demo_slide.json"


def demo_slide(out: Path, w: int, h: int, seed: int) -> tuple[Path, bool]:
    """OUT/demo_slide.tif made with these settings (``glomkit demo``): reused when
    OUT/demo_slide.json records the same size and seed, else (re)made with its truth files beside
    it. Returns the path and whether it was made now."""
    import json

    from glomkit.io.atomic import write_text

    slide = out / "demo_slide.tif"
    settings = {"width": w, "height": h, "seed": seed, "mpp": 0.25}
    record = out / DEMO_SETTINGS
    try:
        same = slide.is_file() and json.loads(record.read_text()) == settings
    except (OSError, ValueError):
        same = False
    if same:
        return slide, False
    record.unlink(missing_ok=True)
    truth = synthesize_slide(slide, w, h, mpp=0.25, seed=seed)
    write_truth(truth, slide)
    write_text(record, json.dumps(settings) + "\n")
    return slide, True
