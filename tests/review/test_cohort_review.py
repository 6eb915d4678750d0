"""The cohort table after a review (reviewed figures, marked), missing inputs, SIGTERM and wording.
Tiny results made in code stand in for the pipeline (no models run)."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import pytest
from _review_data import MPP, SIZE, write_slide
from click.testing import CliRunner

import glomkit.cohort as cohort
from glomkit.cohort import COHORT_CSV, COHORT_HTML, recount_slide, run_cohort
from glomkit.core.records import GlomerulusRecord
from glomkit.core.schemes import COARSE
from glomkit.pipeline import PipelineConfig
from glomkit.results import SlideResult
from glomkit.review.session import ReviewSession

SPOTS = [(300, 250, "normal"), (800, 260, "normal"), (350, 800, "sclerosed"), (900, 900, "normal")]


def save_runner(slide: Path, out_root: Path, config: PipelineConfig) -> dict:
    """Stands in for the pipeline: the same four glomeruli on every slide (GGS 25 %)."""
    recs = [
        GlomerulusRecord(
            id=i,
            x=x,
            y=y,
            radius=50,
            score=0.9,
            label=lab,
            probs=dict.fromkeys(COARSE.names, 0.05) | {lab: 0.9},
            is_glomerulus=True,
        )
        for i, (x, y, lab) in enumerate(SPOTS, start=1)
    ]
    res = SlideResult(Path(slide).stem, str(slide), MPP, SIZE[0], SIZE[1], COARSE, recs)
    final = res.save(out_root)
    return json.loads((final / "summary.json").read_text())


def table(root: Path) -> dict[str, dict[str, str]]:
    with open(root / COHORT_CSV, newline="") as fh:
        return {r["stem"]: r for r in csv.DictReader(fh)}


def test_recount_puts_reviewed_figures_in_the_cohort_table_and_resume_keeps_them(tmp_path: Path) -> None:
    slides = [write_slide(tmp_path / f"{s}.png") for s in ("a", "b")]
    root = tmp_path / "out"
    run_cohort(slides, root, PipelineConfig(), progress=False, runner=save_runner)
    assert table(root)["a"]["ggs_percent"] == "25.0" and table(root)["a"]["reviewed"] == ""

    s = ReviewSession(root / "a", reviewer="dr. c")
    s.apply({"op": "relabel", "id": 1, "label": "obsolescent"})  # 2 of 4 sclerosed
    s.apply({"op": "reject", "id": 4})  # 2 of 3
    recount_slide(root / "a")
    t = table(root)
    assert (t["a"]["n_glomeruli"], t["a"]["n_sclerosed"], t["a"]["reviewed"]) == ("3", "2", "yes")
    assert float(t["a"]["ggs_percent"]) == pytest.approx(200 / 3, abs=1e-3)
    assert t["a"]["count_obsolescent"] == "1" and t["a"]["time_write_s"] != ""  # the run's times stay
    assert (t["b"]["ggs_percent"], t["b"]["reviewed"]) == ("25.0", "")
    html = (root / COHORT_HTML).read_text()
    assert "a/review/report.html" in html and "(reviewed)" in html

    rows = run_cohort(slides, root, PipelineConfig(), progress=False, runner=save_runner)  # resume
    assert [r["status"] for r in rows] == ["skipped", "skipped"]
    assert all(r["error"] == "" for r in rows)  # "skipped" says it; nothing in error
    t = table(root)
    assert (t["a"]["n_sclerosed"], t["a"]["reviewed"], t["a"]["error"]) == ("2", "yes", "")

    run_cohort(slides, root, PipelineConfig(), overwrite=True, progress=False, runner=save_runner)
    assert table(root)["a"]["reviewed"] == "yes"  # the same result again: the review still fits


def test_missing_inputs_are_reported_and_the_rest_is_run(tmp_path: Path, monkeypatch) -> None:
    from glomkit.cli import cli

    real = cohort.run_cohort
    monkeypatch.setattr(cohort, "run_cohort", lambda *a, **k: real(*a, **k, runner=save_runner))
    good = write_slide(tmp_path / "good.png")
    root = tmp_path / "out"
    res = CliRunner().invoke(cli, ["run", str(good), str(tmp_path / "missing.svs"), "-o", str(root)])
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if "missing.svs" in ln]
    assert len(lines) == 1 and "no such file or folder" in lines[0]
    assert "2 slides: 1 done, 1 missing; 4 glomeruli" in res.output
    t = table(root)
    assert t["good"]["status"] == "ok" and t["missing"]["status"] == "missing"
    assert (root / "good" / "summary.json").is_file()


def test_result_lines_count_in_the_singular() -> None:
    from glomkit._cli.run import result_line

    row = {"status": "ok", "n_glomeruli": 1}
    assert result_line([row], Path("o")).startswith("1 slide: 1 done; 1 glomerulus;")
    assert "2 slides: 2 done; 2 glomeruli;" in result_line([row, row], Path("o"))


def test_sigterm_writes_the_cohort_table_of_what_is_finished(tmp_path: Path) -> None:
    slides = [write_slide(tmp_path / f"{s}.png") for s in ("a", "b")]
    root = tmp_path / "out"

    def runner(slide: Path, out_root: Path, config: PipelineConfig) -> dict:
        if slide.stem == "b":
            os.kill(os.getpid(), signal.SIGTERM)
        return save_runner(slide, out_root, config)

    with pytest.raises(KeyboardInterrupt):
        run_cohort(slides, root, PipelineConfig(), progress=False, runner=runner)
    t = table(root)
    assert t["a"]["status"] == "ok" and t["a"]["n_glomeruli"] == "4"
    assert t["b"]["status"] == "interrupted"
