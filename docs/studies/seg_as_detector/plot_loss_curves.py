"""Loss-curve PNGs of segmentation-detector runs, from their training checkpoints.

Usage: python docs/studies/seg_as_detector/plot_loss_curves.py RUN.onnx.ckpt.pt OUT.png TITLE
"""

from __future__ import annotations

import sys

import torch

from glomkit.kinds.components import plot_loss_curve


def main(ckpt: str, out: str, title: str) -> None:
    history = torch.load(ckpt, map_location="cpu", weights_only=True)["history"]
    plot_loss_curve(history, out, title)
    print(f"wrote {out} ({len(history)} epochs, {sum(r['steps'] for r in history)} steps)")


if __name__ == "__main__":
    main(*sys.argv[1:4])
