"""Flip test-time augmentation of a batch of model outputs (numpy only)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np

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
