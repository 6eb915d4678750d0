"""Model metadata is validated when a model loads: a bad field is one GlomkitError naming the file and
the field; the bundled models validate; unknown keys are allowed."""

from __future__ import annotations

import json

import pytest
from badinputs import BUNDLED, bundled_meta, model_with_meta
from hypothesis import given, settings
from hypothesis import strategies as st

from glomkit import GlomkitError
from glomkit.models.metadata import (
    ClassifierMetadata,
    DetectorMetadata,
    SegmenterMetadata,
    is_safe_class_name,
    validate_metadata,
)
from glomkit.models.runtime import OnnxModel


@pytest.mark.parametrize("task", ["detector", "classifier", "segmenter"])
def test_bundled_models_validate(task):
    meta = validate_metadata(bundled_meta(task), BUNDLED[task])
    assert meta.task == task
    assert isinstance(
        meta, {"detector": DetectorMetadata, "classifier": ClassifierMetadata}.get(task, SegmenterMetadata)
    )


def test_all_bundled_detectors_validate():
    from glomkit.models.registry import bundled_names, bundled_path

    for name in bundled_names("detector"):
        m = OnnxModel(bundled_path("detector", name), threads=1)
        assert m.info.mpp in (4.0, 8.0)  # the CircleNet works at 4 µm/px, the U-Net/SegNet files at 8


def test_unknown_extra_keys_are_allowed():
    meta = bundled_meta("classifier")
    meta["decision"] = {"threshold": 0.4}
    meta["temperature"] = 1.3
    meta["classes"]["classes"][0]["new_flag"] = True
    assert validate_metadata(meta, "c.onnx").scheme.names == ["normal", "sclerosed", "non_glomerular"]


def test_defaults_live_in_one_place():
    m = validate_metadata({"format": "glomkit-model/1", "task": "detector", "input_size": [64, 64]}, "d.onnx")
    assert (m.mpp, m.stride, m.method, m.score_threshold) == (2.0, 4, "circlenet", 0.3)


def test_stain_norm_defaults_to_none_and_round_trips():
    meta = bundled_meta("classifier")
    meta.pop("stain_norm", None)  # files written before the field existed
    assert validate_metadata(meta, "c.onnx").stain_norm == "none"
    for name in ("none", "reinhard", "macenko", "gray"):
        assert validate_metadata({**meta, "stain_norm": name}, "c.onnx").stain_norm == name


def _set(path: str, value):
    def edit(meta: dict) -> None:
        keys = path.split(".")
        d = meta
        for k in keys[:-1]:
            d = d[int(k)] if isinstance(d, list) else d.setdefault(k, {})
        if value is _DELETE:
            del d[keys[-1]]
        elif isinstance(d, list):
            d[int(keys[-1])] = value
        else:
            d[keys[-1]] = value

    return edit


_DELETE = object()

BAD = [
    ("classifier", "input.std", [0, 0, 0], "input.std[0]"),
    ("classifier", "input.mean", [0.5, "x", 0.5], "input.mean[1]"),
    ("classifier", "input_size", _DELETE, "input_size"),
    ("classifier", "input_size", [128, -3], "input_size[1]"),
    ("classifier", "task", _DELETE, "task"),
    ("classifier", "task", "oracle", "task"),
    ("classifier", "classes", _DELETE, "classes"),
    ("classifier", "classes.classes.0.name", "../../escape", "classes.classes[0].name"),
    ("classifier", "classes.classes.0.name", "a/b", "classes.classes[0].name"),
    ("classifier", "classes.classes.0.name", "..", "classes.classes[0].name"),
    ("classifier", "classes.classes.1.name", "normal", "classes.classes[1].name"),
    ("classifier", "classes.classes.0.color", [300, 0, 0], "classes.classes[0].color[0]"),
    ("classifier", "stain_norm", "vahadane", "stain_norm"),
    ("classifier", "stain_norm", 1, "stain_norm"),
    ("detector", "mpp", 0, "mpp"),
    ("detector", "mpp", -8.0, "mpp"),
    ("detector", "mpp", 1e300, "mpp"),
    ("detector", "stride", 0, "stride"),
    ("detector", "decode.score_threshold", 5, "decode.score_threshold"),
    ("detector", "decode.method", "tea-leaves", "decode.method"),
    ("detector", "decode", "fast", "decode"),
    ("segmenter", "threshold", float("nan"), "threshold"),
    ("segmenter", "resize_mode", "stretch", "resize_mode"),
    ("classifier", "decision.threshold", "high", "decision.threshold"),
    ("classifier", "decision.threshold", 1.5, "decision.threshold"),
    ("classifier", "decision.positive", 3, "decision.positive"),
    ("classifier", "decision", [0.5], "decision"),
    ("classifier", "temperature", 0, "temperature"),
    ("classifier", "training", "all of it", "training"),
    ("classifier", "training.best_epoch", "last", "training.best_epoch"),
    ("detector", "metrics", [1, 2], "metrics"),
    ("detector", "quantization", "int8", "quantization"),
]


@pytest.mark.parametrize(("task", "key", "value", "field"), BAD, ids=[f"{b[1]}={b[2]!r}" for b in BAD])
def test_bad_field_is_named_with_the_file(task, key, value, field):
    meta = bundled_meta(task)
    _set(key, value)(meta)
    with pytest.raises(GlomkitError) as err:
        validate_metadata(meta, "/models/bad.onnx")
    msg = str(err.value)
    assert msg.startswith("/models/bad.onnx: ") and repr(field) in msg and "\n" not in msg


def test_model_files_with_bad_metadata_fail_on_load(tmp_path):
    cases = {
        "std0": ("classifier", _set("input.std", [0, 0, 0]), "input.std"),
        "json": ("classifier", '{"format": "glomkit-model/1", "task": ', "not valid JSON"),
        "list": ("classifier", "[1, 2]", "not a JSON object"),
        "count": (
            "classifier",
            _set("classes.classes", bundled_meta("classifier")["classes"]["classes"][:2]),
            "output 'probs' has 3",
        ),
        "outputs": ("segmenter", _set("task", "classifier"), "classes"),
    }
    for name, (task, edit, needle) in cases.items():
        path = model_with_meta(task, tmp_path / f"{name}.onnx", edit)
        with pytest.raises(GlomkitError, match=needle) as err:
            OnnxModel(path, threads=1)
        assert str(path) in str(err.value)


def test_class_count_must_match_outputs(tmp_path):
    three = bundled_meta("classifier")["classes"]["classes"]
    path = model_with_meta(
        "classifier", tmp_path / "c.onnx", _set("classes.classes", [*three, {**three[0], "name": "extra"}])
    )
    with pytest.raises(GlomkitError, match="lists 4 classes"):
        OnnxModel(path, threads=1)


def test_missing_outputs_are_named(tmp_path):
    path = model_with_meta("segmenter", tmp_path / "s.onnx", lambda m: m.update(task="detector", mpp=8.0))
    with pytest.raises(GlomkitError, match="heatmap"):
        OnnxModel(path, threads=1)


@pytest.mark.parametrize("name", ["normal", "GGS", "a.b", "c-1", "x+y", "s_1"])
def test_safe_class_names(name):
    assert is_safe_class_name(name)


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "a b", "é", "x" * 65, 3, None]
)
def test_unsafe_class_names(name):
    assert not is_safe_class_name(name)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)
KEYS = [
    "task",
    "input_size",
    "input",
    "mpp",
    "stride",
    "decode",
    "classes",
    "threshold",
    "resize_mode",
    "decision",
    "temperature",
    "training",
    "metrics",
    "quantization",
    "pretraining",
]


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    task=st.sampled_from(["detector", "classifier", "segmenter"]),
    edits=st.dictionaries(st.sampled_from(KEYS), JSON, max_size=4),
)
def test_fuzzed_metadata_is_valid_or_a_glomkit_error(task, edits):
    meta = {**_BASE[task], **edits}
    try:
        m = validate_metadata(meta, "f.onnx")
    except GlomkitError as exc:
        assert str(exc).startswith("f.onnx: ") and "\n" not in str(exc)
        return
    assert m.task in ("detector", "classifier", "segmenter")
    assert all(s > 0 for s in m.std) and all(1 <= v <= 8192 for v in m.input_size)
    if isinstance(m, ClassifierMetadata):
        assert all(is_safe_class_name(n) for n in m.scheme.names)
    if isinstance(m, DetectorMetadata):
        assert m.mpp > 0 and m.stride >= 1 and 0 <= m.score_threshold <= 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_fuzzed_class_names(name):
    meta = bundled_meta_cached("classifier")
    meta["classes"]["classes"][0]["name"] = name
    try:
        m = validate_metadata(meta, "f.onnx")
    except GlomkitError:
        assert not is_safe_class_name(name) or name in ("sclerosed", "non_glomerular")
        return
    assert m.scheme.names[0] == name and "/" not in name and not name.startswith(".")


_CACHE: dict[str, str] = {}


def bundled_meta_cached(task: str) -> dict:
    if task not in _CACHE:
        _CACHE[task] = json.dumps(bundled_meta(task))
    return json.loads(_CACHE[task])


_BASE = {t: {k: v for k, v in bundled_meta(t).items() if k not in ("training", "metrics")} for t in BUNDLED}


def test_typed_blocks_of_the_training_record():
    """Splits (at any depth of ``training``), best epoch, metrics, quantization, decision, pretraining."""
    meta = bundled_meta("classifier")
    meta["training"] = {
        "best_epoch": 7,
        "splits": {"test_slides": ["S9"], "val_slides": ["S8"], "train_slides": ["S1", "S2"]},
        "sources": [{"val_files": ["a.jpg"]}],
    }
    meta["metrics"] = {"validation": {"balanced_accuracy": 0.9}}
    meta["quantization"] = {"mode": "static", "calibration": "40 inputs"}
    meta["temperature"] = 1.5
    meta["decision"] = {"positive": "sclerosed", "threshold": 0.4, "glomerulus_min": 0.6}
    m = validate_metadata(meta, "c.onnx")
    assert m.splits.slides_of("test") == {"S9"} and m.splits.slides_of("train") == {"S1", "S2"}
    assert m.splits.held_out_slides() == {"S8", "S9"} and m.splits.held_out_files() == {"a.jpg"}
    assert m.best_epoch == 7 and m.split_metrics("validation") == {"balanced_accuracy": 0.9}
    assert m.split_metrics("test") is None
    assert (m.quantization.mode, m.quantization.calibration) == ("static", "40 inputs")
    d = m.decision
    assert (d.temperature, d.threshold, d.glomerulus_min, d.positive) == (1.5, 0.4, 0.6, "sclerosed")
    assert m.pretraining is None
    enc = {
        **meta,
        "task": "encoder",
        "pretraining": {"backbone": "resnet10t", "epochs_done": 94, "n_images": 9},
    }
    p = validate_metadata(enc, "e.onnx").pretraining
    assert p.describe() == "resnet10t (94 epochs, ? steps on 9 crops)"
    with pytest.raises(GlomkitError, match="'pretraining.epochs_done'"):
        validate_metadata({**enc, "pretraining": {"epochs_done": "many"}}, "e.onnx")


def test_a_classifier_without_decision_keys_keeps_argmax():
    meta = {k: v for k, v in bundled_meta("classifier").items() if k not in ("decision", "temperature")}
    d = validate_metadata(meta, "c.onnx").decision
    assert (d.temperature, d.threshold, d.glomerulus_min) == (1.0, None, 0.5)
