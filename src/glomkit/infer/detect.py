"""Slide-wide detection: the tile loop of a detector over a slide (ONNX Runtime, no torch).

Tiles at the detector's working mpp are read in background threads, batched through the model
and decoded by the model's kind (``glomkit.kinds``); circles cut by an interior tile edge
are dropped (the overlap shows them whole in a neighbouring tile), and circle NMS merges the rest.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from glomkit import GlomkitError
from glomkit.core.geometry import DEFAULT_NMS_IOU, circle_nms
from glomkit.core.tta import flip_tta
from glomkit.kinds import kind_of
from glomkit.models.metadata import DetectorMetadata
from glomkit.slide.grid import Tile, TileGrid
from glomkit.slide.reader import Slide
from glomkit.slide.tile_reader import prefetch_map

ProgressHook = Callable[[str, int, int], None]  # (stage, done, total)
Region = tuple[float, float, float, float]  # level-0 x, y, w, h


@dataclass
class DetectOptions:
    """How the tile loop runs; ``None`` settings come from the model's metadata.

    :class:`glomkit.pipeline.PipelineConfig` extends it, so each setting is declared here only."""

    tile_px: int = 1024  # tile side in model px (multiple of 32)
    overlap_um: float = 320.0  # ≥ one large glomerulus diameter
    batch_tiles: int = 2
    read_threads: int = 2
    score_threshold: float | None = None
    tta: bool | None = None  # h/v flip averaging
    # map the slide's tissue colours to the detector's training colours first
    # (glomkit.core.colour); None: the model's ``decode.colour_transfer``
    colour_transfer: bool | None = None
    nms_iou: float = DEFAULT_NMS_IOU
    min_tissue: float = 0.01
    # a partial tile (at the slide's or region's edge) runs on its own size plus this much white
    # (model px), rounded up to 32, instead of a full tile_px canvas; None: always tile_px
    edge_pad_px: int | None = 64


def tile_canvas(tile: Tile, tile_px: int, edge_pad_px: int | None) -> tuple[int, int]:
    """(height, width) of the white canvas a tile's image is pasted into before the detector:
    ``tile_px`` for a full tile; a partial one keeps its own size plus ``edge_pad_px``, rounded up
    to a multiple of 32 (never beyond ``tile_px``), so padding costs no compute."""
    if edge_pad_px is None:
        return tile_px, tile_px

    def side(n: int) -> int:
        return tile_px if n >= tile_px else min(tile_px, -(-(n + edge_pad_px) // 32) * 32)

    return side(tile.out_h), side(tile.out_w)


def detection_tta(tta: bool | None, meta: DetectorMetadata) -> bool:
    """Whether detection averages h/v flips: ``tta`` if set, else the model's ``decode.tta``."""
    return bool(tta) if tta is not None else meta.tta


def colour_transfer_to(options: DetectOptions, meta: DetectorMetadata, colour) -> object | None:
    """The reference colours (``LabStats``) each tile is mapped to, or None for no transfer: off
    unless the options (or, when they do not say, the model's ``decode.colour_transfer``) ask for
    it, and the model records its training colours and the slide's tissue colours are known."""
    on = options.colour_transfer if options.colour_transfer is not None else meta.colour_transfer
    if on and meta.stain_reference is None:
        if options.colour_transfer:  # asked for by the user: say why it cannot be done
            raise GlomkitError(
                f"{meta.path}: the detector records no training colours (input.stain_reference), so "
                "colour transfer is impossible; write them with glomkit models colour-reference"
            )
        return None
    if not on or colour is None:
        return None
    return meta.stain_reference


def slide_colour(options: DetectOptions, meta: DetectorMetadata, thumb: np.ndarray, thumb_mpp: float):
    """The slide's tissue colours (``glomkit.core.colour.colour_of`` of its thumbnail) when colour
    transfer is on for this detector, else None (nothing computed)."""
    from glomkit.core.colour import colour_of

    return colour_of(thumb, thumb_mpp) if colour_transfer_to(options, meta, True) else None


def unit_interval(value: object, name: str) -> float:
    """``value`` as a float in [0, 1]; else a one-line GlomkitError naming ``name`` (NaN included)."""
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise GlomkitError(f"{name}={value!r}: must be a number from 0 to 1") from None
    if not (math.isfinite(f) and 0.0 <= f <= 1.0):
        raise GlomkitError(f"{name}={value!r}: must be a number from 0 to 1")
    return f


def score_threshold(thr: float | None, meta: DetectorMetadata) -> float:
    """``thr`` if set (checked to lie in [0, 1]), else the model's ``decode.score_threshold``."""
    return unit_interval(thr, "score_threshold") if thr is not None else meta.score_threshold


def clip_region(slide: Slide, region: Region | None, where: str = "region") -> tuple[int, int, int, int]:
    """The level-0 box to analyse: the slide's bounds, or ``region`` clipped to them (a one-line
    GlomkitError when it misses the slide or is empty)."""
    bx, by, bw, bh = slide.bounds
    if region is None:
        return bx, by, bw, bh
    try:
        x, y, w, h = (float(v) for v in region)
    except (TypeError, ValueError):
        raise GlomkitError(f"{where}: expected (x, y, width, height) in level-0 px, got {region!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise GlomkitError(f"{where}: width and height must be positive and finite, got {region!r}")
    x0, y0 = max(bx, int(math.floor(x))), max(by, int(math.floor(y)))
    x1, y1 = min(bx + bw, int(math.ceil(x + w))), min(by + bh, int(math.ceil(y + h)))
    if x1 <= x0 or y1 <= y0:
        raise GlomkitError(
            f"{where}: {region!r} lies outside the slide {slide.path.name} (bounds {slide.bounds})"
        )
    return x0, y0, x1 - x0, y1 - y0


def keep_uncut(c: np.ndarray, tile: Tile) -> np.ndarray:
    """Drop circles cut by an interior tile edge (the overlap shows them whole in a neighbour)."""
    if len(c) == 0:
        return c
    x, y, r = c[:, 0], c[:, 1], c[:, 2]
    ok = np.ones(len(c), bool)
    if not tile.at_left:
        ok &= x - r >= 0
    if not tile.at_top:
        ok &= y - r >= 0
    if not tile.at_right:
        ok &= x + r <= tile.out_w
    if not tile.at_bottom:
        ok &= y + r <= tile.out_h
    return c[ok]


def detection_grid(slide: Slide, model_mpp: float, options: DetectOptions, box: Region) -> TileGrid:
    """The detection tile grid over the level-0 ``box`` at ``model_mpp``, refused (one line) when
    absurdly large (``TileGrid.check_size``); the pipeline checks it before reading any pixel."""
    tile_px = int(options.tile_px) // 32 * 32
    overlap = int(round(options.overlap_um / model_mpp))
    grid = TileGrid(tuple(box), slide.mpp, model_mpp, tile_px, min(overlap, tile_px - 32))
    grid.check_size(str(slide.path))
    return grid


def detect_circles(
    slide: Slide,
    detector,
    options: DetectOptions = DetectOptions(),
    tissue: np.ndarray | None = None,
    tissue_ds: float = 1.0,
    region: Region | None = None,
    progress: ProgressHook | None = None,
    stats: dict[str, float] | None = None,
    colour=None,
) -> np.ndarray:
    """Detection over the slide (or ``region``): (N, 4) x, y, r, score in level-0 px after NMS.

    ``detector`` is an ``OnnxModel``; ``tissue`` a boolean mask whose (0, 0) is the slide's bounds
    origin, at ``tissue_ds`` level-0 px per mask px (tiles with less tissue are skipped);
    ``colour`` the slide's tissue colours (``glomkit.core.colour.colour_of`` of its thumbnail),
    which the tiles are mapped from when colour transfer is on (:func:`colour_transfer_to`).
    """
    from glomkit.core.colour import transfer

    meta = detector.info.typed
    reference = colour_transfer_to(options, meta, colour)
    model_mpp = meta.mpp
    kind = kind_of(meta, detector.path)
    tta = detection_tta(options.tta, meta)
    thr = score_threshold(options.score_threshold, meta)
    nms_iou = unit_interval(options.nms_iou, "nms_iou")
    tile_px = int(options.tile_px) // 32 * 32
    box = clip_region(slide, region)
    grid = detection_grid(slide, model_mpp, options, box)
    if tissue is not None and box != tuple(slide.bounds):
        r0, c0 = int((box[1] - slide.bounds[1]) / tissue_ds), int((box[0] - slide.bounds[0]) / tissue_ds)
        tissue = tissue[r0:, c0:]
    tiles = grid.tiles(tissue, tissue_ds, options.min_tissue)
    total = len(tiles)
    found: list[np.ndarray] = []
    if stats is not None:
        stats.update(tiles=float(total), read_s=0.0, compute_s=0.0, pixels=0.0)

    def read(tile: Tile) -> np.ndarray:
        t0 = time.perf_counter()
        img = slide.read_region_scaled(tile.x, tile.y, tile.w, tile.h, tile.out_w, tile.out_h)
        if reference is not None:
            img = transfer(img, colour, reference)
        if stats is not None:
            stats["read_s"] += time.perf_counter() - t0
            stats["pixels"] += float(tile.out_w * tile.out_h)
        return img

    batch_imgs: list[np.ndarray] = []
    batch_tiles: list[Tile] = []
    done = 0

    def flush() -> None:
        nonlocal done
        if not batch_imgs:
            return
        t0 = time.perf_counter()
        batch = np.stack(batch_imgs)
        out = (
            flip_tta(detector.run_images, batch, unflipped_only=kind.unflipped)
            if tta
            else detector.run_images(batch)
        )
        if stats is not None:
            stats["compute_s"] += time.perf_counter() - t0
        for k, tile in enumerate(batch_tiles):
            c = keep_uncut(kind.decode_tile(out, k, meta, thr, tile), tile)
            if len(c):
                c = c.copy()
                c[:, :3] *= grid.scale
                c[:, 0] += tile.x
                c[:, 1] += tile.y
                found.append(c)
        done += len(batch_tiles)
        batch_imgs.clear()
        batch_tiles.clear()
        if progress:
            progress("tiles", done, total)

    for tile, img in prefetch_map(
        read, tiles, threads=options.read_threads, depth=max(4, 2 * options.batch_tiles)
    ):
        shape = tile_canvas(tile, tile_px, options.edge_pad_px)
        if batch_imgs and batch_imgs[0].shape[:2] != shape:  # a batch holds one canvas shape
            flush()
        padded = np.full((*shape, 3), 255, np.uint8)
        padded[: img.shape[0], : img.shape[1]] = img
        batch_imgs.append(padded)
        batch_tiles.append(tile)
        if len(batch_imgs) >= options.batch_tiles:
            flush()
    flush()
    if not found:
        return np.zeros((0, 4))
    allc = np.concatenate(found)
    keep = circle_nms(allc[:, :3], allc[:, 3], nms_iou)
    return allc[keep]


def detect_slide(
    slide: Slide,
    detector,
    options: DetectOptions = DetectOptions(),
    region: Region | None = None,
    thumbnail_px: int = 2048,
) -> np.ndarray:
    """:func:`detect_circles` over the tissue of ``slide`` (Otsu mask of a thumbnail of
    ``thumbnail_px``), or of ``region``: (N, 4) x, y, r, score in level-0 px."""
    from glomkit.slide.tissue import tissue_mask

    thumb, ds = slide.thumbnail(thumbnail_px)
    colour = slide_colour(options, detector.info.typed, thumb, slide.mpp * ds)
    return detect_circles(slide, detector, options, tissue_mask(thumb), ds, region=region, colour=colour)
