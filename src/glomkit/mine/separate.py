"""Compound-figure separation: split a figure into panels by recursive X-Y cuts.

A *gutter* is a run of rows (or columns) that are uniform in colour across the region being cut:
white or black spacing between panels, or a panel border line. The figure is cut at every gutter,
alternately along rows and columns, recursing into each piece until no gutter remains
(Nagy & Seth's X-Y cut). Small pieces left over (axis labels, tick labels, panel letters) are
merged into the nearest panel cut from the same region, closest first, when the grown panel runs
into no other panel, grows by at most ``max_growth`` and the piece lies within the panel's side;
the rest (caption lines, letters in a strip of their own) are reported as fragments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """A panel box in figure pixels: top-left corner and size."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h

    def union(self, other: Box) -> Box:
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1 = max(self.x + self.w, other.x + other.w)
        y1 = max(self.y + self.h, other.y + other.h)
        return Box(x0, y0, x1 - x0, y1 - y0)

    def intersects(self, other: Box) -> bool:
        return (
            self.x < other.x + other.w
            and other.x < self.x + self.w
            and self.y < other.y + other.h
            and other.y < self.y + self.h
        )

    def gap_to(self, other: Box) -> int:
        """Chebyshev gap in pixels between the boxes (0 when they touch or overlap)."""
        dx = max(other.x - (self.x + self.w), self.x - (other.x + other.w), 0)
        dy = max(other.y - (self.y + self.h), self.y - (other.y + other.h), 0)
        return max(dx, dy)

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y : self.y + self.h, self.x : self.x + self.w]


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class SeparationConfig:
    """Parameters of the X-Y cut.

    tolerance: a pixel differs from its line's colour when some channel is further than this.
    max_outliers: fraction of differing pixels a line may hold and still count as uniform.
    max_mean_dev: and the line's mean deviation from its colour must be at most this (JPEG noise
        in a gutter is small everywhere, texture in a panel is large somewhere).
    min_gutter: narrowest run of uniform lines that splits (1 = a one-pixel rule splits).
    min_panel: a piece whose shorter side is below this is a fragment, not a panel.
    merge_gap: a fragment merges into a panel no further than this many pixels away.
    max_border: uniform lines this thin around a single panel are its border, kept in its box.
    max_growth: a merged fragment may grow a panel's area by at most this factor.
    """

    tolerance: int = 20
    max_outliers: float = 0.005
    max_mean_dev: float = 2.5
    min_gutter: int = 1
    min_panel: int = 48
    merge_gap: int = 14
    max_border: int = 4
    max_growth: float = 1.5
    max_depth: int = 12


@dataclass(frozen=True)
class Separation:
    """The panels of a figure and the fragments too small to be panels."""

    panels: list[Box]
    fragments: list[Box]


def _uniform_lines(region: np.ndarray, axis: int, cfg: SeparationConfig) -> np.ndarray:
    """Boolean per row (axis=0) or per column (axis=1): is the line uniform in colour?"""
    lines = region if axis == 0 else region.transpose(1, 0, 2)
    ref = np.median(lines, axis=1).astype(np.int16)
    dev = np.abs(lines.astype(np.int16) - ref[:, None, :]).max(axis=2)
    allowed = int(cfg.max_outliers * lines.shape[1])
    return ((dev > cfg.tolerance).sum(axis=1) <= allowed) & (dev.mean(axis=1) <= cfg.max_mean_dev)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) runs of False (content) in a boolean line mask."""
    out = []
    n = len(mask)
    i = 0
    while i < n:
        if mask[i]:
            i += 1
            continue
        j = i
        while j < n and not mask[j]:
            j += 1
        out.append((i, j))
        i = j
    return out


def _content_runs(uniform: np.ndarray, min_gutter: int) -> list[tuple[int, int]]:
    """Content runs, with gutters narrower than ``min_gutter`` not counted as cuts."""
    runs = _runs(uniform)
    if not runs or min_gutter <= 1:
        return runs
    merged = [runs[0]]
    for s, e in runs[1:]:
        if s - merged[-1][1] < min_gutter:
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def _leaf(box: Box, cfg: SeparationConfig) -> tuple[list[Box], list[Box], list[Box]]:
    """(panels, loose fragments, final fragments) of a leaf region."""
    if min(box.w, box.h) >= cfg.min_panel:
        return [box], [], []
    return [], [box], []


def _xy_cut(
    image: np.ndarray, box: Box, cfg: SeparationConfig, depth: int
) -> tuple[list[Box], list[Box], list[Box]]:
    """Cut ``box`` recursively: (panels, loose fragments, final fragments).

    A *loose* fragment is a small leaf that is a direct piece of this region; the caller merges it
    into a sibling panel (an axis label into its chart) or, when there is none, makes it final
    (caption words, which sit in a strip of their own, never join a panel).
    """
    region = box.crop(image)
    if region.size == 0:
        return [], [], []
    rows = _content_runs(_uniform_lines(region, 0, cfg), cfg.min_gutter)
    if not rows:
        return [], [], []
    if len(rows) == 1:
        y0, y1 = rows[0]
        cols = _content_runs(_uniform_lines(region[y0:y1], 1, cfg), cfg.min_gutter)
        if not cols:
            return [], [], []
        if len(cols) == 1:
            x0, x1 = cols[0]
            inner = Box(box.x + x0, box.y + y0, x1 - x0, y1 - y0)
            if inner == box or depth >= cfg.max_depth:
                return _leaf(inner, cfg)
            # trimmed margins: the trimmed region may now have gutters of its own
            panels, loose, final = _xy_cut(image, inner, cfg, depth + 1)
            framed = max(y0, x0, box.h - y1, box.w - x1) <= cfg.max_border
            if framed and len(panels) <= 1 and min(box.w, box.h) >= cfg.min_panel:
                return [box], [], []  # a panel inside its own border line: the border belongs to it
            return panels, loose, final
        pieces = [Box(box.x + x0, box.y + y0, x1 - x0, y1 - y0) for x0, x1 in cols]
    else:
        pieces = [Box(box.x, box.y + y0, box.w, y1 - y0) for y0, y1 in rows]
    panels: list[Box] = []
    loose: list[Box] = []
    final: list[Box] = []
    for piece in pieces:
        p, lo, fi = _xy_cut(image, piece, cfg, depth + 1)
        panels += p
        final += fi
        if p:  # fragments beside panels of their own piece were merged there; the rest are final
            final += lo
        elif len(lo) == 1:
            loose += lo
        elif lo:  # a strip of small pieces (tick labels, a caption line) moves as one
            group = lo[0]
            for b in lo[1:]:
                group = group.union(b)
            loose.append(group)
    if panels:
        panels, left = _merge_fragments(panels, loose, cfg)
        return panels, [], final + left
    return panels, loose, final


def _within_side(frag: Box, panel: Box, slack: int) -> bool:
    """Does ``frag`` lie within the panel's extent along the side it sits on (a label, not a caption)?"""
    if frag.x < panel.x + panel.w and panel.x < frag.x + frag.w:  # above or below
        return frag.x >= panel.x - slack and frag.x + frag.w <= panel.x + panel.w + slack
    return frag.y >= panel.y - slack and frag.y + frag.h <= panel.y + panel.h + slack


def _merge_fragments(
    panels: list[Box], fragments: list[Box], cfg: SeparationConfig
) -> tuple[list[Box], list[Box]]:
    """Merge fragments into panels, closest pair first, while a grown panel overlaps no other panel."""
    panels = list(panels)
    left = list(fragments)
    while left:
        best = None
        for k, frag in enumerate(left):
            for i, p in enumerate(panels):
                gap = p.gap_to(frag)
                if gap > cfg.merge_gap or (best is not None and gap >= best[0]):
                    continue
                grown = p.union(frag)
                beside = (frag.x < p.x + p.w and p.x < frag.x + frag.w) or (
                    frag.y < p.y + p.h and p.y < frag.y + frag.h
                )
                if not beside or grown.area > cfg.max_growth * p.area:
                    continue
                if not _within_side(frag, p, cfg.merge_gap):
                    continue
                if any(grown.intersects(q) for j, q in enumerate(panels) if j != i):
                    continue
                best = (gap, k, i, grown)
        if best is None:
            break
        _, k, i, grown = best
        panels[i] = grown
        del left[k]
    return panels, left


def separate_panels(image: np.ndarray, config: SeparationConfig | None = None) -> Separation:
    """Split an RGB figure (H,W,3 uint8) into panel boxes, in reading order (top-down, left-right)."""
    cfg = config or SeparationConfig()
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3]
    panels, loose, final = _xy_cut(img, Box(0, 0, img.shape[1], img.shape[0]), cfg, 0)
    fragments = loose + final
    panels.sort(key=lambda b: (b.y, b.x))
    fragments.sort(key=lambda b: (b.y, b.x))
    return Separation(panels=panels, fragments=fragments)
