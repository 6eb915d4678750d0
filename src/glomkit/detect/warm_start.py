"""Start detector training from a glomkit detector file, such as the bundled one (``--init bundled``).

The torch weights come back from the ONNX file through :mod:`glomkit.models.recover`, which
checks the heatmap, radius and offset outputs against ONNX Runtime. The BatchNorms are then
recalibrated on training fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from glomkit import GlomkitError


def detector_init_metadata(init: str, arch: str) -> tuple[Path, Any]:
    """The model file named by ``--init`` (``bundled`` = the bundled detector) and its metadata.

    The file must be a detector of architecture ``arch`` whose kind can start training from a
    model file (:attr:`glomkit.kinds.DetectorKind.warm_start`).
    """
    from glomkit.kinds import kind_for_arch
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import read_typed_metadata

    if not kind_for_arch(arch).warm_start:
        raise GlomkitError(f"--init: a {arch} detector cannot start from a model file")
    path = Path(resolve_model(init, "detector"))
    meta = read_typed_metadata(path)
    if meta.task != "detector" or meta.architecture != arch:
        raise GlomkitError(f"{path}: --init needs a {arch} detector model (this is {meta.architecture})")
    return path, meta


def init_detector(model: torch.nn.Module, init: str, batches: Iterable[torch.Tensor]) -> dict[str, Any]:
    """Load the CircleNet ``init`` into ``model`` (same backbone), then recalibrate its BatchNorms."""
    from glomkit.models.recover import load_onnx_weights, recalibrate_batchnorm

    path, meta = detector_init_metadata(init, "circlenet")
    example = torch.randn(1, 3, 64, 64)
    fused = load_onnx_weights(model, path, example, lambda n, x: list(n(x)))
    n = recalibrate_batchnorm(model, fused, batches)
    return {"init_model": path.name, "init_backbone": meta.backbone, "recalibrated_on": n}
