"""Build the coarse_3 training folder: bueno_pas glomeruli + non-glomerular examples.

bueno_pas has only glomeruli (GS / nonGS). The ``non_glomerular`` class is made of:
(1) real PAS kidney tissue outside the glomerulus masks of bueno crops (the largest mask-free
corner square, upscaled), grouped with its bueno slide; (2) tiles of the real SVS slide
CMU-1-Small-Region (skin H&E, not kidney), grouped in spatial blocks; (3) synthetic PAS-like
cortex from :func:`glomkit.synth.tissue.render_tissue` (and synthetic look-alikes from
``glomkit.synth.glomerulus`` when that module exists), in seeded groups.

Synthetic glomeruli (:func:`glomkit.synth.patches.make_patch_dataset`) are added to every class
(normal -> normal; obsolescent, solidified, disappearing -> sclerosed; look-alikes ->
non_glomerular), grouped by their fake slide, so the model also knows what a synthetic glomerulus
looks like (without them it called the demo slide's glomeruli non_glomerular).

The folder holds ``labels.csv`` (bueno rows point at the bueno files in place: they are never
copied) and ``non_glomerular/*.png``. Run: ``python -m glomkit.classify.coarse_data --out DIR``.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from glomkit.data.bueno import default_root, load_bueno
from glomkit.io.atomic import write_png, write_text
from glomkit.io.images import read_rgb

OUT_SIZE = 224


def mask_free_corner(mask: np.ndarray, min_side: int = 40) -> tuple[int, int, int] | None:
    """(y, x, side) of the largest corner square with no mask pixel, or None if below ``min_side``."""
    h, w = mask.shape
    best = None
    for cy, cx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        for side in range(min(h, w) // 2, min_side - 1, -4):
            y = 0 if cy == 0 else h - side
            x = 0 if cx == 0 else w - side
            if not mask[y : y + side, x : x + side].any():
                if best is None or side > best[2]:
                    best = (y, x, side)
                break
    return best


def bueno_background(root: Path, rng: np.random.Generator, n_max: int) -> list[tuple[np.ndarray, str, str]]:
    """Mask-free corners of bueno crops: (image, slide, name)."""
    samples = load_bueno(root)
    order = rng.permutation(len(samples))
    out = []
    for i in order:
        s = samples[int(i)]
        m = cv2.imread(str(s.mask), cv2.IMREAD_GRAYSCALE)
        if m is None:
            continue
        box = mask_free_corner(cv2.dilate((m > 127).astype(np.uint8), np.ones((5, 5), np.uint8)))
        if box is None:
            continue
        y, x, side = box
        img = read_rgb(s.image)[y : y + side, x : x + side]
        out.append(
            (cv2.resize(img, (OUT_SIZE, OUT_SIZE), interpolation=cv2.INTER_CUBIC), s.slide, s.image.stem)
        )
        if len(out) >= n_max:
            break
    return out


def svs_tiles(
    path: Path, rng: np.random.Generator, n: int, blocks: int = 3
) -> list[tuple[np.ndarray, str, str]]:
    """Random tissue tiles (300-600 px at level 0, resized) of a real slide, grouped in blocks x blocks."""
    import openslide

    sl = openslide.OpenSlide(str(path))
    w, h = sl.dimensions
    img = np.asarray(sl.read_region((0, 0), 0, (w, h)).convert("RGB"))
    sl.close()
    out: list[tuple[np.ndarray, str, str]] = []
    tries = 0
    while len(out) < n and tries < n * 50:
        tries += 1
        side = int(rng.integers(300, 601))
        x = int(rng.integers(0, w - side))
        y = int(rng.integers(0, h - side))
        tile = img[y : y + side, x : x + side]
        sat = cv2.cvtColor(tile, cv2.COLOR_RGB2HSV)[..., 1]
        if (sat > 25).mean() < 0.4:
            continue
        b = min(blocks - 1, (y + side // 2) * blocks // h) * blocks + min(
            blocks - 1, (x + side // 2) * blocks // w
        )
        out.append(
            (
                cv2.resize(tile, (OUT_SIZE, OUT_SIZE), interpolation=cv2.INTER_AREA),
                f"{path.stem}#b{b}",
                f"svs_{len(out)}",
            )
        )
    return out


def synthetic(rng: np.random.Generator, n: int, groups: int = 10) -> list[tuple[np.ndarray, str, str]]:
    """Synthetic PAS-like cortex tiles (and look-alikes when glomkit.synth.glomerulus exists)."""
    from glomkit.synth.tissue import render_tissue

    try:
        from glomkit.synth.glomerulus import render_glomerulus
    except ImportError:
        render_glomerulus = None
    out = []
    for k in range(n):
        g = f"synth#{k % groups}"
        if render_glomerulus is not None and k % 2 == 1:
            try:
                img = render_glomerulus("non_glomerular", int(rng.integers(50, 90)), rng, OUT_SIZE)
                img = np.asarray(img[0] if isinstance(img, tuple) else img, dtype=np.uint8)[..., :3]
                out.append((img, g, f"lookalike_{k}"))
                continue
            except Exception:  # noqa: BLE001 - module being written elsewhere; fall back to tissue
                pass
        img = render_tissue(OUT_SIZE, OUT_SIZE, rng, mpp=float(rng.uniform(0.8, 2.2)))
        out.append((img, g, f"tissue_{k}"))
    return out


HUBMAP_MPP = 0.85  # assumed µm/px of the hubmap_pas tiles (unrecorded; 0.7-1.0 judged from nuclei)
PIPELINE_MARGIN_UM = 12.5  # glomkit.pipeline cuts the detection circle plus this margin


def is_held_out_tile(path: str | Path) -> bool:
    """A hubmap_pas ``test*`` tile: held out of every training set (as in ``split_annotated``)."""
    return Path(path).stem.lower().startswith("test")


def hubmap_block(stem: str, size: int = 50) -> str:
    """Group of a hubmap tile: contiguous tile numbers (train_ and test_ share one numbering)."""
    return f"hubmap#b{int(stem.split('_')[-1]) // size}"


CGMH_MPP = 1.0  # assumed µm/px of the cgmh_he tiles (unrecorded; about 10x, ../shared README)


def cgmh_crops(tiles: Path, rng: np.random.Generator) -> list[tuple[np.ndarray, str, str, str, str]]:
    """In-context H&E crops of the cgmh_he tiles, the test biopsies of
    :func:`glomkit.detect.data.split_annotated` never read; grouped by biopsy; one crop of each
    kind per tile (the tiles are glomerulus-rich and biopsies share tiles' tissue)."""
    from glomkit.detect.data import image_group, split_groups

    tiles = Path(tiles)
    groups = sorted({g for p in tiles.glob("*.jpg") if (g := image_group(p))})
    test = split_groups(groups)[2] if groups else set()
    return hubmap_crops(
        tiles,
        rng,
        per_tile_glomeruli=1,
        per_tile_edge_glomeruli=1,
        per_tile_tissue=1,
        per_tile_false_positives=1,
        mpp=CGMH_MPP,
        source="cgmh",
        prefix="cgmh",
        held_out=lambda p: image_group(p) in test or image_group(p) is None,
        group_of=lambda stem: f"cgmh#{image_group(Path(stem))}",
        edge_negatives=False,
    )


def _square(img: np.ndarray, cx: float, cy: float, half: float, pad: bool = False) -> np.ndarray | None:
    """The square of half-side ``half`` at (cx, cy), resized to OUT_SIZE.

    None if it leaves the image, unless ``pad``: then the part outside the image is white, as the
    pipeline's slide reader fills it (:meth:`glomkit.slide.reader.Slide.read_level`), and
    None only when the centre itself is outside.
    """
    h, w = img.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
    if x1 - x0 < 16:
        return None
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        if not pad or not (0 <= cx < w and 0 <= cy < h):
            return None
        canvas = np.full((y1 - y0, x1 - x0, 3), 255, np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
        return cv2.resize(canvas, (OUT_SIZE, OUT_SIZE), interpolation=cv2.INTER_AREA)
    return cv2.resize(img[y0:y1, x0:x1], (OUT_SIZE, OUT_SIZE), interpolation=cv2.INTER_AREA)


def _detector_circles(detector, img: np.ndarray, mpp: float) -> np.ndarray:
    """(K, 4) x, y, r, score in tile px: the bundled detector run on the tile at its own mpp."""
    from glomkit.kinds.circlenet import detect_images

    f = mpp / float(detector.info.mpp or 8.0)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    ph, pw = -(-small.shape[0] // 32) * 32, -(-small.shape[1] // 32) * 32
    pad = np.full((ph, pw, 3), 255, np.uint8)
    pad[: small.shape[0], : small.shape[1]] = small
    c = detect_images(detector, [pad], score_threshold=0.3)[0]
    c = np.asarray(c, dtype=np.float64).reshape(-1, 4)
    c[:, :3] /= f
    return c


def hubmap_crops(
    tiles: Path,
    rng: np.random.Generator,
    per_tile_glomeruli: int = 2,
    per_tile_edge_glomeruli: int = 1,
    per_tile_tissue: int = 2,
    per_tile_false_positives: int = 2,
    mpp: float = HUBMAP_MPP,
    source: str = "hubmap",
    prefix: str = "hub",
    held_out: Callable[[Path], bool] = is_held_out_tile,
    group_of: Callable[[str], str] = hubmap_block,
    edge_negatives: bool = True,
) -> list[tuple[np.ndarray, str, str, str, str]]:
    """Real in-context crops of annotated tiles (hubmap_pas by default): (image, label, group, name, source).

    ``source``/``prefix`` name the crops' source (``<source>_glomerulus``...) and files;
    ``held_out`` tiles are never read; ``group_of`` maps a tile's stem to its CV group;
    ``edge_negatives`` False keeps negatives at least one median glomerulus radius from the tile
    edge (cgmh_he leaves many edge-cut glomeruli unoutlined, so a square there may hold one).

    - ``glomerulus`` (:data:`glomkit.classify.data.ANY_GLOMERULUS`, ungraded): annotated glomeruli
      cut like the pipeline does (minimum enclosing circle + a margin drawn from 5-25 µm around
      the pipeline's 12.5 µm, centre jittered by 10 % of the radius): up to
      ``per_tile_glomeruli`` whole ones, and up to ``per_tile_edge_glomeruli`` cut by the tile
      edge, white-padded as the pipeline pads a patch that leaves the slide (source
      ``hubmap_glomerulus_edge``). Without these the classifier learnt that white padding means
      non_glomerular and dropped glomeruli at the image edge.
    - ``non_glomerular`` tissue: random squares of glomerulus-patch size that touch no outline
      (outlines dilated by 8 µm) and hold tissue (saturation), i.e. tubules, vessels, interstitium.
    - ``non_glomerular`` detector false positives: circles of the bundled detector whose centre is
      in no (dilated) outline, cut like the pipeline does (white-padded at the tile edge). Annotations can be incomplete, so a
      few of these may be unannotated glomeruli.

    Grouped by contiguous tile-number blocks (:func:`hubmap_block`). The held-out ``test*``
    tiles are never read (the rule of :func:`glomkit.detect.data.split_annotated`): the pipeline's
    test figures are measured on them, and a classifier trained on their crops would leak into them.
    """
    from glomkit.classify.data import ANY_GLOMERULUS
    from glomkit.io.geojson import read_geojson
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import OnnxModel

    detector = (
        OnnxModel(resolve_model(None, "detector"), expect_task="detector")
        if per_tile_false_positives
        else None
    )
    out: list[tuple[np.ndarray, str, str, str, str]] = []
    for jpg in sorted(Path(tiles).glob("*.jpg")):
        gj = jpg.with_suffix(".geojson")
        if held_out(jpg) or not gj.is_file():
            continue
        img = read_rgb(jpg)
        h, w = img.shape[:2]
        group = group_of(jpg.stem)
        anns = [a for a in read_geojson(gj) if a.polygon is not None and a.radius > 0]
        glom = np.zeros((h, w), np.uint8)
        for a in anns:
            cv2.fillPoly(glom, [np.round(a.polygon).astype(np.int32)], 1)
        dil = int(round(8.0 / mpp))
        glom_dil = cv2.dilate(glom, np.ones((2 * dil + 1, 2 * dil + 1), np.uint8))
        radii = [a.radius for a in anns] or [115.0]
        edge = 0.0 if edge_negatives else float(np.median(radii))
        # glomeruli in context: whole ones, and a few cut by the tile edge (white-padded)
        kept, kept_edge = 0, 0
        for i in rng.permutation(len(anns)):
            if kept >= per_tile_glomeruli and kept_edge >= per_tile_edge_glomeruli:
                break
            a = anns[int(i)]
            margin = float(rng.uniform(5.0, 25.0)) / mpp
            jx, jy = rng.normal(0, 0.1 * a.radius, 2)
            cx, cy, half = a.x + jx, a.y + jy, a.radius + margin
            whole = _square(img, cx, cy, half)
            if whole is not None and kept < per_tile_glomeruli:
                out.append(
                    (
                        whole,
                        ANY_GLOMERULUS,
                        group,
                        f"{prefix}_glom_{jpg.stem}_{int(i)}",
                        f"{source}_glomerulus",
                    )
                )
                kept += 1
            elif whole is None and kept_edge < per_tile_edge_glomeruli:
                cut = _square(img, cx, cy, half, pad=True)
                if cut is not None:
                    out.append(
                        (
                            cut,
                            ANY_GLOMERULUS,
                            group,
                            f"{prefix}_glomedge_{jpg.stem}_{int(i)}",
                            f"{source}_glomerulus_edge",
                        )
                    )
                    kept_edge += 1
        # tissue away from every outline
        kept, tries = 0, 0
        while kept < per_tile_tissue and tries < 200:
            tries += 1
            half = float(rng.choice(radii)) * float(rng.uniform(0.8, 1.25)) + PIPELINE_MARGIN_UM / mpp
            cx, cy = rng.uniform(half, w - half), rng.uniform(half, h - half)
            if min(cx - half, cy - half, w - cx - half, h - cy - half) < edge:
                continue
            x0, y0, x1, y1 = (int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
            if glom_dil[y0:y1, x0:x1].any():
                continue
            sat = cv2.cvtColor(img[y0:y1, x0:x1], cv2.COLOR_RGB2HSV)[..., 1]
            if (sat > 25).mean() < 0.5:
                continue
            crop = _square(img, cx, cy, half)
            if crop is not None:
                out.append(
                    (crop, "non_glomerular", group, f"{prefix}_tissue_{jpg.stem}_{kept}", f"{source}_tissue")
                )
                kept += 1
        # the detector's false positives
        if detector is not None:
            kept = 0
            for x, y, r, _score in _detector_circles(detector, img, mpp):
                if kept >= per_tile_false_positives:
                    break
                if not (0 <= int(y) < h and 0 <= int(x) < w) or glom_dil[int(y), int(x)]:
                    continue
                if min(x, y, w - x, h - y) < edge:
                    continue
                crop = _square(img, x, y, r + PIPELINE_MARGIN_UM / mpp, pad=True)
                if crop is not None:
                    out.append(
                        (
                            crop,
                            "non_glomerular",
                            group,
                            f"{prefix}_fp_{jpg.stem}_{kept}",
                            f"{source}_false_positive",
                        )
                    )
                    kept += 1
    return out


SYNTH_TO_COARSE = {
    "normal": "normal",
    "obsolescent": "sclerosed",
    "solidified": "sclerosed",
    "disappearing": "sclerosed",
    "non_glomerular": "non_glomerular",
}


def synthetic_glomeruli(out: Path, n_per_class: int, seed: int) -> list[tuple[str, str, str]]:
    """Five-class synthetic patches under ``out/synth_glom``, as coarse (image, label, slide) rows."""
    from glomkit.synth.patches import make_patch_dataset

    if n_per_class <= 0:
        return []
    sub = out / "synth_glom"
    csv_path = make_patch_dataset(sub, n_per_class, seed=seed, size=OUT_SIZE)
    with open(csv_path, newline="") as f:
        return [
            (f"synth_glom/{r['image']}", SYNTH_TO_COARSE[r["label"]], f"glom{r['slide']}")
            for r in csv.DictReader(f)
        ]


SYNTH_FP_SIZE = (12000, 9000)  # demo-like slides (`glomkit demo`'s size) at 0.25 µm/px
SYNTH_FP_THRESHOLD = 0.1  # detections at or above this score are mined
SYNTH_FP_SEEDS = range(11, 61)  # the demo is seed 0; seeds 1-10 are the threshold rule's validation slides
SYNTH_FP_MAX_IOU = 0.1  # a false positive overlaps no true glomerulus by more than this circle IoU


def synthetic_false_positives(
    detector: str | Path, seeds: range, work: Path
) -> list[tuple[np.ndarray, str, str]]:
    """Hard negatives from demo-like synthetic slides: the detector's detections (score >=
    ``SYNTH_FP_THRESHOLD``) whose circle IoU with every true glomerulus is below
    ``SYNTH_FP_MAX_IOU``, each read as the pipeline reads a patch (circle + 12.5 µm margin,
    ``glomkit.infer.patches.read_patch``), grouped by slide seed. The slides are written under
    ``work`` and removed after."""
    from glomkit.core.geometry import circle_iou
    from glomkit.infer.detect import DetectOptions, detect_circles
    from glomkit.infer.patches import PATCH_SIZE, patch_box, read_patch
    from glomkit.models.runtime import OnnxModel
    from glomkit.slide.reader import Slide
    from glomkit.ssl.pool import MARGIN_UM
    from glomkit.synth.slide import synthesize_slide

    det = OnnxModel(str(detector))
    out = []
    work.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        path = work / f"synthfp_{seed}.tif"
        truth = synthesize_slide(path, *SYNTH_FP_SIZE, mpp=0.25, seed=seed)
        glom = np.array(
            [[g.x, g.y, g.radius] for g in truth.glomeruli if g.label != "non_glomerular"]
        ).reshape(-1, 3)
        with Slide(path) as sl:
            c = detect_circles(sl, det, DetectOptions(score_threshold=SYNTH_FP_THRESHOLD))
            iou = circle_iou(c[:, :3], glom) if len(c) and len(glom) else np.zeros((len(c), 1))
            for i, (x, y, r, _) in enumerate(c):
                if iou[i].max(initial=0.0) >= SYNTH_FP_MAX_IOU:
                    continue
                patch = read_patch(sl, patch_box(x, y, r, MARGIN_UM / sl.mpp), PATCH_SIZE)
                img = cv2.resize(patch, (OUT_SIZE, OUT_SIZE), interpolation=cv2.INTER_AREA)
                out.append((img, f"synthfp#{seed}", f"synthfp_{seed}_{i}"))
        path.unlink(missing_ok=True)
    return out


def build_coarse_folder(
    out: str | Path,
    bueno_root: str | Path | None = None,
    svs: str | Path | None = None,
    seed: int = 0,
    n_bueno_bg: int = 250,
    n_svs: int = 120,
    n_synth: int = 120,
    n_synth_glom: int = 60,
    hubmap: str | Path | None = None,
    cgmh: str | Path | None = None,
    synth_fp_detector: str | Path | None = None,
    synth_fp_seeds: range = SYNTH_FP_SEEDS,
) -> Path:
    """Write ``out/labels.csv`` (+ non_glomerular PNGs); bueno labels stay GS / nonGS."""
    out = Path(out)
    root = Path(bueno_root) if bueno_root else default_root()
    rng = np.random.default_rng(seed)
    rows = [(str(s.image.resolve()), s.label, s.slide, "bueno") for s in load_bueno(root)]
    made = [(*m, "bueno_background") for m in bueno_background(root, rng, n_bueno_bg)]
    if svs is not None and Path(svs).is_file():
        made += [(*m, "svs") for m in svs_tiles(Path(svs), rng, n_svs)]
    made += [(*m, "synthetic") for m in synthetic(rng, n_synth)]
    if synth_fp_detector is not None:
        fps = synthetic_false_positives(synth_fp_detector, synth_fp_seeds, out / "_synthfp_slides")
        made += [(*m, "synthetic_fp") for m in fps]
    for img, slide, name, source in made:
        rel = f"non_glomerular/{name}.png"
        write_png(out / rel, img)
        rows.append((rel, "non_glomerular", slide, source))
    if hubmap is not None:
        for img, label, group, name, source in hubmap_crops(Path(hubmap), rng):
            rel = f"hubmap/{name}.png"
            write_png(out / rel, img)
            rows.append((rel, label, group, source))
    if cgmh is not None:
        for img, label, group, name, source in cgmh_crops(Path(cgmh), rng):
            rel = f"cgmh/{name}.png"
            write_png(out / rel, img)
            rows.append((rel, label, group, source))
    rows += [(*r, "synthetic") for r in synthetic_glomeruli(out, n_synth_glom, seed)]
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["image", "label", "slide", "source"])
    wr.writerows(rows)
    write_text(out / "labels.csv", buf.getvalue())
    return out


def extend_with_synthetic_fp(base: str | Path, out: str | Path, detector: str | Path) -> Path:
    """``out/labels.csv``: the rows of an existing folder (``base``; its relative images made
    absolute, nothing copied) plus the detector's synthetic false positives under ``out/synthfp``."""
    base, out = Path(base), Path(out)
    with (base / "labels.csv").open(newline="") as f:
        rows = [
            (
                r["image"] if Path(r["image"]).is_absolute() else str((base / r["image"]).resolve()),
                r["label"],
                r["slide"],
                r["source"],
            )
            for r in csv.DictReader(f)
        ]
    for img, slide, name in synthetic_false_positives(detector, SYNTH_FP_SEEDS, out / "_synthfp_slides"):
        rel = f"synthfp/{name}.png"
        write_png(out / rel, img)
        rows.append((rel, "non_glomerular", slide, "synthetic_fp"))
    (out / "_synthfp_slides").rmdir()
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["image", "label", "slide", "source"])
    wr.writerows(rows)
    write_text(out / "labels.csv", buf.getvalue())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--bueno", default=None)
    ap.add_argument("--svs", default=str(default_root().parent / "slides" / "CMU-1-Small-Region.svs"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synth-glomeruli", type=int, default=60, help="synthetic patches per five-class label")
    ap.add_argument(
        "--hubmap",
        default=None,
        help="hubmap_pas tiles folder: add real in-context glomeruli (ungraded) and real negatives",
    )
    ap.add_argument(
        "--cgmh",
        default=None,
        help="cgmh_he tiles folder: add real in-context H&E glomeruli (ungraded) and H&E negatives "
        "(its test biopsies are never read)",
    )
    ap.add_argument(
        "--synthetic-fp",
        default=None,
        metavar="DETECTOR",
        help="add this detector's false positives on demo-like synthetic slides (seeds 11-60; the demo "
        "is seed 0, validation 1-10) as non_glomerular examples",
    )
    ap.add_argument(
        "--extend",
        default=None,
        metavar="DIR",
        help="with --synthetic-fp: keep DIR's rows as they are (nothing rebuilt) and add only the false positives",
    )
    a = ap.parse_args()
    if a.extend:
        if not a.synthetic_fp:
            ap.error("--extend needs --synthetic-fp")
        print(extend_with_synthetic_fp(a.extend, a.out, a.synthetic_fp) / "labels.csv")
        return
    p = build_coarse_folder(
        a.out,
        a.bueno,
        a.svs,
        a.seed,
        n_synth_glom=a.synth_glomeruli,
        hubmap=a.hubmap,
        cgmh=a.cgmh,
        synth_fp_detector=a.synthetic_fp,
    )
    print(p / "labels.csv")


if __name__ == "__main__":
    main()
