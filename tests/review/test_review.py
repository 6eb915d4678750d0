"""The review session (operations, validation, saving, resuming) and ``glomkit recount``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from _review_data import DETECTIONS, MISSED, make_output
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glomkit import GlomkitError
from glomkit.core.records import GlomerulusRecord, SlideRecord
from glomkit.core.schemes import COARSE, FIVE_CLASS
from glomkit.io.annotations import read_annotations
from glomkit.io.geojson import read_geojson_features
from glomkit.io.imagescope import write_imagescope_xml
from glomkit.review.recount import recount
from glomkit.review.session import ReviewInputError, ReviewSession, review_scheme


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    return make_output(tmp_path)


def digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "review" not in p.relative_to(folder).parts
    }


def test_review_scheme_adds_subtypes_to_a_coarse_model() -> None:
    s = review_scheme(COARSE)
    assert set(FIVE_CLASS.names) | set(COARSE.names) == set(s.names)
    assert s.names.index("non_glomerular") == len(s) - 1  # glomerular classes first
    assert len({c.color for c in s.classes}) == len(s)  # subtypes distinguishable from 'sclerosed'
    assert {c.name for c in s.classes if c.is_ggs} == {
        "sclerosed",
        "obsolescent",
        "solidified",
        "disappearing",
    }
    assert review_scheme(FIVE_CLASS) is FIVE_CLASS


def corrections(s: ReviewSession) -> None:
    """Reject 1, accept 2, relabel 4 to a subtype, delete 6, add the missed one as 'solidified'."""
    s.apply({"op": "reject", "id": 1})
    s.apply({"op": "accept", "id": 2})
    s.apply({"op": "relabel", "id": 4, "label": "obsolescent"})
    s.apply({"op": "delete", "id": 6})
    x, y, r = MISSED
    s.apply({"op": "add", "x": x, "y": y, "radius": r, "label": "solidified"})


def test_operations_save_geojson_and_xml_and_resume(out: Path) -> None:
    before = digest(out)
    s = ReviewSession(out, reviewer="dr. test")
    assert not s.resumed and len(s.items) == len(DETECTIONS)
    assert s.counts()["ggs_percent"] == pytest.approx(40.0)
    corrections(s)
    c = s.counts()
    # glomeruli 2, 3, 4, 5, 7 (1 rejected, 6 deleted); sclerosed 4 (obsolescent), 5, 7 (solidified)
    assert (c["n_glomeruli"], c["n_sclerosed"]) == (5, 3)
    assert c["ggs_percent"] == pytest.approx(60.0)
    assert c["counts"]["obsolescent"] == 1 and c["counts"]["non_glomerular"] == 1
    assert c["status"] == {"unreviewed": 2, "accepted": 1, "relabelled": 1, "rejected": 1, "added": 1}

    assert digest(out) == before  # the pipeline's outputs are never touched
    feats = read_geojson_features(out / "review" / "slide_reviewed.geojson")
    by_id = {p["glomkit"]["id"]: (a, p) for a, p in feats}
    assert sorted(by_id) == [1, 2, 3, 4, 5, 7]
    assert by_id[1][0].label == "non_glomerular" and by_id[1][1]["review"]["status"] == "rejected"
    assert by_id[4][0].label == "obsolescent" and by_id[4][1]["review"]["model_label"] == "sclerosed"
    assert by_id[4][1]["review"]["reviewer"] == "dr. test" and by_id[4][1]["review"]["time"].endswith("Z")
    assert by_id[3][1]["review"] == {"status": "unreviewed", "model_label": "normal"}
    a7, p7 = by_id[7]
    assert (a7.label, p7["review"]["status"]) == ("solidified", "added")
    assert np.allclose(a7.circle(), MISSED, atol=1e-3)
    assert p7["classification"]["color"] == list(s.scheme.get("solidified").color)
    assert "score" not in p7["measurements"]  # added by hand: no detection score
    xml = read_annotations(out / "review" / "slide_reviewed.xml")
    assert sorted(a.label for a in xml) == sorted(
        ["non_glomerular", "normal", "normal", "obsolescent", "sclerosed", "solidified"]
    )

    again = ReviewSession(out, reviewer="someone else")
    assert again.resumed
    assert [(i.id, i.label, i.status) for i in again.item_list()] == [
        (i.id, i.label, i.status) for i in s.item_list()
    ]
    assert again.items[1].reviewer == "dr. test"
    assert again.counts() == c
    added = again.apply({"op": "add", "x": 100.0, "y": 100.0, "radius": 30.0})
    assert added["item"]["id"] == 8 and added["item"]["label"] == "normal"  # ids are not reused


BAD_OPS = [
    [],
    "accept",
    {"op": "approve", "id": 1},
    {"op": "accept"},
    {"op": "accept", "id": "1"},
    {"op": "accept", "id": True},
    {"op": "accept", "id": 99},
    {"op": "accept", "id": 1, "extra": 1},
    {"op": "relabel", "id": 1},
    {"op": "relabel", "id": 1, "label": "fibrotic"},
    {"op": "relabel", "id": 1, "label": ["normal"]},
    {"op": "add", "x": 10, "y": 10},
    {"op": "add", "x": float("nan"), "y": 10, "radius": 5},
    {"op": "add", "x": 10, "y": float("inf"), "radius": 5},
    {"op": "add", "x": "10", "y": 10, "radius": 5},
    {"op": "add", "x": -1, "y": 10, "radius": 5},
    {"op": "add", "x": 10, "y": 99999, "radius": 5},
    {"op": "add", "x": 10, "y": 10, "radius": 0},
    {"op": "add", "x": 10, "y": 10, "radius": -4},
    {"op": "add", "x": 10, "y": 10, "radius": 1e9},
    {"op": "add", "x": 10, "y": 10, "radius": 5, "label": "Tissue"},
]


@pytest.mark.slow
@pytest.mark.parametrize("op", BAD_OPS, ids=[json.dumps(o, default=str)[:40] for o in BAD_OPS])
def test_bad_operations_are_refused_and_change_nothing(out: Path, op) -> None:
    s = ReviewSession(out)
    state = [(i.id, i.label, i.status) for i in s.item_list()]
    with pytest.raises(ReviewInputError):
        s.apply(op)
    assert [(i.id, i.label, i.status) for i in s.item_list()] == state
    assert not (out / "review").exists()


@pytest.mark.slow
def test_recount_writes_reviewed_summary_and_report(out: Path) -> None:
    original = (out / "summary.json").read_bytes()
    corrections(ReviewSession(out, reviewer="dr. test"))
    res = CliRunner().invoke(__import__("glomkit.cli", fromlist=["cli"]).cli, ["recount", str(out)])
    assert res.exit_code == 0, res.output
    assert "GGS 60.0 %: 3 sclerosed of 5 glomeruli (model: 40.0 %, 2 of 5)" in res.output
    summary = json.loads((out / "review" / "summary.json").read_text())
    assert summary["reviewed"] is True
    assert (summary["n_glomeruli"], summary["n_sclerosed"], summary["ggs_percent"]) == (5, 3, 60.0)
    assert summary["review"]["annotations"] == "review/slide_reviewed.geojson"
    assert summary["review"]["reviewers"] == ["dr. test"]
    assert summary["review"]["model"]["ggs_percent"] == 40.0
    assert summary["counts"]["solidified"] == 1 and summary["scheme"]["name"] == "coarse_3+subtypes"
    html = (out / "review" / "report.html").read_text()
    assert "(reviewed)" in html and 'id="reviewed"' in html and "60.0 %" in html
    # the gallery files glomerulus 1 under its reviewed class, with the pipeline's patch
    assert '<img src="../patches/normal/slide_1.png" alt="non_glomerular 1"' in html
    assert (out / "summary.json").read_bytes() == original


@pytest.mark.slow
def test_recount_of_a_geojson_edited_in_qupath(out: Path, tmp_path: Path) -> None:
    """Relabel, drop glomkit's own properties, add features as QuPath exports them."""
    data = json.loads((out / "slide.geojson").read_text())
    feats = data["features"]
    feats[0]["properties"]["classification"] = {"name": "Obsolescent", "color": [1, 2, 3]}  # case differs
    del feats[0]["properties"]["glomkit"]
    feats[1]["properties"]["classification"]["name"] = "disappearing"
    feats[5]["properties"]["classification"]["name"] = "normal"  # a false negative of the classifier
    ring = [[1200, 500], [1300, 500], [1300, 620], [1200, 620], [1200, 500]]
    feats.append(
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"objectType": "annotation", "classification": {"name": "solidified"}},
        }
    )
    feats.append(
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [50, 0], [50, 50], [0, 0]]]},
            "properties": {"objectType": "annotation", "classification": {"name": "Tissue"}},
        }
    )
    edited = tmp_path / "edited.geojson"
    edited.write_text(json.dumps(data))
    summary = recount(out, annotations=edited)
    # normal: 3, 6; obsolescent 1; disappearing 2; sclerosed 4, 5; solidified (new); Tissue not counted
    assert summary["counts"]["normal"] == 2 and summary["counts"]["obsolescent"] == 1
    assert summary["counts"]["Tissue"] == 1
    assert (summary["n_detections"], summary["n_glomeruli"], summary["n_sclerosed"]) == (8, 7, 5)
    assert summary["ggs_percent"] == pytest.approx(100 * 5 / 7, abs=1e-3)
    assert summary["review"]["labels_outside_scheme"] == ["Tissue"]
    assert summary["review"]["annotations"] == str(edited)
    new = 100 * 120 * 0.5 * 0.5  # the added rectangle's area in µm²
    assert summary["mean_area_um2"]["solidified"] == pytest.approx(new)


def test_recount_of_an_imagescope_xml(out: Path, tmp_path: Path) -> None:
    labels = ["normal", "solidified", "sclerosed", "non_glomerular", "obsolescent"]
    recs = [
        GlomerulusRecord(id=i + 1, x=100 + 200 * i, y=300, radius=40, score=0.9, label=lab)
        for i, lab in enumerate(labels)
    ]
    res = SlideRecord("slide", "", 0.5, 1600, 1200, review_scheme(COARSE), recs)
    write_imagescope_xml(tmp_path / "edited.xml", res)
    summary = recount(out, annotations=tmp_path / "edited.xml")
    assert (summary["n_glomeruli"], summary["n_sclerosed"]) == (4, 3)
    assert summary["ggs_percent"] == 75.0


def test_user_errors_are_one_line(out: Path, tmp_path: Path) -> None:
    with pytest.raises(GlomkitError, match="no review yet"):
        recount(out)
    with pytest.raises(GlomkitError, match="no summary.json"):
        ReviewSession(tmp_path)
    (tmp_path / "slide.png").unlink()
    with pytest.raises(GlomkitError, match="pass --slide"):
        ReviewSession(out)
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(GlomkitError, match="bad.geojson: not valid JSON"):
        recount(out, annotations=bad)


def test_undo_takes_changes_back_one_by_one(out: Path) -> None:
    s = ReviewSession(out, reviewer="u")
    start = [i.to_json() for i in s.item_list()]
    corrections(s)  # five changes: reject, accept, relabel, delete, add
    assert s.apply({"op": "undo"})["deleted"] == 7  # the added glomerulus goes
    back = s.apply({"op": "undo"})  # the deleted one comes back, as it was
    assert back["item"]["id"] == 6 and back["item"]["status"] == "unreviewed"
    for _ in range(3):
        s.apply({"op": "undo"})
    assert [i.to_json() for i in s.item_list()] == start
    with pytest.raises(ReviewInputError, match="nothing to undo"):
        s.apply({"op": "undo"})
    saved = read_geojson_features(out / "review" / "slide_reviewed.geojson")
    assert [(a.label, p["review"]["status"]) for a, p in saved] == [
        (lab, "unreviewed") for *_, lab in DETECTIONS
    ]
    with pytest.raises(ReviewInputError, match="unexpected field"):
        s.apply({"op": "undo", "id": 1})


JSONISH = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["normal", "obsolescent", "non_glomerular", "sclerosed"]),
    st.lists(st.integers(), max_size=2),
)


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    op=st.dictionaries(
        st.sampled_from(["op", "id", "label", "x", "y", "radius", "extra"]),
        JSONISH,
        max_size=6,
    )
    | st.fixed_dictionaries(
        {"op": st.sampled_from(["accept", "reject", "relabel", "add", "delete", "undo", "nope"])},
        optional={"id": JSONISH, "label": JSONISH, "x": JSONISH, "y": JSONISH, "radius": JSONISH},
    )
)
def test_any_operation_is_applied_cleanly_or_refused(out: Path, op) -> None:
    """Whatever arrives, the session either applies it or raises ReviewInputError, and stays valid."""
    s = ReviewSession(out)
    try:
        s.apply(op)
    except ReviewInputError:
        pass
    for it in s.item_list():
        assert it.label in s.scheme.names
        assert all(np.isfinite([it.x, it.y, it.radius])) and it.radius > 0
        assert 0 <= it.x <= s.width and 0 <= it.y <= s.height


def test_reviewed_geojson_is_in_qupaths_frame_and_resumes_its_origin(out: Path) -> None:
    """QuPath crops a slide to its bounds: geometry = level-0 minus the bounds origin (MRXS, SCN)."""
    s = ReviewSession(out)
    assert s.origin == (0.0, 0.0)  # a plain image has no bounds offset
    s.origin = (100.0, 50.0)
    s.apply({"op": "accept", "id": 2})
    data = json.loads((out / "review" / "slide_reviewed.geojson").read_text())
    feat = next(f for f in data["features"] if f["properties"]["glomkit"]["id"] == 2)
    ring = np.asarray(feat["geometry"]["coordinates"][0])
    _, x, y, r, *_ = DETECTIONS[1]
    assert ring[:, 0].min() == pytest.approx(x - r - 100, abs=0.5)  # no outline: the circle
    assert ring[:, 1].min() == pytest.approx(y - r - 50, abs=0.5)
    assert feat["properties"]["glomkit"]["origin"] == [100.0, 50.0]
    again = ReviewSession(out)
    assert again.origin == (100.0, 50.0)
    assert [(i.x, i.y, i.radius) for i in again.item_list()] == [(i.x, i.y, i.radius) for i in s.item_list()]


def test_a_stem_that_leaves_the_output_folder_is_refused(out: Path) -> None:
    summary = json.loads((out / "summary.json").read_text())
    summary["stem"] = "../../escape"
    (out / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(GlomkitError, match="refused"):
        ReviewSession(out)
    with pytest.raises(GlomkitError, match="refused"):
        recount(out)
    assert not (out.parent.parent / "escape_reviewed.geojson").exists()


def test_a_drawn_glomerulus_has_no_score_text_in_the_xml(out: Path) -> None:
    s = ReviewSession(out)
    x, y, r = MISSED
    s.apply({"op": "add", "x": x, "y": y, "radius": r})
    text = (out / "review" / "slide_reviewed.xml").read_text()
    assert 'Text="nan"' not in text and 'Id="7" Type="2"' in text and 'Text="0.910"' in text
