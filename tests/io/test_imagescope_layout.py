"""Issue 23: each ImageScope ``<Annotation>`` has one ``<Attributes>`` element, then ``<Regions>``,
as ImageScope writes, so readers that take an Annotation's children by position find the regions;
the layer marker is a row of that element, and files with the older two-element layout still read."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from glomkit.core.records import GlomerulusRecord, SlideRecord
from glomkit.core.schemes import COARSE
from glomkit.io.annotations import read_annotations
from glomkit.io.imagescope import layer_kind, read_imagescope_xml, write_imagescope_xml


def _result() -> SlideRecord:
    recs = []
    for i, (x, y, r, label) in enumerate(
        [(200.0, 300.0, 40.0, "normal"), (500.0, 700.0, 55.0, "sclerosed")], 1
    ):
        poly = np.array([[x - r, y], [x, y - r], [x + r, y], [x, y + r]], float)
        recs.append(
            GlomerulusRecord(
                id=i, x=x, y=y, radius=r, score=0.9, label=label, probs={label: 1.0}, polygon=poly
            )
        )
    return SlideRecord("s", "s.svs", 0.25, 1000, 1000, COARSE, recs)


def _positional_regions(path) -> dict[str, int]:
    """What a positional reader does: Annotation[0] is Attributes, Annotation[1] is Regions."""
    out = {}
    for ann in ET.parse(path).getroot():
        assert ann.tag == "Annotation"
        assert ann[0].tag == "Attributes" and ann[1].tag == "Regions", [c.tag for c in ann]
        assert sum(c.tag == "Attributes" for c in ann) == 1
        out[ann.get("Name")] = len(ann[1].findall("Region"))
    return out


def test_positional_reader_finds_the_regions(tmp_path):
    p = write_imagescope_xml(tmp_path / "s.xml", _result())
    found = _positional_regions(p)
    assert found["normal"] == 1 and found["sclerosed"] == 1 and found["non_glomerular"] == 0
    assert found["normal outline"] == 1 and found["sclerosed outline"] == 1
    root = ET.parse(p).getroot()
    kinds = [layer_kind(a) for a in root]
    assert kinds == ["circles"] * 3 + ["outlines"] * 3
    rows = [(a.get("Name"), a.get("Id")) for a in root[0][0]]
    assert rows == [("normal", "0"), ("glomkit-layer", "1")]  # the class name first, as before
    got = read_imagescope_xml(p)
    assert [a.label for a in got] == ["normal", "sclerosed"]
    assert all(a.polygon is not None for a in got)  # each outline joins its circle


def _two_attributes_layout(text: str) -> str:
    """The layout glomkit wrote before issue 23: the marker in a first <Attributes>, the class name
    in a second one."""
    root = ET.fromstring(text)
    for ann in root:
        attrs = ann.find("Attributes")
        name_row, marker = list(attrs)
        attrs.remove(marker)
        marker.set("Id", "0")
        first = ET.Element("Attributes")
        first.append(marker)
        ann.insert(0, first)
    return ET.tostring(root, encoding="unicode")


@pytest.mark.parametrize("unnamed", [False, True])
def test_older_two_attribute_files_still_read(tmp_path, unnamed):
    p = write_imagescope_xml(tmp_path / "s.xml", _result())
    old = _two_attributes_layout(p.read_text())
    if unnamed:  # a layer without Name: its class comes from the attribute rows, not the marker
        old = old.replace(' Name="normal"', ' Name=""', 1)
    q = tmp_path / "old.xml"
    q.write_text(old)
    root = ET.parse(q).getroot()
    assert [c.tag for c in root[0]][:3] == ["Attributes", "Attributes", "Regions"]
    assert [layer_kind(a) for a in root] == ["circles"] * 3 + ["outlines"] * 3
    got = read_annotations(q, mpp=0.25)
    assert [a.label for a in got] == ["normal", "sclerosed"]
    assert all(a.polygon is not None for a in got)
