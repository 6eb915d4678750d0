"""Outputs that viewers read correctly: GeoJSON in QuPath's frame with stable ids and metadata,
ImageScope layers marked circles/outlines (--xml), percent-encoded report links."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from glomkit.core.records import GlomerulusRecord, SlideRecord
from glomkit.core.schemes import COARSE
from glomkit.io.geojson import feature_id, read_geojson, write_geojson
from glomkit.io.imagescope import read_imagescope_xml, write_imagescope_xml
from glomkit.slide.reader import slide_bounds

# OpenSlide properties of a real MRXS (CMU-1.mrxs): its non-empty region starts at (x, y).
MRXS_PROPS = {
    "openslide.vendor": "mirax",
    "openslide.bounds-x": "15040",
    "openslide.bounds-y": "55040",
    "openslide.bounds-width": "69376",
    "openslide.bounds-height": "114432",
}


def _result(origin=(0.0, 0.0), stem="s") -> SlideRecord:
    recs = []
    for i, (x, y, r, label) in enumerate(
        [(20_000.0, 60_000.0, 40.0, "normal"), (30_000.5, 70_000.25, 55.0, "sclerosed")], 1
    ):
        poly = np.array([[x - r, y], [x, y - r], [x + r, y], [x, y + r]], dtype=float) if i == 2 else None
        recs.append(
            GlomerulusRecord(
                id=i, x=x, y=y, radius=r, score=0.9, label=label, probs={label: 1.0}, polygon=poly
            )
        )
    return SlideRecord(stem, f"{stem}.mrxs", 0.25, 100_000, 200_000, COARSE, recs, origin=origin)


def test_geojson_is_in_qupaths_frame_for_a_slide_with_bounds(tmp_path):
    bx, by, _, _ = slide_bounds(MRXS_PROPS, 100_000, 200_000)
    result = _result(origin=(bx, by))
    data = json.loads(write_geojson(tmp_path / "a.geojson", result).read_text())
    ring = np.array(data["features"][0]["geometry"]["coordinates"][0])
    # QuPath's (0, 0) is the bounds origin: the circle's centre is level-0 minus (bx, by)
    np.testing.assert_allclose(ring[:-1].mean(axis=0), (20_000 - 15040, 60_000 - 55040), atol=0.5)
    outline = np.array(data["features"][1]["geometry"]["coordinates"][0])[:-1]
    np.testing.assert_allclose(outline, result.glomeruli[1].polygon - (bx, by), atol=0.01)
    # reading back gives OpenSlide's level-0 frame again, outline included
    a, b = read_geojson(tmp_path / "a.geojson")
    assert (a.x, a.y) == pytest.approx((20_000, 60_000))
    np.testing.assert_allclose(b.polygon, result.glomeruli[1].polygon, atol=0.01)


def test_geojson_frame_without_bounds_is_level0(tmp_path):
    data = json.loads(write_geojson(tmp_path / "a.geojson", _result()).read_text())
    ring = np.array(data["features"][0]["geometry"]["coordinates"][0])
    np.testing.assert_allclose(ring[:-1].mean(axis=0), (20_000, 60_000), atol=0.5)


def test_features_have_stable_uuids_and_metadata(tmp_path):
    one = json.loads(write_geojson(tmp_path / "a.geojson", _result()).read_text())
    two = json.loads(write_geojson(tmp_path / "b.geojson", _result()).read_text())
    ids = [f["id"] for f in one["features"]]
    assert ids == [f["id"] for f in two["features"]]  # same detections: same ids
    assert len(set(ids)) == 2 and all(uuid.UUID(i).version == 5 for i in ids)
    other = _result(stem="t")
    assert feature_id("t", other.glomeruli[0]) != ids[0]  # another slide: another id
    meta = one["features"][1]["properties"]["metadata"]
    assert all(isinstance(v, str) for v in meta.values())
    assert (
        meta["glomkit_id"] == "2" and meta["glomkit_x"] == "30000.5" and meta["glomkit_geometry"] == "outline"
    )


def test_a_file_exported_again_by_qupath_reads_back_the_circles(tmp_path):
    """QuPath keeps ``id`` and ``metadata`` and drops unknown properties such as ``glomkit``."""
    result = _result(origin=(15040.0, 55040.0))
    data = json.loads(write_geojson(tmp_path / "a.geojson", result).read_text())
    for f in data["features"]:
        del f["properties"]["glomkit"]
    (tmp_path / "q.geojson").write_text(json.dumps(data))
    a, b = read_geojson(tmp_path / "q.geojson")
    assert (a.kind, a.label, a.polygon) == ("circle", "normal", None)
    assert (a.x, a.y, a.radius) == pytest.approx((20_000, 60_000, 40))
    np.testing.assert_allclose(b.polygon, result.glomeruli[1].polygon, atol=0.01)


def _layers(path):
    root = ET.parse(path).getroot()
    out = []
    for ann in root.iter("Annotation"):
        kind = next(a.get("Value") for a in ann.iter("Attribute") if a.get("Name") == "glomkit-layer")
        out.append((ann.get("Name"), kind, len(list(ann.iter("Region")))))
    return out


def test_xml_layers_are_marked_and_selectable(tmp_path):
    r = _result()
    both = _layers(write_imagescope_xml(tmp_path / "both.xml", r))
    assert [k for _, k, _ in both] == ["circles"] * 3 + ["outlines"] * 3
    assert sum(n for _, k, n in both if k == "circles") == 2  # one circle per glomerulus
    assert sum(n for _, k, n in both if k == "outlines") == 1
    circles = _layers(write_imagescope_xml(tmp_path / "c.xml", r, "circles"))
    assert {k for _, k, _ in circles} == {"circles"} and sum(n for *_, n in circles) == 2
    outlines = _layers(write_imagescope_xml(tmp_path / "o.xml", r, "outlines"))
    assert {k for _, k, _ in outlines} == {"outlines"}
    assert len(read_imagescope_xml(tmp_path / "both.xml")) == 2  # the outline joins its circle
    assert len(read_imagescope_xml(tmp_path / "c.xml")) == 2


def test_report_links_are_percent_encoded(tmp_path):
    from glomkit.io.report import write_cohort_report

    rows = [
        {
            "stem": "a#b c?",
            "source": "x",
            "status": "ok",
            "error": "",
            "n_glomeruli": 1,
            "n_sclerosed": 0,
            "counts": {"normal": 1},
            "ggs_percent": 0.0,
            "seconds": 1.0,
            "worker": "",
            "timings": {},
        }
    ]
    text = write_cohort_report(tmp_path / "c.html", rows).read_text()
    assert 'href="a%23b%20c%3F/report.html"' in text
