"""Synthetic hard negatives for the non-glomerular class (``coarse_data --extend --synthetic-fp``)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from glomkit.classify import coarse_data


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_extend_keeps_base_rows_and_adds_grouped_negatives(tmp_path, monkeypatch):
    base = tmp_path / "base"
    (base / "non_glomerular").mkdir(parents=True)
    (base / "non_glomerular" / "a.png").write_bytes(b"")
    absolute = tmp_path / "elsewhere.png"
    (base / "labels.csv").write_text(
        "image,label,slide,source\n"
        f"non_glomerular/a.png,non_glomerular,s1,synthetic\n{absolute},GS,s2,bueno\n"
    )
    fake = [(np.full((224, 224, 3), 200, np.uint8), f"synthfp#{s}", f"synthfp_{s}_0") for s in (11, 12)]
    seen = {}

    def mine(detector, seeds, work):
        seen.update(detector=detector, seeds=seeds)
        work.mkdir(parents=True, exist_ok=True)
        return fake

    monkeypatch.setattr(coarse_data, "synthetic_false_positives", mine)
    out = coarse_data.extend_with_synthetic_fp(base, tmp_path / "out", "det.onnx")
    rows = _rows(out / "labels.csv")
    assert seen == {"detector": "det.onnx", "seeds": coarse_data.SYNTH_FP_SEEDS}
    assert 0 not in seen["seeds"] and not set(range(1, 11)) & set(seen["seeds"])  # demo, validation
    assert rows[0]["image"] == str((base / "non_glomerular" / "a.png").resolve())
    assert rows[1]["image"] == str(absolute)
    new = rows[2:]
    assert [r["slide"] for r in new] == ["synthfp#11", "synthfp#12"]
    assert {r["label"] for r in new} == {"non_glomerular"}
    assert all((out / r["image"]).is_file() for r in new)
    assert not (out / "_synthfp_slides").exists()


@pytest.mark.slow
def test_synthetic_false_positives_are_pipeline_patches_grouped_by_seed(tmp_path, monkeypatch):
    """On a small synthetic slide with the bundled detector and a low threshold, every mined patch
    is a pipeline-sized crop, and the slide is removed after."""
    from glomkit.models.registry import resolve_model

    monkeypatch.setattr(coarse_data, "SYNTH_FP_SIZE", (4000, 3000))
    monkeypatch.setattr(coarse_data, "SYNTH_FP_THRESHOLD", 0.05)
    got = coarse_data.synthetic_false_positives(resolve_model(None, "detector"), range(3, 4), tmp_path)
    for img, group, name in got:
        assert img.shape == (224, 224, 3) and img.dtype == np.uint8
        assert group == "synthfp#3" and name.startswith("synthfp_3_")
    assert not list(tmp_path.glob("*.tif"))
