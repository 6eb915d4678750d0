"""Hostile annotation files: the readers give a valid parse or the project's own error, never
anything else (property-based fuzzing with hypothesis), and name the feature that is wrong."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glomkit import GlomkitError
from glomkit.io.geojson import read_geojson
from glomkit.io.imagescope import read_imagescope_xml

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _feature(props: dict | None = None, coords=None) -> dict:
    ring = coords if coords is not None else [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": props or {},
    }


def _write(tmp_path, text: str, name: str = "a.geojson"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("key", "value"),
    [("x", "NaN"), ("y", "Infinity"), ("radius", "-Infinity"), ("x", "-5"), ("radius", "-1"), ("y", "1e400")],
)
def test_bad_glomkit_circle_names_the_feature(tmp_path, key, value):
    own = {"id": 1, "x": 5, "y": 5, "radius": 3, key: "__V__"}
    text = json.dumps({"type": "FeatureCollection", "features": [_feature(), _feature({"glomkit": own})]})
    p = _write(tmp_path, text.replace('"__V__"', value))
    with pytest.raises(GlomkitError, match=rf"feature 1: properties.glomkit.{key}") as err:
        read_geojson(p)
    assert str(err.value).startswith(str(p)) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '{"type": "FeatureCollection", "features": ['
            + json.dumps(_feature()).replace("10", "1" + "0" * 5000, 1)
            + "]}",
            "not valid JSON",
        ),
        ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
        (
            '{"type": "FeatureCollection", "features": ['
            + json.dumps(_feature()).replace("10", "1e400", 1)
            + "]}",
            "feature 0",
        ),
        (
            '{"type": "FeatureCollection", "features": ['
            + json.dumps(_feature()).replace("10", str(10**300), 1)
            + "]}",
            "feature 0",
        ),
    ],
    ids=["5000-digits", "deep-nesting", "inf-coordinate", "huge-integer"],
)
def test_hostile_geojson_is_one_line_error(tmp_path, text, problem):
    p = _write(tmp_path, text)
    with pytest.raises(GlomkitError, match=problem) as err:
        read_geojson(p)
    assert "\n" not in str(err.value)


def test_xml_microns_per_pixel_out_of_range(tmp_path):
    p = tmp_path / "a.xml"
    p.write_text(
        '<Annotations MicronsPerPixel="1e308"><Annotation Name="g"><Regions><Region Id="1" Type="2">'
        '<Vertices><Vertex X="0" Y="0"/><Vertex X="10" Y="10"/></Vertices></Region></Regions>'
        "</Annotation></Annotations>"
    )
    with pytest.raises(GlomkitError, match="MicronsPerPixel"):
        read_imagescope_xml(p, mpp=0.25)


NUM = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1", "x", "", None, [], {}]),
)
JSONV = st.recursive(
    st.none() | st.booleans() | NUM | st.text(max_size=6),
    lambda kids: (
        st.lists(kids, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "coordinates",
                    "x",
                    "y",
                    "radius",
                    "name",
                    "classification",
                    "glomkit",
                    "geometry",
                    "properties",
                    "features",
                ]
            ),
            kids,
            max_size=5,
        )
    ),
    max_leaves=20,
)
POINT = st.lists(NUM, min_size=0, max_size=3)
RING = st.lists(POINT, min_size=0, max_size=6)


def _valid(anns) -> None:
    for a in anns:
        assert all(math.isfinite(v) for v in (a.x, a.y, a.radius)) and a.radius >= 0


@pytest.mark.slow
@FUZZ
@given(
    gtype=st.sampled_from(["Polygon", "MultiPolygon", "Point", "MultiPoint", "LineString", "Nope", 3]),
    coords=st.one_of(
        RING, st.lists(RING, max_size=3), st.lists(st.lists(RING, max_size=2), max_size=2), JSONV
    ),
    own=st.one_of(
        st.none(), st.dictionaries(st.sampled_from(["x", "y", "radius", "geometry"]), NUM, max_size=4)
    ),
    wrap=st.sampled_from(["collection", "feature", "list"]),
)
def test_fuzzed_geojson_parses_or_raises_glomkit_error(tmp_path, gtype, coords, own, wrap):
    props = {"classification": {"name": "g"}}
    if own is not None:
        props["glomkit"] = own
    feat = {"type": "Feature", "geometry": {"type": gtype, "coordinates": coords}, "properties": props}
    data = {"collection": {"type": "FeatureCollection", "features": [feat]}, "feature": feat, "list": [feat]}[
        wrap
    ]
    p = _write(tmp_path, json.dumps(data))
    try:
        _valid(read_geojson(p))
    except GlomkitError as exc:
        assert "\n" not in str(exc)


@pytest.mark.slow
@FUZZ
@given(
    st.binary(max_size=300)
    | st.text(max_size=300).map(str.encode)
    | JSONV.map(lambda v: json.dumps(v).encode())
)
def test_fuzzed_geojson_bytes(tmp_path, data):
    p = tmp_path / "b.geojson"
    p.write_bytes(data)
    try:
        _valid(read_geojson(p))
    except GlomkitError as exc:
        assert "\n" not in str(exc)


ATTR = st.one_of(
    st.sampled_from(["0", "1", "2", "3", "4", "5", "-1", "1e308", "nan", "inf", "", "x", "1" * 400, "0.25"]),
    st.text(max_size=5),
)


@st.composite
def imagescope(draw) -> str:
    regions = []
    for i in range(draw(st.integers(0, 3))):
        verts = "".join(
            f'<Vertex X="{draw(ATTR)}" Y="{draw(ATTR)}"/>' for _ in range(draw(st.integers(0, 4)))
        )
        rid = draw(st.sampled_from([str(i + 1), "", "x"]))
        regions.append(
            f'<Region Id="{rid}" Type="{draw(ATTR)}" InputRegionId="{draw(ATTR)}"><Vertices>{verts}</Vertices></Region>'
        )
    name = draw(st.sampled_from(["g", "g outline", "", "a&amp;b"]))
    body = f'<Annotation Name="{name}"><Regions>{"".join(regions)}</Regions></Annotation>'
    mpp = draw(ATTR)
    text = f'<Annotations MicronsPerPixel="{mpp}">{body * draw(st.integers(1, 2))}</Annotations>'
    cut = draw(st.integers(0, len(text)))
    return text if draw(st.booleans()) else text[:cut]


@pytest.mark.slow
@FUZZ
@given(imagescope(), st.sampled_from([None, 0.25, 0.5]))
def test_fuzzed_imagescope_parses_or_raises_glomkit_error(tmp_path, text, mpp):
    p = tmp_path / "a.xml"
    p.write_text(text, encoding="utf-8")
    try:
        _valid(read_imagescope_xml(p, mpp=mpp))
    except GlomkitError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzzed_xml_bytes(tmp_path, data):
    p = tmp_path / "b.xml"
    p.write_bytes(data)
    try:
        _valid(read_imagescope_xml(p))
    except GlomkitError as exc:
        assert "\n" not in str(exc)
