"""Training data from reviewed slides: the glomeruli a lab checked in ``glomkit review``.

A folder is searched for two layouts:

* glomkit output folders with a review, ``<folder>/**/<stem>/review/<stem>_reviewed.geojson``. The
  slide is found from ``<stem>/summary.json`` (see ``glomkit.review.session.find_slide``);
* slides with ``<stem>_reviewed.geojson`` beside them, as a review file copied next to its slide.

:func:`write_reviewed_patches` cuts one patch per reviewed glomerulus, as the pipeline does: the
circle's box plus a 12.5 µm margin, resized to 256 px. It writes them with a ``labels.csv``
(``image, label, slide``), which ``glomkit train classifier`` reads and splits by slide. Only
glomeruli the reviewer decided on count (accepted, relabelled, rejected, added). Unreviewed ones
carry the model's guess and are left out. Rejected ones are ``non_glomerular``, a useful negative.
A GeoJSON without review properties (for example one edited in QuPath) counts as reviewed
throughout.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from glomkit import GlomkitError
from glomkit.io.outputs import file_name

REVIEWED_SUFFIX = file_name("geojson", "", reviewed=True)  # "_reviewed.geojson"
MARGIN_UM = 12.5
PATCH_PX = 256


@dataclass(frozen=True)
class ReviewedSlide:
    """A slide and its reviewed annotations; ``mpp`` from the review when the slide lacks it."""

    slide: Path
    annotations: Path
    stem: str
    mpp: float | None


def _file_mpp(path: Path) -> float | None:
    try:
        v = json.loads(path.read_text(encoding="utf-8")).get("glomkit_review", {}).get("mpp")
    except (OSError, ValueError, AttributeError):
        return None
    return float(v) if isinstance(v, (int, float)) and v > 0 else None


def find_reviewed(folder: str | Path) -> list[ReviewedSlide]:
    """Reviewed slides under ``folder`` (both layouts), sorted by stem; empty when there are none."""
    from glomkit.review.session import find_slide, read_summary
    from glomkit.slide.reader import SLIDE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        return []
    out: dict[str, ReviewedSlide] = {}
    for ann in sorted(folder.rglob(f"review/*{REVIEWED_SUFFIX}")):
        out_dir = ann.parent.parent
        if not (out_dir / "summary.json").is_file():
            continue
        summary = read_summary(out_dir)
        stem = str(summary["stem"])
        if ann.name != stem + REVIEWED_SUFFIX:
            continue
        out[stem] = ReviewedSlide(find_slide(summary, out_dir), ann, stem, float(summary["mpp"]))
    for img in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES):
        ann = img.with_name(img.stem + REVIEWED_SUFFIX)
        if ann.is_file() and img.stem not in out:
            out[img.stem] = ReviewedSlide(img, ann, img.stem, _file_mpp(ann))
    return [out[k] for k in sorted(out)]


def reviewed_glomeruli(rs: ReviewedSlide):
    """The review items of a slide that carry a reviewer's decision (all, for a file without review data)."""
    from glomkit.core.schemes import COARSE
    from glomkit.io.geojson import read_geojson_features
    from glomkit.review.session import items_from_annotations, review_scheme

    pairs = read_geojson_features(rs.annotations)
    items = items_from_annotations(pairs, review_scheme(COARSE), rs.mpp or 1.0)
    if any(isinstance(p.get("review"), dict) for _, p in pairs):
        items = [it for it in items if it.status != "unreviewed"]
    return items


def write_reviewed_patches(
    folder: str | Path, dest: str | Path, margin_um: float = MARGIN_UM, size: int = PATCH_PX
) -> tuple[Path, dict[str, int]]:
    """Cut the reviewed glomeruli of every slide under ``folder`` into ``dest``/<label>/ with a labels.csv.

    Returns (``dest``, count per label). Raises :class:`GlomkitError` when nothing is reviewed.
    """
    from glomkit.infer.patches import patch_box, read_patch
    from glomkit.io.atomic import write_png, write_text
    from glomkit.io.paths import path_under
    from glomkit.models.metadata import is_safe_class_name
    from glomkit.slide.reader import Slide

    slides = find_reviewed(folder)
    if not slides:
        raise GlomkitError(
            f"{folder}: no reviewed slides (review/<stem>{REVIEWED_SUFFIX} or <slide>{REVIEWED_SUFFIX})"
        )
    dest = Path(dest)
    rows: list[tuple[str, str, str]] = []
    counts: dict[str, int] = {}
    for rs in slides:
        items = [it for it in reviewed_glomeruli(rs) if it.radius > 0]
        if not items:
            continue
        with Slide(rs.slide, mpp=rs.mpp) as slide:
            margin_px = margin_um / slide.mpp
            for it in items:
                if not is_safe_class_name(it.label):  # it becomes a folder name
                    raise GlomkitError(
                        f"{rs.annotations}: glomerulus {it.id}: class {it.label[:40]!r} is not a safe name"
                    )
                x0, y0, w, h = patch_box(it.x, it.y, it.radius, margin_px)
                patch = read_patch(slide, (x0, y0, w, h), size)
                rel = f"{it.label}/{rs.stem}_{it.id}.png"
                write_png(path_under(dest, it.label, f"{rs.stem}_{it.id}.png"), patch)
                rows.append((rel, it.label, rs.stem))
                counts[it.label] = counts.get(it.label, 0) + 1
    if not rows:
        raise GlomkitError(f"{folder}: the reviews hold no reviewed glomerulus yet")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "label", "slide"])
    writer.writerows(rows)
    write_text(path_under(dest, "labels.csv"), buf.getvalue())
    return dest, counts
