"""ImageScope XML and QuPath GeoJSON: writing, reading back, importing hand-made annotation files."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glomkit import GlomkitError
from glomkit.core.records import GlomerulusRecord, SlideRecord
from glomkit.core.schemes import COARSE, FIVE_CLASS, ClassScheme, GlomClass
from glomkit.io.annotations import Annotation, read_annotations
from glomkit.io.geojson import read_geojson, write_geojson
from glomkit.io.imagescope import imagescope_color, imagescope_xml, read_imagescope_xml, write_imagescope_xml
from glomkit.io.shapes import enclosing_circle, polygon_area


def make_result(circles, labels, scheme=FIVE_CLASS, mpp=0.5, polygons=None) -> SlideRecord:
    records = []
    for i, ((x, y, r), label) in enumerate(zip(circles, labels, strict=True), start=1):
        records.append(
            GlomerulusRecord(
                id=i,
                x=float(x),
                y=float(y),
                radius=float(r),
                score=0.5 + 0.4 * (i % 2),
                label=label,
                probs={n: 1.0 / len(scheme) for n in scheme.names},
                is_glomerulus=scheme.get(label).is_glomerulus,
                polygon=None if polygons is None else polygons[i - 1],
            )
        )
    return SlideRecord("slide", "slide.svs", mpp, 200_000, 100_000, scheme, records)


def layer_order(result: SlideRecord) -> list[GlomerulusRecord]:
    """The records in the order the XML holds them: by layer (scheme order), then by record order."""
    names = result.scheme.names
    return sorted(result.glomeruli, key=lambda g: names.index(g.label))


def wobbly_polygon(x, y, r, n=48, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rr = r * (0.8 + 0.2 * rng.random(n))
    return np.stack([x + rr * np.cos(t), y + rr * np.sin(t)], axis=1)


circles_strategy = st.lists(
    st.tuples(
        st.floats(0, 150_000, allow_nan=False),
        st.floats(0, 90_000, allow_nan=False),
        st.floats(1, 600, allow_nan=False),
        st.integers(0, 4),
    ),
    min_size=0,
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=circles_strategy, scheme=st.sampled_from([FIVE_CLASS, COARSE]))
def test_imagescope_round_trip_keeps_circles_and_labels(tmp_path, items, scheme):
    labels = [scheme.names[k % len(scheme)] for *_, k in items]
    result = make_result([c[:3] for c in items], labels, scheme)
    path = write_imagescope_xml(tmp_path / "a.xml", result)
    back = read_imagescope_xml(path)
    expected = layer_order(result)
    assert [a.label for a in back] == [g.label for g in expected]
    for a, g in zip(back, expected, strict=True):
        assert a.kind == "ellipse" and a.polygon is None
        assert abs(a.x - g.x) <= 0.5 and abs(a.y - g.y) <= 0.5 and abs(a.radius - g.radius) <= 0.5


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=circles_strategy, scheme=st.sampled_from([FIVE_CLASS, COARSE]))
def test_geojson_round_trip_keeps_circles_and_labels(tmp_path, items, scheme):
    labels = [scheme.names[k % len(scheme)] for *_, k in items]
    result = make_result([c[:3] for c in items], labels, scheme)
    back = read_geojson(write_geojson(tmp_path / "a.geojson", result))
    assert [a.label for a in back] == labels
    for a, g in zip(back, result.glomeruli, strict=True):
        assert abs(a.x - g.x) <= 0.5 and abs(a.y - g.y) <= 0.5 and abs(a.radius - g.radius) <= 0.5


def test_geojson_circle_geometry_alone_gives_the_circle(tmp_path):
    """Without glomkit's own property (a file after a trip through QuPath) the 64-gon's enclosing circle
    is the circle."""
    result = make_result([(5000.5, 3000.25, 87.0)], ["normal"])
    data = json.loads(write_geojson(tmp_path / "a.geojson", result).read_text())
    del data["features"][0]["properties"]["glomkit"]
    del data["features"][0]["properties"]["metadata"]
    (tmp_path / "b.geojson").write_text(json.dumps(data))
    (a,) = read_geojson(tmp_path / "b.geojson")
    assert a.kind == "polygon" and a.label == "normal"
    assert abs(a.x - 5000.5) < 0.05 and abs(a.y - 3000.25) < 0.05 and abs(a.radius - 87.0) < 0.05


def test_geojson_is_what_qupath_imports(tmp_path):
    poly = wobbly_polygon(900, 700, 60)
    result = make_result([(1000, 1000, 50), (900, 700, 70)], ["obsolescent", "normal"], polygons=[None, poly])
    result.glomeruli[1].area_um2 = 2500.0
    result.glomeruli[1].diameter_um = 56.4
    text = write_geojson(tmp_path / "a.geojson", result).read_text()

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    data = json.loads(text, parse_constant=no_constants)
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 2
    for feat, g in zip(data["features"], result.glomeruli, strict=True):
        props = feat["properties"]
        assert feat["type"] == "Feature" and feat["geometry"]["type"] == "Polygon"
        ring = feat["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) >= 4
        assert props["objectType"] == "annotation" and props["isLocked"] is False
        assert props["classification"] == {"name": g.label, "color": list(FIVE_CLASS.get(g.label).color)}
        m = props["measurements"]
        assert m["score"] == pytest.approx(g.score)
        assert m["radius_um"] == pytest.approx(g.radius * 0.5)
        assert {f"prob_{n}" for n in FIVE_CLASS.names} <= set(m)
    circle_ring, outline_ring = (f["geometry"]["coordinates"][0] for f in data["features"])
    assert len(circle_ring) == 65  # 64 points + closing point
    assert len(outline_ring) == len(poly) + 1
    np.testing.assert_allclose(np.array(outline_ring[:-1]), poly, atol=0.01)
    assert "area_um2" not in data["features"][0]["properties"]["measurements"]  # NaN left out
    assert data["features"][1]["properties"]["measurements"]["area_um2"] == 2500.0
    # reading back: the detection circle, and the outline
    a0, a1 = read_geojson(tmp_path / "a.geojson")
    assert a0.polygon is None and a1.polygon is not None
    assert (a1.x, a1.y, a1.radius) == pytest.approx((900, 700, 70), abs=0.01)
    np.testing.assert_allclose(a1.polygon, poly, atol=0.01)


def test_xml_text_is_what_elementtree_writes_of_it():
    """The writer builds the text directly: parsed and written again by ElementTree (indent, then
    tostring) it comes back byte for byte, odd label characters escaped the same way."""
    scheme = ClassScheme("odd", (GlomClass('a & <b> "c"\t', (1, 2, 3)), GlomClass("normal", (4, 5, 6))))
    circles = [(100.0 + 50 * i, 200.0, 20.0 + i) for i in range(4)]
    labels = [scheme.names[i % 2] for i in range(4)]
    polys = [wobbly_polygon(x, y, r, seed=i) for i, (x, y, r) in enumerate(circles)]
    result = make_result(circles, labels, scheme=scheme, mpp=0.2501, polygons=polys)
    result.glomeruli[1].score = float("nan")
    text = imagescope_xml(result)
    root = ET.fromstring(text.encode())
    ET.indent(root, space="  ")
    again = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        + ET.tostring(root, encoding="unicode").replace(" />", "/>")
        + "\n"
    )
    assert text == again
    assert root.find("Annotation").get("Name") == scheme.names[0]


def test_xml_line_color_is_bgr_integer(tmp_path):
    scheme = ClassScheme(
        "rgb", (GlomClass("red", (255, 0, 0)), GlomClass("blue", (0, 0, 255)), GlomClass("mix", (1, 2, 3)))
    )
    result = make_result([(100, 100, 10)], ["red"], scheme)
    root = ET.parse(write_imagescope_xml(tmp_path / "a.xml", result)).getroot()
    colors = {a.get("Name"): int(a.get("LineColor")) for a in root.iter("Annotation")}
    assert colors["red"] == 255 and colors["blue"] == 16711680 and colors["mix"] == 1 + 2 * 256 + 3 * 65536
    assert colors["red outline"] == 255
    r, g, b = FIVE_CLASS.get("normal").color
    assert imagescope_color((r, g, b)) == r + 256 * g + 65536 * b
    assert [a.get("Type") for a in root.iter("Annotation")] == ["4"] * 6


def _regions(path):
    root = ET.parse(path).getroot()
    return root, {
        (a.get("Name"), reg.get("Id")): reg for a in root.iter("Annotation") for reg in a.iter("Region")
    }


def test_xml_lengths_and_areas_follow_the_circle_and_mpp(tmp_path):
    poly = np.array([[0, 0], [40, 0], [40, 30], [0, 30]], float) + 1000
    result = make_result([(1020, 1015, 100)], ["normal"], mpp=0.5, polygons=[poly])
    root, regions = _regions(write_imagescope_xml(tmp_path / "a.xml", result))
    assert float(root.get("MicronsPerPixel")) == 0.5
    ell = regions[("normal", "1")]
    assert ell.get("Type") == "2" and ell.get("Text") == f"{result.glomeruli[0].score:.3f}"
    assert float(ell.get("Area")) == pytest.approx(math.pi * 100**2, abs=0.1)
    assert float(ell.get("Length")) == pytest.approx(2 * math.pi * 100, abs=0.1)
    assert float(ell.get("AreaMicrons")) == pytest.approx(math.pi * 100**2 * 0.25, abs=0.1)
    assert float(ell.get("LengthMicrons")) == pytest.approx(2 * math.pi * 100 * 0.5, abs=0.1)
    verts = [(float(v.get("X")), float(v.get("Y"))) for v in ell.iter("Vertex")]
    assert verts == [(920.0, 915.0), (1120.0, 1115.0)]
    (outline,) = [reg for (name, _), reg in regions.items() if name == "normal outline"]
    assert outline.get("Type") == "0" and outline.get("InputRegionId") == "1"
    assert float(outline.get("Area")) == pytest.approx(1200.0) and float(
        outline.get("Length")
    ) == pytest.approx(140)
    assert float(outline.get("AreaMicrons")) == pytest.approx(300.0)

    result.mpp = 0.25
    _, regions = _regions(write_imagescope_xml(tmp_path / "b.xml", result))
    ell = regions[("normal", "1")]
    assert float(ell.get("Area")) == pytest.approx(math.pi * 100**2, abs=0.1)  # pixels do not change
    assert float(ell.get("AreaMicrons")) == pytest.approx(math.pi * 100**2 / 16, abs=0.1)


def test_xml_outline_comes_back_attached_to_its_detection(tmp_path):
    polys = [wobbly_polygon(500, 500, 40, seed=1), None, wobbly_polygon(2000, 900, 55, seed=2)]
    result = make_result(
        [(500, 500, 45), (800, 800, 30), (2000, 900, 60)], ["normal", "normal", "solidified"], polygons=polys
    )
    back = read_imagescope_xml(write_imagescope_xml(tmp_path / "a.xml", result))
    assert len(back) == 3  # outlines are not separate annotations
    assert [a.label for a in back] == ["normal", "normal", "solidified"]
    np.testing.assert_allclose(back[0].polygon, polys[0], atol=0.001)
    assert back[1].polygon is None
    np.testing.assert_allclose(back[2].polygon, polys[2], atol=0.001)


IMAGESCOPE_BY_HAND = """<?xml version="1.0" encoding="UTF-8"?>
<Annotations MicronsPerPixel="0.252100">
<Annotation Id="1" Name="" LineColor="65280" Type="4">
  <Attributes><Attribute Name="glomerulus" Id="0" Value=""/></Attributes>
  <Regions>
    <Region Id="1" Type="2" Text="">
      <Vertices><Vertex X="100" Y="200" Z="0"/><Vertex X="160" Y="240" Z="0"/></Vertices>
    </Region>
    <Region Id="2" Type="1">
      <Vertices><Vertex X="1000" Y="1000"/><Vertex X="1060" Y="1000"/><Vertex X="1060" Y="1080"/>
      <Vertex X="1000" Y="1080"/></Vertices>
    </Region>
    <Region Id="3" Type="0">
      <Vertices><Vertex X="3000" Y="3000"/><Vertex X="3100" Y="3000"/><Vertex X="3050" Y="3020"/>
      <Vertex X="3050" Y="2980"/></Vertices>
    </Region>
    <Region Id="4" Type="4">
      <Vertices><Vertex X="0" Y="0"/><Vertex X="10" Y="10"/></Vertices>
    </Region>
  </Regions>
</Annotation>
<Annotation Id="2" Name="sclerosed" LineColor="255" Type="4">
  <Regions>
    <Region Id="5" Type="5"><Vertices><Vertex X="77.5" Y="88.25"/></Vertices></Region>
  </Regions>
</Annotation>
</Annotations>
"""


def test_read_hand_made_imagescope_file(tmp_path):
    path = tmp_path / "by_hand.xml"
    path.write_text(IMAGESCOPE_BY_HAND)
    anns = read_annotations(path)
    assert [(a.label, a.kind) for a in anns] == [
        ("glomerulus", "ellipse"),
        ("glomerulus", "rectangle"),
        ("glomerulus", "polygon"),
        ("sclerosed", "point"),
    ]  # the ruler is skipped
    ell, rect, poly, pin = anns
    assert ell.circle() == pytest.approx((130, 220, (30 + 20) / 2))  # mean of the half-axes
    assert rect.circle() == pytest.approx((1030, 1040, 50), abs=0.01)  # half the diagonal
    assert poly.circle() == pytest.approx((3050, 3000, 50), abs=0.01)
    assert poly.polygon.shape == (4, 2)
    assert pin.circle() == pytest.approx((77.5, 88.25, 0))
    # the file is at 0.2521 µm/px: asked for 0.5042 µm/px, positions halve; a close mpp changes nothing
    half = read_imagescope_xml(path, mpp=0.5042)
    assert half[1].circle() == pytest.approx((515, 520, 25), abs=0.01)
    assert read_imagescope_xml(path, mpp=0.252)[1].circle() == pytest.approx(rect.circle())


@pytest.mark.parametrize(
    "text, problem",
    [
        ("<Annotations><Annotation>", "not valid XML"),
        ("", "not valid XML"),
        ("<Slide><Annotation/></Slide>", "root <Slide>"),
        (
            '<Annotations><Annotation Name="a"><Regions><Region Id="7" Type="2"><Vertices>'
            '<Vertex X="1" Y="oops"/><Vertex X="3" Y="4"/></Vertices></Region></Regions></Annotation></Annotations>',
            "region 7: vertex Y is 'oops'",
        ),
        (
            '<Annotations><Annotation Name="a"><Regions><Region Id="8" Type="2"><Vertices>'
            '<Vertex X="1" Y="2"/></Vertices></Region></Regions></Annotation></Annotations>',
            "ellipse with 1 vertices",
        ),
        (
            '<Annotations><Annotation Name="a"><Regions><Region Id="9" Type="0"><Vertices/>'
            "</Region></Regions></Annotation></Annotations>",
            "has no vertices",
        ),
        (
            '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
            "<Annotations>&lol2;</Annotations>",
            "unsafe XML",
        ),
    ],
)
def test_malformed_xml_raises_one_line_glomkit_error(tmp_path, text, problem):
    path = tmp_path / "broken.xml"
    path.write_text(text)
    with pytest.raises(GlomkitError) as info:
        read_annotations(path)
    message = str(info.value)
    assert "broken.xml" in message and problem in message and "\n" not in message


def test_read_qupath_style_geojson(tmp_path):
    square = [[0, 0], [200, 0], [200, 200], [0, 200], [0, 0]]
    data = [  # QuPath 0.3 exports a plain list of features
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [square]},
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "Glomerulus", "colorRGB": -1},
            },
        },
        {
            "type": "Feature",
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": [
                    [[[1000, 0], [1010, 0], [1010, 10], [1000, 0]]],
                    [[[1100, 0], [1100, 30], [1130, 0], [1100, 0]]],
                ],
            },
            "properties": {"name": "pieces"},
        },
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 6]}, "properties": {}},
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[0, 0], [5, 5]]},
            "properties": {},
        },
        {"type": "Feature", "geometry": None, "properties": {}},
    ]
    path = tmp_path / "qupath.json"
    path.write_text(json.dumps(data))
    anns = read_annotations(path)
    assert [(a.label, a.kind) for a in anns] == [
        ("Glomerulus", "polygon"),
        ("pieces", "polygon"),
        ("", "point"),
    ]
    assert anns[0].circle() == pytest.approx((100, 100, 100 * math.sqrt(2)), abs=0.01)
    assert anns[0].polygon.shape == (4, 2)  # the ring, opened
    x, y, r = anns[1].circle()  # enclosing circle of both parts; the outline is the larger part
    assert 1000 <= x <= 1130 and r >= 65 and polygon_area(anns[1].polygon) == pytest.approx(450)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "not valid JSON"),
        ('{"type": "Topology"}', "not GeoJSON"),
        ('{"type": "FeatureCollection", "features": 3}', "without a 'features' list"),
        ('[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[["a", 1]]]}}]', "feature 0"),
        ('[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": []}}]', "without rings"),
        ('[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[1, 2, 3]]}}]', "feature 0"),
        ("[5]", "feature 0 is not a GeoJSON Feature"),
    ],
)
def test_malformed_geojson_raises_one_line_glomkit_error(tmp_path, text, problem):
    path = tmp_path / "broken.geojson"
    path.write_text(text)
    with pytest.raises(GlomkitError) as info:
        read_annotations(path)
    assert "broken.geojson" in str(info.value) and problem in str(info.value) and "\n" not in str(info.value)


def test_read_annotations_dispatch_errors(tmp_path):
    with pytest.raises(GlomkitError, match="missing.xml: annotation file not found"):
        read_annotations(tmp_path / "missing.xml")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(GlomkitError, match=r"a.txt: unknown annotation format '.txt'"):
        read_annotations(tmp_path / "a.txt")


def test_annotation_fields_are_plain():
    a = Annotation("x", np.float32(1.5), 2, np.int64(3), [[0, 0], [1, 1], [2, 0]], "polygon")
    assert type(a.x) is float and type(a.radius) is float and a.polygon.dtype == np.float64


@settings(max_examples=60, deadline=None)
@given(
    pts=st.lists(
        st.tuples(st.floats(-1e5, 1e5, allow_nan=False), st.floats(-1e5, 1e5, allow_nan=False)),
        min_size=2,
        max_size=30,
    ),
    shift=st.floats(0, 2e5, allow_nan=False),
)
def test_enclosing_circle_encloses_and_is_minimal(pts, shift):
    p = np.array(pts) + shift
    x, y, r = enclosing_circle(p)
    d = np.hypot(p[:, 0] - x, p[:, 1] - y)
    diameter = max(np.hypot(*(a - b)) for a in p for b in p)
    tol = 1e-4 * max(1.0, diameter) + 0.05  # float32 inside OpenCV
    assert d.max() <= r + tol
    assert diameter / 2 - tol <= r <= diameter / math.sqrt(3) + tol  # Jung's bound


def test_unlabelled_detections_round_trip(tmp_path):
    result = make_result([(100, 100, 20)], ["normal"])
    result.glomeruli[0].label = ""
    feat = json.loads(write_geojson(tmp_path / "a.geojson", result).read_text())["features"][0]
    assert "classification" not in feat["properties"]  # QuPath shows it unclassified
    assert [a.label for a in read_geojson(tmp_path / "a.geojson")] == [""]
    back = read_imagescope_xml(write_imagescope_xml(tmp_path / "a.xml", result))
    assert len(back) == 1 and back[0].circle() == pytest.approx((100, 100, 20))
