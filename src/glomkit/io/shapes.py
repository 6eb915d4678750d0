"""Plane geometry the writers and readers share: circles, ellipses and polygons in level-0 px."""

from __future__ import annotations

import math

import numpy as np


def ellipse_area(a: float, b: float) -> float:
    """Area of an ellipse with half-axes ``a`` and ``b``."""
    return math.pi * a * b


def ellipse_perimeter(a: float, b: float) -> float:
    """Perimeter of an ellipse (Ramanujan's second approximation; exact for a circle)."""
    a, b = abs(a), abs(b)
    if a + b == 0:
        return 0.0
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def polygon_area(points: np.ndarray) -> float:
    """Area of a simple polygon (shoelace), whether or not its ring is closed."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def polygon_perimeter(points: np.ndarray) -> float:
    """Length of the closed outline through ``points``."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(p) < 2:
        return 0.0
    return float(np.linalg.norm(p - np.roll(p, -1, axis=0), axis=1).sum())


def circle_polygon(x: float, y: float, radius: float, n: int = 64) -> np.ndarray:
    """(n, 2) points on a circle, counter-clockwise in image coordinates, not closed."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([x + radius * np.cos(t), y + radius * np.sin(t)], axis=1)


def open_ring(points: np.ndarray) -> np.ndarray:
    """Drop the repeated last point of a closed ring."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(p) > 1 and np.array_equal(p[0], p[-1]):
        return p[:-1]
    return p


def closed_ring(points: np.ndarray) -> np.ndarray:
    """Repeat the first point at the end (GeoJSON rings are closed)."""
    p = open_ring(points)
    return np.concatenate([p, p[:1]], axis=0) if len(p) else p


def enclosing_circle(points: np.ndarray) -> tuple[float, float, float]:
    """Minimum enclosing circle ``(x, y, radius)`` of (K, 2) points (``cv2.minEnclosingCircle``)."""
    import cv2

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        raise ValueError("no points")
    if len(pts) == 1:
        return float(pts[0, 0]), float(pts[0, 1]), 0.0
    # cv2 works in float32 with absolute tolerances: centre and scale the points to about [-1, 1]
    # first (large level-0 coordinates otherwise give wrong circles for near-collinear points)
    origin = pts.mean(axis=0)
    scale = float(np.abs(pts - origin).max()) or 1.0
    (cx, cy), r = cv2.minEnclosingCircle(((pts - origin) / scale).astype(np.float32))
    x, y = float(cx) * scale + origin[0], float(cy) * scale + origin[1]
    # guarantee enclosure despite float32 rounding
    reach = float(np.hypot(pts[:, 0] - x, pts[:, 1] - y).max())
    return float(x), float(y), max(float(r) * scale, reach)


def ellipse_circle(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float]:
    """Circle of an ellipse given by two opposite corners of its box: its centre, mean half-axis."""
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0, (abs(x1 - x0) + abs(y1 - y0)) / 4.0
