"""The flow for one slide: slide -> tiles -> circles -> patches -> classes, masks -> a SlideResult.

:func:`analyse_slide` computes in memory (``glomkit.run_slide`` in the API); :func:`process_slide`
also saves it (``SlideResult.save``: ``OUT/<stem>/`` is built in a hidden folder beside its final
one and renamed into place, so it is either complete or absent, and a crashed run resumes by
skipping the slides whose folder exists). The inference itself lives in ``glomkit.infer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from glomkit import GlomkitError, __version__
from glomkit.core.records import GlomerulusRecord, image_path
from glomkit.core.stain import recognise_stain
from glomkit.infer.detect import (
    DetectOptions,
    Region,
    clip_region,
    detect_circles,
    detection_grid,
    slide_colour,
)
from glomkit.infer.patches import PATCH_MPP, PATCH_SIZE, patch_box, read_patches
from glomkit.results import SUMMARY, SlideResult, patch_images
from glomkit.slide.reader import SLIDE_SUFFIXES, Slide
from glomkit.slide.tissue import tissue_mask

PATCH_CHUNK = 32  # glomeruli characterised at once (the next chunk is read meanwhile)


@dataclass
class PipelineConfig(DetectOptions):
    """Settings of one run; picklable, so cohort workers get the same. The tile loop's settings
    (tile size, overlap, threshold, TTA, colour transfer, NMS, ...) are :class:`DetectOptions`'s."""

    detector: str | None = None  # model path; None = bundled default
    classifier: str | None = None
    segmenter: str | None = None
    mpp: float | None = None  # the user's --mpp for images that carry none
    mpp_table: str | None = None  # a CSV of file,mpp: per-slide --mpp (glomkit.slide.mpp_table)
    mpp_override: bool = False  # --mpp / the table replaces a contradicting recorded scale
    accept_any_stain: bool = False  # run a slide recognised as not brightfield (normally refused)
    device: str = "auto"
    threads: int | None = None  # ONNX Runtime intra-op threads; None = all this process may use
    batch_patches: int = 16
    margin_um: float = 12.5  # 50 px at 0.25 µm/px, the published setting
    # the segmenter sees the patch cut down to the circle + this margin (None: the whole patch); 5 µm
    # gave the best box AP on the hubmap_pas validation block (docs/models/detector.md)
    outline_margin_um: float | None = 5.0
    # glomerulus patches: the pyramid level rule of glomkit.infer.patches.PATCH_MPP (None: level 0)
    patch_mpp: float | None = PATCH_MPP
    thumbnail_px: int = 2048
    write_images: bool = True
    max_pixels: int | None = None  # pixel limit of plain images; None = glomkit.io.images default
    xml: str = "both"  # ImageScope layers: both, circles (one shape per glomerulus) or outlines
    region: Region | None = None  # level-0 (x, y, w, h) to analyse; None: the whole slide
    roi: str | None = None  # annotation file whose shapes bound the analysis (e.g. cortex)
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def detect_options(self) -> DetectOptions:
        """The tile loop's options alone: every field of :class:`DetectOptions`, from this config."""
        return DetectOptions(**{f.name: getattr(self, f.name) for f in fields(DetectOptions)})


def find_slides(inputs: Iterable[str | Path], missing: list[Path] | None = None) -> list[Path]:
    """Expand files and folders (recursively) into slide or image files, sorted, unique.

    An input that does not exist raises GlomkitError, or is appended to ``missing`` when given."""
    out: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_file() and q.suffix.lower() in SLIDE_SUFFIXES and not _is_sidecar(q):
                    out.append(q)
        elif p.exists():
            out.append(p)
        elif missing is not None:
            missing.append(p)
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
    """The ONNX models of a run, each loaded on first use and shared by all slides of a process."""

    TASKS = ("detector", "classifier", "segmenter")

    def __init__(self, config: PipelineConfig, eager: bool = True) -> None:
        self.config = config
        self._loaded: dict[str, Any] = {}
        if eager:
            for task in self.TASKS:
                getattr(self, task)

    def _get(self, task: str):
        if task not in self._loaded:
            from glomkit.models.registry import resolve_model
            from glomkit.models.runtime import OnnxModel

            c = self.config
            self._loaded[task] = OnnxModel(
                resolve_model(getattr(c, task), task), expect_task=task, device=c.device, threads=c.threads
            )
        return self._loaded[task]

    @property
    def detector(self):
        return self._get("detector")

    @property
    def classifier(self):
        return self._get("classifier")

    @property
    def segmenter(self):
        return self._get("segmenter")

    def ggs_threshold(self) -> float:
        """The classifier's GGS threshold on P(GGS | glomerulus) (0.5 for an argmax model)."""
        from glomkit.infer.decision import Decision

        t = Decision.of(self.classifier.info.typed).threshold
        return 0.5 if t is None else float(t)

    def describe(self) -> dict[str, Any]:
        out = {}
        for task in self.TASKS:
            m = getattr(self, task)
            typed = m.info.typed
            out[task] = {
                "file": m.path.name,
                "architecture": typed.architecture,
                "backbone": typed.backbone,
                "created": typed.created,
                "glomkit_version": typed.glomkit_version,
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


def analyse_slide(
    slide: str | Path | Slide,
    config: PipelineConfig | None = None,
    models: Models | None = None,
    progress: ProgressHook | None = None,
) -> SlideResult:
    """Run the whole pipeline on one slide (or ``config.region`` / ``config.roi`` of it), in memory."""
    from glomkit.roi import Roi, roi_file

    config = config or PipelineConfig()
    timer = StageTimer()
    t_start = time.perf_counter()
    with timer.stage("load_models"):
        models = models or Models(config)
    own = not isinstance(slide, Slide)
    with timer.stage("open"):
        sl = open_slide(slide, config) if own else slide
    try:
        roi_path = roi_file(config.roi, sl.path) if config.roi else None
        roi = Roi.read(roi_path, mpp=sl.mpp) if roi_path else None
        region = config.region
        if roi is not None:
            region = roi.bbox() if region is None else _intersect(region, roi.bbox(), str(roi_path))
        box = clip_region(sl, region, "region" if roi_path is None else str(roi_path))
        # an absurd size (a wrong scale, a crafted header) is refused before any pixel is read
        detection_grid(sl, models.detector.info.typed.mpp, config.detect_options(), box)
        with timer.stage("tissue"):
            thumb, thumb_ds = sl.thumbnail(config.thumbnail_px)
            stain = recognise_stain(thumb)
            if stain.name == "not_brightfield" and not config.accept_any_stain:
                raise GlomkitError(f"{sl.path}: not a brightfield image ({stain.reason}); refused")
            tissue = tissue_mask(thumb)
            colour = slide_colour(
                config.detect_options(), models.detector.info.typed, thumb, sl.mpp * thumb_ds
            )
            if roi is not None:
                tissue &= roi.mask(tissue.shape, sl.bounds[:2], thumb_ds)
        det_stats: dict[str, float] = {}
        with timer.stage("detect"):
            circles = detect_circles(
                sl,
                models.detector,
                config.detect_options(),
                tissue,
                thumb_ds,
                region=None if box == tuple(sl.bounds) else box,
                progress=progress,
                stats=det_stats,
                colour=colour,
            )
        if roi is not None and len(circles):
            circles = circles[roi.contains(circles[:, :2])]
        result = SlideResult(
            stem=sl.path.stem,
            source=str(sl.path),
            mpp=sl.mpp,
            width=sl.width,
            height=sl.height,
            scheme=models.classifier.info.scheme,
            glomeruli=_records_from_circles(circles, config.margin_um / sl.mpp),
            models=models.describe(),
            thumbnail=thumb,
            thumbnail_downsample=thumb_ds,
            origin=(float(sl.bounds[0]), float(sl.bounds[1])),
        )
        records = result.glomeruli
        # Patches stream through classification and segmentation in chunks; only their encoded
        # images are kept, so memory grows slowly with the number of glomeruli. The next chunk's
        # patches are read, and the last chunk measured and its images encoded, in background
        # threads while the models run.
        chunks = [records[k : k + PATCH_CHUNK] for k in range(0, len(records), PATCH_CHUNK)]
        with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as encoder:
            nxt = reader.submit(_read_chunk, chunks[0], sl, config) if chunks else None
            encoded = None
            done = 0
            for i, chunk in enumerate(chunks):
                with timer.stage("patches"):
                    patches = nxt.result()
                if i + 1 < len(chunks):
                    nxt = reader.submit(_read_chunk, chunks[i + 1], sl, config)
                masks = _characterise(chunk, sl, models, config, timer, patches)
                with timer.stage("encode"):
                    if encoded is not None:
                        encoded.result()
                    encoded = encoder.submit(_finish_chunk, chunk, patches, masks, result, sl.mpp, config)
                done += len(chunk)
                if progress:
                    progress("glomeruli", done, len(records))
            with timer.stage("encode"):
                if encoded is not None:
                    encoded.result()
        result.timings = dict(timer.times)
        result.timings["total"] = time.perf_counter() - t_start
        result.extra = {
            "glomkit_version": __version__,
            "mpp_source": sl.mpp_source,
            "mpp_recorded": getattr(sl, "mpp_recorded", None),
            "slide_format": sl.format,
            "levels": sl.level_count,
            "tissue_fraction": float(tissue.mean()),
            "stain": stain.name,
            "stain_confidence": round(float(stain.confidence), 4),
            "stain_reason": stain.reason,
            "ggs_threshold": models.ggs_threshold(),
            "region": None if box == tuple(sl.bounds) else [int(v) for v in box],
            "roi": None if roi_path is None else str(roi_path),
            "detection": {k: float(v) for k, v in det_stats.items()},
            "config": {k: v for k, v in asdict(config).items() if k != "extra"},
        }
        return result
    finally:
        if own:
            sl.close()


def open_slide(path: str | Path, config: PipelineConfig) -> Slide:
    """The slide at ``path`` at its scale: recorded, or ``config.mpp_table``'s row for it, or
    ``config.mpp`` (the table's and ``--mpp`` only for slides that record none, unless
    ``config.mpp_override``: ``glomkit.slide.reader.resolve_mpp``)."""
    mpp, arg = config.mpp, "--mpp"
    if config.mpp_table:
        from glomkit.slide.mpp_table import load_mpp_table

        found = load_mpp_table(config.mpp_table).lookup(path)
        if found is not None:
            mpp, arg = found, "--mpp-table"
        elif mpp is None:
            arg = "--mpp (or a --mpp-table row)"
    return Slide(path, mpp=mpp, max_pixels=config.max_pixels, mpp_arg=arg, mpp_override=config.mpp_override)


def process_slide(
    slide_path: str | Path,
    out_root: str | Path,
    config: PipelineConfig | None = None,
    models: Models | None = None,
    progress: ProgressHook | None = None,
) -> dict[str, Any]:
    """Analyse one slide and save ``OUT/<stem>/`` (what ``glomkit run`` does); return the summary."""
    config = config or PipelineConfig()
    result = analyse_slide(slide_path, config, models, progress)
    final = result.save(out_root, xml=config.xml)
    import json

    return json.loads((final / SUMMARY).read_text())


def _intersect(a: Region, b: Region, where: str) -> Region:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    if x1 <= x0 or y1 <= y0:
        raise GlomkitError(f"{where}: the ROI does not overlap the region {tuple(a)}")
    return (x0, y0, x1 - x0, y1 - y0)


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


def _characterise(
    chunk: list[GlomerulusRecord],
    slide: Slide,
    models: Models,
    config: PipelineConfig,
    timer: StageTimer,
    patches: np.ndarray,
) -> np.ndarray:
    """Classify and segment a chunk of glomeruli from their patches; return their masks
    (:func:`_finish_chunk` measures them and keeps the encoded images)."""
    from glomkit.infer.characterise import classify_records, outline_masks

    with timer.stage("classify"):
        classify_records(models.classifier, chunk, patches, config.batch_patches)
    with timer.stage("segment"):
        margin = None if config.outline_margin_um is None else config.outline_margin_um / slide.mpp
        return outline_masks(models.segmenter, chunk, patches, margin, config.batch_patches)


def _finish_chunk(
    chunk: list[GlomerulusRecord],
    patches: np.ndarray,
    masks: np.ndarray,
    result: SlideResult,
    mpp: float,
    config: PipelineConfig,
) -> None:
    """Measure a chunk of glomeruli and keep their encoded images (run in a background thread)."""
    from glomkit.infer.characterise import measure_records

    measure_records(chunk, masks, mpp)
    if config.write_images:
        _encode_images(chunk, patches, masks, result)


def _read_chunk(chunk: list[GlomerulusRecord], slide: Slide, config: PipelineConfig) -> np.ndarray:
    """The patches of a chunk of glomeruli, read from the level ``config.patch_mpp`` asks for."""
    return read_patches(slide, [rec.box for rec in chunk], PATCH_SIZE, config.read_threads, config.patch_mpp)


def _encode_images(
    chunk: list[GlomerulusRecord], patches: np.ndarray, masks: np.ndarray, result: SlideResult
) -> None:
    """Keep each glomerulus's encoded patch, mask and overlay in ``result.images``."""
    for j, rec in enumerate(chunk):
        rec.patch = image_path("patches", rec.label, result.stem, rec.id)
        rec.mask = image_path("masks", rec.label, result.stem, rec.id)
        color = result.scheme.get(rec.label).color
        result.images[rec.id] = patch_images(rec, patches[j], masks[j], color)
