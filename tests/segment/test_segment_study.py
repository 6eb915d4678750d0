"""The segmentation study runner end to end on a tiny synthetic data set (two runs, one epoch)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from glomkit.segment.study import StudyConfig, run_segmentation_study


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rows = []
    for i in range(10):
        img = np.full((48, 48, 3), 230, np.uint8)
        mask = np.zeros((48, 48), np.uint8)
        c = (int(rng.integers(18, 30)), int(rng.integers(18, 30)))
        cv2.circle(img, c, 12, (140, 50, 150), -1)
        cv2.circle(mask, c, 12, 255, -1)
        cv2.imwrite(str(tmp_path / "images" / f"x{i}.png"), img)
        cv2.imwrite(str(tmp_path / "masks" / f"x{i}.png"), mask)
        rows.append({"image": f"images/x{i}.png", "mask": f"masks/x{i}.png", "slide": f"s{i // 2}"})
    with (tmp_path / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "mask", "slide"])
        w.writeheader()
        w.writerows(rows)
    return tmp_path


@pytest.mark.slow
def test_study_writes_tables_and_figures(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    cfg = StudyConfig(
        data=data_dir,
        out=out,
        archs=("unet",),
        settings=((64, "resize"), (64, "pad")),
        epochs=1,
        batch=2,
        test_fold=0,
        show_progress=False,
    )
    rows = run_segmentation_study(cfg)
    assert [r["run"] for r in rows] == ["unet_64_resize", "unet_64_pad"]
    with (out / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 and all(0.0 <= float(r["dice_mean"]) <= 1.0 for r in table)
    md = (out / "results.md").read_text()
    assert "Dice mean ± sd" in md and "unet_64_pad" in md
    for png in ("per_slide_dice.png", "loss_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # rerunning skips finished runs (the model files are the markers) and gives the same figures
    again = run_segmentation_study(cfg)
    assert [r["dice_mean"] for r in again] == [r["dice_mean"] for r in rows]
