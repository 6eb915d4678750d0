"""Regions of interest: analyse only inside the shapes of an annotation file (e.g. cortex only).

Polygons and rectangles are taken as drawn; ellipses, circles and points as their circles. A
glomerulus belongs to the ROI when its centre lies inside one of the shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from glomkit import GlomkitError

ROI_SUFFIXES = (".geojson", ".json", ".xml")


def roi_file(roi: str | Path, slide_path: str | Path) -> Path:
    """The ROI file of a slide: ``roi`` itself, or ``<slide-stem>.geojson/.json/.xml`` in the
    folder ``roi`` (a one-line GlomkitError when the folder has none for this slide)."""
    roi = Path(roi)
    if not roi.is_dir():
        return roi
    stem = Path(slide_path).stem
    for suffix in ROI_SUFFIXES:
        if (roi / f"{stem}{suffix}").is_file():
            return roi / f"{stem}{suffix}"
    raise GlomkitError(f"{roi}: no ROI file for {Path(slide_path).name} ({stem}.geojson or {stem}.xml)")


@dataclass
class Roi:
    """Shapes in level-0 px: polygons (K, 2) and circles (x, y, r)."""

    polygons: list[np.ndarray] = field(default_factory=list)
    circles: list[tuple[float, float, float]] = field(default_factory=list)
    source: str = ""

    @classmethod
    def read(cls, path: str | Path, mpp: float | None = None) -> Roi:
        """The shapes of an ImageScope XML or QuPath GeoJSON file (one-line GlomkitError when it
        holds none)."""
        from glomkit.io.annotations import read_annotations

        anns = read_annotations(path, mpp=mpp)
        roi = cls(source=str(path))
        for i, a in enumerate(anns, start=1):
            if a.kind == "polygon":
                _check_area(a.polygon, path, i, a.label)
            if a.polygon is not None and len(a.polygon) >= 3:
                roi.polygons.append(np.asarray(a.polygon, np.float64))
            elif a.radius > 0:
                roi.circles.append(a.circle())
        if not roi.polygons and not roi.circles:
            raise GlomkitError(f"{path}: the ROI file holds no region (no polygon, rectangle or ellipse)")
        return roi

    def bbox(self) -> tuple[float, float, float, float]:
        """Level-0 (x, y, w, h) around every shape."""
        xs, ys = [], []
        for p in self.polygons:
            xs += [p[:, 0].min(), p[:, 0].max()]
            ys += [p[:, 1].min(), p[:, 1].max()]
        for x, y, r in self.circles:
            xs += [x - r, x + r]
            ys += [y - r, y + r]
        x0, y0 = math.floor(min(xs)), math.floor(min(ys))
        return float(x0), float(y0), float(math.ceil(max(xs)) - x0), float(math.ceil(max(ys)) - y0)

    def mask(self, shape: tuple[int, int], origin: tuple[float, float], downsample: float) -> np.ndarray:
        """Bool mask of ``shape`` whose (0, 0) is level-0 ``origin`` at ``downsample`` px per mask px."""
        m = np.zeros(shape, np.uint8)
        ox, oy = origin
        for p in self.polygons:
            pts = np.round((p - (ox, oy)) / downsample).astype(np.int32)
            cv2.fillPoly(m, [pts], 1)
        for x, y, r in self.circles:
            c = (int(round((x - ox) / downsample)), int(round((y - oy) / downsample)))
            cv2.circle(m, c, max(1, int(round(r / downsample))), 1, -1)
        return m.astype(bool)

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Bool (N,): which level-0 points (N, 2) lie inside a shape (on the edge counts)."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        inside = np.zeros(len(xy), bool)
        for x, y, r in self.circles:
            inside |= (xy[:, 0] - x) ** 2 + (xy[:, 1] - y) ** 2 <= r * r
        for p in self.polygons:
            contour = p.astype(np.float32).reshape(-1, 1, 2)
            for i in np.flatnonzero(~inside):
                inside[i] = cv2.pointPolygonTest(contour, (float(xy[i, 0]), float(xy[i, 1])), False) >= 0
        return inside


def _check_area(polygon: np.ndarray | None, path: str | Path, index: int, label: str) -> None:
    """A one-line GlomkitError for a ROI polygon that encloses no area (under 3 distinct points, or
    all on one line): taken as a circle or dropped, it would silently bound the wrong region."""
    pts = np.zeros((0, 2)) if polygon is None else np.asarray(polygon, np.float64).reshape(-1, 2)
    distinct = len(np.unique(pts, axis=0))
    area = 0.0 if len(pts) < 3 else abs(float(cv2.contourArea(pts.astype(np.float32))))
    if distinct < 3 or area <= 0.0:
        what = f"{distinct} distinct point(s)" if distinct < 3 else "points all on one line"
        raise GlomkitError(
            f"{path}: shape {index} ({label!r}) is a polygon of {what}, not an area; "
            "a ROI needs polygons of 3 or more points that enclose an area"
        )
