"""Clustering study: features -> reduction (PCA / Isomap / t-SNE) -> k-means over a k range.

Scores each k by silhouette, Davies-Bouldin and Calinski-Harabasz. **The choice a user without
labels would make** (:func:`choose_by_internal_scores`): per feature extractor, the embedding and
k with the best mean rank of the three internal scores. With labels, the adjusted Rand index and
NMI of every (embedding, k), of that choice, and at k = number of label classes.

Inputs: image folders (``images``), and folders of images with glomerulus outlines (``data``):
their *held-out* files' glomeruli (``glomkit.ssl.pool.annotated_crops``), cut as the pipeline cuts
them. ``subset="held-out"`` keeps only the crops of the bueno slides that SimSiam pretraining
leaves out (``glomkit.ssl.pool.bueno_held_out_slides``; needs a labels CSV with ``source_wsi``).
``label_by="source"`` labels each crop by its source folder (a stain / lab split).

With a labels CSV that names each crop's slide (``source_wsi``), every candidate is also scored
against the slide (``ari_slide``) and **within slides** (``ari_within_slide``: the crop-weighted
mean ARI inside each slide that holds two classes or more, where stain and scanner are constant).
A grouping can match the labels only because the labels cluster by slide or site; these two say
how much of its ARI is that.

Writes ``clusters.csv``, ``metrics.csv``, ``summary.csv/.md``, ``choice.csv``, ``crosstab.csv``,
``metrics.png``, ``embedding.png``, per feature a 2-D map coloured by the chosen clusters
(``map_<feature>.png``) and a gallery per cluster (``gallery/<feature>_cluster<c>.png``); the
headline feature's (the encoder's when given, else the first) also as ``map.png`` and
``grid_cluster<c>.png``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn import metrics
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, Isomap
from sklearn.preprocessing import StandardScaler

from glomkit import GlomkitError
from glomkit.io.atomic import write_bytes, write_text
from glomkit.ssl.images import find_images, load_resized

REDUCTIONS = ("pca", "isomap", "tsne")
SUBSETS = ("all", "held-out")
LABEL_BY = ("label", "source")
# where the internal scores of a candidate partition are measured: in the embedding it was found in
# (PCA, Isomap or t-SNE coordinates; t-SNE's blobs always score best there), or in the standardised
# features that every embedding of one feature set shares, which makes candidates comparable
SCORE_SPACES = ("embedding", "features")
GALLERY_SIZE = 96  # px of the crops kept for galleries


@dataclass
class ClusterConfig:
    images: list[str]
    out: str
    labels: str = ""
    features: tuple[str, ...] = ("morphometry", "pixels", "autoencoder", "vgg19", "resnet50")
    reductions: tuple[str, ...] = REDUCTIONS
    k_min: int = 2
    k_max: int = 8
    size: int = 64
    dims: int = 10
    encoder: str = ""
    ae_epochs: int = 10
    seed: int = 0
    command: str = ""
    data: list[dict] = field(default_factory=list)  # {"path", "mpp"}: annotated folders (held-out files)
    subset: str = "all"
    stain: str = "auto"
    label_by: str = "label"
    threads: int = 1
    score_space: str = "features"
    extra: dict = field(default_factory=dict)


@dataclass
class Crops:
    """The study's crops: names, feature-size images, gallery-size images, labels and sources."""

    names: list[str]
    images: np.ndarray
    thumbs: np.ndarray
    labels: list[str | None] | None
    sources: list[str]
    slides: list[str | None] | None = None  # the labels CSV's source_wsi, where it has one
    sized: dict[int, np.ndarray] = field(default_factory=dict)  # the crops at a feature's own size

    def at(self, size: int) -> np.ndarray:
        """The crops at ``size`` px: the study's size, or one a feature asked for (``FEATURE_SIZE``)."""
        return self.sized.get(size, self.images)


def _rows(csv_path: str | Path) -> list[dict]:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise GlomkitError(f"{csv_path}: labels CSV not found")
    try:
        with csv_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise GlomkitError(f"{csv_path}: cannot read labels CSV ({type(e).__name__})") from None
    if not rows or "image" not in rows[0] or "label" not in rows[0]:
        raise GlomkitError(f"{csv_path}: needs columns image,label")
    return rows


def _match(csv_path: str | Path, rows: list[dict], paths: list[Path]) -> list[dict | None]:
    base = Path(csv_path).parent
    by_path = {(base / r["image"]).resolve(): r for r in rows}
    by_name = {Path(r["image"]).name: r for r in rows}
    return [by_path.get(p.resolve(), by_name.get(p.name)) for p in paths]


def read_labels(csv_path: str | Path, paths: list[Path]) -> list[str | None]:
    """Label per image from a CSV with columns image,label (matched by path, else by file name)."""
    out = [r["label"] if r else None for r in _match(csv_path, _rows(csv_path), paths)]
    if not any(v is not None for v in out):
        raise GlomkitError(f"{csv_path}: no image in it matches the --images files")
    return out


def source_name(path: str | Path) -> str:
    """A source's short name: its folder, or the folder above a generic ``images`` / ``tiles``."""
    p = Path(path)
    return p.parent.name if p.name in ("images", "tiles", "") and p.parent.name else p.name


def load_crops(cfg: ClusterConfig) -> Crops:
    """Every crop of the study (see the module docstring), at ``cfg.size`` and at the gallery size."""
    if cfg.subset not in SUBSETS:
        raise GlomkitError(f"--subset {cfg.subset!r}: expected one of {', '.join(SUBSETS)}")
    if cfg.label_by not in LABEL_BY:
        raise GlomkitError(f"--label-by {cfg.label_by!r}: expected one of {', '.join(LABEL_BY)}")
    names: list[str] = []
    imgs: list[np.ndarray] = []
    thumbs: list[np.ndarray] = []
    labels: list[str | None] = []
    sources: list[str] = []
    slides: list[str | None] = []
    from glomkit.cluster.features import FEATURE_SIZE

    extra = sorted({FEATURE_SIZE[f] for f in cfg.features if f in FEATURE_SIZE} - {cfg.size})
    sized: dict[int, list[np.ndarray]] = {s: [] for s in extra}
    cut = max([GALLERY_SIZE, cfg.size, *extra])  # annotated glomeruli are cut once, at the largest
    for folder in cfg.images:
        paths = find_images([folder])
        if cfg.labels:
            rows = _match(cfg.labels, _rows(cfg.labels), paths)
            if cfg.subset == "held-out":
                from glomkit.ssl.pool import bueno_held_out_slides

                all_rows = _rows(cfg.labels)
                if "source_wsi" not in all_rows[0]:
                    raise GlomkitError(f"{cfg.labels}: --subset held-out needs a source_wsi column")
                held = bueno_held_out_slides(sorted({r["source_wsi"] for r in all_rows}))
                keep = [i for i, r in enumerate(rows) if r is not None and r["source_wsi"] in held]
                paths, rows = [paths[i] for i in keep], [rows[i] for i in keep]
        elif cfg.subset == "held-out":
            raise GlomkitError("--subset held-out needs --labels (a CSV with source_wsi)")
        else:
            rows = [None] * len(paths)
        if not paths:
            raise GlomkitError(f"{folder}: no image left to cluster")
        names += [str(p) for p in paths]
        imgs.append(load_resized(paths, cfg.size))
        thumbs.append(load_resized(paths, GALLERY_SIZE))
        for s in extra:
            sized[s].append(load_resized(paths, s))
        labels += [r["label"] if r else None for r in rows]
        slides += [(r.get("source_wsi") or None) if r else None for r in rows]
        sources += [source_name(folder)] * len(paths)
    for d in cfg.data:
        from glomkit.ssl.pool import annotated_crops

        crops, info = annotated_crops(Path(d["path"]), d.get("mpp"), cut, which="held_out")
        names += [f"{d['path']}/{n}" for n in info["names"]]
        thumbs.append(_resize(crops, GALLERY_SIZE))
        imgs.append(_resize(crops, cfg.size))
        for s in extra:
            sized[s].append(_resize(crops, s))
        labels += [None] * len(crops)
        slides += [None] * len(crops)
        sources += [source_name(d["path"])] * len(crops)
    if not names:
        raise GlomkitError("no crop to cluster (give --images or --data)")
    if cfg.label_by == "source":
        lab: list[str | None] | None = list(sources)
    elif cfg.labels:
        lab = labels
        if not any(v is not None for v in lab):
            raise GlomkitError(f"{cfg.labels}: no image in it matches the --images files")
    else:
        lab = None
    by_slide = slides if cfg.label_by == "label" and any(slides) else None
    return Crops(
        names,
        np.concatenate(imgs),
        np.concatenate(thumbs),
        lab,
        sources,
        by_slide,
        {s: np.concatenate(v) for s, v in sized.items()},
    )


def slide_scores(y: np.ndarray, a: np.ndarray, slides: list[str | None]) -> dict:
    """How far partition ``a`` follows the slides, and how well it matches labels ``y`` (-1: none)
    inside each slide: ``ari_slide`` (ARI against the slide, crops with a slide and a label) and
    ``ari_within_slide`` (crop-weighted mean ARI within the slides with two classes or more;
    NaN when no slide has two)."""
    sl = np.array([s or "" for s in slides])
    keep = (sl != "") & (y >= 0)
    out = {"ari_slide": float(metrics.adjusted_rand_score(sl[keep], a[keep])) if keep.any() else float("nan")}
    num = den = 0.0
    for s in sorted(set(sl[keep].tolist())):
        m = keep & (sl == s)
        if len(set(y[m].tolist())) >= 2:
            num += m.sum() * metrics.adjusted_rand_score(y[m], a[m])
            den += m.sum()
    out["ari_within_slide"] = float(num / den) if den else float("nan")
    return out


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if images.shape[1:3] == (size, size):
        return images
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])


def reduce(feats: np.ndarray, method: str, dims: int, seed: int) -> np.ndarray:
    """Standardise then reduce to ``dims`` (t-SNE: 2) dimensions."""
    z = StandardScaler().fit_transform(feats)
    z = np.nan_to_num(z)
    n_pre = min(50, z.shape[0] - 1, z.shape[1])
    if method == "pca":
        return PCA(min(dims, n_pre), random_state=seed).fit_transform(z)
    pre = PCA(n_pre, random_state=seed).fit_transform(z) if z.shape[1] > n_pre else z
    if method == "isomap":
        return Isomap(n_neighbors=min(10, len(z) - 1), n_components=min(dims, n_pre)).fit_transform(pre)
    if method == "tsne":
        return TSNE(2, perplexity=min(30.0, (len(z) - 1) / 3), init="pca", random_state=seed).fit_transform(
            pre
        )
    raise GlomkitError(f"--reductions: unknown reduction {method!r} (choose from {', '.join(REDUCTIONS)})")


def kmeans_scan(
    z: np.ndarray, ks: range, seed: int, score_on: np.ndarray | None = None
) -> dict[int, tuple[np.ndarray, dict]]:
    """k -> (assignment, {silhouette, davies_bouldin, calinski_harabasz}): k-means in ``z``, the
    scores measured in ``score_on`` (same rows; default ``z``)."""
    s = z if score_on is None else score_on
    out = {}
    for k in ks:
        if k >= len(z):
            break
        a = KMeans(k, n_init=10, random_state=seed).fit_predict(z)
        if len(set(a.tolist())) < 2:
            continue
        out[k] = (
            a,
            {
                "silhouette": float(metrics.silhouette_score(s, a)),
                "davies_bouldin": float(metrics.davies_bouldin_score(s, a)),
                "calinski_harabasz": float(metrics.calinski_harabasz_score(s, a)),
            },
        )
    return out


def choose_by_internal_scores(rows: list[dict]) -> int:
    """Index of the row (one embedding and k) with the best mean rank of silhouette (high),
    Davies-Bouldin (low) and Calinski-Harabasz (high); ties: the smaller k, then the first row.
    No label is read: this is the choice a user without labels makes."""
    if not rows:
        raise GlomkitError("no clustering to choose from")
    n = len(rows)

    def ranks(values: list[float], high_is_good: bool) -> np.ndarray:
        v = np.asarray(values, np.float64) * (-1 if high_is_good else 1)
        from scipy.stats import rankdata

        return rankdata(v, method="average")

    mean_rank = (
        ranks([r["silhouette"] for r in rows], True)
        + ranks([r["davies_bouldin"] for r in rows], False)
        + ranks([r["calinski_harabasz"] for r in rows], True)
    ) / 3
    order = sorted(range(n), key=lambda i: (mean_rank[i], rows[i]["k"], i))
    for i in range(n):
        rows[i]["mean_rank"] = float(mean_rank[i])
    return order[0]


def run_clustering(cfg: ClusterConfig, progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Run the study; write its tables and figures under ``cfg.out`` (see the module docstring)."""
    from glomkit.cluster.features import FEATURE_SIZE, extract, solid_cluster, stain_view, view_of

    if cfg.score_space not in SCORE_SPACES:
        raise GlomkitError(f"--score-in {cfg.score_space!r}: choose from {', '.join(SCORE_SPACES)}")
    if cfg.k_min < 2 or cfg.k_max < cfg.k_min:
        raise GlomkitError(f"--k-range {cfg.k_min}:{cfg.k_max}: need 2 <= min <= max")
    crops = load_crops(cfg)
    if len(crops.names) < 3:
        raise GlomkitError(f"{len(crops.names)} crops: clustering needs at least 3")
    views: dict[tuple[str, int], np.ndarray] = {}
    ks = range(cfg.k_min, cfg.k_max + 1)
    labels = crops.labels
    classes = sorted({v for v in labels if v is not None}) if labels else []
    known = np.array([v is not None for v in labels]) if labels else None
    y = np.array([classes.index(v) if v is not None else -1 for v in labels]) if labels else None
    k_label = len(classes) if len(classes) >= 2 else None
    scan_rows: list[dict] = []
    summary: list[dict] = []
    choices: list[dict] = []
    assignments: dict[str, np.ndarray] = {}
    chosen: dict[str, np.ndarray] = {}
    embeddings: dict[str, np.ndarray] = {}
    maps: dict[str, np.ndarray] = {}
    infos: dict[str, dict] = {}
    steps = len(cfg.features) * len(cfg.reductions)
    done = 0

    def scores(a: np.ndarray) -> dict:
        if y is None:
            return {}
        return {
            "ari": float(metrics.adjusted_rand_score(y[known], a[known])),
            "nmi": float(metrics.normalized_mutual_info_score(y[known], a[known])),
            **(slide_scores(y, a, crops.slides) if crops.slides else {}),
        }

    for feat in cfg.features:
        view, side = view_of(feat, cfg.stain), FEATURE_SIZE.get(feat, cfg.size)
        if (view, side) not in views:
            views[(view, side)] = stain_view(crops.at(side), view)
        x, info = extract(
            feat, views[(view, side)], cfg.encoder or None, cfg.seed, cfg.ae_epochs, cfg.threads
        )
        info.update(view=view, size=side)
        infos[feat] = info
        shared = np.nan_to_num(StandardScaler().fit_transform(x)) if cfg.score_space == "features" else None
        feat_rows: list[dict] = []
        feat_assign: list[np.ndarray] = []
        for red in cfg.reductions:
            z = reduce(x, red, cfg.dims, cfg.seed)
            if red == "tsne" or feat not in embeddings:
                embeddings[feat] = z[:, :2]
            if red == "tsne":
                maps[feat] = z[:, :2]
            scan = kmeans_scan(z, ks, cfg.seed, shared)
            if not scan:
                raise GlomkitError(f"{feat} / {red}: k-means found no 2 clusters (too few distinct crops)")
            for k, (a, m) in scan.items():
                row = {"feature": feat, "reduction": red, "k": k, **m, **scores(a)}
                scan_rows.append(row)
                feat_rows.append(row)
                feat_assign.append(a)
            best_k = max(scan, key=lambda k: scan[k][1]["silhouette"])
            rec = {
                "feature": feat,
                "reduction": red,
                "best_k": best_k,
                "silhouette": scan[best_k][1]["silhouette"],
            }
            k_use = k_label if k_label in scan else best_k
            if k_label and k_label not in scan:
                a_use = KMeans(k_label, n_init=10, random_state=cfg.seed).fit_predict(z)
            else:
                a_use = scan[k_use][0]
            if y is not None:
                rec["k_labels"] = k_label
                rec.update(scores(a_use))
                rec["ari_best_k"] = scores(scan[best_k][0])["ari"]
            summary.append(rec)
            assignments[f"{feat}_{red}"] = a_use
            done += 1
            if progress:
                progress(done, steps, f"{feat} / {red}")
        i = choose_by_internal_scores(feat_rows)
        pick = dict(feat_rows[i])
        pick["candidates"] = len(feat_rows)
        if y is not None:
            pick["best_ari_any"] = max(r["ari"] for r in feat_rows)
        if feat == "morphometry":  # the most solid cluster against the rest: a two-way reading
            c = solid_cluster(x, feat_assign[i])
            two = (feat_assign[i] == c).astype(int)
            assignments[f"{feat}_solid_vs_rest"] = two
            pick["solid_cluster"] = c
            pick["solid_n"] = int(two.sum())
            pick.update({f"{k}_solid_vs_rest": v for k, v in scores(two).items()})
        choices.append(pick)
        chosen[feat] = feat_assign[i]
        assignments[f"{feat}_chosen"] = feat_assign[i]
        if feat not in maps:
            maps[feat] = reduce(x, "pca", 2, cfg.seed)  # no t-SNE asked for: the first two PCs
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(
        out / "clusters.csv",
        [
            {
                "image": n,
                "source": crops.sources[i],
                **({"label": labels[i] or ""} if labels else {}),
                **{k: int(v[i]) for k, v in assignments.items()},
            }
            for i, n in enumerate(crops.names)
        ],
    )
    _write_csv(out / "metrics.csv", scan_rows)
    _write_csv(out / "summary.csv", summary)
    _write_csv(out / "choice.csv", choices)
    cross = crosstab_rows(chosen, labels if labels else crops.sources)
    _write_csv(out / "crosstab.csv", cross)
    write_text(out / "summary.md", _markdown(summary, choices, cross, infos, cfg, len(crops.names), classes))
    from glomkit.cluster.figures import cluster_map_png, embedding_png, grid_pngs, metrics_png

    write_bytes(out / "metrics.png", metrics_png(scan_rows))
    write_bytes(out / "embedding.png", embedding_png(embeddings, assignments, cfg.reductions, y))
    headline = "simsiam" if "simsiam" in chosen else cfg.features[0]
    for feat, a in chosen.items():
        c = next(r for r in choices if r["feature"] == feat)
        title = f"{feat}: {c['reduction']}, k = {c['k']} (chosen by internal scores)"
        png = cluster_map_png(maps[feat], a, title, labels)
        write_bytes(out / f"map_{feat}.png", png)
        for k, g in grid_pngs(crops.thumbs, a).items():
            write_bytes(out / "gallery" / f"{feat}_cluster{k}.png", g)
            if feat == headline:
                write_bytes(out / f"grid_cluster{k}.png", g)
        if feat == headline:
            write_bytes(out / "map.png", png)
    return {
        "summary": summary,
        "scan": scan_rows,
        "choices": choices,
        "crosstab": cross,
        "infos": infos,
        "grid_key": f"{headline}_chosen",
        "n": len(crops.names),
    }


def crosstab_rows(chosen: dict[str, np.ndarray], labels: list) -> list[dict]:
    """Per feature and chosen cluster: its size and its count of each label (or source)."""
    names = sorted({str(v) for v in labels if v is not None})
    rows = []
    for feat, a in chosen.items():
        for c in sorted(set(a.tolist())):
            sel = a == c
            row = {"feature": feat, "cluster": int(c), "n": int(sel.sum())}
            for nm in names:
                row[nm] = int(sum(1 for i in np.flatnonzero(sel) if str(labels[i]) == nm))
            rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text(path, buf.getvalue())


def _markdown(
    summary: list[dict],
    choices: list[dict],
    cross: list[dict],
    infos: dict,
    cfg: ClusterConfig,
    n: int,
    classes: list[str],
) -> str:
    lab = bool(classes)
    lines = [
        "# Clustering study",
        "",
        f"{n} crops at {cfg.size} px (stain view: {cfg.stain}; subset: {cfg.subset}; each feature's own view "
        "and size in the first table); k-means (n_init 10) "
        f"for k in {cfg.k_min}..{cfg.k_max}; PCA/Isomap to {cfg.dims} dims, t-SNE to 2.",
        "",
        "## The choice without labels",
        "",
        "Per feature extractor, the embedding and k with the best mean rank of silhouette, "
        "Davies-Bouldin and Calinski-Harabasz over every candidate (scores measured in "
        + (
            "the standardised features all embeddings share"
            if cfg.score_space == "features"
            else "each embedding"
        )
        + ")"
        + (f"; then its ARI / NMI against {', '.join(classes)}." if lab else "."),
        "",
        "| features | stain view, px | chosen embedding | k | silhouette | Davies-Bouldin | Calinski-Harabasz |"
        + (" ARI | NMI | best ARI of any candidate |" if lab else ""),
        "|---|---|---|---:|---:|---:|---:|" + ("---:|---:|---:|" if lab else ""),
    ]
    for c in choices:
        info = infos.get(c["feature"], {})
        line = (
            f"| {c['feature']} | {info.get('view', cfg.stain)}, {info.get('size', cfg.size)} | "
            f"{c['reduction']} | {c['k']} | {c['silhouette']:.3f} | "
            f"{c['davies_bouldin']:.3f} | {c['calinski_harabasz']:.1f} |"
        )
        if lab:
            line += f" **{c['ari']:.3f}** | {c['nmi']:.3f} | {c['best_ari_any']:.3f} |"
        lines.append(line)
    for c in choices:
        if "solid_cluster" not in c:
            continue
        line = (
            f"{c['feature']}: cluster {c['solid_cluster']} holds the most solid tufts (lowest mean tuft "
            f"heterogeneity; {c['solid_n']} crops). Read as that cluster against the rest "
            f"(`{c['feature']}_solid_vs_rest` in clusters.csv), a two-way grouping with no label"
        )
        if "ari_solid_vs_rest" in c:
            line += f": ARI {c['ari_solid_vs_rest']:.3f}, NMI {c['nmi_solid_vs_rest']:.3f}"
            if "ari_within_slide_solid_vs_rest" in c:
                line += f", within slides {c['ari_within_slide_solid_vs_rest']:.3f}"
        lines += ["", line + "."]
    within = [c for c in choices if "ari_within_slide" in c]
    if within:
        lines += [
            "",
            "How much of that is the slide: the choice's ARI against the slide, and its mean ARI "
            "within the slides that hold two classes or more (stain and scanner constant there).",
            "",
            "| features | ARI against the slide | ARI within slides |",
            "|---|---:|---:|",
        ]
        lines += [f"| {c['feature']} | {c['ari_slide']:.3f} | {c['ari_within_slide']:.3f} |" for c in within]
    if cross:
        cols = [k for k in cross[0] if k not in ("feature", "cluster", "n")]
        lines += [
            "",
            "## What each chosen cluster holds",
            "",
            "| features | cluster | n | " + " | ".join(cols) + " |",
            "|---|---:|---:|" + "---:|" * len(cols),
        ]
        for r in cross:
            lines.append(
                f"| {r['feature']} | {r['cluster']} | {r['n']} | "
                + " | ".join(str(r[c]) for c in cols)
                + " |"
            )
    lines += [
        "",
        "## Per embedding",
        "",
        "| features | weights | reduction | best k (silhouette) | silhouette |"
        + (" ARI at k = classes | NMI | ARI best k |" if lab else ""),
        "|---|---|---|---:|---:|" + ("---:|---:|---:|" if lab else ""),
    ]
    for r in summary:
        line = f"| {r['feature']} | {infos[r['feature']]['weights']} | {r['reduction']} | {r['best_k']} | {r['silhouette']:.3f} |"
        if lab:
            line += f" {r['ari']:.3f} | {r['nmi']:.3f} | {r['ari_best_k']:.3f} |"
        lines.append(line)
    if cfg.command:
        lines += ["", "Command:", "", "```", cfg.command, "```"]
    return "\n".join(lines) + "\n"
