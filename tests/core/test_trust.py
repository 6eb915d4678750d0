"""The GGS % interval and the quality flags (glomkit.core.trust), and edge ignore regions in evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glomkit.core.trust import Call, ggs_interval, poisson_binomial_pmf, trust_summary, uncertain


def test_poisson_binomial_matches_enumeration():
    p = [0.1, 0.5, 0.9]
    pmf = poisson_binomial_pmf(p)
    brute = np.zeros(4)
    for bits in range(8):
        b = [(bits >> i) & 1 for i in range(3)]
        brute[sum(b)] += np.prod([q if x else 1 - q for q, x in zip(p, b, strict=True)])
    assert pmf == pytest.approx(brute)


def test_interval_narrows_with_more_glomeruli_and_widens_with_doubt():
    small = ggs_interval([1.0] * 3 + [0.0] * 4)
    large = ggs_interval([1.0] * 30 + [0.0] * 40)
    assert small[0] < 100 * 3 / 7 < small[1] and large[0] < 100 * 30 / 70 < large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 2
    doubtful = ggs_interval([0.6] * 30 + [0.4] * 40)  # same expected share, uncertain calls
    assert doubtful[1] - doubtful[0] > large[1] - large[0]
    assert ggs_interval([0.0] * 7)[0] == 0.0 and ggs_interval([1.0] * 7)[1] == 100.0
    assert ggs_interval([]) is None


def test_flags():
    sure = [Call(0.99, 0.0)] * 12
    s = trust_summary(sure, 12, stain="PAS", ggs_threshold=0.5)
    assert s["flags"] == [] and s["ggs_reportable"] and s["grade_validated"]
    few = trust_summary(sure[:5], 5, stain="H&E")
    assert "too_few_glomeruli" in few["flags"] and "stain_not_validated" in few["flags"]
    assert not few["grade_validated"] and few["ggs_reportable"]
    # rejections of a filter that never saw the stain are flagged for review; not on PAS or H&E,
    # and not when nothing was rejected
    other = trust_summary(sure, 14, stain="other")
    assert "filter_not_validated" in other["flags"] and "stain_not_validated" in other["flags"]
    assert "filter_not_validated" not in trust_summary(sure, 12, stain="other")["flags"]
    assert "filter_not_validated" not in trust_summary(sure, 14, stain="H&E")["flags"]
    assert "filter_not_validated" not in trust_summary(sure, 14, stain="PAS")["flags"]
    assert "filter_not_validated" not in trust_summary(sure, 14, stain="other", reviewed=True)["flags"]
    none = trust_summary(sure[:2], 9)  # two glomeruli, most detections rejected
    assert "no_kidney_cortex" in none["flags"] and not none["ggs_reportable"] and none["ggs_interval"] is None
    # an unfamiliar lab: twelve sure glomeruli kept of thirty detections; the text says to review the rest
    lab = trust_summary(sure, 30, stain="H&E")
    assert "no_kidney_cortex" in lab["flags"] and not lab["ggs_reportable"]
    assert any("review the rejected ones" in t for t in lab["flag_text"])
    doubt = trust_summary([Call(0.3, 0.1)] + sure, 13, ggs_threshold=0.5)
    assert doubt["n_uncertain"] == 1 and "uncertain_calls" in doubt["flags"]
    assert uncertain(Call(0.99, 0.6), 0.5) and not uncertain(Call(0.99, 0.6, reviewed=True), 0.5)
    reviewed = trust_summary([Call(1.0, 1.0, True)] * 2, 2, reviewed=True)
    assert "no_kidney_cortex" not in reviewed["flags"] and reviewed["ggs_interval_kind"].startswith(
        "reviewed"
    )


def test_edge_cut_truth_and_its_predictions_are_ignored():
    from glomkit.detect.data import AnnotatedImage
    from glomkit.evaluate_images import edge_ignored

    circles = np.array([[50.0, 50, 10], [5, 50, 10], [150, 150, 10]])
    im = AnnotatedImage(Path("t.jpg"), circles, 1.0)
    preds = np.array([[40, 40, 20, 20], [-5, 40, 20, 20], [190, 10, 20, 20], [100, 100, 20, 20]], float)
    kept, keep = edge_ignored(im, preds, 200, 200)
    assert kept.circles.tolist() == [[50, 50, 10], [150, 150, 10]]
    # on a kept truth: counts; on the edge truth: ignored; crossing the border, unmatched: ignored;
    # inside, unmatched: a false positive that counts
    assert keep.tolist() == [True, False, False, True]
    # a box clipped to the image (an outline of an edge-cut glomerulus) touches the border without
    # crossing it: ignored the same way; one a few px inside counts
    clipped = np.array([[0, 120, 15, 20], [185, 60, 15, 20], [10, 120, 15, 20]], float)
    assert edge_ignored(im, clipped, 200, 200)[1].tolist() == [False, False, True]


def test_summary_report_and_cohort_table_carry_the_interval_and_flags(tmp_path):
    from test_io_outputs import make_result

    from glomkit.core.schemes import COARSE
    from glomkit.io.report import report_html, summary_of, write_cohort_csv

    res = make_result(["normal"] * 6 + ["sclerosed"] * 6, COARSE)  # 12 glomeruli, sure calls
    res.extra = {"stain": "H&E", "ggs_threshold": 0.5}
    s = summary_of(res)
    lo, hi = s["ggs_interval"]
    assert lo < s["ggs_percent"] < hi and hi - lo < 70
    assert s["flags"] == ["stain_not_validated"] and s["grade_validated"] is False
    html = report_html(res, s, tmp_path)
    assert "95 % interval" in html and "not validated on H&amp;E" in html and 'id="sizes"' in html
    from glomkit.cohort import _base_row, _fill_from_summary

    row = _fill_from_summary(_base_row(tmp_path / "slide-7.svs", "ok"), s)
    write_cohort_csv(tmp_path / "c.csv", [row])
    import csv

    line = next(csv.DictReader(open(tmp_path / "c.csv", encoding="utf-8")))
    assert line["stain"] == "H&E" and line["flags"] == "stain_not_validated"
    assert float(line["ggs_ci_low"]) == pytest.approx(lo) and float(line["ggs_ci_high"]) == pytest.approx(hi)
    from glomkit.io.report import write_cohort_report

    page = write_cohort_report(tmp_path / "c.html", [row]).read_text()
    assert f"({lo:.0f}-{hi:.0f})" in page and "stain_not_validated" in page


def test_no_cortex_shows_no_ggs(tmp_path):
    from test_io_outputs import make_result

    from glomkit.core.schemes import COARSE
    from glomkit.io.report import report_html, summary_of

    res = make_result(["sclerosed", "normal"], COARSE)  # two glomeruli: nothing to grade a biopsy by
    s = summary_of(res)
    assert "no_kidney_cortex" in s["flags"] and s["ggs_interval"] is None and not s["ggs_reportable"]
    assert "No global glomerulosclerosis percentage" in report_html(res, s, tmp_path)


def test_uncertain_calls_are_marked_in_the_table_geojson_and_review(tmp_path):
    from test_io_outputs import make_result

    from glomkit.core.schemes import COARSE
    from glomkit.io.geojson import feature_of
    from glomkit.io.table import table_row

    res = make_result(["normal"] * 3, COARSE)
    res.extra = {"ggs_threshold": 0.5}
    g = res.glomeruli[0]
    g.probs = {"normal": 0.45, "sclerosed": 0.4, "non_glomerular": 0.15}  # P(GGS | glom) 0.47: near 0.5
    assert table_row(g, res)["uncertain"] is True
    assert table_row(res.glomeruli[1], res)["uncertain"] is False
    feat = feature_of(g, res)
    assert feat["properties"]["glomkit"]["uncertain"] is True
    assert "uncertain" not in feature_of(res.glomeruli[1], res)["properties"]["glomkit"]


def test_a_fluorescence_slide_is_refused_in_one_line(tmp_path):
    from glomkit import GlomkitError
    from glomkit.pipeline import PipelineConfig, analyse_slide

    dapi = Path(__file__).resolve().parents[3] / "shared" / "data" / "slides" / "test3-DAPI-2-(387).ndpi"
    if not dapi.is_file():
        pytest.skip("../shared/data/slides is absent")
    with pytest.raises(GlomkitError, match="not a brightfield image"):
        analyse_slide(dapi, PipelineConfig(write_images=False))
