"""The Python API: models in three lines, the pipeline in memory, and the same files as the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import glomkit
from glomkit.core.geometry import circle_iou
from glomkit.models.registry import WEIGHTS_DIR

pytestmark = pytest.mark.skipif(
    not all((WEIGHTS_DIR / f"{t}.onnx").is_file() for t in ("detector", "classifier", "segmenter")),
    reason="bundled models are not built yet",
)


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> tuple[Path, object]:
    from glomkit.synth.slide import synthesize_slide

    path = tmp_path_factory.mktemp("api") / "small.tif"
    truth = synthesize_slide(path, 5000, 4000, mpp=0.5, seed=3)
    return path, truth


@pytest.fixture(scope="module")
def result(slide):
    return glomkit.run_slide(slide[0], threads=1, read_threads=1)


def _truth(truth) -> np.ndarray:
    return np.array([[g.x, g.y, g.radius] for g in truth.glomeruli if g.is_glomerulus]).reshape(-1, 3)


def test_import_glomkit_offers_the_api():
    for name in ("Slide", "Detector", "Classifier", "Segmenter", "run_slide", "SlideResult", "GlomkitError"):
        assert name in dir(glomkit) and getattr(glomkit, name) is not None
    with pytest.raises(AttributeError):
        glomkit.NoSuchThing  # noqa: B018


@pytest.mark.slow
def test_detector_runs_on_a_numpy_image_and_on_a_path(slide):
    path, truth = slide
    det = glomkit.Detector.load()
    with glomkit.Slide(path) as s:
        image = s.read_level(0, 0, s.width, s.height)
    from_array = det.run(image, mpp=0.5)
    from_path = det.run(path)
    # the file is read from its pyramid, the array at level 0: the same glomeruli, nearly the same circles
    a, b = from_array.to_array(), from_path.to_array()
    assert len(a) > 0 and abs(len(a) - len(b)) <= 1
    strong = a[a[:, 3] >= 0.4]
    assert len(strong) and (circle_iou(strong[:, :3], b[:, :3]).max(axis=1) >= 0.6).all()
    gt = _truth(truth)
    assert (circle_iou(gt, from_path.to_array()[:, :3]).max(axis=1) >= 0.5).mean() >= 0.6
    d = from_path[0]
    assert isinstance(d, glomkit.Detection) and d.mpp == 0.5 and d.radius_um == pytest.approx(d.radius * 0.5)
    assert [r.score for r in from_path] == sorted((r.score for r in from_path), reverse=True)
    df = from_path.to_dataframe()
    assert list(df.columns) == ["x", "y", "radius", "score", "mpp"] and len(df) == len(from_path)


@pytest.mark.slow
def test_region_limits_detection(slide):
    path, _ = slide
    det = glomkit.Detector.load()
    everything = det.run(path).to_array()
    left = det.run(path, region=(0, 0, 2500, 4000)).to_array()
    assert 0 < len(left) < len(everything)
    assert (left[:, 0] < 2500).all()


@pytest.mark.slow
def test_errors_name_the_python_argument(slide, tmp_path):
    import cv2

    det = glomkit.Detector.load()
    img = np.full((64, 64, 3), 255, np.uint8)
    with pytest.raises(glomkit.GlomkitError, match=r"pass mpp= \(µm per pixel\)"):
        det.run(img)
    cv2.imwrite(str(tmp_path / "plain.png"), img)
    with pytest.raises(glomkit.GlomkitError, match=r"plain.png: .*pass mpp=") as err:
        det.run(tmp_path / "plain.png")
    assert "--mpp" not in str(err.value)
    with pytest.raises(glomkit.GlomkitError, match="region"):
        det.run(slide[0], region=(10_000, 10_000, 5, 5))
    with pytest.raises(glomkit.GlomkitError, match="source"):
        det.run(42)
    with pytest.raises(glomkit.GlomkitError, match="unknown setting tile_size="):
        glomkit.run_slide(slide[0], tile_size=3)


@pytest.mark.slow
def test_run_slide_computes_in_memory_and_save_writes_what_the_cli_writes(slide, result, tmp_path):
    from glomkit.pipeline import PipelineConfig, process_slide

    path, truth = slide
    assert isinstance(result, glomkit.SlideResult)
    s = result.summary
    assert s["n_glomeruli"] == result.n_glomeruli() > 0
    assert s["ggs_percent"] == pytest.approx(result.ggs_percent(), abs=1e-4)
    assert not (tmp_path / "api").exists()
    g = result.glomeruli[0]
    assert result.patch(g.id).shape == (256, 256, 3) and result.mask(g.id).dtype == bool
    df = result.to_dataframe()
    assert len(df) == len(result.glomeruli) and {"label", "ggs_probability", "area_um2"} <= set(df.columns)

    saved = result.save(tmp_path / "api")
    assert saved == tmp_path / "api" / path.stem
    process_slide(path, tmp_path / "cli", PipelineConfig(threads=1, read_threads=1))
    cli = tmp_path / "cli" / path.stem
    files = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(cli).as_posix() for p in cli.rglob("*") if p.is_file())
    assert (saved / f"{path.stem}_glomeruli.csv").read_text() == (
        cli / f"{path.stem}_glomeruli.csv"
    ).read_text()
    a, b = (json.loads((d / "summary.json").read_text()) for d in (saved, cli))
    assert a["counts"] == b["counts"] and a["ggs_percent"] == b["ggs_percent"]
    assert not list((tmp_path / "api").glob(".*partial"))


@pytest.mark.slow
def test_classifier_and_segmenter_take_arrays_and_paths(result, tmp_path):
    from glomkit.io.atomic import write_png

    ids = [g.id for g in result.glomeruli[:3]]
    patches = np.stack([result.patch(i) for i in ids])
    cls, seg = glomkit.Classifier.load(), glomkit.Segmenter.load()
    by_array = cls.run(patches)
    paths = [write_png(tmp_path / f"{i}.png", p) for i, p in zip(ids, patches, strict=True)]
    by_path = cls.run(paths)
    assert [c.label for c in by_array] == [c.label for c in by_path]
    assert [c.label for c in by_array] == [g.label for g in result.glomeruli[:3]]
    for c in by_array:
        assert set(c.probs) == set(cls.classes) and sum(c.probs.values()) == pytest.approx(1.0, abs=1e-4)
    assert list(cls.run(patches).to_dataframe().columns)[:3] == ["label", "is_glomerulus", "ggs_probability"]
    masks = seg.run(list(patches) + [patches[0][:200, :180]])
    assert [m.mask.shape for m in masks] == [(256, 256)] * len(ids) + [(200, 180)]
    assert all(m.area_px == int(m.mask.sum()) for m in masks) and masks[0].area_px > 1000
    assert masks[0].measure(0.5)["area_um2"] == pytest.approx(masks[0].area_px * 0.25, rel=0.01)
    with pytest.raises(glomkit.GlomkitError, match="patches"):
        cls.run(np.zeros((2, 8, 8), np.uint8))


@pytest.mark.slow
def test_roi_bounds_the_analysis_in_the_api_and_the_cli(slide, result, tmp_path):
    from click.testing import CliRunner

    from glomkit.cli import cli

    path, _ = slide
    roi = tmp_path / "cortex.geojson"
    poly = [[0, 0], [2500, 0], [2500, 4000], [0, 4000], [0, 0]]
    roi.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"classification": {"name": "Cortex"}},
         "geometry": {"type": "Polygon", "coordinates": [poly]}}]}))  # fmt: skip
    inside = glomkit.run_slide(path, roi=roi, threads=1, read_threads=1)
    xs = np.array([g.x for g in inside.glomeruli])
    assert 0 < len(xs) < len(result.glomeruli) and (xs <= 2500).all()
    assert inside.summary["roi"] == str(roi)
    res = CliRunner().invoke(
        cli, ["run", str(path), "-o", str(tmp_path / "o"), "--roi", str(roi), "--quiet", "--threads", "1"]
    )
    assert res.exit_code == 0, res.output
    rows = (tmp_path / "o" / path.stem / f"{path.stem}_glomeruli.csv").read_text().strip().splitlines()
    assert len(rows) - 1 == len(inside.glomeruli)
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    res = CliRunner().invoke(
        cli, ["run", str(path), "-o", str(tmp_path / "o2"), "--roi", str(empty), "--quiet"]
    )
    assert res.exit_code != 0 and "empty.geojson" in res.output and "Traceback" not in res.output


def test_records_turn_into_dataframes_without_running_a_model():
    pytest.importorskip("pandas")
    from glomkit.api import Detection, Detections
    from glomkit.core.records import GlomerulusRecord, table_columns
    from glomkit.core.schemes import COARSE

    found = Detections([Detection(10.0, 20.0, 5.0, 0.9, 0.5), Detection(1.0, 2.0, 3.0, 0.4, 0.5)])
    df = found.to_dataframe()
    assert list(df.columns) == ["x", "y", "radius", "score", "mpp"] and df["score"].tolist() == [0.9, 0.4]
    assert Detections().to_dataframe().empty
    recs = [GlomerulusRecord(id=i, x=i * 10.0, y=5.0, radius=4.0, score=0.5, label="normal") for i in (1, 2)]
    res = glomkit.SlideResult("s", "s.tif", 0.5, 100, 100, COARSE, recs)
    table = res.to_dataframe()
    assert list(table.columns) == table_columns(COARSE) and table["x"].tolist() == [10.0, 20.0]
    assert res.summary["n_glomeruli"] == 2 and res.summary["ggs_percent"] == 0.0
