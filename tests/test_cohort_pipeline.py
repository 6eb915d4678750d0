"""The cohort runner with the real pipeline and bundled models on tiny synthetic slides.

Slow (synthesising the slides and running the models take tens of seconds on a small machine):
the proof that the cohort modes work with the real pipeline, so CI still runs them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glomkit.cohort import COHORT_CSV, run_cohort
from glomkit.models.registry import WEIGHTS_DIR
from glomkit.pipeline import PipelineConfig, outputs_complete

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all((WEIGHTS_DIR / f"{t}.onnx").is_file() for t in ("detector", "classifier", "segmenter")),
        reason="bundled models are not built yet",
    ),
]
CONFIG = PipelineConfig(threads=1, read_threads=1, write_images=False, quiet=True)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> list[Path]:
    synth = pytest.importorskip("glomkit.synth.slide")
    d = tmp_path_factory.mktemp("cohort_in")
    slides = []
    for seed in (1, 2):
        path = d / f"kidney{seed}.tif"
        synth.synthesize_slide(path, 3000, 2000, mpp=0.5, seed=seed)
        slides.append(path)
    bad = d / "x.svs"
    bad.write_bytes(b"this is not a slide" * 50)
    return [slides[0], bad, slides[1]]


def summary_of(out: Path, slide: Path) -> dict:
    return json.loads((out / slide.stem / "summary.json").read_text())


def test_dask_cohort_with_a_corrupt_slide_then_resume(cohort, tmp_path):
    from distributed import LocalCluster

    out = tmp_path / "out"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        rows = run_cohort(cohort, out, CONFIG, scheduler=cluster, progress=False)
        assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
        assert "x.svs" in rows[1]["error"] and "\n" not in rows[1]["error"]
        for r, slide in zip(rows, cohort, strict=True):
            if r["status"] == "ok":
                s = summary_of(out, slide)
                assert outputs_complete(slide, out)
                assert r["n_glomeruli"] == s["n_glomeruli"] and r["counts"] == s["counts"]
                assert r["ggs_percent"] == s["ggs_percent"] and r["timings"]["detect"] > 0
        assert not (out / "x").exists()
        before = summary_of(out, cohort[0])
        again = run_cohort(cohort, out, CONFIG, scheduler=cluster, progress=False)
    assert [r["status"] for r in again] == ["skipped", "failed", "skipped"]
    assert summary_of(out, cohort[0]) == before  # untouched
    assert again[0]["n_glomeruli"] == rows[0]["n_glomeruli"]
    assert (out / COHORT_CSV).is_file()


def test_two_local_workers_match_sequential(cohort, tmp_path):
    seq = run_cohort(cohort, tmp_path / "seq", CONFIG, progress=False)
    par = run_cohort(cohort, tmp_path / "par", CONFIG, workers=2, progress=False)
    assert [r["status"] for r in par] == ["ok", "failed", "ok"]
    assert all(r["worker"].startswith("process-") for r in par if r["status"] == "ok")
    for a, b in zip(seq, par, strict=True):
        assert a["status"] == b["status"]
        assert a["n_glomeruli"] == b["n_glomeruli"] and a["counts"] == b["counts"]
