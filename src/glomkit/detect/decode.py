"""Decode CircleNet outputs into circles (numpy + OpenCV only: the inference pipeline imports it)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import cv2
import numpy as np

from glomkit import GlomkitError


def decode_circlenet(
    heatmap: np.ndarray,
    radius: np.ndarray,
    offset: np.ndarray,
    stride: int = 4,
    score_threshold: float = 0.3,
    top_k: int = 100,
) -> np.ndarray:
    """Circles (K,4) = x, y, r, score in input pixels for ONE image, best score first.

    ``heatmap`` (1,h,w) or (h,w) after sigmoid, ``radius`` (1,h,w) in input px, ``offset`` (2,h,w)
    in heatmap cells. Peaks are cells equal to their 3x3 max (``cv2.dilate``) at or above
    ``score_threshold``; the ``top_k`` best are kept.
    """
    hm = np.asarray(heatmap, np.float32).reshape(np.shape(heatmap)[-2:])
    rad = np.asarray(radius, np.float32).reshape(hm.shape)
    off = np.asarray(offset, np.float32).reshape(2, *hm.shape)
    peak = cv2.dilate(hm, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero((hm >= peak) & (hm >= score_threshold))
    scores = hm[ys, xs]
    order = np.argsort(-scores, kind="stable")[:top_k]
    ys, xs, scores = ys[order], xs[order], scores[order]
    x = (xs + off[0, ys, xs]) * stride
    y = (ys + off[1, ys, xs]) * stride
    r = rad[ys, xs]
    return np.stack([x, y, r, scores], axis=1).astype(np.float64).reshape(-1, 4)


def decode_method(meta: dict, known: Collection[str], path: object) -> str:
    """A detector's ``decode.method`` (default 'circlenet'), which must be one of ``known``."""
    method = str(meta.get("decode", {}).get("method", "circlenet"))
    if method not in known:
        raise GlomkitError(f"{path}: unknown decode method {method!r}; known: {', '.join(sorted(known))}")
    return method


FLIPS = ("", "h", "v")


def flip_tta(
    run: Callable[[np.ndarray], dict[str, np.ndarray]],
    images: np.ndarray,
    flips: Sequence[str] = FLIPS,
    unflipped_only: Collection[str] = ("offset",),
) -> dict[str, np.ndarray]:
    """Flip test-time augmentation of a batch: ``run`` on NHWC ``images`` flipped by each of ``flips``.

    Every (N,C,H,W) output is flipped back and averaged over the runs, except those named in
    ``unflipped_only`` (CircleNet's sub-pixel offset is not flip-equivariant), which are taken
    from the unflipped run; ``flips`` must contain '' for them.
    """
    runs = []
    for f in flips:
        x = images
        if "h" in f:
            x = x[:, :, ::-1]
        if "v" in f:
            x = x[:, ::-1]
        out = run(np.ascontiguousarray(x))
        back = {}
        for name, arr in out.items():
            if "h" in f:
                arr = arr[..., ::-1]
            if "v" in f:
                arr = arr[..., ::-1, :]
            back[name] = arr
        runs.append((f, back))
    merged: dict[str, np.ndarray] = {}
    for name in runs[0][1]:
        if name in unflipped_only:
            base = [o[name] for f, o in runs if f == ""]
            if not base:
                raise ValueError(f"flip_tta: output {name!r} needs the unflipped run ('') among the flips")
            merged[name] = base[0]
        else:
            merged[name] = np.mean([o[name] for _, o in runs], axis=0).astype(np.float32)
    return merged
