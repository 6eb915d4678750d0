"""Annotation import: circles (and outlines) from ImageScope XML or QuPath GeoJSON files.

Every shape becomes a circle in level-0 pixels. Ellipses give their circle directly (centre of the
box, radius = mean of the half-axes); rectangles and polygons give their minimum enclosing circle
(``cv2.minEnclosingCircle``), and polygons keep their outline.

>>> anns = read_annotations("slide.xml")          # doctest: +SKIP
>>> [(a.label, a.x, a.y, a.radius) for a in anns]  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from glomkit import GlomkitError
from glomkit.io.annotation_types import KINDS, MAX_COORD, Annotation
from glomkit.io.geojson import read_geojson
from glomkit.io.imagescope import read_imagescope_xml
from glomkit.io.shapes import ellipse_circle, enclosing_circle

__all__ = ["Annotation", "KINDS", "MAX_COORD", "read_annotations", "enclosing_circle", "ellipse_circle"]


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
        return read_imagescope_xml(path, mpp=mpp)
    if suffix in (".geojson", ".json"):
        return read_geojson(path)
    raise GlomkitError(f"{path}: unknown annotation format {suffix!r} (expected .xml, .geojson or .json)")
