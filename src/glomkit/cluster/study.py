"""Clustering study: features -> reduction (PCA / Isomap / t-SNE) -> k-means over a k range.

Scores each k by silhouette, Davies-Bouldin and Calinski-Harabasz; with labels, the adjusted
Rand index and NMI at k = number of label classes and at the silhouette-best k.
"""

from __future__ import annotations

import csv
import io
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
from glomkit.ssl.images import find_images, load_resized, read_rgb

REDUCTIONS = ("pca", "isomap", "tsne")


@dataclass
class ClusterConfig:
    images: list[str]
    out: str
    labels: str = ""
    features: tuple[str, ...] = ("pixels", "autoencoder", "vgg19", "resnet50")
    reductions: tuple[str, ...] = REDUCTIONS
    k_min: int = 2
    k_max: int = 8
    size: int = 64
    dims: int = 10
    encoder: str = ""
    ae_epochs: int = 10
    seed: int = 0
    command: str = ""
    extra: dict = field(default_factory=dict)


def read_labels(csv_path: str | Path, paths: list[Path]) -> list[str | None]:
    """Label per image from a CSV with columns image,label (matched by path, else by file name)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise GlomkitError(f"{csv_path}: labels CSV not found")
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "image" not in rows[0] or "label" not in rows[0]:
        raise GlomkitError(f"{csv_path}: needs columns image,label")
    by_path = {(csv_path.parent / r["image"]).resolve(): r["label"] for r in rows}
    by_name = {Path(r["image"]).name: r["label"] for r in rows}
    out = [by_path.get(p.resolve(), by_name.get(p.name)) for p in paths]
    if not any(v is not None for v in out):
        raise GlomkitError(f"{csv_path}: no image in it matches the --images files")
    return out


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


def kmeans_scan(z: np.ndarray, ks: range, seed: int) -> dict[int, tuple[np.ndarray, dict]]:
    """k -> (assignment, {silhouette, davies_bouldin, calinski_harabasz})."""
    out = {}
    for k in ks:
        if k >= len(z):
            break
        a = KMeans(k, n_init=10, random_state=seed).fit_predict(z)
        out[k] = (
            a,
            {
                "silhouette": float(metrics.silhouette_score(z, a)),
                "davies_bouldin": float(metrics.davies_bouldin_score(z, a)),
                "calinski_harabasz": float(metrics.calinski_harabasz_score(z, a)),
            },
        )
    return out


def run_clustering(cfg: ClusterConfig, progress=None) -> dict:
    """Run the study; write clusters.csv, metrics.csv, summary.md/.csv and PNGs under ``cfg.out``."""
    from glomkit.cluster.features import extract

    paths = find_images(cfg.images)
    labels = read_labels(cfg.labels, paths) if cfg.labels else None
    images = load_resized(paths, cfg.size)
    ks = range(cfg.k_min, cfg.k_max + 1)
    if cfg.k_min < 2 or cfg.k_max < cfg.k_min:
        raise GlomkitError(f"--k-range {cfg.k_min}:{cfg.k_max}: need 2 <= min <= max")
    classes = sorted({v for v in labels if v is not None}) if labels else []
    known = np.array([v is not None for v in labels]) if labels else None
    y = np.array([classes.index(v) if v is not None else -1 for v in labels]) if labels else None
    k_label = len(classes) if len(classes) >= 2 else None
    scan_rows: list[dict] = []
    summary: list[dict] = []
    assignments: dict[str, np.ndarray] = {}
    embeddings: dict[str, np.ndarray] = {}
    infos: dict[str, dict] = {}
    steps = len(cfg.features) * len(cfg.reductions)
    done = 0
    for feat in cfg.features:
        x, info = extract(feat, images, cfg.encoder or None, cfg.seed, cfg.ae_epochs)
        infos[feat] = info
        for red in cfg.reductions:
            z = reduce(x, red, cfg.dims, cfg.seed)
            if red == "tsne" or feat not in embeddings:
                embeddings[feat] = z[:, :2]
            scan = kmeans_scan(z, ks, cfg.seed)
            if k_label and k_label not in scan:
                a = KMeans(k_label, n_init=10, random_state=cfg.seed).fit_predict(z)
                scan_extra = {k_label: (a, {})}
            else:
                scan_extra = {}
            for k, (a, m) in scan.items():
                row = {"feature": feat, "reduction": red, "k": k, **m}
                if y is not None:
                    row["ari"] = float(metrics.adjusted_rand_score(y[known], a[known]))
                    row["nmi"] = float(metrics.normalized_mutual_info_score(y[known], a[known]))
                scan_rows.append(row)
            best_k = max(scan, key=lambda k: scan[k][1]["silhouette"])
            rec = {
                "feature": feat,
                "reduction": red,
                "best_k": best_k,
                "silhouette": scan[best_k][1]["silhouette"],
            }
            k_use = k_label or best_k
            a_use = (scan.get(k_use) or scan_extra[k_use])[0]
            if y is not None:
                rec["k_labels"] = k_label
                rec["ari"] = float(metrics.adjusted_rand_score(y[known], a_use[known]))
                rec["nmi"] = float(metrics.normalized_mutual_info_score(y[known], a_use[known]))
                rec["ari_best_k"] = float(metrics.adjusted_rand_score(y[known], scan[best_k][0][known]))
            summary.append(rec)
            assignments[f"{feat}_{red}"] = a_use
            done += 1
            if progress:
                progress(done, steps, f"{feat} / {red}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(
        out / "clusters.csv",
        [
            {
                "image": str(p),
                **({"label": labels[i] or ""} if labels else {}),
                **{k: int(v[i]) for k, v in assignments.items()},
            }
            for i, p in enumerate(paths)
        ],
    )
    _write_csv(out / "metrics.csv", scan_rows)
    _write_csv(out / "summary.csv", summary)
    write_text(out / "summary.md", _markdown(summary, infos, cfg, len(paths), classes))
    from glomkit.cluster.figures import embedding_png, grid_pngs, metrics_png

    write_bytes(out / "metrics.png", metrics_png(scan_rows))
    write_bytes(out / "embedding.png", embedding_png(embeddings, assignments, cfg.reductions, y))
    best = max(summary, key=lambda r: r.get("ari", r["silhouette"]))
    key = f"{best['feature']}_{best['reduction']}"
    for c, png in grid_pngs(paths, assignments[key], read_rgb, key).items():
        write_bytes(out / f"grid_cluster{c}.png", png)
    return {"summary": summary, "scan": scan_rows, "infos": infos, "grid_key": key, "n": len(paths)}


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text(path, buf.getvalue())


def _markdown(summary: list[dict], infos: dict, cfg: ClusterConfig, n: int, classes: list[str]) -> str:
    lab = bool(classes)
    lines = [
        "# Clustering study",
        "",
        f"{n} images at {cfg.size} px; k-means (n_init 10) for k in {cfg.k_min}..{cfg.k_max}; "
        f"PCA/Isomap to {cfg.dims} dims, t-SNE to 2."
        + (
            f" ARI/NMI against labels {', '.join(classes)} at k = {len(classes)}; `ARI best k` at the silhouette-best k."
            if lab
            else ""
        ),
        "",
        "| features | weights | reduction | best k (silhouette) | silhouette |"
        + (" ARI | NMI | ARI best k |" if lab else ""),
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
