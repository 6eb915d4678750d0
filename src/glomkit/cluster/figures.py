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


def grid_pngs(paths, assign: np.ndarray, read, title: str, n: int = 16, thumb: int = 64) -> dict[int, bytes]:
    """One image grid (up to ``n`` thumbnails) per cluster."""
    from PIL import Image

    out = {}
    cols = 4
    for c in sorted(set(assign.tolist())):
        idx = np.flatnonzero(assign == c)[:n]
        rows = (len(idx) + cols - 1) // cols
        canvas = np.full((rows * thumb, cols * thumb, 3), 255, np.uint8)
        for j, i in enumerate(idx):
            im = np.asarray(Image.fromarray(read(paths[i])).resize((thumb, thumb)))
            canvas[
                (j // cols) * thumb : (j // cols + 1) * thumb, (j % cols) * thumb : (j % cols + 1) * thumb
            ] = im
        buf = io.BytesIO()
        Image.fromarray(canvas).save(buf, format="PNG", optimize=True)
        out[int(c)] = buf.getvalue()
    return out
