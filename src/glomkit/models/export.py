"""Export a torch model to a glomkit model file: ONNX graph + JSON metadata, fp16 weight storage.

Weights are stored as float16 initialisers followed by a Cast to float32, which ONNX Runtime
folds once at session start: the file is half the size and inference still runs in float32.
Needs the ``train`` extra (torch, onnx).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from glomkit import __version__
from glomkit.models.runtime import FORMAT, META_KEY


def _store_weights_fp16(model, min_elements: int = 1024) -> None:
    """Rewrite large float32 initialisers as float16 + Cast(float32), in place."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    new_inits = []
    casts = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            new_inits.append(init)
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < min_elements:
            new_inits.append(init)
            continue
        half_name = init.name + "__fp16"
        new_inits.append(numpy_helper.from_array(arr.astype(np.float16), half_name))
        casts.append(helper.make_node("Cast", [half_name], [init.name], to=onnx.TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)


def export_onnx(
    module,
    example: Any,
    path: str | Path,
    meta: dict[str, Any],
    output_names: list[str],
    input_name: str = "input",
    fp16_storage: bool = True,
    opset: int = 17,
) -> Path:
    """Export ``module`` (eval mode) to ``path`` with ``meta`` stored under the ``glomkit`` key.

    The batch dimension is dynamic; the spatial size is dynamic too unless the model needs it fixed.
    The file is written atomically.
    """
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    dyn = {input_name: {0: "batch", 2: "height", 3: "width"}}
    for name in output_names:
        dyn[name] = {0: "batch"}
    with tempfile.TemporaryDirectory() as td:
        raw = Path(td) / "raw.onnx"
        with torch.no_grad():
            torch.onnx.export(
                module,
                (example,),
                str(raw),
                input_names=[input_name],
                output_names=output_names,
                dynamic_axes=dyn,
                opset_version=opset,
                dynamo=False,
            )
        model = onnx.load(str(raw))
    if fp16_storage:
        _store_weights_fp16(model)
    full = {
        "format": FORMAT,
        "glomkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "outputs": output_names,
        **meta,
    }
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key = META_KEY
    entry.value = json.dumps(full)
    onnx.checker.check_model(model)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def update_metadata(path: str | Path, updates: dict) -> None:
    """Merge ``updates`` (top-level keys) into the glomkit metadata of an ONNX file, atomically."""
    write_with_metadata(path, path, updates)


def write_with_metadata(src: str | Path, dst: str | Path, updates: dict[str, Any]) -> None:
    """Copy the model file ``src`` to ``dst`` (atomically) with ``updates`` merged into its glomkit
    metadata; a dotted key (``"input.stain_reference"``) sets a field inside an object."""
    import onnx

    from glomkit.io.atomic import atomic_path

    model = onnx.load(str(src))
    entry = next((e for e in model.metadata_props if e.key == META_KEY), None)
    if entry is None:
        from glomkit import GlomkitError

        raise GlomkitError(f"{src}: not a glomkit model file (no {META_KEY!r} metadata)")
    meta = json.loads(entry.value)
    for key, value in updates.items():
        *parents, last = key.split(".")
        d = meta
        for p in parents:
            d = d.setdefault(p, {})
        d[last] = value
    entry.value = json.dumps(meta)
    with atomic_path(Path(dst)) as tmp:
        onnx.save(model, str(tmp))


def store_score_threshold(
    path: str | Path, best: dict[str, Any], data: dict[str, Any], **provenance: Any
) -> float:
    """Store a validation run's F1-best threshold as the detector's ``decode.score_threshold``,
    with where it came from under ``metrics.threshold_choice``; returns the stored value."""
    value = round(float(best["score_threshold"]), 3)
    write_with_metadata(
        path,
        path,
        {
            "decode.score_threshold": value,
            "metrics.threshold_choice": {**best, "data": data, **provenance},
        },
    )
    return value
