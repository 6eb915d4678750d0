"""The bundled segmenter on the real held-out slides its metadata names (skips without ../shared).

A regression guard for the shipped weights: ONNX inference is deterministic, so the held-out
Dice of the model card is reproduced here up to a small tolerance.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from glomkit.models.registry import resolve_model
from glomkit.models.runtime import OnnxModel
from glomkit.segment.evaluate import evaluate_segmenter

CARD_TEST_DICE = 0.9487  # docs/models/segmenter.md, "Session 11" (session 9: 0.9528)


@pytest.fixture(scope="module")
def bundled() -> OnnxModel:
    path = resolve_model(None, "segmenter")
    if not Path(path).is_file():
        pytest.skip("bundled segmenter is not built")
    return OnnxModel(path, expect_task="segmenter")


def test_held_out_slides_are_not_training_slides(bundled: OnnxModel) -> None:
    tr = bundled.meta["training"]
    test, val, train = set(tr["test_slides"]), set(tr["val_slides"]), set(tr["train_slides"])
    assert test and val and train
    assert not (test & train) and not (val & train) and not (test & val)


@pytest.mark.slow
def test_held_out_dice_is_the_model_cards(bundled: OnnxModel, bueno_root: Path) -> None:
    rep = evaluate_segmenter(bundled, bueno_root, split="test")
    assert rep["n_images"] == bundled.meta["training"]["n_test"]
    assert rep["dice_mean"] == pytest.approx(CARD_TEST_DICE, abs=0.002)
    assert rep["dice_mean"] == pytest.approx(bundled.meta["metrics"]["test"]["dice_mean"], abs=1e-4)
