"""The annotation record the ImageScope and GeoJSON readers return, and the limits they share.

It sits below the readers (``imagescope``, ``geojson``) and the dispatcher (``annotations``), so
that imports flow one way: ``annotations`` -> readers -> this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Annotation", "KINDS", "MAX_COORD"]

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
