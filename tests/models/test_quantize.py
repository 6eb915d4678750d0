"""INT8 quantisation of glomkit model files (glomkit.models.quantize) on a tiny hand-built model."""

import json

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from glomkit import GlomkitError  # noqa: E402
from glomkit.models.metadata import validate_metadata  # noqa: E402
from glomkit.models.quantize import quantize_model, to_float32, training_images  # noqa: E402
from glomkit.models.runtime import META_KEY, OnnxModel  # noqa: E402


def _tiny_segmenter(path, size=32):
    """Conv 3->8 (fp16 weights behind a Cast, as glomkit exports them), ReLU, Conv 8->1, Sigmoid."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float16)
    b1 = rng.standard_normal(8).astype(np.float32) * 0.1
    w2 = (rng.standard_normal((1, 8, 1, 1)) * 0.3).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["w1_fp16"], ["w1"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"]),
        helper.make_node("Sigmoid", ["c2"], ["prob"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1, size, size])],
        [
            numpy_helper.from_array(w1, "w1_fp16"),
            numpy_helper.from_array(b1, "b1"),
            numpy_helper.from_array(w2, "w2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "format": "glomkit-model/1",
        "task": "segmenter",
        "input_size": [size, size],
        "training": {"test_slides": ["S9"]},
    }
    model.metadata_props.add(key=META_KEY, value=json.dumps(meta))
    onnx.save(model, str(path))
    return path


def test_to_float32_folds_fp16_casts(tmp_path):
    m = onnx.load(str(_tiny_segmenter(tmp_path / "m.onnx")))
    to_float32(m)
    assert not [n for n in m.graph.node if n.op_type == "Cast"]
    assert {t.name: t.data_type for t in m.graph.initializer}["w1"] == onnx.TensorProto.FLOAT


def test_static_quantisation_keeps_metadata_and_outputs(tmp_path):
    src = _tiny_segmenter(tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(8)]
    meta = quantize_model(src, tmp_path / "q.onnx", images, calibration_note="8 random images")
    q = OnnxModel(tmp_path / "q.onnx", device="cpu", threads=1, expect_task="segmenter")
    assert q.meta["quantization"]["mode"] == "static" and q.meta["quantization"]["calibration_images"] == 8
    assert q.meta["training"] == meta["training"] and q.info.input_size == (32, 32)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    f = OnnxModel(src, device="cpu", threads=1)
    x = np.stack(images[:2])
    assert np.abs(q.run_images(x)["prob"] - f.run_images(x)["prob"]).max() < 0.05
    with pytest.raises(GlomkitError, match="already quantised"):
        quantize_model(tmp_path / "q.onnx", tmp_path / "qq.onnx", images)
    with pytest.raises(GlomkitError, match="calibration"):
        quantize_model(src, tmp_path / "q2.onnx", [])


def test_dynamic_quantisation_needs_no_calibration(tmp_path):
    src = _tiny_segmenter(tmp_path / "m.onnx")
    quantize_model(src, tmp_path / "d.onnx", mode="dynamic")
    assert OnnxModel(tmp_path / "d.onnx", device="cpu", threads=1).meta["quantization"]["mode"] == "dynamic"


def test_calibration_skips_held_out_data_and_cli_writes_a_model(tmp_path):
    from click.testing import CliRunner

    from glomkit.cli import cli

    src = _tiny_segmenter(tmp_path / "m.onnx")
    d = tmp_path / "cal"
    (d / "masks").mkdir(parents=True)
    rng = np.random.default_rng(2)
    for name in ("S1-1", "S1-2", "S9-1", "test_3"):
        cv2.imwrite(str(d / f"{name}.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    cv2.imwrite(str(d / "masks" / "S1-1.png"), np.zeros((40, 40), np.uint8))
    meta = json.loads(onnx.load(str(src)).metadata_props[0].value)
    splits = validate_metadata(meta, src).splits
    assert (splits.held_out_files(), splits.held_out_slides()) == (set(), {"S9"})
    assert [p.name for p in training_images(splits, d)] == ["S1-1.png", "S1-2.png"]
    r = CliRunner().invoke(
        cli, ["models", "quantize", str(src), str(tmp_path / "q.onnx"), "--calibration", str(d)]
    )
    assert r.exit_code == 0, r.output
    assert "2 inputs from 2 images" in r.output


def test_keep_float_leaves_named_nodes_in_float(tmp_path):
    from click.testing import CliRunner

    from glomkit.cli import cli

    src = _tiny_segmenter(tmp_path / "m.onnx")
    m = onnx.load(str(src))
    for k, n in enumerate(m.graph.node):
        n.name = f"/stem/node{k}/{n.op_type}"
    onnx.save(m, str(src))
    d = tmp_path / "cal"
    d.mkdir()
    rng = np.random.default_rng(3)
    for k in range(3):
        cv2.imwrite(str(d / f"S1-{k}.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    q = tmp_path / "q.onnx"
    args = ["models", "quantize", str(src), str(q), "--calibration", str(d)]
    r = CliRunner().invoke(cli, [*args, "--keep-float", "/stem/node1/*"])
    assert r.exit_code == 0, r.output
    meta = OnnxModel(q, device="cpu", threads=1).meta
    assert "/stem/node1/Conv" in meta["quantization"]["float_nodes"]
    # the first convolution reads float weights, the second int8 ones through a DequantizeLinear
    g = onnx.load(str(q)).graph
    producers = {o: n for n in g.node for o in n.output}
    convs = {n.name: n for n in g.node if n.op_type == "Conv"}
    w_of = {name: producers.get(n.input[1]) for name, n in convs.items()}
    assert w_of["/stem/node1/Conv"] is None or w_of["/stem/node1/Conv"].op_type != "DequantizeLinear"
    assert w_of["/stem/node3/Conv"].op_type == "DequantizeLinear"
    r = CliRunner().invoke(cli, [*args, "--keep-float", "/nothing/*"])
    assert r.exit_code != 0 and "matches no node" in str(r.exception)


def _same_pad_model(path):
    """Conv, then a pad to an even size computed from the input's shape (as timm's "same" padding
    is: Shape -> Cast -> Div -> Ceil -> Mul -> Sub), a 2x2 average pool and a 1x1 conv."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    consts = {
        "w1": (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32),
        "w2": (rng.standard_normal((1, 4, 1, 1)) * 0.3).astype(np.float32),
        "two": np.array(2.0, np.float32),
        "hw": np.array([2, 3], np.int64),
        "zeros6": np.zeros(6, np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["r"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Shape", ["r"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "hw"], ["g"], axis=0, name="gather"),
        helper.make_node("Cast", ["g"], ["gf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Div", ["gf", "two"], ["half"], name="div"),
        helper.make_node("Ceil", ["half"], ["up"], name="ceil"),
        helper.make_node("Mul", ["up", "two"], ["even"], name="mul"),
        helper.make_node("Sub", ["even", "gf"], ["extra"], name="sub"),
        helper.make_node("Add", ["extra", "gf"], ["padded_hw"], name="add"),
        helper.make_node("Sub", ["padded_hw", "gf"], ["extra2"], name="sub2"),
        helper.make_node("Cast", ["extra2"], ["extra_i"], to=TensorProto.INT64, name="cast2"),
        helper.make_node("Concat", ["zeros6", "extra_i"], ["pads"], axis=0, name="concat"),
        helper.make_node("Pad", ["r", "pads"], ["rp"], name="pad"),
        helper.make_node("AveragePool", ["rp"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        helper.make_node("Conv", ["p", "w2"], ["c2"], name="conv2"),
        helper.make_node("Sigmoid", ["c2"], ["prob"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        "samepad",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1, "oh", "ow"])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"format": "glomkit-model/1", "task": "segmenter", "input_size": [32, 32]}
    model.metadata_props.add(key=META_KEY, value=json.dumps(meta))
    onnx.save(model, str(path))
    return path


def test_shape_arithmetic_stays_float_so_other_input_sizes_run(tmp_path):
    """Calibrated at 32 px only, the INT8 model still computes the right padding at odd sizes."""
    from glomkit.models.quantize import shape_nodes

    src = _same_pad_model(tmp_path / "m.onnx")
    want = {"shape", "gather", "cast", "div", "ceil", "mul", "sub", "add", "sub2", "cast2", "concat"}
    assert set(shape_nodes(onnx.load(str(src)))) == want  # not the convs, the pad or the pool
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(8)]
    quantize_model(src, tmp_path / "q.onnx", images)
    q = onnx.load(str(tmp_path / "q.onnx"))
    assert {n.op_type for n in q.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    f32 = OnnxModel(src, device="cpu", threads=1)
    i8 = OnnxModel(tmp_path / "q.onnx", device="cpu", threads=1)
    for h, w in [(32, 32), (33, 47), (45, 31), (64, 96)]:
        x = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        a, b = f32.run_images(x)["prob"], i8.run_images(x)["prob"]
        assert a.shape == b.shape == (2, 1, (h + 1) // 2, (w + 1) // 2)
        assert np.abs(a - b).max() < 0.05
