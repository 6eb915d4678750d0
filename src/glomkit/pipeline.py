"""The one-command flow for one slide: slide -> tiles -> circles -> patches -> classes, masks -> outputs.

Everything for a slide is built in a hidden temporary folder beside its final one and renamed
into place at the end, so ``OUT/<stem>/`` is either complete or absent: a crashed run resumes by
skipping the slides whose folder exists.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from glomkit import GlomkitError, __version__
from glomkit.detect.decode import decode_method, flip_tta
from glomkit.detect.geometry import circle_nms
from glomkit.io.partial import clean_stale_partials, make_partial_dir, release_partial_dir
from glomkit.results import GlomerulusRecord, SlideResult
from glomkit.slide.grid import Tile, TileGrid
from glomkit.slide.reader import SLIDE_SUFFIXES, Slide
from glomkit.slide.tile_reader import prefetch_map
from glomkit.slide.tissue import tissue_mask

PATCH_SIZE = 256
PATCH_CHUNK = 32  # glomeruli characterised at once (the next chunk is read meanwhile)
SUMMARY = "summary.json"


@dataclass
class PipelineConfig:
    """Settings of one run; picklable, so cohort workers get the same."""

    detector: str | None = None  # model path; None = bundled default
    classifier: str | None = None
    segmenter: str | None = None
    mpp: float | None = None  # the user's --mpp for images that carry none
    device: str = "auto"
    threads: int | None = None  # ONNX Runtime intra-op threads; None = all this process may use
    read_threads: int = 2
    tile_px: int = 1024  # detection tile side in model px (multiple of 32)
    overlap_um: float = 320.0  # ≥ one large glomerulus diameter
    batch_tiles: int = 2
    batch_patches: int = 16
    score_threshold: float | None = None  # None = the detector's metadata
    tta: bool | None = None  # detection averaged over h/v flips of each tile; None = the model's metadata
    nms_iou: float = 0.35
    margin_um: float = 12.5  # 50 px at 0.25 µm/px, the published setting
    # the segmenter sees the patch cut down to the circle + this margin (None: the whole patch); 5 µm
    # gave the best box AP on the hubmap_pas validation block (docs/models/detector.md)
    outline_margin_um: float | None = 5.0
    # glomerulus patches are read from the coarsest pyramid level at least as fine as this (or the
    # patch's own resolution when coarser); None: from level 0 (slower, same results: PERFORMANCE.md)
    patch_mpp: float | None = 1.0
    min_tissue: float = 0.01
    thumbnail_px: int = 2048
    write_images: bool = True
    max_pixels: int | None = None  # pixel limit of plain images; None = glomkit.io.images default
    xml: str = "both"  # ImageScope layers: both, circles (one shape per glomerulus) or outlines
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def find_slides(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into slide or image files, sorted, unique."""
    out: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_file() and q.suffix.lower() in SLIDE_SUFFIXES and not _is_sidecar(q):
                    out.append(q)
        elif p.exists():
            out.append(p)
        else:
            raise GlomkitError(f"{p}: no such file or folder")
    seen: set[Path] = set()
    uniq = []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            uniq.append(p)
    return uniq


def _is_sidecar(p: Path) -> bool:
    """Files that sit beside slides but are not slides (our own truth or output images)."""
    return any(part in {"patches", "masks", "overlays"} for part in p.parts) or p.stem.endswith("_truth")


def output_dir(slide_path: Path, out_root: Path) -> Path:
    """``OUT/<stem>/``, checked to be a folder inside OUT (a file named ``...png`` has the stem
    ``..``: its outputs would replace OUT's parent)."""
    from glomkit.io.paths import path_under

    return path_under(out_root, Path(slide_path).stem)


def outputs_complete(slide_path: Path, out_root: Path) -> bool:
    """True when the slide's output folder holds its summary and every file the summary lists."""
    d = output_dir(slide_path, out_root)
    summary = d / SUMMARY
    if not summary.is_file():
        return False
    import json

    try:
        data = json.loads(summary.read_text())
    except (OSError, ValueError):
        return False
    return all((d / f).is_file() for f in data.get("outputs", []))


class Models:
    """The three ONNX models of a run, loaded once and shared by all slides of a process."""

    def __init__(self, config: PipelineConfig) -> None:
        from glomkit.models.registry import resolve_model
        from glomkit.models.runtime import OnnxModel

        kw = {"device": config.device, "threads": config.threads}
        self.detector = OnnxModel(resolve_model(config.detector, "detector"), expect_task="detector", **kw)
        self.classifier = OnnxModel(
            resolve_model(config.classifier, "classifier"), expect_task="classifier", **kw
        )
        self.segmenter = OnnxModel(
            resolve_model(config.segmenter, "segmenter"), expect_task="segmenter", **kw
        )

    def describe(self) -> dict[str, Any]:
        out = {}
        for task in ("detector", "classifier", "segmenter"):
            m = getattr(self, task)
            meta = m.meta
            out[task] = {
                "file": m.path.name,
                "architecture": meta.get("architecture"),
                "backbone": meta.get("backbone") or meta.get("encoder"),
                "created": meta.get("created"),
                "glomkit_version": meta.get("glomkit_version"),
                "providers": m.session.get_providers(),
            }
        return out


class StageTimer:
    """Wall time per stage, recorded into summary.json."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0


ProgressHook = Callable[[str, int, int], None]  # (stage, done, total)


def detect_circles(
    slide: Slide,
    models: Models,
    config: PipelineConfig,
    tissue: np.ndarray | None,
    tissue_ds: float,
    progress: ProgressHook | None = None,
    stats: dict[str, float] | None = None,
) -> np.ndarray:
    """Slide-wide detection: (N, 4) x, y, r, score in level-0 px after circle NMS.

    The detector's metadata names its decoder (``decode.method``, default 'circlenet'; see
    ``TILE_DECODERS``); circles cut by an interior tile edge are dropped, the overlap shows them
    whole in a neighbouring tile.
    """
    det = models.detector
    info = det.info
    model_mpp = info.mpp or 2.0
    dec = info.meta.get("decode", {})
    decode_tile = TILE_DECODERS[decode_method(info.meta, TILE_DECODERS, det.path)]
    tta = detection_tta(config, info.meta)
    thr = (
        config.score_threshold
        if config.score_threshold is not None
        else float(dec.get("score_threshold", 0.3))
    )
    tile_px = int(config.tile_px) // 32 * 32
    overlap = int(round(config.overlap_um / model_mpp))
    grid = TileGrid(slide.bounds, slide.mpp, model_mpp, tile_px, min(overlap, tile_px - 32))
    grid.check_size(str(slide.path))
    tiles = grid.tiles(tissue, tissue_ds, config.min_tissue)
    total = len(tiles)
    found: list[np.ndarray] = []
    if stats is not None:
        stats.update(tiles=float(total), read_s=0.0, compute_s=0.0, pixels=0.0)

    def read(tile: Tile) -> np.ndarray:
        t0 = time.perf_counter()
        img = slide.read_region_scaled(tile.x, tile.y, tile.w, tile.h, tile.out_w, tile.out_h)
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
        out = flip_tta(det.run_images, batch) if tta else det.run_images(batch)
        if stats is not None:
            stats["compute_s"] += time.perf_counter() - t0
        for k, tile in enumerate(batch_tiles):
            c = _keep_uncut(decode_tile(out, k, info.meta, thr, tile), tile)
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
        read, tiles, threads=config.read_threads, depth=max(4, 2 * config.batch_tiles)
    ):
        padded = np.full((tile_px, tile_px, 3), 255, np.uint8)
        padded[: img.shape[0], : img.shape[1]] = img
        batch_imgs.append(padded)
        batch_tiles.append(tile)
        if len(batch_imgs) >= config.batch_tiles:
            flush()
    flush()
    if not found:
        return np.zeros((0, 4))
    allc = np.concatenate(found)
    keep = circle_nms(allc[:, :3], allc[:, 3], config.nms_iou)
    return allc[keep]


def _decode_circlenet_tile(
    out: dict[str, np.ndarray], k: int, meta: dict[str, Any], thr: float, tile: Tile
) -> np.ndarray:
    """Circles (K,4) in tile px of image ``k`` of a CircleNet batch output."""
    from glomkit.detect.decode import decode_circlenet

    return decode_circlenet(
        out["heatmap"][k],
        out["radius"][k],
        out["offset"][k],
        stride=int(meta.get("stride", 4)),
        score_threshold=thr,
        top_k=int(meta.get("decode", {}).get("top_k", 100)),
    )


def _decode_components_tile(
    out: dict[str, np.ndarray], k: int, meta: dict[str, Any], thr: float, tile: Tile
) -> np.ndarray:
    """Circles (K,4) in tile px from image ``k`` of a segmentation detector's probability map.

    Components touching an interior tile edge are dropped (cut; whole in a neighbouring tile),
    and so is the padding beyond a partial tile.
    """
    from glomkit.detect.segdetect import decode_components, decode_settings

    prob = out["probability"][k, 0, : tile.out_h, : tile.out_w]
    edges = (not tile.at_left, not tile.at_top, not tile.at_right, not tile.at_bottom)
    return decode_components(prob, score_threshold=thr, drop_edges=edges, **decode_settings(meta))


def detection_tta(config: PipelineConfig, meta: dict[str, Any]) -> bool:
    """Whether detection averages h/v flips: the run's ``tta`` if set, else the model's ``decode.tta``."""
    if config.tta is not None:
        return bool(config.tta)
    return bool(meta.get("decode", {}).get("tta", False))


# decode.method in a detector's metadata -> tile decoder (batch output, index, metadata, threshold, tile)
TILE_DECODERS: dict[str, Callable[..., np.ndarray]] = {
    "circlenet": _decode_circlenet_tile,
    "components": _decode_components_tile,
}


def _keep_uncut(c: np.ndarray, tile: Tile) -> np.ndarray:
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


def patch_box(x: float, y: float, r: float, margin_px: float) -> tuple[int, int, int, int]:
    """Level-0 box (x0, y0, w, h) of a circle plus a margin: a square of side 2(r + margin)."""
    half = r + margin_px
    x0, y0 = int(round(x - half)), int(round(y - half))
    side = max(1, int(round(2 * half)))
    return x0, y0, side, side


def run_slide(
    slide_path: str | Path,
    out_root: str | Path,
    config: PipelineConfig | None = None,
    models: Models | None = None,
    progress: ProgressHook | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline on one slide and write ``OUT/<stem>/``; return the summary dict."""
    config = config or PipelineConfig()
    slide_path = Path(slide_path)
    out_root = Path(out_root)
    timer = StageTimer()
    t_start = time.perf_counter()
    with timer.stage("load_models"):
        models = models or Models(config)
    with timer.stage("open"):
        slide = Slide(slide_path, mpp=config.mpp, max_pixels=config.max_pixels)
    tmp: Path | None = None
    try:
        with timer.stage("tissue"):
            thumb, thumb_ds = slide.thumbnail(config.thumbnail_px)
            tissue = tissue_mask(thumb)
        det_stats: dict[str, float] = {}
        with timer.stage("detect"):
            circles = detect_circles(slide, models, config, tissue, thumb_ds, progress, det_stats)
        records = _records_from_circles(circles, config.margin_um / slide.mpp)
        result = SlideResult(
            stem=slide_path.stem,
            source=str(slide_path),
            mpp=slide.mpp,
            width=slide.width,
            height=slide.height,
            scheme=models.classifier.info.scheme,
            glomeruli=records,
            models=models.describe(),
            thumbnail=thumb,
            thumbnail_downsample=thumb_ds,
            origin=(float(slide.bounds[0]), float(slide.bounds[1])),
        )
        out_root.mkdir(parents=True, exist_ok=True)
        clean_stale_partials(out_root, slide_path.stem)  # left by a killed run of this slide
        tmp = make_partial_dir(out_root, slide_path.stem)
        # Patches stream through classification, segmentation and writing in chunks, so memory
        # does not grow with the number of glomeruli. The next chunk's patches are read, and the
        # last chunk's images written, in background threads while the models run (at most two
        # chunks of patches in memory).
        chunks = [records[k : k + PATCH_CHUNK] for k in range(0, len(records), PATCH_CHUNK)]
        with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
            nxt = reader.submit(_cut_patches, chunks[0], slide, config) if chunks else None
            written = None
            done = 0
            for i, chunk in enumerate(chunks):
                with timer.stage("patches"):
                    patches = nxt.result()
                nxt = (
                    reader.submit(_cut_patches, chunks[i + 1], slide, config) if i + 1 < len(chunks) else None
                )
                images = _characterise(chunk, patches, slide, models, config, timer, result)
                with timer.stage("write"):
                    if written is not None:
                        written.result()
                    if images is not None:
                        written = writer.submit(_write_images, chunk, *images, result, tmp)
                done += len(chunk)
                if progress:
                    progress("glomeruli", done, len(records))
            with timer.stage("write"):
                if written is not None:
                    written.result()
        with timer.stage("write"):
            outputs = _write_annotations(result, tmp, config.xml)
        result.timings = dict(timer.times)
        result.timings["total"] = time.perf_counter() - t_start
        summary = _write_summary_and_report(result, tmp, outputs, slide, tissue, det_stats, config)
        final = output_dir(slide_path, out_root)
        release_partial_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        slide.close()
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _records_from_circles(circles: np.ndarray, margin_px: float) -> list[GlomerulusRecord]:
    """One record per circle, numbered in reading order (top to bottom, then left to right)."""
    records = []
    order = np.lexsort((circles[:, 0], circles[:, 1])) if len(circles) else np.zeros(0, int)
    for i, k in enumerate(order, start=1):
        x, y, r, s = (float(v) for v in circles[k])
        box = patch_box(x, y, r, margin_px)
        records.append(
            GlomerulusRecord(id=i, x=x, y=y, radius=r, score=s, box=box, patch_scale=PATCH_SIZE / box[2])
        )
    return records


def _cut_patches(chunk: list[GlomerulusRecord], slide: Slide, config: PipelineConfig) -> np.ndarray:
    """The (N, PATCH_SIZE, PATCH_SIZE, 3) patches of a chunk of glomeruli, read in threads."""

    def cut(rec: GlomerulusRecord) -> np.ndarray:
        x0, y0, w, h = rec.box
        return slide.read_patch(x0, y0, w, h, PATCH_SIZE, PATCH_SIZE, config.patch_mpp)

    return np.stack([p for _, p in prefetch_map(cut, chunk, config.read_threads)])


def _characterise(
    chunk: list[GlomerulusRecord],
    patches: np.ndarray,
    slide: Slide,
    models: Models,
    config: PipelineConfig,
    timer: StageTimer,
    result: SlideResult,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Classify, segment and measure a chunk of glomeruli; returns (patches, masks) to write as
    images (None when the run writes none)."""
    from glomkit.classify.predict import classify_and_decide
    from glomkit.segment.morphometry import glomerulus_component, mask_to_polygon, measure_mask
    from glomkit.segment.predict import segment_patches

    scheme = result.scheme
    with timer.stage("classify"):
        probs, labels = classify_and_decide(models.classifier, patches, config.batch_patches)
    with timer.stage("segment"):
        if config.outline_margin_um is None:
            masks = segment_patches(models.segmenter, patches, config.batch_patches)
        else:
            masks = _segment_cropped(chunk, patches, models, config.outline_margin_um / slide.mpp, config)
        for j, rec in enumerate(chunk):  # the glomerulus under the circle, not a neighbour or a strip
            cx, cy = (rec.x - rec.box[0]) * rec.patch_scale, (rec.y - rec.box[1]) * rec.patch_scale
            masks[j] = glomerulus_component(masks[j], cx, cy, rec.radius * rec.patch_scale)
    with timer.stage("measure"):
        ggs = scheme.ggs_probability(probs)
        for j, rec in enumerate(chunk):
            p = probs[j]
            rec.probs = {n: float(p[c]) for c, n in enumerate(scheme.names)}
            cls = scheme.classes[int(labels[j])]
            rec.label = cls.name
            rec.is_glomerulus = cls.is_glomerulus
            rec.ggs_probability = float(ggs[j])
            m = masks[j]
            if m.any():
                meas = measure_mask(m, slide.mpp / rec.patch_scale)
                rec.area_um2 = float(meas["area_um2"])
                rec.diameter_um = float(meas["diameter_um"])
                rec.perimeter_um = float(meas["perimeter_um"])
                poly = np.asarray(mask_to_polygon(m), dtype=np.float64)
                if len(poly) >= 3:
                    rec.polygon = poly / rec.patch_scale + np.array(rec.box[:2], dtype=np.float64)
    return (patches, masks) if config.write_images else None


def _segment_cropped(chunk, patches: np.ndarray, models: Models, margin_px: float, config) -> np.ndarray:
    """Segment each patch cut down to its circle plus ``margin_px`` (level-0 px), resized to the
    patch size; the masks are put back in the whole patch's frame."""
    from glomkit.segment.predict import segment_patches

    size = patches.shape[1]
    crops, boxes = [], []
    for j, rec in enumerate(chunk):
        s = rec.patch_scale
        cx, cy, half = (rec.x - rec.box[0]) * s, (rec.y - rec.box[1]) * s, (rec.radius + margin_px) * s
        x0, y0 = max(0, int(round(cx - half))), max(0, int(round(cy - half)))
        x1, y1 = min(size, int(round(cx + half))), min(size, int(round(cy + half)))
        if x1 - x0 < 8 or y1 - y0 < 8:
            x0, y0, x1, y1 = 0, 0, size, size
        crops.append(cv2.resize(patches[j, y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_LINEAR))
        boxes.append((x0, y0, x1, y1))
    small = segment_patches(models.segmenter, np.stack(crops), config.batch_patches)
    masks = np.zeros((len(chunk), size, size), dtype=small.dtype)
    for j, (x0, y0, x1, y1) in enumerate(boxes):
        m = cv2.resize(small[j].astype(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        masks[j, y0:y1, x0:x1] = m.astype(small.dtype)
    return masks


def _write_images(chunk, patches: np.ndarray, masks: np.ndarray, result: SlideResult, d: Path) -> None:
    """patches/, masks/ (0/255) and overlays/ (the contour on the patch), one folder per class."""
    from glomkit.io.atomic import write_png
    from glomkit.io.paths import path_under

    for j, rec in enumerate(chunk):
        # class names are checked when the model loads; path_under asserts it again
        name = f"{result.stem}_{rec.id}.png"
        rec.patch = f"patches/{rec.label}/{name}"
        rec.mask = f"masks/{rec.label}/{name}"
        write_png(path_under(d, "patches", rec.label, name), patches[j])
        m = masks[j].astype(np.uint8) * 255
        write_png(path_under(d, "masks", rec.label, name), m)
        overlay = patches[j].copy()
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(overlay, contours, -1, result.scheme.get(rec.label).color, 2)
        write_png(path_under(d, "overlays", rec.label, name), overlay)


def _write_annotations(result: SlideResult, d: Path, xml: str = "both") -> list[str]:
    """The ImageScope XML (``xml``: which layers), the QuPath GeoJSON and the table."""
    from functools import partial

    from glomkit.io.geojson import write_geojson
    from glomkit.io.imagescope import write_imagescope_xml
    from glomkit.io.table import write_table

    outputs = []
    for name, writer in (
        (f"{result.stem}.xml", partial(write_imagescope_xml, contents=xml)),
        (f"{result.stem}.geojson", write_geojson),
        (f"{result.stem}_glomeruli.csv", write_table),
    ):
        writer(d / name, result)
        outputs.append(name)
    return outputs


def _write_summary_and_report(result, d: Path, outputs, slide: Slide, tissue, det_stats, config) -> dict:
    from glomkit.io.report import write_report_html, write_summary

    extra = {
        "glomkit_version": __version__,
        "mpp_source": slide.mpp_source,
        "slide_format": slide.format,
        "levels": slide.level_count,
        "tissue_fraction": float(tissue.mean()),
        "detection": {k: float(v) for k, v in det_stats.items()},
        "config": {k: v for k, v in asdict(config).items() if k != "extra"},
        "outputs": outputs + ["report.html"],
    }
    # summary.json is written last: its presence marks the folder complete.
    summary = write_summary(d / ".summary.json", result, extra)
    write_report_html(d / "report.html", result, summary)
    os.replace(d / ".summary.json", d / SUMMARY)
    return summary
