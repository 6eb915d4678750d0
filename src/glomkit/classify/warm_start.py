"""Start classifier training from a glomkit classifier model file, such as the bundled one (``--init bundled``).

The backbone comes back exactly, through :mod:`glomkit.models.recover`, which checks it against ONNX
Runtime. The head keeps the rows of the classes the two schemes share. A class the source model
lacks starts from its parent's row: a GGS subtype starts from ``sclerosed``. Any other class keeps
its random initialisation. So a lab can fine-tune the bundled coarse model into a five-class one on
its own reviewed glomeruli.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from glomkit import GlomkitError
from glomkit.core.schemes import ClassScheme
from glomkit.nets.classifier import GlomClassifier, build_classifier

BUNDLED = "bundled"


def is_model_init(init: str | None) -> bool:
    """True when ``--init`` names a classifier model file (or the bundled one), not a SimSiam encoder."""
    return init is not None and (str(init) == BUNDLED or str(init).lower().endswith(".onnx"))


def init_from_model(net: GlomClassifier, init: str, scheme: ClassScheme, size: int) -> dict[str, Any]:
    """Load the backbone and the matching head rows of the classifier model ``init`` into ``net``.

    Returns metadata for the training record. ``recovered_batchnorms`` names the BatchNorms to
    recalibrate on training images (:func:`glomkit.models.recover.recalibrate_batchnorm`).
    """
    from glomkit.models.recover import load_onnx_weights
    from glomkit.models.registry import resolve_model
    from glomkit.models.runtime import read_typed_metadata

    path = Path(resolve_model(init, "classifier"))
    meta = read_typed_metadata(path)
    if meta.task != "classifier":
        raise GlomkitError(f"{path}: not a classifier model (task {meta.task!r})")
    backbone = meta.backbone
    if backbone != net.backbone_name:
        raise GlomkitError(
            f"{path}: the model's backbone is {backbone}; train with --backbone {backbone} to start from it"
        )
    source_scheme = meta.scheme
    src = build_classifier(backbone, len(source_scheme))
    example = torch.randn(2, 3, size, size)
    fused = load_onnx_weights(src, path, example, lambda n, x: [torch.softmax(n(x), dim=1)])
    net.backbone.load_state_dict(src.backbone.state_dict())
    rows: dict[str, str] = {}
    with torch.no_grad():
        for k, cls in enumerate(scheme.classes):
            name = cls.name if cls.name in source_scheme.names else cls.parent
            if name in source_scheme.names:
                j = source_scheme.index(name)
                net.head.weight[k].copy_(src.head.weight[j])
                net.head.bias[k].copy_(src.head.bias[j])
                rows[cls.name] = name
    names = {id(m): n for n, m in src.backbone.named_modules()}
    return {
        "init_model": str(path) if init != BUNDLED else f"bundled {path.name}",
        "init_scheme": source_scheme.name,
        "head_rows_from": rows,
        "recovered_batchnorms": [names[id(b)] for b in fused if id(b) in names],
    }


def recalibrate(net: GlomClassifier, names: list[str], dataset, n_images: int = 256, batch: int = 32) -> int:
    """Recalibrate the recovered BatchNorms of ``net.backbone`` on up to ``n_images`` of ``dataset``."""
    from torch.utils.data import DataLoader

    from glomkit.models.recover import recalibrate_batchnorm

    modules = dict(net.backbone.named_modules())
    bns = [modules[n] for n in names]
    device = next(net.parameters()).device

    def batches():
        seen = 0
        for x, _ in DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=0):
            if seen >= n_images:
                break
            seen += len(x)
            yield x.to(device)

    return recalibrate_batchnorm(net, bns, batches())
