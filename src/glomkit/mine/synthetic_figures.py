"""Synthetic compound figures with known panel boxes, for testing and evaluating panel separation.

``make_compound_figure`` lays panels out in an uneven grid (rows of different heights and panel
counts) with white or black gutters, optional panel borders, panel letters (inside the panel or in
the gutter above it) and a caption below. The panel makers draw the kinds of panels a mining run
must set aside: matplotlib charts, box-and-arrow diagrams, fake fluorescence and fake electron
micrographs.
"""

from __future__ import annotations

import string

import cv2
import numpy as np

from glomkit.mine.separate import Box

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _resize_to_height(img: np.ndarray, height: int, max_aspect: float = 1.8) -> np.ndarray:
    h, w = img.shape[:2]
    aspect = float(np.clip(w / h, 1 / max_aspect, max_aspect))
    width = max(8, round(height * aspect))
    interp = cv2.INTER_AREA if height < h else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(img[:, :, :3]), (width, height), interpolation=interp)


def _draw_letter(img: np.ndarray, letter: str, x: int, y: int, scale: float, colour, box_fill=None) -> None:
    (tw, th), base = cv2.getTextSize(letter, _FONT, scale, 2)
    if box_fill is not None:
        cv2.rectangle(img, (x, y), (x + tw + 6, y + th + base + 6), box_fill, -1)
    cv2.putText(img, letter, (x + 3, y + th + 3), _FONT, scale, colour, 2, cv2.LINE_AA)


def make_compound_figure(
    panels: list[np.ndarray],
    rng: np.random.Generator,
    *,
    per_row: list[int] | None = None,
    gutter: int | None = None,
    gutter_colour: int | None = None,
    border: int | None = None,
    letters: str | None = None,
    caption_lines: int | None = None,
    row_heights: tuple[int, int] = (110, 230),
) -> tuple[np.ndarray, list[Box]]:
    """Lay ``panels`` (RGB uint8) out as one figure; returns (RGB image, box of each panel, in order).

    Any option left as None is drawn from ``rng``. ``letters`` is "none", "inside", "inside_box"
    or "gutter"; ``border`` is a border width in pixels (0 = none); ``gutter_colour`` is a grey level.
    """
    n = len(panels)
    if n == 0:
        raise ValueError("make_compound_figure needs at least one panel")
    if per_row is None:
        per_row = []
        left = n
        while left > 0:
            k = int(min(left, rng.integers(1, 5)))
            per_row.append(k)
            left -= k
    if sum(per_row) != n:
        raise ValueError(f"per_row {per_row} does not add up to {n} panels")
    gutter = int(rng.integers(3, 26)) if gutter is None else gutter
    if gutter_colour is None:
        gutter_colour = int(rng.choice([255, 255, 0, 245]))
    border = int(rng.choice([0, 0, 1, 2, 3])) if border is None else border
    letters = str(rng.choice(["none", "inside", "inside_box", "gutter"])) if letters is None else letters
    caption_lines = int(rng.choice([0, 0, 1, 2, 3])) if caption_lines is None else caption_lines
    ink = 0 if gutter_colour > 127 else 255
    letter_scale = 0.6
    letter_h = 22
    if letters == "gutter" and gutter < letter_h + 4:
        gutter_top = letter_h + 4  # room for the letter above each row of panels
    else:
        gutter_top = gutter

    # lay out rows
    rows: list[list[np.ndarray]] = []
    i = 0
    for k in per_row:
        h = int(rng.integers(row_heights[0], row_heights[1] + 1))
        rows.append([_resize_to_height(p, h) for p in panels[i : i + k]])
        i += k
    margin = int(rng.integers(0, 16))
    row_widths = [sum(p.shape[1] for p in r) + gutter * (len(r) - 1) for r in rows]
    width = max(row_widths) + 2 * margin
    top = margin + (gutter_top if letters == "gutter" else 0)
    height = top + sum(r[0].shape[0] for r in rows) + gutter_top * (len(rows) - 1) + margin
    caption_h = 0
    if caption_lines:
        caption_h = 12 + 20 * caption_lines
    fig = np.full((height + caption_h, width, 3), gutter_colour, dtype=np.uint8)

    boxes: list[Box] = []
    y = top
    idx = 0
    for r, rw in zip(rows, row_widths, strict=True):
        x = margin + (int(rng.integers(0, width - 2 * margin - rw + 1)) if rw < width - 2 * margin else 0)
        for p in r:
            ph, pw = p.shape[:2]
            tile = p.copy()
            if border:
                cv2.rectangle(tile, (0, 0), (pw - 1, ph - 1), (ink, ink, ink), border)
            letter = string.ascii_uppercase[idx % 26]
            if letters == "inside":
                _draw_letter(tile, letter, 4 + border, 4 + border, letter_scale, (255, 255, 255))
            elif letters == "inside_box":
                _draw_letter(tile, letter, border, border, letter_scale, (0, 0, 0), box_fill=(255, 255, 255))
            fig[y : y + ph, x : x + pw] = tile
            if letters == "gutter":
                _draw_letter(fig, letter, x, y - letter_h - 2, letter_scale, (ink, ink, ink))
            boxes.append(Box(x, y, pw, ph))
            x += pw + gutter
            idx += 1
        y += r[0].shape[0] + gutter_top
    for line in range(caption_lines):
        words = int(rng.integers(4, 14))
        text = " ".join(
            "".join(rng.choice(list("abcdefghiklmnoprstu"), int(rng.integers(2, 9)))) for _ in range(words)
        )
        if line == 0:
            text = "Figure " + str(int(rng.integers(1, 9))) + ". " + text
        cv2.putText(
            fig, text, (margin + 2, height + 20 + 20 * line), _FONT, 0.5, (ink, ink, ink), 1, cv2.LINE_AA
        )
    return fig, boxes


def chart_panel(rng: np.random.Generator, height: int = 200, width: int = 260) -> np.ndarray:
    """A matplotlib bar, line or scatter chart rendered to RGB."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind = str(rng.choice(["bar", "line", "scatter"]))
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_subplot(111)
    if kind == "bar":
        k = int(rng.integers(3, 7))
        ax.bar(range(k), rng.uniform(1, 10, k), color=rng.uniform(0, 1, 3), yerr=rng.uniform(0, 1, k))
    elif kind == "line":
        x = np.arange(int(rng.integers(5, 20)))
        for _ in range(int(rng.integers(1, 4))):
            ax.plot(x, np.cumsum(rng.normal(0, 1, len(x))), marker="o", markersize=3)
    else:
        ax.scatter(rng.normal(0, 1, 60), rng.normal(0, 1, 60), s=8, c=rng.uniform(0, 1, 60), cmap="viridis")
    ax.set_xlabel(str(rng.choice(["time (d)", "dose", "group", "eGFR"])), fontsize=7)
    ax.set_ylabel(str(rng.choice(["count", "score", "%", "mg/dl"])), fontsize=7)
    ax.tick_params(labelsize=6)
    if rng.random() < 0.5:
        ax.set_title(str(rng.choice(["Proteinuria", "Survival", "GS fraction"])), fontsize=8)
    fig.tight_layout(pad=0.3)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(fig)
    return rgb


def diagram_panel(rng: np.random.Generator, height: int = 200, width: int = 260) -> np.ndarray:
    """Boxes joined by arrows on white, drawn with OpenCV (a method or pathway diagram)."""
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    n = int(rng.integers(3, 6))
    bw, bh = max(24, width // (n + 1)), max(18, height // 5)
    pts = []
    for k in range(n):
        cx = int((k + 0.5) * width / n)
        cy = int(rng.integers(bh // 2 + 4, height - bh // 2 - 4))
        pts.append((cx, cy))
    pts[0] = (pts[0][0], bh // 2 + 4)  # the chain spans the panel from top to bottom
    pts[-1] = (pts[-1][0], height - bh // 2 - 4)
    colour = tuple(int(c) for c in rng.integers(0, 200, 3))
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:], strict=True):
        cv2.arrowedLine(img, (x0, y0), (x1, y1), (0, 0, 0), 2, cv2.LINE_AA, tipLength=0.15)
    for k, (cx, cy) in enumerate(pts):
        fill = tuple(int(c) for c in rng.integers(150, 256, 3))
        cv2.rectangle(img, (cx - bw // 2, cy - bh // 2), (cx + bw // 2, cy + bh // 2), fill, -1)
        cv2.rectangle(img, (cx - bw // 2, cy - bh // 2), (cx + bw // 2, cy + bh // 2), colour, 2)
        cv2.putText(img, f"S{k + 1}", (cx - bw // 4, cy + 5), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    if rng.random() < 0.5:
        cv2.rectangle(img, (0, 0), (width - 1, height - 1), (120, 120, 120), 1)
    return img


def fluorescence_panel(rng: np.random.Generator, height: int = 200, width: int = 200) -> np.ndarray:
    """Fake immunofluorescence: dim noisy dark background with bright green, red and blue blobs."""
    img = rng.normal(14, 6, (height, width, 3)).clip(0, 255).astype(np.float32)
    for _ in range(int(rng.integers(6, 30))):
        ch = int(rng.choice([0, 1, 1, 2]))
        cx, cy = rng.integers(0, width), rng.integers(0, height)
        r = float(rng.uniform(4, 18))
        yy, xx = np.ogrid[:height, :width]
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img[:, :, ch] += 230 * blob * float(rng.uniform(0.5, 1.0))
    return img.clip(0, 255).astype(np.uint8)


def em_panel(rng: np.random.Generator, height: int = 200, width: int = 200) -> np.ndarray:
    """Fake transmission electron micrograph: greyscale blurred texture with dark membranes."""
    noise = rng.normal(0, 1, (height, width)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), float(rng.uniform(1.5, 4))) * 40 + 150
    tex += rng.normal(0, 8, (height, width)).astype(np.float32)
    for _ in range(int(rng.integers(3, 8))):
        pts = np.cumsum(rng.normal(0, 6, (40, 2)), axis=0) + rng.uniform(0, [width, height])
        cv2.polylines(tex, [pts.astype(np.int32)], False, float(rng.uniform(30, 80)), int(rng.integers(2, 6)))
    grey = tex.clip(0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)
