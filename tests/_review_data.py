"""A tiny glomkit output folder made in code (no models run): a plain-image slide, six detections
under the coarse scheme, written by glomkit's own writers. Used by the review tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from glomkit.core.records import GlomerulusRecord, SlideRecord
from glomkit.core.schemes import COARSE
from glomkit.io.geojson import write_geojson
from glomkit.io.imagescope import write_imagescope_xml
from glomkit.io.report import write_report_html, write_summary
from glomkit.io.shapes import circle_polygon
from glomkit.io.table import write_table

MPP = 0.5
SIZE = (1600, 1200)  # w, h
# id, x, y, r, score, label
DETECTIONS = [
    (1, 300, 250, 60, 0.91, "normal"),
    (2, 800, 260, 70, 0.85, "normal"),
    (3, 1300, 300, 55, 0.45, "normal"),
    (4, 350, 800, 65, 0.88, "sclerosed"),
    (5, 850, 850, 60, 0.62, "sclerosed"),
    (6, 1300, 850, 50, 0.33, "non_glomerular"),
]
MISSED = (1250, 560, 58)  # a glomerulus drawn on the slide that the "model" missed


def write_slide(path: Path) -> Path:
    """A pink PNG with a darker disc at each detection and at the missed one."""
    w, h = SIZE
    img = np.full((h, w, 3), (235, 190, 215), np.uint8)
    rng = np.random.default_rng(0)
    img = np.clip(img.astype(int) + rng.integers(-12, 12, img.shape), 0, 255).astype(np.uint8)
    for _, x, y, r, _, label in DETECTIONS:
        color = (150, 60, 120) if label != "sclerosed" else (200, 90, 160)
        cv2.circle(img, (x, y), r, color, -1, cv2.LINE_AA)
    cv2.circle(img, MISSED[:2], MISSED[2], (150, 60, 120), -1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def make_output(root: Path, stem: str = "slide") -> Path:
    """Write ``root/<stem>.png`` and its output folder ``root/out/<stem>/``; return the folder."""
    root.mkdir(parents=True, exist_ok=True)
    slide = write_slide(root / f"{stem}.png")
    out = root / "out" / stem
    recs = []
    for gid, x, y, r, score, label in DETECTIONS:
        probs = {n: 0.05 for n in COARSE.names}
        probs[label] = 0.9
        cls = COARSE.get(label)
        poly = circle_polygon(x, y, r * 0.9, 24) if gid % 2 else None
        area = float(np.pi * (r * 0.9 * MPP) ** 2)
        recs.append(
            GlomerulusRecord(
                id=gid,
                x=x,
                y=y,
                radius=r,
                score=score,
                label=label,
                probs=probs,
                ggs_probability=probs["sclerosed"],
                is_glomerulus=cls.is_glomerulus,
                area_um2=area,
                diameter_um=float(np.sqrt(4 * area / np.pi)),
                polygon=poly,
            )
        )
    patch = out / "patches" / "normal" / f"{stem}_1.png"
    patch.parent.mkdir(parents=True)
    cv2.imwrite(str(patch), np.full((32, 32, 3), 128, np.uint8))
    recs[0].patch = f"patches/normal/{stem}_1.png"
    result = SlideRecord(
        stem=stem,
        source=str(slide),
        mpp=MPP,
        width=SIZE[0],
        height=SIZE[1],
        scheme=COARSE,
        glomeruli=recs,
    )
    outputs = [f"{stem}.xml", f"{stem}.geojson", f"{stem}_glomeruli.csv", "report.html"]
    write_imagescope_xml(out / outputs[0], result)
    write_geojson(out / outputs[1], result)
    write_table(out / outputs[2], result)
    summary = write_summary(out / "summary.json", result, {"mpp_source": "user", "outputs": outputs})
    write_report_html(out / "report.html", result, summary)
    return out
