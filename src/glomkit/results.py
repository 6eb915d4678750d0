"""A slide's result in memory, and how it is saved: what ``glomkit.run_slide`` returns.

:class:`SlideResult` is the slide's record (circles, classes, outlines, measurements; see
``glomkit.core.records``) plus the encoded patch, mask (PNG) and overlay (JPEG) of each glomerulus. It is
computed without touching the disk; :meth:`SlideResult.save` writes ``OUT/<stem>/`` in a hidden
folder beside it and renames it into place, so the folder is either complete or absent.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from glomkit import GlomkitError
from glomkit.core.records import IMAGE_FILES, GlomerulusRecord, SlideRecord, image_path
from glomkit.io.report import REPORT, SUMMARY

IMAGE_KINDS = tuple(kind for kind, _ in IMAGE_FILES)


@dataclass
class PatchImages:
    """One glomerulus's images, encoded (PNG; the overlay JPEG) (memory stays small for slides with many glomeruli)."""

    patch: bytes
    mask: bytes
    overlay: bytes


def patch_images(rec: GlomerulusRecord, patch: np.ndarray, mask: np.ndarray, color) -> PatchImages:
    """The patch, its 0/255 mask (PNG) and the patch with the mask's contour in the class colour
    (JPEG: see ``core.records.IMAGE_FILES``)."""
    from glomkit.io.atomic import encode_jpeg, encode_png

    m = mask.astype(np.uint8) * 255
    overlay = patch.copy()
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(overlay, contours, -1, color, 2)
    return PatchImages(encode_png(patch), encode_png(m), encode_jpeg(overlay))


def _decode_png(data: bytes, grey: bool = False) -> np.ndarray:
    buf = np.frombuffer(data, np.uint8)
    if grey:
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@dataclass
class SlideResult(SlideRecord):
    """One analysed slide: its glomeruli, counts, GGS % and images, in memory until saved."""

    images: dict[int, PatchImages] = field(default_factory=dict)  # glomerulus id -> images

    def annotation_files(self) -> list[str]:
        """The annotation files of this slide's output folder (``glomkit.io.outputs.FORMATS``)."""
        from glomkit.io.outputs import annotation_files

        return annotation_files(self.stem)

    @property
    def summary(self) -> dict[str, Any]:
        """The figures of ``summary.json``: counts, ``ggs_percent``, sizes, timings, models..."""
        from glomkit.io.report import summary_of

        return summary_of(self, {"outputs": self.annotation_files() + [REPORT]})

    def patch(self, glomerulus_id: int) -> np.ndarray:
        """The RGB patch of glomerulus ``glomerulus_id`` (KeyError when images were not kept)."""
        return _decode_png(self.images[glomerulus_id].patch)

    def mask(self, glomerulus_id: int) -> np.ndarray:
        """The bool mask of glomerulus ``glomerulus_id`` in its patch's frame."""
        return _decode_png(self.images[glomerulus_id].mask, grey=True) > 127

    def to_dataframe(self):
        """One row per glomerulus, the columns of ``<stem>_glomeruli.csv`` (needs pandas)."""
        from glomkit.core.records import table_columns
        from glomkit.io.dataframe import to_dataframe
        from glomkit.io.table import table_row

        return to_dataframe((table_row(g, self) for g in self.glomeruli), table_columns(self.scheme))

    def save(self, out_root: str | Path, xml: str = "both") -> Path:
        """Write ``out_root/<stem>/`` atomically and return it (see docs/OUTPUTS.md).

        ``xml``: the ImageScope layers (both, circles or outlines). An existing folder of the
        same slide is replaced only once the new one is complete; its ``review/`` is kept.
        """
        from glomkit.io.partial import clean_stale_partials, make_partial_dir
        from glomkit.io.paths import path_under

        t0 = time.perf_counter()
        out_root = Path(out_root)
        final = path_under(out_root, self.stem)
        out_root.mkdir(parents=True, exist_ok=True)
        clean_stale_partials(out_root, self.stem)  # left by a killed run of this slide
        tmp = make_partial_dir(out_root, self.stem)
        try:
            self._write_images(tmp)
            outputs = self._write_annotations(tmp, xml)
            dt = time.perf_counter() - t0
            self.timings["write"] = self.timings.get("write", 0.0) + dt
            if "total" in self.timings:
                self.timings["total"] += dt
            self._write_summary_and_report(tmp, outputs)
            _replace_keeping_review(tmp, final, out_root)
            clean_stale_partials(out_root, self.stem)  # a review a killed replacement left behind
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    def _write_images(self, d: Path) -> None:
        """The images, written straight into ``d``: the whole folder is renamed into place when
        complete, so each file needs no temporary copy of its own."""
        from glomkit.io.paths import path_under

        folders: dict[tuple[str, str], Path] = {}
        for rec in self.glomeruli:
            imgs = self.images.get(rec.id)
            if imgs is None:
                continue
            for kind, data in zip(IMAGE_KINDS, (imgs.patch, imgs.mask, imgs.overlay), strict=True):
                # class names are checked when the model loads; path_under asserts it again, once
                # per folder, and for a file name that is not a plain name (a stem holds no separator)
                rel = image_path(kind, rec.label, self.stem, rec.id)
                name = Path(rel).name
                if Path(rel).parts != (kind, rec.label, name):
                    raise GlomkitError(f"{d}: refused to write {rel!r}: not a plain file name")
                folder = folders.get((kind, rec.label))
                if folder is None:
                    folder = folders[kind, rec.label] = path_under(d, kind, rec.label)
                    folder.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(data)

    def _write_annotations(self, d: Path, xml: str) -> list[str]:
        from glomkit.io.outputs import write_annotations

        return write_annotations(d, self, xml=xml)

    def _write_summary_and_report(self, d: Path, outputs: list[str]) -> dict[str, Any]:
        from glomkit.io.report import write_report_html, write_summary

        # summary.json is written last: its presence marks the folder complete.
        summary = write_summary(d / ("." + SUMMARY), self, {"outputs": outputs + [REPORT]})
        write_report_html(d / REPORT, self, summary)
        os.replace(d / ("." + SUMMARY), d / SUMMARY)
        return summary


def _replace_keeping_review(tmp: Path, final: Path, out_root: Path) -> None:
    """Put the complete folder ``tmp`` in place of ``final``, keeping ``final/review/`` (a
    pathologist's work: ``glomkit review`` flags it when the new run differs from its own).

    Only renames happen between the old folder leaving and the new one arriving; a run killed in
    that instant leaves the review in a stale partial folder, which the next run puts back.
    """
    from glomkit.io.partial import make_partial_dir
    from glomkit.review.provenance import REVIEW_DIR

    if not final.exists():
        os.replace(tmp, final)
        return
    old = make_partial_dir(out_root, final.name)
    os.replace(final, old)  # an empty folder is replaced by the rename
    review = old / REVIEW_DIR
    try:
        if review.is_dir() and not review.is_symlink():
            os.replace(review, tmp / REVIEW_DIR)
        os.replace(tmp, final)
    except OSError:
        if (tmp / REVIEW_DIR).is_dir():  # put everything back as it was
            os.replace(tmp / REVIEW_DIR, review)
        if not final.exists():
            os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)
