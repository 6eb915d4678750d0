"""Torch weights recovered from a glomkit ONNX model, so training can start from a bundled model.

The bundled models ship as ONNX only. Their export fused each BatchNorm into the convolution
before it (eval mode), and stored the weights as float16. The graph still has every convolution and
linear layer, in the order the network ran them. So a torch network of the same architecture gets
its weights back like this:

1. Run the torch network once with hooks. This gives its Conv / ConvTranspose / Linear modules in
   execution order, and the BatchNorm that directly follows each convolution.
2. Take the graph's Conv / ConvTranspose / Gemm nodes in order, with their weights and biases. A
   weight may sit behind a Cast (float16 storage) or a DequantizeLinear (an INT8 file from
   ``glomkit models quantize``: the recovered weights are then the dequantized int8 ones, and the
   check of step 4 runs the file with its activations left in float).
3. Pair them one to one and check every shape. A convolution followed by a BatchNorm gets the fused
   weight. Its BatchNorm becomes the identity plus the fused bias: weight 1, running mean 0,
   running variance 1 - eps.
4. Check the recovery: the torch network's outputs must equal ONNX Runtime's on an example input.

After step 3 the network computes exactly the bundled function in eval mode. In train mode a
BatchNorm normalises with batch statistics, and an identity BatchNorm would then rescale every
channel. :func:`recalibrate_batchnorm` sets each recovered BatchNorm's statistics and affine
parameters from the activations on real training images. Eval mode stays the same, and train mode
starts close to the bundled model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from glomkit import GlomkitError

PARAM_MODULES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
PARAM_OPS = ("Conv", "ConvTranspose", "Gemm")


def _onnx_layers(path: Path) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(op, weight, bias) of every Conv / ConvTranspose / Gemm node, in graph order, as float32."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type in ("Cast", "Identity") and n.input[0] in inits}
    # an INT8 file (glomkit models quantize, QDQ): weights and biases behind a DequantizeLinear
    dq = {n.output[0]: n for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}

    def value(name: str) -> np.ndarray:
        if name in inits:
            return inits[name].astype(np.float32)
        if name in consts:
            return inits[consts[name].input[0]].astype(np.float32)
        if name in dq:
            return _dequantize(dq[name], inits)
        raise GlomkitError(f"{path}: weight {name!r} is not a constant of the graph")

    out = []
    for n in g.node:
        if n.op_type not in PARAM_OPS:
            continue
        w = value(n.input[1])
        b = value(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if n.op_type == "Gemm":
            attrs = {a.name: a for a in n.attribute}
            if not (attrs.get("transB") and attrs["transB"].i):
                w = w.T
        out.append((n.op_type, w, b))
    return out


def _dequantize(node, inits: dict[str, np.ndarray]) -> np.ndarray:
    """The float32 value of a DequantizeLinear of constants: (q - zero_point) * scale, per axis."""
    q = inits[node.input[0]].astype(np.float64)
    scale = inits[node.input[1]].astype(np.float64)
    zp = inits[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2] else 0.0
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if np.ndim(scale) == 1 and q.ndim > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zp = np.reshape(zp, shape) if np.ndim(zp) == 1 else zp
    return ((q - zp) * scale).astype(np.float32)


def _float_session(path: Path):
    """An ONNX Runtime session of the model at ``path``; an INT8 (QDQ) file is run with its
    activations left in float (each activation QuantizeLinear -> DequantizeLinear pair made an
    identity, or a Relu where the uint8 zero point is 0: the quantiser drops a Relu whose range
    the quantisation clips), so that it computes what a float network with the dequantized
    weights computes."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    model = onnx.load(str(path))
    g = model.graph
    if not any(n.op_type == "QuantizeLinear" for n in g.node):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    for k, n in enumerate(list(g.node)):
        src = producers.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if src is not None and src.op_type == "QuantizeLinear":
            zp = inits.get(src.input[2]) if len(src.input) > 2 else None
            clips = zp is not None and zp.dtype == np.uint8 and not np.any(zp)
            op = "Relu" if clips else "Identity"
            g.node[k].CopyFrom(helper.make_node(op, [src.input[0]], [n.output[0]], name=n.name))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _execution_order(
    net: nn.Module, example: torch.Tensor
) -> tuple[list[nn.Module], dict[nn.Module, nn.Module]]:
    """Parametric modules in the order they ran, and the BatchNorm fed directly by each conv."""
    order: list[nn.Module] = []
    outputs: dict[int, nn.Module] = {}
    keep: list[torch.Tensor] = []  # hold outputs so their ids stay unique during the pass
    bn_of: dict[nn.Module, nn.Module] = {}

    def on_param(mod, inp, out):
        order.append(mod)
        outputs[id(out)] = mod
        keep.append(out)

    def on_bn(mod, inp, out):
        src = outputs.get(id(inp[0]))
        if src is not None and isinstance(src, (nn.Conv2d, nn.ConvTranspose2d)):
            bn_of[src] = mod

    hooks = []
    for m in net.modules():
        if isinstance(m, PARAM_MODULES):
            hooks.append(m.register_forward_hook(on_param))
        elif isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_hook(on_bn))
    try:
        with torch.no_grad():
            net.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    if len(set(map(id, order))) != len(order):
        raise GlomkitError("cannot recover weights of a network that reuses a layer")
    return order, bn_of


def load_onnx_weights(
    net: nn.Module,
    path: str | Path,
    example: torch.Tensor,
    outputs: Callable[[nn.Module, torch.Tensor], Sequence[torch.Tensor]],
    atol: float = 1e-3,
) -> list[nn.BatchNorm2d]:
    """Load the weights of the ONNX model ``path`` into ``net`` (same architecture) and check them.

    ``outputs(net, x)`` must give the tensors that the ONNX graph outputs, in the same order. The
    check fails with :class:`GlomkitError` when the structure or the outputs differ. Returns the
    BatchNorms that now hold a fused bias. They are for :func:`recalibrate_batchnorm`.
    """
    path = Path(path)
    order, bn_of = _execution_order(net, example)
    layers = _onnx_layers(path)
    if len(order) != len(layers):
        raise GlomkitError(
            f"{path}: {len(layers)} conv/linear layers in the model file, {len(order)} in the network"
        )
    fused: list[nn.BatchNorm2d] = []
    with torch.no_grad():
        for k, (mod, (op, w, b)) in enumerate(zip(order, layers, strict=True)):
            if tuple(mod.weight.shape) != w.shape:
                raise GlomkitError(
                    f"{path}: layer {k} ({op}) has weights {w.shape}, the network {tuple(mod.weight.shape)}"
                )
            mod.weight.copy_(torch.from_numpy(w))
            bias = torch.zeros(w.shape[0] if op != "ConvTranspose" else w.shape[1])
            if b is not None:
                bias = torch.from_numpy(b)
            bn = bn_of.get(mod)
            if bn is not None:
                if mod.bias is not None:
                    mod.bias.zero_()
                bn.weight.fill_(1.0)
                bn.bias.copy_(bias)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                fused.append(bn)
            elif mod.bias is not None:
                mod.bias.copy_(bias)
            elif b is not None and np.abs(b).max() > 0:
                raise GlomkitError(f"{path}: layer {k} ({op}) has a bias the network lacks")
    _check_outputs(net, path, example, outputs, atol)
    return fused


def _check_outputs(net, path: Path, example: torch.Tensor, outputs, atol: float) -> None:
    sess = _float_session(path)
    ref = sess.run(None, {sess.get_inputs()[0].name: example.numpy().astype(np.float32)})
    with torch.no_grad():
        got = [t.detach().cpu().numpy() for t in outputs(net.eval(), example)]
    if len(got) != len(ref):
        raise GlomkitError(f"{path}: the model file has {len(ref)} outputs, the network {len(got)}")
    for k, (a, r) in enumerate(zip(got, ref, strict=True)):
        err = float(np.abs(a - r).max()) if a.shape == r.shape else float("inf")
        if not err <= atol * max(1.0, float(np.abs(r).max())):
            raise GlomkitError(f"{path}: recovered weights do not reproduce output {k} (max error {err:.3g})")


@torch.no_grad()
def recalibrate_batchnorm(
    net: nn.Module, bns: Iterable[nn.BatchNorm2d], batches: Iterable[torch.Tensor]
) -> int:
    """Give recovered BatchNorms the statistics of their inputs on ``batches``, keeping eval outputs.

    Each BatchNorm b in ``bns`` has weight 1, running mean 0 and running variance 1 - eps, so it
    computes x + beta. Over ``batches``, measure each input channel's mean m and variance v. Then
    set running mean m, running variance v, weight sqrt(v + eps) and bias m + beta. Eval mode still
    gives x + beta, and train mode gives about the same. Returns the number of images used.
    """
    bns = list(bns)
    stats = {id(b): [0.0, 0.0, 0.0] for b in bns}  # n, sum, sum of squares (per channel tensors)

    def hook(mod, inp, out):
        x = inp[0].detach().double().transpose(0, 1).reshape(inp[0].shape[1], -1)
        s = stats[id(mod)]
        s[0] += x.shape[1]
        s[1] = s[1] + x.sum(1)
        s[2] = s[2] + (x * x).sum(1)

    hooks = [b.register_forward_hook(hook) for b in bns]
    n_images = 0
    was_training = net.training
    try:
        net.eval()
        for x in batches:
            net(x)
            n_images += len(x)
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    if n_images == 0:
        return 0
    for b in bns:
        n, s1, s2 = stats[id(b)]
        mean = (s1 / n).float()
        var = (s2 / n - (s1 / n) ** 2).clamp_min(0).float()
        b.running_mean.copy_(mean)
        b.running_var.copy_(var)
        b.bias.copy_(b.bias + mean)
        b.weight.copy_(torch.sqrt(var + b.eps))
    return n_images
