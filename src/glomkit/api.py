"""The Python API: glomkit's models and its whole pipeline in a few lines (no torch needed).

>>> import glomkit
>>> det = glomkit.Detector.load()                       # doctest: +SKIP
>>> found = det.run(image, mpp=0.5)                     # doctest: +SKIP
>>> res = glomkit.run_slide("slide.svs")                # doctest: +SKIP
>>> res.summary["ggs_percent"], res.save("out")         # doctest: +SKIP

Each model class wraps one ONNX model; ``load(None)`` is the bundled one, and a name such as
``"unet"`` or a path picks another. Errors are :class:`glomkit.GlomkitError` with one line that
names the argument at fault (``mpp=``, ``region=``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from glomkit import GlomkitError
from glomkit.infer.detect import DetectOptions, Region, detect_slide
from glomkit.models.runtime import OnnxModel
from glomkit.slide.reader import Slide

Source = Slide | str | Path | np.ndarray
Patches = np.ndarray | Sequence[np.ndarray] | Sequence[str | Path]


class Records(list):
    """A list of records (dataclasses) that turns into a table."""

    def to_dataframe(self):
        """A ``pandas.DataFrame``, one row per record (needs the ``pandas`` extra)."""
        from glomkit.io.dataframe import to_dataframe

        columns = [f.name for f in fields(self.record_type)] if self.record_type else []
        rows = [{k: v for k, v in asdict(r).items() if k in columns} for r in self]
        return to_dataframe(rows, columns)

    record_type: type | None = None


@dataclass(frozen=True)
class Detection:
    """One detected glomerulus: a circle in level-0 px of its source, and its score."""

    x: float
    y: float
    radius: float
    score: float
    mpp: float  # µm per level-0 px of the source

    @property
    def radius_um(self) -> float:
        return self.radius * self.mpp

    @property
    def diameter_um(self) -> float:
        return 2.0 * self.radius * self.mpp


class Detections(Records):
    """The detections of one source, best score first."""

    record_type = Detection

    def to_array(self) -> np.ndarray:
        """(N, 4) x, y, radius, score."""
        return np.array([[d.x, d.y, d.radius, d.score] for d in self], np.float64).reshape(-1, 4)


@dataclass(frozen=True)
class Classification:
    """A patch's class under the model's decision rule, with calibrated probabilities."""

    label: str
    is_glomerulus: bool
    ggs_probability: float
    probs: dict[str, float]


class Classifications(Records):
    record_type = Classification

    def to_dataframe(self):
        from glomkit.io.dataframe import to_dataframe

        rows = [
            {"label": c.label, "is_glomerulus": c.is_glomerulus, "ggs_probability": c.ggs_probability}
            | {f"prob_{k}": v for k, v in c.probs.items()}
            for c in self
        ]
        return to_dataframe(rows, list(rows[0]) if rows else ["label", "is_glomerulus", "ggs_probability"])


@dataclass(frozen=True)
class Segmentation:
    """A patch's glomerulus mask (bool, the patch's size), its area and outline in patch px."""

    mask: np.ndarray
    area_px: int
    polygon: np.ndarray  # (K, 2) x, y; empty when the mask is

    def measure(self, um_per_px: float) -> dict[str, float]:
        """Area (µm²), equivalent diameter and perimeter (µm) at ``um_per_px``, the patch's own
        scale (a pipeline patch: the slide's mpp / the record's ``patch_scale``)."""
        from glomkit.infer.morphometry import measure_mask
        from glomkit.slide.reader import check_mpp

        scale = check_mpp(um_per_px, "measure", "um_per_px=")
        return {k: float(v) for k, v in measure_mask(self.mask, scale).items()}


class Segmentations(Records):
    record_type = Segmentation

    def to_dataframe(self):
        from glomkit.io.dataframe import to_dataframe

        return to_dataframe(
            ({"area_px": s.area_px, "vertices": len(s.polygon)} for s in self), ["area_px", "vertices"]
        )


class _Model:
    task = ""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model

    @classmethod
    def load(
        cls, name_or_path: str | Path | None = None, *, device: str = "auto", threads: int | None = None
    ):
        """The bundled model (``None``), a bundled name, or an ``.onnx`` file glomkit wrote."""
        from glomkit.models.registry import resolve_model

        return cls(
            OnnxModel(
                resolve_model(name_or_path, cls.task), expect_task=cls.task, device=device, threads=threads
            )
        )

    @property
    def path(self) -> Path:
        return self.model.path

    @property
    def metadata(self):
        """The model's validated metadata (``glomkit.models.metadata``)."""
        return self.model.info.typed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path.name!r})"


class Detector(_Model):
    """Finds glomeruli as circles, slide-wide or in a numpy image."""

    task = "detector"

    def run(
        self,
        source: Source,
        *,
        mpp: float | None = None,
        mpp_override: bool = False,
        region: Region | None = None,
        score_threshold: float | None = None,
        tta: bool | None = None,
        options: DetectOptions | None = None,
    ) -> Detections:
        """Detections in ``source``: a :class:`~glomkit.Slide`, a slide or image path, or an RGB
        uint8 array (H, W, 3). ``mpp`` (µm/px) is needed where the source does not record it (a
        file recording another scale is refused unless ``mpp_override=True``);
        ``region=(x, y, w, h)`` in level-0 px limits detection to that box. Circles are in level-0 px.
        """
        opts = replace(options or DetectOptions(), score_threshold=score_threshold, tta=tta)
        with _open(source, mpp, mpp_override) as slide:
            circles = detect_slide(slide, self.model, opts, region=region)
            found = Detections(Detection(*map(float, c), slide.mpp) for c in circles)
        found.sort(key=lambda d: -d.score)
        return found


class Classifier(_Model):
    """Classifies glomerulus patches (normal, sclerosis subtypes, non-glomerular)."""

    task = "classifier"

    @property
    def classes(self) -> list[str]:
        return list(self.model.info.scheme.names)

    def run(self, patches: Patches, *, batch_size: int = 32) -> Classifications:
        """One classification per patch (RGB uint8 arrays of any size, or image paths)."""
        from glomkit.infer.characterise import classify_calls

        out = Classifications()
        for cls, probs, ggs in classify_calls(self.model, _patches(patches), batch_size):
            out.append(Classification(cls.name, cls.is_glomerulus, ggs, probs))
        return out


class Segmenter(_Model):
    """Outlines the glomerulus in each patch."""

    task = "segmenter"

    def run(self, patches: Patches, *, batch_size: int = 16) -> Segmentations:
        """One mask per patch (RGB uint8 arrays of any size, or image paths), at the patch's size.

        The glomerulus is the component under the patch's centre, by the pipeline's rule
        (``glomkit.infer.morphometry.glomerulus_component`` with the patch's inscribed circle): a
        neighbouring glomerulus or a strip of tissue at the border is dropped.
        """
        from glomkit.infer.morphometry import glomerulus_component, mask_to_polygon
        from glomkit.infer.segment import predict_probs

        thr = self.model.info.typed.threshold
        out = Segmentations()
        for prob in predict_probs(self.model, _patches(patches), batch_size):
            h, w = prob.shape[:2]
            m = glomerulus_component(prob > thr, (w - 1) / 2, (h - 1) / 2, min(h, w) / 2)
            poly = np.asarray(mask_to_polygon(m), np.float64).reshape(-1, 2) if m.any() else np.zeros((0, 2))
            out.append(Segmentation(m, int(m.sum()), poly))
        return out


def run_slide(
    source: str | Path | Slide,
    *,
    mpp: float | None = None,
    mpp_override: bool = False,
    region: Region | None = None,
    roi: str | Path | None = None,
    detector: str | Path | None = None,
    classifier: str | Path | None = None,
    segmenter: str | Path | None = None,
    images: bool = True,
    **settings: Any,
):
    """Analyse a slide in memory: detect, classify, outline and measure every glomerulus.

    ``mpp``: µm/px where the slide does not record it (a slide recording a scale more than 5 % off
    is refused unless ``mpp_override=True``). ``region=(x, y, w, h)`` (level-0 px) or
    ``roi`` (an ImageScope XML / QuPath GeoJSON file whose shapes bound the analysis) limit it.
    ``detector`` / ``classifier`` / ``segmenter``: other models than the bundled ones.
    ``images=False`` keeps no patch images. Other ``settings`` are ``PipelineConfig`` fields.
    Returns a :class:`glomkit.SlideResult`; ``.save(out_dir)`` writes what ``glomkit run`` writes.
    """
    from glomkit.pipeline import PipelineConfig, analyse_slide

    known = {f.name for f in fields(PipelineConfig)}
    bad = sorted(set(settings) - known)
    if bad:
        raise GlomkitError(f"run_slide: unknown setting {bad[0]}= (known: {', '.join(sorted(known))})")
    config = PipelineConfig(
        detector=_str(detector),
        classifier=_str(classifier),
        segmenter=_str(segmenter),
        mpp=mpp,
        mpp_override=mpp_override,
        region=tuple(region) if region is not None else None,
        roi=_str(roi),
        write_images=images,
        quiet=True,
        **settings,
    )
    if isinstance(source, Slide):
        return analyse_slide(source, config)
    with _open(source, mpp, mpp_override) as slide:
        return analyse_slide(slide, config)


def _str(p: str | Path | None) -> str | None:
    return None if p is None else str(p)


class _open:
    """A context for a source: a Slide passed in stays open; one opened here is closed."""

    def __init__(self, source: Source, mpp: float | None, mpp_override: bool = False) -> None:
        if isinstance(source, Slide):
            self.slide, self.own = source, False
        elif isinstance(source, np.ndarray):
            self.slide, self.own = Slide.from_array(source, mpp), True
        elif isinstance(source, (str, Path)):
            self.slide, self.own = (
                Slide(source, mpp=mpp, mpp_arg="mpp=", mpp_override=mpp_override),
                True,
            )
        else:
            raise GlomkitError(
                f"source: expected a Slide, a path or an RGB numpy array, got {type(source).__name__}"
            )

    def __enter__(self) -> Slide:
        return self.slide

    def __exit__(self, *exc) -> None:
        if self.own:
            self.slide.close()


def _patches(patches: Patches) -> list[np.ndarray]:
    """Patches as a list of RGB uint8 arrays under the models' one input rule
    (``glomkit.io.images.rgb_input``: uint8 RGB, RGBA composited on white); paths are read."""
    from glomkit.io.images import read_rgb, rgb_input

    if isinstance(patches, np.ndarray):
        if patches.ndim == 3:
            patches = patches[None]
        if patches.ndim != 4:
            raise GlomkitError(f"patches: expected RGB uint8 (N, H, W, 3), got shape {patches.shape}")
        return [rgb_input(p, f"patches[{i}]") for i, p in enumerate(patches)]
    if isinstance(patches, (str, Path)):
        raise GlomkitError("patches: expected a list of images or paths, got one path (wrap it in a list)")
    out = []
    for i, p in enumerate(patches):
        if isinstance(p, (str, Path)):
            out.append(read_rgb(Path(p)))
        else:
            out.append(rgb_input(p, f"patches[{i}]"))
    return out
