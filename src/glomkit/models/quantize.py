"""INT8 versions of glomkit model files, made with ONNX Runtime's quantisation tools.

The bundled models store their weights as float16 behind Cast nodes (see
:mod:`glomkit.models.recover`). Quantisation wants float32 weights, so :func:`to_float32` first
folds every ``Cast(float16 constant) -> float32`` into a float32 constant. Then:

- ``static`` (default): QDQ format, int8 weights per output channel, uint8 activations whose
  ranges come from a calibration set of training images (min-max over the set). This is the mode
  that makes convolutions run in int8 kernels on CPUs with VNNI.
- ``dynamic``: int8 weights, activation ranges computed at run time (no calibration set).

The glomkit metadata of the source file is kept, with a ``quantization`` record added (mode,
calibration images, the source file's SHA-256), so the quantised file is a glomkit model like any
other: ``glomkit run --segmenter segmenter_int8.onnx``.

Calibration images are prepared as the pipeline prepares its inputs: classifier and segmenter
images are resized to the model's input size; detector images are rescaled from ``data_mpp`` to
the model's mpp and pasted into a white tile of the model's input size (as the pipeline pads a
partial tile), cut into several tiles when larger.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from glomkit import GlomkitError
from glomkit.models.metadata import Splits, validate_metadata

META_KEY = "glomkit"
MODES = ("static", "dynamic")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def to_float32(model):
    """The ONNX ``model`` with every float16 initializer read through a Cast to float32 replaced by a
    float32 initializer (in place; returned). Other float16 initializers are converted too only when
    every user is such a Cast."""
    from onnx import TensorProto, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    users: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    drop_nodes = []
    new_inits = []
    for n in g.node:
        if n.op_type != "Cast" or n.input[0] not in inits:
            continue
        src = inits[n.input[0]]
        to = next((a.i for a in n.attribute if a.name == "to"), None)
        if src.data_type != TensorProto.FLOAT16 or to != TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(src).astype(np.float32)
        new_inits.append(numpy_helper.from_array(arr, n.output[0]))
        drop_nodes.append(n)
    if not drop_nodes:
        return model
    for n in drop_nodes:
        g.node.remove(n)
    g.initializer.extend(new_inits)
    still_used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for t in list(g.initializer):
        if t.data_type == TensorProto.FLOAT16 and t.name not in still_used:
            g.initializer.remove(t)
    return model


def sort_like(model, order: Sequence[str]):
    """Reorder ``model``'s nodes (in place; returned) so that the nodes named in ``order`` keep
    that relative order, and each added node (quantise / dequantise) comes just before its first
    consumer: a topological order, by Kahn's algorithm with those ranks as priorities.

    ONNX Runtime's quantiser re-sorts the graph; :mod:`glomkit.models.recover` pairs a file's Conv
    / Gemm nodes with a torch network's layers by their order, so an INT8 file keeps the order of
    the graph it came from.
    """
    import heapq

    g = model.graph
    nodes = list(g.node)
    rank_of = {name: float(i) for i, name in enumerate(order)}
    producer = {o: k for k, n in enumerate(nodes) for o in n.output if o}
    consumers: dict[int, list[int]] = {k: [] for k in range(len(nodes))}
    deps = [set() for _ in nodes]
    for k, n in enumerate(nodes):
        for i in n.input:
            if i in producer and producer[i] != k:
                deps[k].add(producer[i])
                consumers[producer[i]].append(k)
    rank = [rank_of.get(n.name) for n in nodes]

    def resolve(k: int, seen: set[int]) -> float:
        if rank[k] is not None:
            return rank[k]
        seen.add(k)
        later = [resolve(c, seen) for c in consumers[k] if c not in seen]
        rank[k] = (min(later) if later else float(len(order))) - 0.5
        return rank[k]

    for k in range(len(nodes)):
        resolve(k, set())
    waiting = [len(d) for d in deps]
    ready = [(rank[k], k) for k in range(len(nodes)) if waiting[k] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, k = heapq.heappop(ready)
        out.append(nodes[k])
        for c in consumers[k]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, (rank[c], c))
    if len(out) != len(nodes):
        raise GlomkitError("the quantised graph has a cycle")
    del g.node[:]
    g.node.extend(out)
    return model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_meta(model, path: Path) -> dict:
    for p in model.metadata_props:
        if p.key == META_KEY:
            try:
                meta = json.loads(p.value)
            except ValueError:
                raise GlomkitError(f"{path}: model metadata is not valid JSON") from None
            validate_metadata(meta, path)
            return meta
    raise GlomkitError(f"{path}: ONNX file has no glomkit metadata (was it exported by glomkit?)")


def list_images(root: str | Path, exclude: Sequence[str] = ()) -> list[Path]:
    """Image files under ``root`` (recursively, sorted), skipping masks/ folders and names whose stem
    starts with one of ``exclude`` (e.g. held-out slides or ``test_`` tiles)."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise GlomkitError(f"{root}: no such calibration folder")
    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if "masks" in p.relative_to(root).parts:
            continue
        if any(p.stem.startswith(e) for e in exclude):
            continue
        out.append(p)
    return out


def calibration_images(
    meta: dict, paths: Sequence[Path], data_mpp: float | None = None, limit: int | None = None
) -> Iterator[np.ndarray]:
    """uint8 RGB images at the model's input size, prepared from ``paths`` as the pipeline would."""
    typed = validate_metadata(meta, "model")
    ih, iw = typed.input_size
    n = 0
    from glomkit.io.images import check_pixels

    for p in paths:
        check_pixels(p)  # a decompression bomb is one line, before decoding
        try:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        except (cv2.error, MemoryError):
            img = None
        if img is None:
            continue
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if typed.task == "detector":
            mpp = getattr(typed, "mpp", None) or 2.0
            if data_mpp is None:
                raise GlomkitError("calibrating a detector needs --data-mpp (µm/px of the images)")
            f = data_mpp / mpp
            h, w = img.shape[:2]
            img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
            for y in range(0, img.shape[0], ih):
                for x in range(0, img.shape[1], iw):
                    tile = np.full((ih, iw, 3), 255, np.uint8)
                    part = img[y : y + ih, x : x + iw]
                    tile[: part.shape[0], : part.shape[1]] = part
                    yield tile
                    n += 1
                    if limit and n >= limit:
                        return
        else:
            yield cv2.resize(img, (iw, ih), interpolation=cv2.INTER_AREA)
            n += 1
            if limit and n >= limit:
                return


class _Reader:
    """ONNX Runtime's CalibrationDataReader over prepared float32 batches of one image each."""

    def __init__(self, input_name: str, images: Sequence[np.ndarray], meta: dict) -> None:
        from glomkit.core.stain import stain_normaliser
        from glomkit.models.runtime import ModelInfo, prepare_batch

        info = ModelInfo(meta)
        # a classifier's inputs are stain-normalised first (glomkit.infer.classify.classify_patches)
        normalise = stain_normaliser(getattr(info.typed, "stain_norm", "none"))
        self._it = iter([{input_name: prepare_batch(normalise(im)[None], info)} for im in images])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - not used by the min-max calibrator
        pass


def shape_nodes(model) -> list[str]:
    """Names of the nodes that compute shapes rather than pixels: those fed, through constants and
    other such nodes only, by a ``Shape``/``Size`` node (e.g. the "same" padding timm computes for
    an input of any size). They must stay float: quantised, an integer like 12.0 comes back as
    11.95 or 12.04, a ``Ceil`` turns that into another size, and the model fails or is wrong at
    input sizes other than its calibration's."""
    static = {t.name for t in model.graph.initializer}
    derived: set[str] = set()
    names = []
    for n in model.graph.node:  # a valid ONNX graph is topologically sorted
        inputs = [i for i in n.input if i]
        if n.op_type == "Constant":
            static.update(n.output)
            continue
        if n.op_type in ("Shape", "Size") or (
            any(i in derived for i in inputs) and all(i in derived or i in static for i in inputs)
        ):
            derived.update(n.output)
            if n.name:
                names.append(n.name)
    return names


def quantize_model(
    src: str | Path,
    dst: str | Path,
    calibration: Sequence[np.ndarray] | None = None,
    mode: str = "static",
    calibration_note: str | None = None,
    exclude_nodes: Sequence[str] = (),
) -> dict:
    """Write an INT8 copy of the glomkit model ``src`` to ``dst``; return its metadata.

    ``calibration``: uint8 RGB images at the model's input size (see :func:`calibration_images`),
    needed for ``static``. ``exclude_nodes``: node names left in float (e.g. a last layer).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    if mode not in MODES:
        raise GlomkitError(f"unknown quantisation mode {mode!r}; known: {', '.join(MODES)}")
    if not src.is_file():
        raise GlomkitError(f"{src}: model file not found")
    model = onnx.load(str(src))
    meta = _read_meta(model, src)
    if validate_metadata(meta, src).quantization is not None:
        raise GlomkitError(f"{src}: is already quantised")
    to_float32(model)
    order = [n.name for n in model.graph.node]
    # the nodes that make the graph's outputs stay float: probabilities keep their precision (a
    # uint8 output would step by 1/255, a softmax would no longer sum to 1)
    outs = {o.name for o in model.graph.output}
    exclude_nodes = list(exclude_nodes) + [
        n.name for n in model.graph.node if n.name and set(n.output) & outs and n.name not in exclude_nodes
    ]
    images = list(calibration or [])
    if mode == "static" and not images:
        raise GlomkitError("static quantisation needs calibration images")
    with tempfile.TemporaryDirectory(prefix="glomkit_quant_") as tmp:
        f32 = Path(tmp) / "f32.onnx"
        pre = Path(tmp) / "pre.onnx"
        out = Path(tmp) / "q.onnx"
        onnx.save(model, str(f32))
        try:
            quant_pre_process(str(f32), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation; quantise the plain graph
            pre = f32
        float_shapes = [n for n in shape_nodes(onnx.load(str(pre))) if n not in exclude_nodes]
        if mode == "static":
            input_name = model.graph.input[0].name
            quantize_static(
                str(pre),
                str(out),
                _Reader(input_name, images, meta),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=list(exclude_nodes) + float_shapes,
            )
        else:
            quantize_dynamic(
                str(pre),
                str(out),
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(exclude_nodes) + float_shapes,
            )
        q = sort_like(onnx.load(str(out)), order)
    record = {
        "mode": mode,
        "format": "QDQ" if mode == "static" else "dynamic",
        "weights": "int8 per channel" if mode == "static" else "int8",
        "activations": "uint8, min-max calibrated" if mode == "static" else "uint8, at run time",
        "calibration_images": len(images) if mode == "static" else 0,
        "source": src.name,
        "source_sha256": _sha256(src),
    }
    if calibration_note:
        record["calibration"] = calibration_note
    if exclude_nodes:
        record["float_nodes"] = list(exclude_nodes)  # the output nodes at least
    if float_shapes:
        record["float_shape_nodes"] = len(float_shapes)
    meta = dict(meta, quantization=record)
    del q.metadata_props[:]
    q.metadata_props.add(key=META_KEY, value=json.dumps(meta))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp_dst = dst.with_name(f".{dst.name}.partial")
    onnx.save(q, str(tmp_dst))
    tmp_dst.replace(dst)
    return meta


def training_images(splits: Splits, root: str | Path, limit: int | None = None) -> list[Path]:
    """Images under ``root`` that the model's metadata does not list as held out (``splits``: its
    typed ``splits``) and no ``test*`` file, evenly spaced down to ``limit``."""
    files, slides = splits.held_out_files(), splits.held_out_slides()
    paths = [
        p
        for p in list_images(root)
        if p.name not in files
        and not p.stem.startswith("test")
        and p.stem not in slides
        and p.stem.rsplit("-", 1)[0] not in slides
    ]
    if limit and len(paths) > limit:
        idx = np.linspace(0, len(paths) - 1, limit).round().astype(int)
        paths = [paths[i] for i in sorted(set(idx))]
    return paths


def quantize_file(
    src: str | Path,
    dst: str | Path,
    calibration: str | Path | None,
    mode: str = "static",
    data_mpp: float | None = None,
    limit: int = 100,
    keep_float: Sequence[str] = (),
) -> dict:
    """:func:`quantize_model` with calibration images read from the folder ``calibration``
    (training images only: what the model's metadata lists as validation or test is skipped).

    ``keep_float``: shell-style patterns (``fnmatch``) of node names left in float, e.g. a first
    convolution whose input range the calibration set cannot cover."""
    import onnx

    src = Path(src)
    if not src.is_file():
        raise GlomkitError(f"{src}: model file not found")
    model = onnx.load(str(src), load_external_data=False)
    meta = _read_meta(model, src)
    exclude = float_nodes(model, keep_float, src)
    images: list[np.ndarray] = []
    note = None
    if mode == "static":
        if calibration is None:
            raise GlomkitError("static quantisation needs --calibration DIR (training images)")
        paths = training_images(validate_metadata(meta, src).splits, calibration, limit)
        images = list(calibration_images(meta, paths, data_mpp=data_mpp, limit=limit))
        if not images:
            raise GlomkitError(f"{calibration}: no readable training images to calibrate with")
        note = f"{len(images)} inputs from {len(paths)} images of {Path(calibration).name}"
        if data_mpp:
            note += f" at {data_mpp:g} µm/px"
    return quantize_model(src, dst, images, mode=mode, calibration_note=note, exclude_nodes=exclude)


def float_nodes(model, patterns: Sequence[str], where: str | Path = "model") -> list[str]:
    """Names of ``model``'s nodes matching any of the shell-style ``patterns`` (a one-line
    GlomkitError for a pattern that matches no node)."""
    from fnmatch import fnmatchcase

    names = [n.name for n in model.graph.node if n.name]
    out: list[str] = []
    for pat in patterns:
        hits = [n for n in names if fnmatchcase(n, pat)]
        if not hits:
            raise GlomkitError(f"{where}: --keep-float {pat!r} matches no node of the graph")
        out += [n for n in hits if n not in out]
    return out
