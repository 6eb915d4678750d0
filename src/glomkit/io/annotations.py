"""Annotation import: circles (and outlines) from ImageScope XML or QuPath GeoJSON files.

Every shape becomes a circle in level-0 pixels. Ellipses give their circle directly (centre of the
box, radius = mean of the half-axes); rectangles and polygons give their minimum enclosing circle
(``cv2.minEnclosingCircle``), and polygons keep their outline.

>>> anns = read_annotations("slide.xml")          # doctest: +SKIP
>>> [(a.label, a.x, a.y, a.radius) for a in anns]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glomkit import GlomkitError
from glomkit.io.shapes import ellipse_circle, enclosing_circle

__all__ = ["Annotation", "read_annotations", "enclosing_circle", "ellipse_circle"]

KINDS = ("ellipse", "circle", "rectangle", "polygon", "point")
MAX_COORD = 1e7  # level-0 px: 10 million px is 2.5 m at 0.25 µm/px, beyond any slide


@dataclass
class Annotation:
    """One annotated object as a circle in level-0 px, with its outline when it had one.

    ``kind`` says what it was drawn as: ellipse, circle, rectangle, polygon or point.
    """

    label: str
    x: float
    y: float
    radius: float
    polygon: np.ndarray | None = None  # (K, 2) level-0 px
    kind: str = "ellipse"

    def __post_init__(self) -> None:
        self.x, self.y, self.radius = float(self.x), float(self.y), float(self.radius)
        if self.polygon is not None:
            self.polygon = np.asarray(self.polygon, dtype=np.float64).reshape(-1, 2)

    def circle(self) -> tuple[float, float, float]:
        return (self.x, self.y, self.radius)


def read_annotations(path: str | Path, mpp: float | None = None) -> list[Annotation]:
    """Read an ImageScope ``.xml`` or a QuPath ``.geojson``/``.json`` file.

    ``mpp`` (level-0 µm/px of the slide the annotations are used with) is passed to the XML reader,
    which rescales coordinates when the file states a different ``MicronsPerPixel``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise GlomkitError(f"{path}: annotation file not found")
    if suffix == ".xml":
        from glomkit.io.imagescope import read_imagescope_xml

        return read_imagescope_xml(path, mpp=mpp)
    if suffix in (".geojson", ".json"):
        from glomkit.io.geojson import read_geojson

        return read_geojson(path)
    raise GlomkitError(f"{path}: unknown annotation format {suffix!r} (expected .xml, .geojson or .json)")
