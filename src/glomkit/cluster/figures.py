"""PNG figures of the clustering study (small: dpi 80)."""

from __future__ import annotations

import io

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def metrics_png(rows: list[dict]) -> bytes:
    """Silhouette, Davies-Bouldin, Calinski-Harabasz (and ARI) against k, one line per feature/reduction."""
    plt = _plt()
    names = ["silhouette", "davies_bouldin", "calinski_harabasz"] + (
        ["ari"] if rows and "ari" in rows[0] else []
    )
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0))
    combos = list(dict.fromkeys((r["feature"], r["reduction"]) for r in rows))
    for ax, m in zip(axes, names, strict=True):
        for f, red in combos:
            sel = [r for r in rows if r["feature"] == f and r["reduction"] == red]
            ax.plot([r["k"] for r in sel], [r[m] for r in sel], marker=".", lw=1, label=f"{f}/{red}")
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("k", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1].legend(fontsize=5, ncol=2)
    fig.tight_layout()
    return _png(fig)


def embedding_png(
    emb: dict[str, np.ndarray], assign: dict[str, np.ndarray], reductions, y: np.ndarray | None
) -> bytes:
    """2-D embedding per feature extractor, coloured by true label (if any) else by cluster."""
    plt = _plt()
    feats = list(emb)
    fig, axes = plt.subplots(1, len(feats), figsize=(2.8 * len(feats), 2.8), squeeze=False)
    red = "tsne" if "tsne" in reductions else reductions[0]
    for ax, f in zip(axes[0], feats, strict=True):
        c = y if y is not None else assign.get(f"{f}_{red}")
        ax.scatter(emb[f][:, 0], emb[f][:, 1], c=c, s=4, cmap="coolwarm" if y is not None else "tab10")
        ax.set_title(f"{f} ({red}); colour = {'label' if y is not None else 'cluster'}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _png(fig)


def cluster_map_png(xy: np.ndarray, assign: np.ndarray, title: str, labels: list | None = None) -> bytes:
    """2-D map (t-SNE) coloured by cluster; with labels, a second panel coloured by label."""
    plt = _plt()
    panels = 2 if labels is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.4), squeeze=False)
    ax = axes[0][0]
    for c in sorted(set(assign.tolist())):
        sel = assign == c
        ax.scatter(
            xy[sel, 0], xy[sel, 1], s=5, color=plt.cm.tab10(c % 10), label=f"cluster {c} ({sel.sum()})"
        )
    ax.set_title(title, fontsize=7)
    ax.legend(fontsize=5, markerscale=2, loc="best")
    if labels is not None:
        ax = axes[0][1]
        names = sorted({str(v) for v in labels if v is not None})
        lab = np.array([str(v) if v is not None else "" for v in labels])
        for j, nm in enumerate(names):
            sel = lab == nm
            ax.scatter(xy[sel, 0], xy[sel, 1], s=5, color=plt.cm.Set1(j % 9), label=f"{nm} ({sel.sum()})")
        ax.set_title("the same map, coloured by label (not used for the choice)", fontsize=7)
        ax.legend(fontsize=5, markerscale=2, loc="best")
    for a in axes[0]:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    return _png(fig)


def grid_pngs(
    thumbs: np.ndarray, assign: np.ndarray, n: int = 24, thumb: int = 64, seed: int = 0
) -> dict[int, bytes]:
    """One image grid per cluster: up to ``n`` of its crops, drawn at random (fixed seed), with
    the cluster's size in a white band on top."""
    import cv2
    from PIL import Image

    out = {}
    cols = 6
    rng = np.random.default_rng(seed)
    for c in sorted(set(assign.tolist())):
        members = np.flatnonzero(assign == c)
        idx = np.sort(rng.choice(members, min(n, len(members)), replace=False))
        rows = (len(idx) + cols - 1) // cols
        band = 14
        canvas = np.full((band + rows * thumb, cols * thumb, 3), 255, np.uint8)
        cv2.putText(
            canvas,
            f"cluster {c}: {len(members)} crops",
            (3, 11),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            (0, 0, 0),
            1,
        )
        for j, i in enumerate(idx):
            im = cv2.resize(thumbs[i], (thumb, thumb), interpolation=cv2.INTER_AREA)
            r0 = band + (j // cols) * thumb
            canvas[r0 : r0 + thumb, (j % cols) * thumb : (j % cols + 1) * thumb] = im
        buf = io.BytesIO()
        Image.fromarray(canvas).save(buf, format="PNG", optimize=True)
        out[int(c)] = buf.getvalue()
    return out
