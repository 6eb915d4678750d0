"""Issue 23, scale: ``--mpp`` is for images that record no scale; a contradicting one is refused
unless ``--mpp-override``; ``--mpp-table`` gives each slide of a cohort its own scale."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from badinputs import run_glomkit

from glomkit import GlomkitError
from glomkit.models.registry import WEIGHTS_DIR
from glomkit.pipeline import PipelineConfig, open_slide
from glomkit.slide.mpp_table import MppTable
from glomkit.slide.reader import Slide

MODELS = all((WEIGHTS_DIR / f"{t}.onnx").is_file() for t in ("detector", "classifier", "segmenter"))


def tiff_at(path: Path, mpp: float) -> Path:
    """A small TIFF recording ``mpp`` µm/px in its resolution tags (as an NDPI would)."""
    img = np.full((96, 128, 3), 240, np.uint8)
    tifffile.imwrite(path, img, resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")
    return path


def png(path: Path) -> Path:
    cv2.imwrite(str(path), np.full((96, 128, 3), 240, np.uint8))
    return path


def test_contradicting_mpp_is_refused_unless_overridden(tmp_path):
    p = tiff_at(tmp_path / "ndpi_like.tif", 0.228)
    with pytest.raises(GlomkitError) as e:
        Slide(p, mpp=0.5, mpp_override=False)
    msg = str(e.value)
    assert "\n" not in msg and "ndpi_like.tif" in msg and "0.228" in msg and "--mpp-override" in msg
    s = Slide(p, mpp=0.5, mpp_override=True)
    assert (s.mpp, s.mpp_source, s.mpp_recorded) == (0.5, "user", pytest.approx(0.228))
    close = Slide(p, mpp=0.235, mpp_override=False)  # 3 % off: the recorded scale stays
    assert (close.mpp, close.mpp_source) == (pytest.approx(0.228), "slide")
    plain = Slide(png(tmp_path / "plain.png"), mpp=0.5, mpp_override=False)
    assert (plain.mpp, plain.mpp_source) == (0.5, "user")


def test_api_names_its_own_override(tmp_path):
    from glomkit.api import _open

    p = tiff_at(tmp_path / "a.tif", 0.25)
    with pytest.raises(GlomkitError, match=r"mpp= 0\.5 µm/px contradicts.*mpp_override=True"):
        _open(p, 0.5)
    with _open(p, 0.5, mpp_override=True) as s:
        assert s.mpp == 0.5


def _table(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("file", "mpp")) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_mpp_table_matches_path_name_or_stem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    a, b, c = png(tmp_path / "d" / "a.png"), png(tmp_path / "b.png"), png(tmp_path / "c.png")
    t = MppTable(
        _table(tmp_path / "t.csv", [("d/a.png", "0.4"), ("b.png", "0.6"), ("c", "0.7"), ("zz", "1")])
    )
    assert (t.lookup(a), t.lookup(b), t.lookup(c), t.lookup(tmp_path / "other.png")) == (0.4, 0.6, 0.7, None)
    assert t.unmatched([a, b, c]) == ["zz"]
    cfg = PipelineConfig(mpp=0.9, mpp_table=str(tmp_path / "t.csv"))
    with open_slide(a, cfg) as s:
        assert (s.mpp, s.mpp_source) == (0.4, "user")
    with open_slide(tmp_path / "d" / "a.png", PipelineConfig(mpp_table=str(tmp_path / "t.csv"))) as s:
        assert s.mpp == 0.4
    # the table's value follows the --mpp rule against a recorded scale
    r = tiff_at(tmp_path / "rec.tif", 0.228)
    _table(tmp_path / "t2.csv", [("rec.tif", "0.5")])
    with pytest.raises(GlomkitError, match="--mpp-table 0.5 µm/px contradicts"):
        open_slide(r, PipelineConfig(mpp_table=str(tmp_path / "t2.csv")))
    with open_slide(r, PipelineConfig(mpp_table=str(tmp_path / "t2.csv"), mpp_override=True)) as s:
        assert s.mpp == 0.5


@pytest.mark.parametrize(
    ("rows", "header", "needle"),
    [
        ([("a.png", "0.5")], ("name", "scale"), "expected the columns file,mpp"),
        ([("a.png", "fast")], ("file", "mpp"), "line 2"),
        ([("a.png", "25")], ("file", "mpp"), "outside the plausible range"),
        ([("a.png", "0.5"), ("a.png", "0.6")], ("file", "mpp"), "an earlier line"),
        ([("", "0.5")], ("file", "mpp"), "names no file"),
    ],
)
def test_bad_mpp_table_is_one_line(tmp_path, rows, header, needle):
    with pytest.raises(GlomkitError, match=needle) as e:
        MppTable(_table(tmp_path / "t.csv", rows, header))
    assert "\n" not in str(e.value) and "t.csv" in str(e.value)


def test_cli_bad_table_and_override_without_mpp(tmp_path, monkeypatch, capsys):
    p = png(tmp_path / "a.png")
    code, _, err = run_glomkit(
        monkeypatch, capsys, "run", p, "-o", tmp_path / "o", "--mpp-table", tmp_path / "no.csv"
    )
    assert code == 1 and err.strip().count("\n") == 0 and "no.csv: no such file" in err
    assert not (tmp_path / "o").exists()
    code, _, err = run_glomkit(monkeypatch, capsys, "run", p, "-o", tmp_path / "o", "--mpp-override")
    assert code != 0 and "needs --mpp or --mpp-table" in err and "Traceback" not in err


@pytest.mark.skipif(not MODELS, reason="bundled models are not built yet")
def test_cohort_refuses_only_the_contradicted_slide(tmp_path, monkeypatch, capsys):
    import json

    rec = tiff_at(tmp_path / "ndpi_like.tif", 0.228)
    plain = png(tmp_path / "plain.png")
    out = tmp_path / "o"
    code, stdout, err = run_glomkit(
        monkeypatch, capsys, "run", rec, plain, "-o", out, "--mpp", "0.5", "--json", "--threads", "1"
    )
    assert code == 1 and "Traceback" not in err
    rows = {r["stem"]: r for r in json.loads(stdout)["slides"]}
    assert rows["plain"]["status"] == "ok"
    assert rows["ndpi_like"]["status"] == "failed" and "contradicts" in rows["ndpi_like"]["error"]
    with (out / "cohort_summary.csv").open() as f:
        table = {r["stem"]: r for r in csv.DictReader(f)}
    assert "0.228" in table["ndpi_like"]["error"] and table["plain"]["status"] == "ok"
    assert json.loads((out / "plain" / "summary.json").read_text())["mpp"] == 0.5
    # with the override, the slide runs at the given scale
    code, stdout, _ = run_glomkit(
        monkeypatch,
        capsys,
        "run",
        rec,
        "-o",
        out,
        "--mpp",
        "0.5",
        "--mpp-override",
        "--json",
        "--threads",
        "1",
    )
    assert code == 0
    summary = json.loads((out / "ndpi_like" / "summary.json").read_text())
    assert summary["mpp"] == 0.5 and summary["mpp_source"] == "user"
    assert summary["mpp_recorded"] == pytest.approx(0.228)
