"""Mine glomerulus panels from a folder of published figures: separate, filter, score, de-duplicate.

Writes OUT/panels/*.png (kept panels only: the folder ``glomkit pretrain simsiam --images`` reads),
OUT/manifest.csv (one row per panel, fragment or unreadable figure, with the reason it was not
kept) and OUT/index.html (a contact sheet of kept and rejected panels).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from glomkit import GlomkitError
from glomkit.io.atomic import atomic_path, write_png, write_text
from glomkit.mine.contact_sheet import contact_sheet_html, thumbnail_data_uri
from glomkit.mine.dedupe import DuplicateIndex, phash
from glomkit.mine.modality import FEATURE_NAMES, is_light_microscopy
from glomkit.mine.separate import SeparationConfig, separate_panels

FIGURE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}
MANIFEST_COLUMNS = (
    "name",
    "source",
    "x",
    "y",
    "w",
    "h",
    "modality",
    *FEATURE_NAMES,
    "score",
    "kept",
    "reason",
)


@dataclass
class MineConfig:
    """Options of :func:`mine_figures`."""

    classifier: str | Path | None = None  # model file; None = the bundled default classifier
    use_classifier: bool = True  # False: keep every light-microscopy panel (modality filter only)
    threshold: float = 0.7  # keep panels with glomerulus score >= threshold
    max_hash_distance: int = 8  # pHash Hamming distance that counts as a duplicate
    separation: SeparationConfig = field(default_factory=SeparationConfig)
    device: str = "auto"
    threads: int | None = None
    thumbnails: bool = True


@dataclass
class MineResult:
    out: Path
    n_figures: int
    n_unreadable: int
    rows: list[dict]

    @property
    def n_kept(self) -> int:
        return sum(1 for r in self.rows if r["kept"])

    def count(self, reason_prefix: str) -> int:
        return sum(1 for r in self.rows if str(r["reason"]).startswith(reason_prefix))


def list_figures(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted); GlomkitError when there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise GlomkitError(f"{folder}: figures folder not found")
    if not folder.is_dir():
        raise GlomkitError(f"{folder}: not a folder (give a folder of figure images)")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in FIGURE_SUFFIXES)
    if not files:
        raise GlomkitError(
            f"{folder}: no figure images ({', '.join(sorted(FIGURE_SUFFIXES))}) in this folder"
        )
    return files


def read_figure(path: Path) -> np.ndarray | None:
    """An RGB uint8 image, alpha composited on white; None when the file cannot be decoded.

    A file that declares more pixels than the limit (a decompression bomb) is a GlomkitError
    naming it, before it is decoded."""
    from glomkit.io.images import check_pixels

    check_pixels(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except (OSError, cv2.error, MemoryError):
        return None
    if img is None or img.size == 0:
        return None
    if img.dtype != np.uint8:
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(1.0, float(img.max())))
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:  # on white, in blocks of rows: a float copy of a large figure took GBs
        from glomkit.io.images import composite_on_white

        out = np.empty((*img.shape[:2], 3), np.uint8)
        step = max(1, (1 << 22) // max(1, img.shape[1]))
        for y in range(0, img.shape[0], step):
            out[y : y + step] = composite_on_white(img[y : y + step, :, [2, 1, 0, 3]])
        return out
    return cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)


def _row(name: str, source: str, box=None, modality: str = "", features=None) -> dict:
    r = dict.fromkeys(MANIFEST_COLUMNS, "")
    r.update(name=name, source=source, kept=False)
    if box is not None:
        r.update(x=box.x, y=box.y, w=box.w, h=box.h)
    r["modality"] = modality
    if features is not None:
        for k, v in features.to_dict().items():
            r[k] = round(v, 4) if isinstance(v, float) else v
    return r


def _unique_stem(path: Path, root: Path, used: set[str]) -> str:
    stem = "_".join(path.relative_to(root).with_suffix("").parts)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    cand, k = stem, 1
    while cand in used:
        k += 1
        cand = f"{stem}-{k}"
    used.add(cand)
    return cand


def mine_figures(
    figures_dir: str | Path,
    out: str | Path,
    config: MineConfig | None = None,
    on_figure: Callable[[Path], None] | None = None,
) -> MineResult:
    """Separate every figure under ``figures_dir`` into panels and keep the glomerulus ones in ``out``."""
    from glomkit.mine.score import glomerulus_scores, load_classifier

    cfg = config or MineConfig()
    figures_dir, out = Path(figures_dir), Path(out)
    files = list_figures(figures_dir)
    out_abs = out.resolve()
    files = [f for f in files if out_abs not in f.resolve().parents]
    model = load_classifier(cfg.classifier, cfg.device, cfg.threads) if cfg.use_classifier else None
    panels_dir = out / "panels"
    _clear_previous(out)
    panels_dir.mkdir(parents=True, exist_ok=True)

    rows: list[dict] = []
    thumbs: dict[str, str] = {}
    dupes = DuplicateIndex(cfg.max_hash_distance)
    used: set[str] = set()
    n_unreadable = 0
    for path in files:
        source = str(path.relative_to(figures_dir))
        stem = _unique_stem(path, figures_dir, used)
        image = read_figure(path)
        if image is None:
            n_unreadable += 1
            r = _row(stem, source)
            r["reason"] = "unreadable"
            rows.append(r)
            if on_figure:
                on_figure(path)
            continue
        sep = separate_panels(image, cfg.separation)
        crops, light_rows = [], []
        for k, box in enumerate(sep.panels, start=1):
            crop = box.crop(image)
            ok, modality, feats = is_light_microscopy(crop)
            r = _row(f"{stem}_p{k:02d}", source, box, modality, feats)
            if not ok:
                r["reason"] = "not_light_microscopy"
            else:
                crops.append(crop)
                light_rows.append(r)
            if cfg.thumbnails:
                thumbs[r["name"]] = thumbnail_data_uri(crop)
            rows.append(r)
        for k, box in enumerate(sep.fragments, start=1):
            r = _row(f"{stem}_f{k:02d}", source, box)
            r["reason"] = "too_small"
            rows.append(r)
        scores = glomerulus_scores(model, crops) if model is not None else [None] * len(crops)
        for r, crop, s in zip(light_rows, crops, scores, strict=True):
            if s is not None:
                r["score"] = round(float(s), 4)
            if s is not None and s < cfg.threshold:
                r["reason"] = "below_threshold"
                continue
            h = phash(crop)
            dup = dupes.find(h)
            if dup is not None:
                r["reason"] = f"duplicate_of:{dup}"
                continue
            dupes.add(h, r["name"])
            write_png(panels_dir / f"{r['name']}.png", crop)
            r["kept"] = True
        if on_figure:
            on_figure(path)

    _write_manifest(out / "manifest.csv", rows)
    write_text(out / "index.html", contact_sheet_html(rows, thumbs, cfg.threshold))
    return MineResult(out=out, n_figures=len(files), n_unreadable=n_unreadable, rows=rows)


def _clear_previous(out: Path) -> None:
    """Remove the panels a previous run listed as kept, so OUT/panels holds only this run's."""
    old = out / "manifest.csv"
    if not old.is_file():
        return
    with old.open(newline="") as f:
        for r in csv.DictReader(f):
            if r.get("kept") == "True":
                p = out / "panels" / f"{r.get('name', '')}.png"
                if p.is_file():
                    p.unlink()


def _write_manifest(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
