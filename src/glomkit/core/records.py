"""The records that flow from the pipeline to the writers: one per glomerulus, one per slide.

Coordinates are level-0 pixels; physical sizes are in µm (the unit is in the name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glomkit.core.schemes import ClassScheme

TABLE_COLUMNS_HEAD = ["id", "x", "y", "radius", "radius_um", "score", "label"]
TABLE_COLUMNS_TAIL = [
    "ggs_probability",
    "is_glomerulus",
    "uncertain",  # the call is near the decision (glomkit.core.trust.uncertain): check it first
    "area_um2",
    "diameter_um",
    "patch",
    "mask",
]


# each glomerulus's images: (folder, file suffix). Patches and masks are data (lossless PNG); the
# overlay (patch + outline) is for looking at, and JPEG encodes it 10x faster than PNG
IMAGE_FILES = (("patches", ".png"), ("masks", ".png"), ("overlays", ".jpg"))


def image_path(kind: str, label: str, stem: str, glomerulus_id: int) -> str:
    """The path of a glomerulus's image of ``kind`` (patches, masks, overlays) in its slide's folder."""
    suffix = dict(IMAGE_FILES)[kind]
    return f"{kind}/{label}/{stem}_{glomerulus_id}{suffix}"


def overlay_of(patch: str) -> str:
    """The overlay path of a patch path (``patches/<label>/<name>.png``); "" for other paths."""
    parts = patch.split("/")
    if len(parts) != 3 or parts[0] != "patches":
        return ""
    return f"overlays/{parts[1]}/{parts[2].rsplit('.', 1)[0]}{dict(IMAGE_FILES)['overlays']}"


def table_columns(scheme: ClassScheme) -> list[str]:
    """Columns of ``<stem>_glomeruli.csv`` (and of a synthetic slide's truth CSV)."""
    return TABLE_COLUMNS_HEAD + [f"prob_{n}" for n in scheme.names] + TABLE_COLUMNS_TAIL


@dataclass
class GlomerulusRecord:
    """One detection: its circle, its class, its outline and measurements."""

    id: int
    x: float  # centre, level-0 px
    y: float
    radius: float  # level-0 px
    score: float  # detection score
    label: str = ""
    probs: dict[str, float] = field(default_factory=dict)
    ggs_probability: float = float("nan")
    is_glomerulus: bool = True
    area_um2: float = float("nan")
    diameter_um: float = float("nan")  # equivalent diameter of the segmented area
    perimeter_um: float = float("nan")
    polygon: np.ndarray | None = None  # (K, 2) outline in level-0 px, from the segmentation
    box: tuple[int, int, int, int] | None = None  # patch box (x0, y0, w, h), level-0 px
    patch_scale: float = float("nan")  # patch px per level-0 px
    patch: str = ""  # path of the patch PNG, relative to the slide's output folder
    mask: str = ""

    def circle(self) -> tuple[float, float, float]:
        return (self.x, self.y, self.radius)


@dataclass
class SlideRecord:
    """Everything the writers need for one slide."""

    stem: str
    source: str
    mpp: float  # level-0 µm per pixel
    width: int  # level-0 size
    height: int
    scheme: ClassScheme
    glomeruli: list[GlomerulusRecord] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    models: dict[str, Any] = field(default_factory=dict)  # task -> {file, version, sha256...}
    thumbnail: np.ndarray | None = None  # RGB uint8
    thumbnail_downsample: float = 1.0  # level-0 px per thumbnail px
    # level-0 (x, y) of the slide's bounds: the thumbnail's (0, 0), and QuPath's image origin
    # (QuPath crops OpenSlide images to their bounds; MRXS and SCN have an offset)
    origin: tuple[float, float] = (0.0, 0.0)
    extra: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Count per class, over all detections (non-glomerular included)."""
        out = {n: 0 for n in self.scheme.names}
        for g in self.glomeruli:
            out[g.label] = out.get(g.label, 0) + 1
        return out

    def n_glomeruli(self) -> int:
        return sum(1 for g in self.glomeruli if g.is_glomerulus)

    def n_sclerosed(self) -> int:
        ggs = {c.name for c in self.scheme.classes if c.is_ggs}
        return sum(1 for g in self.glomeruli if g.is_glomerulus and g.label in ggs)

    def ggs_percent(self) -> float | None:
        """Global glomerulosclerosis %: sclerosed glomeruli / all glomeruli x 100 (None if none)."""
        n = self.n_glomeruli()
        return None if n == 0 else 100.0 * self.n_sclerosed() / n
