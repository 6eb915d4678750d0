"""The bundled detector, with the pipeline after it, on the real held-out hubmap_pas test tiles
(skips without ../shared). A regression guard for the shipped weights: ONNX inference is
deterministic, so the model card's held-out figures are reproduced up to a small tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest

from glomkit.models.registry import resolve_model
from glomkit.models.runtime import read_metadata

# docs/models/detector.md, "Session 16": the whole pipeline on the 10 test_* tiles (session-16 detector `detL`,
# session-11 segmenter, session-10 classifier; session 11: 0.666 / 0.952 / 0.921; with the session-10 detector 0.695 / 0.954 / 0.923; session 10: 0.641 / 0.979 /
# 0.928; before session 10: 0.662 / 0.926 / 0.935, with the
# bundled classifier of session 8, docs/models/classifier.md, and the 192-px segmenter of session 9,
# docs/models/segmenter.md: the pipeline's box is the bounding box of its outline)
CARD_PIPELINE_BOX_AP = 0.696
CARD_PIPELINE_BOX_AP50 = 0.953
CARD_OUTLINE_DICE = 0.930


@pytest.fixture(scope="module")
def hubmap_tiles(shared_data: Path) -> Path:
    root = shared_data / "hubmap_pas" / "tiles"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    return root


def test_test_and_validation_tiles_were_never_trained_on() -> None:
    meta = read_metadata(resolve_model(None, "detector"))
    assert meta["mpp"] == 4.0
    real = [s for s in meta["training"]["data"]["sources"] if s["kind"] == "annotated_images"][0]
    assert real["test_files"] and all(f.startswith("test_") for f in real["test_files"])
    assert real["val_files"] and not any(f.startswith("test_") for f in real["val_files"])
    assert real["train_files"] == 110 - len(real["val_files"])  # the train_* tiles less the block
    assert meta["metrics"]["threshold_choice"]["data"]["split"] == "val"


@pytest.mark.slow
def test_pipeline_on_the_held_out_tiles_is_the_model_cards(hubmap_tiles: Path) -> None:
    from glomkit.evaluate_images import evaluate_images

    rep = evaluate_images(hubmap_tiles, data_mpp=0.8, split="test")
    assert rep["data"]["images"] == 10 and rep["data"]["glomeruli"] == 35
    p = rep["pipeline"]
    assert p["box"]["AP"] == pytest.approx(CARD_PIPELINE_BOX_AP, abs=0.01)
    assert p["box"]["AP50"] == pytest.approx(CARD_PIPELINE_BOX_AP50, abs=0.01)
    assert p["outline_dice"]["mean"] == pytest.approx(CARD_OUTLINE_DICE, abs=0.01)
