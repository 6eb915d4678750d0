"""A review survives ``run --overwrite`` (and ``demo``, which always overwrites), and a review made on
an earlier result says that the run changed under it (tiny results made in code, no models)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from _review_data import MPP, SIZE, write_slide
from click.testing import CliRunner

from glomkit.cohort import run_cohort
from glomkit.core.records import GlomerulusRecord
from glomkit.core.schemes import COARSE
from glomkit.io.partial import clean_stale_partials, make_partial_dir
from glomkit.pipeline import PipelineConfig
from glomkit.results import SlideResult
from glomkit.review.provenance import RUN_RECORD, run_state
from glomkit.review.recount import recount
from glomkit.review.session import ReviewSession

FIRST = [(300, 250, "normal"), (800, 260, "normal"), (350, 800, "sclerosed")]
SECOND = [(310, 255, "normal"), (900, 900, "sclerosed")]  # a different model result


def result(slide: Path, spots: list[tuple[int, int, str]]) -> SlideResult:
    recs = []
    for i, (x, y, label) in enumerate(spots, start=1):
        probs = dict.fromkeys(COARSE.names, 0.05) | {label: 0.9}
        recs.append(
            GlomerulusRecord(
                id=i, x=x, y=y, radius=50, score=0.9, label=label, probs=probs, is_glomerulus=True
            )
        )
    return SlideResult(
        stem=slide.stem,
        source=str(slide),
        mpp=MPP,
        width=SIZE[0],
        height=SIZE[1],
        scheme=COARSE,
        glomeruli=recs,
    )


def review_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "review").iterdir())}


def start_review(out: Path) -> None:
    s = ReviewSession(out, reviewer="dr. keep")
    s.apply({"op": "relabel", "id": 1, "label": "obsolescent"})
    recount(out)


def test_overwrite_keeps_the_review_and_a_changed_run_is_flagged(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slide.png")
    root = tmp_path / "out"
    out = result(slide, FIRST).save(root)
    start_review(out)
    assert json.loads((out / "review" / RUN_RECORD).read_text())["fingerprint"].startswith("sha256:")
    kept = review_digest(out)

    out = result(slide, FIRST).save(root)  # the same result again: the review still matches it
    assert review_digest(out) == kept
    assert run_state(out, "slide")["run_changed"] is False
    assert not ReviewSession(out).run_changed

    out = result(slide, SECOND).save(root)  # another result: the review is kept, and flagged
    assert review_digest(out) == kept
    assert not list(root.glob(".*.partial"))
    s = ReviewSession(out)
    assert s.resumed and s.run_changed
    assert [it.label for it in s.item_list()] == ["obsolescent", "normal", "sclerosed"]
    assert all(not it.patch for it in s.item_list())  # the new run's patches belong to other ids
    summary = recount(out)
    assert summary["review"]["run_changed"] is True
    assert summary["review"]["reviewed_run"] != summary["review"]["current_run"]
    assert (summary["n_glomeruli"], summary["n_sclerosed"]) == (3, 2)  # the review's own figures

    from glomkit._cli.review import recount_cmd

    res = CliRunner().invoke(recount_cmd, [str(out)])
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.output.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "run again after this review started" in warnings[0]


def test_a_review_caught_in_a_killed_replacement_is_put_back(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slide.png")
    root = tmp_path / "out"
    out = result(slide, FIRST).save(root)
    start_review(out)
    kept = review_digest(out)
    stale = make_partial_dir(root, "slide")  # this process's own leftover counts as stale
    (out / "review").rename(stale / "review")
    clean_stale_partials(root, "slide")
    assert review_digest(out) == kept and not stale.exists()


def _save_runner(slide: Path, out_root: Path, config: PipelineConfig) -> dict:
    spots = json.loads((slide.parent / "spots.json").read_text())
    final = result(slide, [tuple(s) for s in spots]).save(out_root)
    return json.loads((final / "summary.json").read_text())


def test_cohort_overwrite_as_demo_does_keeps_the_review(tmp_path: Path) -> None:
    slide = write_slide(tmp_path / "slide.png")
    (tmp_path / "spots.json").write_text(json.dumps(FIRST))
    root = tmp_path / "out"
    run_cohort([slide], root, PipelineConfig(), overwrite=True, progress=False, runner=_save_runner)
    start_review(root / "slide")
    kept = review_digest(root / "slide")
    (tmp_path / "spots.json").write_text(json.dumps(SECOND))
    run_cohort([slide], root, PipelineConfig(), overwrite=True, progress=False, runner=_save_runner)
    assert review_digest(root / "slide") == kept
    assert run_state(root / "slide", "slide")["run_changed"] is True


@pytest.mark.slow
def test_demo_rerun_keeps_the_demo_review(tmp_path: Path) -> None:
    """docs/REVIEW.md reviews the demo slide; ``glomkit demo`` (and ``make demo``) always overwrites."""
    from glomkit.cli import cli

    out = tmp_path / "demo"
    args = ["demo", "-o", str(out), "--size", "3000x2500", "--silent"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    folder = out / "demo_slide"
    s = ReviewSession(folder, reviewer="dr. demo")
    s.apply({"op": "add", "x": 500, "y": 500, "radius": 60, "label": "obsolescent"})
    recount(folder)
    kept = review_digest(folder)
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert review_digest(folder) == kept
    assert run_state(folder, "demo_slide")["run_changed"] is False  # the same slide, the same result
