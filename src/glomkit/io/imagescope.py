"""Aperio ImageScope XML: write a slide's detections, read annotations back.

The file has one ``<Annotation>`` layer per class of the scheme (name and colour from the scheme),
each detection an ellipse region (``Type="2"``, two vertices: the corners of the circle's box, in
level-0 px) whose text is the detection score; then one ``"<class> outline"`` layer per class with
the segmentation outlines as polygon regions (``Type="0"``). An outline region's ``InputRegionId``
is the Id of its detection's ellipse. ImageScope colours are BGR integers: R + G*256 + B*65536.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET  # the type and errors of files read (parsed with defusedxml)
from pathlib import Path

import numpy as np

from glomkit import GlomkitError
from glomkit.core.records import GlomerulusRecord, SlideRecord
from glomkit.core.units import MPP_RANGE
from glomkit.io.annotation_types import MAX_COORD, Annotation
from glomkit.io.atomic import write_text
from glomkit.io.shapes import (
    ellipse_area,
    ellipse_circle,
    ellipse_perimeter,
    enclosing_circle,
    open_ring,
    polygon_area,
    polygon_perimeter,
)

REGION_POLYGON, REGION_RECTANGLE, REGION_ELLIPSE, REGION_ARROW, REGION_RULER, REGION_POINT = range(6)
OUTLINE_SUFFIX = " outline"
UNKNOWN_COLOR = (255, 255, 0)  # a detection whose label is not in the scheme
# Each layer says what it holds, so that readers counting regions can tell the detection circles
# (one per glomerulus) from the segmentation outlines (a second shape of the same glomeruli).
LAYER_ATTRIBUTE = "glomkit-layer"
LAYER_CIRCLES, LAYER_OUTLINES = "circles", "outlines"
XML_CONTENTS = ("both", "circles", "outlines")


def imagescope_color(rgb: tuple[int, int, int]) -> int:
    """ImageScope's ``LineColor``: the BGR integer R + G*256 + B*65536."""
    r, g, b = (int(v) for v in rgb)
    return r + g * 256 + b * 65536


REGION_ATTRIBUTE_HEADERS = (("9999", "Region"), ("9997", "Length"), ("9996", "Area"), ("9998", "Text"))


_ATTR_ESCAPES = (
    ("&", "&amp;"),
    ("<", "&lt;"),
    (">", "&gt;"),
    ('"', "&quot;"),
    ("\r", "&#13;"),
    ("\n", "&#10;"),
    ("\t", "&#09;"),
)


def _attr(value: str) -> str:
    """An attribute value escaped as ElementTree escapes it (so files stay byte-identical)."""
    for raw, esc in _ATTR_ESCAPES:
        if raw in value:
            value = value.replace(raw, esc)
    return value


def _tag(name: str, attrs: dict[str, str], indent: int, close: bool = False) -> str:
    """One line: ``<name a="v" ...>`` (``close``: ``.../>``) at ``indent`` levels of two spaces."""
    body = " ".join(f'{k}="{_attr(v)}"' for k, v in attrs.items())
    return f"{'  ' * indent}<{name}{' ' + body if body else ''}{'/>' if close else '>'}"


def _layer(
    lines: list[str], layer_id: int, name: str, color: tuple[int, int, int], kind: str, regions: list[str]
) -> None:
    """Append an ``<Annotation>`` layer holding the ``<Region>`` lines ``regions`` to ``lines``."""
    lines.append(
        _tag(
            "Annotation",
            {
                "Id": str(layer_id),
                "Name": name,
                "ReadOnly": "0",
                "NameReadOnly": "0",
                "LineColorReadOnly": "0",
                "Incremental": "0",
                "Type": "4",
                "LineColor": str(imagescope_color(color)),
                "Visible": "1",
                "Selected": "0",
                "MarkupImagePath": "",
                "MacroName": "",
            },
            1,
        )
    )
    # one <Attributes> element, as ImageScope writes (readers take an Annotation's children by
    # position: [0] Attributes, [1] Regions); its rows are the class name, then the layer marker
    lines.append("    <Attributes>")
    for aid, (attr_name, value) in enumerate(((name, ""), (LAYER_ATTRIBUTE, kind))):
        lines.append(_tag("Attribute", {"Name": attr_name, "Id": str(aid), "Value": value}, 3, close=True))
    lines.append("    </Attributes>")
    lines.append("    <Regions>")
    lines.append("      <RegionAttributeHeaders>")
    for hid, hname in REGION_ATTRIBUTE_HEADERS:
        lines.append(_tag("AttributeHeader", {"Id": hid, "Name": hname, "ColumnWidth": "-1"}, 4, close=True))
    lines.append("      </RegionAttributeHeaders>")
    lines.extend(regions)
    lines.append("    </Regions>")
    lines.append("    <Plots/>")
    lines.append("  </Annotation>")


def _region(
    lines: list[str],
    region_id: int,
    rtype: int,
    vertices: np.ndarray,
    length_px: float,
    area_px: float,
    mpp: float,
    text: str,
    input_id: int = 0,
) -> None:
    """Append a ``<Region>`` (``rtype`` = ``REGION_*``) with its vertices to ``lines``."""
    lines.append(
        _tag(
            "Region",
            {
                "Id": str(region_id),
                "Type": str(rtype),
                "Zoom": "1",
                "Selected": "0",
                "ImageLocation": "",
                "ImageFocus": "-1",
                "Length": f"{length_px:.1f}",
                "Area": f"{area_px:.1f}",
                "LengthMicrons": f"{length_px * mpp:.1f}",
                "AreaMicrons": f"{area_px * mpp * mpp:.1f}",
                "Text": text,
                "NegativeROA": "0",
                "InputRegionId": str(input_id),
                "Analyze": "1",
                "DisplayId": str(region_id),
            },
            3,
        )
    )
    lines.append("        <Attributes/>")
    lines.append("        <Vertices>")
    lines.extend(
        f'          <Vertex X="{x:.3f}" Y="{y:.3f}" Z="0"/>'
        for x, y in np.asarray(vertices, dtype=np.float64).reshape(-1, 2).tolist()
    )
    lines.append("        </Vertices>")
    lines.append("      </Region>")


def _layers_of(result: SlideRecord) -> list[tuple[str, tuple[int, int, int]]]:
    """The scheme's classes in order, then any label a record carries that the scheme lacks."""
    layers = [(c.name, tuple(c.color)) for c in result.scheme.classes]
    known = {n for n, _ in layers}
    for g in result.glomeruli:
        if g.label not in known:
            known.add(g.label)
            layers.append((g.label, UNKNOWN_COLOR))
    return layers


def _score_text(score: float) -> str:
    """A region's Text: the detection score; empty for a glomerulus drawn by hand (no score)."""
    return f"{score:.3f}" if math.isfinite(score) else ""


def imagescope_xml(result: SlideRecord, contents: str = "both") -> str:
    """The text of the ImageScope file of a slide's detections (see the module docstring).

    ``contents``: ``both`` (circle layers, then outline layers), ``circles`` or ``outlines``. Each
    layer's one ``<Attributes>`` element holds the class name and the row ``glomkit-layer`` =
    ``circles`` or ``outlines`` (:func:`layer_kind`).
    """
    if contents not in XML_CONTENTS:
        raise GlomkitError(f"--xml {contents!r}: expected one of {', '.join(XML_CONTENTS)}")
    mpp = float(result.mpp)
    layers = _layers_of(result)
    by_label: dict[str, list[GlomerulusRecord]] = {name: [] for name, _ in layers}
    for g in result.glomeruli:
        by_label[g.label].append(g)
    # region Ids are unique in the file: ellipses keep the detection id, outlines come after
    offset = max((int(g.id) for g in result.glomeruli), default=0)
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        _tag("Annotations", {"MicronsPerPixel": f"{mpp:.6f}"}, 0),
    ]
    circle_layers = layers if contents in ("both", "circles") else []
    outline_layers = layers if contents in ("both", "outlines") else []
    for k, (name, color) in enumerate(circle_layers, start=1):
        regions: list[str] = []
        for g in by_label[name]:
            r = float(g.radius)
            box = np.array([[g.x - r, g.y - r], [g.x + r, g.y + r]])
            perimeter, area = ellipse_perimeter(r, r), ellipse_area(r, r)
            _region(regions, int(g.id), REGION_ELLIPSE, box, perimeter, area, mpp, _score_text(g.score))
        _layer(lines, k, name, color, LAYER_CIRCLES, regions)
    for k, (name, color) in enumerate(outline_layers, start=len(circle_layers) + 1):
        regions = []
        for g in by_label[name]:
            if g.polygon is None or len(g.polygon) < 3:
                continue
            poly = open_ring(g.polygon)
            _region(
                regions,
                offset + int(g.id),
                REGION_POLYGON,
                poly,
                polygon_perimeter(poly),
                polygon_area(poly),
                mpp,
                _score_text(g.score),
                input_id=int(g.id),
            )
        _layer(lines, k, name + OUTLINE_SUFFIX, color, LAYER_OUTLINES, regions)
    lines.append("</Annotations>")  # a scheme has at least one class: the root is never empty
    # the layout of ElementTree's indent() + tostring()
    return "\n".join(lines) + "\n"


def write_imagescope_xml(path: str | Path, result: SlideRecord, contents: str = "both") -> Path:
    """Write ``result`` as an Aperio ImageScope annotation file, atomically (``contents``: see
    :func:`imagescope_xml`)."""
    return write_text(path, imagescope_xml(result, contents))


# --------------------------------------------------------------------------- reading


def _parse(path: Path) -> ET.Element:
    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    try:
        root = DET.parse(str(path)).getroot()
    except ET.ParseError as exc:
        raise GlomkitError(f"{path}: not valid XML ({exc})") from None
    except DefusedXmlException as exc:
        raise GlomkitError(f"{path}: refused unsafe XML ({type(exc).__name__})") from None
    except OSError as exc:
        raise GlomkitError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if root.tag != "Annotations":
        raise GlomkitError(
            f"{path}: not an ImageScope annotation file (root <{root.tag}>, expected <Annotations>)"
        )
    return root


def _number(path: Path, where: str, value: str | None, what: str) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise GlomkitError(f"{path}: {where}: {what} is {value!r}, not a number") from None
    if not math.isfinite(v) or abs(v) > MAX_COORD:
        raise GlomkitError(
            f"{path}: {where}: {what} is {str(value)[:20]!r}, not a finite number within ±{MAX_COORD:g}"
        )
    return v


def _layer_name(ann: ET.Element, index: int) -> str:
    name = (ann.get("Name") or "").strip()
    if name:
        return name
    for attr in ann.findall("./Attributes/Attribute"):
        n = (attr.get("Name") or "").strip()
        if n and n.lower() != "description" and n != LAYER_ATTRIBUTE:
            return n
    return f"layer {ann.get('Id') or index}"


def layer_kind(ann: ET.Element) -> str | None:
    """What an ``<Annotation>`` layer written by glomkit holds (``circles`` or ``outlines``), from its
    ``glomkit-layer`` attribute row: in its one ``<Attributes>`` element, or (files written before
    issue 23) in a second one. None for layers that carry no marker."""
    for attr in ann.findall("./Attributes/Attribute"):
        if attr.get("Name") == LAYER_ATTRIBUTE:
            return attr.get("Value") or None
    return None


def read_imagescope_xml(path: str | Path, mpp: float | None = None) -> list[Annotation]:
    """Read every region of an ImageScope file as an :class:`Annotation` in level-0 px.

    Label = the layer's name. Ellipses (``Type="2"``) give their circle; rectangles (1), polygons
    (0) and other shapes with three or more vertices give their minimum enclosing circle; pins (5)
    give a circle of radius 0; arrows (3) and rulers (4) are skipped. A polygon whose
    ``InputRegionId`` names an ellipse of the layer ``"<name>"`` while it sits in layer
    ``"<name> outline"`` (as glomkit writes them) becomes that ellipse's ``polygon``.

    When ``mpp`` is given and the file's ``MicronsPerPixel`` differs from it by more than 1 %,
    coordinates are rescaled from the file's pixel size to ``mpp`` (positions in µm are kept).
    """
    path = Path(path)
    root = _parse(path)
    scale = 1.0
    file_mpp = root.get("MicronsPerPixel")
    if mpp is not None and file_mpp not in (None, ""):
        fm = _number(path, "<Annotations>", file_mpp, "MicronsPerPixel")
        lo, hi = MPP_RANGE
        if fm != 0 and not lo <= fm <= hi:  # 0 is what ImageScope writes when the scale is unknown
            raise GlomkitError(
                f"{path}: <Annotations>: MicronsPerPixel is {file_mpp}, outside the plausible range [{lo:g}, {hi:g}]"
            )
        if fm > 0 and abs(fm / float(mpp) - 1.0) > 0.01:
            scale = fm / float(mpp)

    out: list[Annotation] = []
    ellipses: dict[tuple[str, str], Annotation] = {}  # (layer name, region Id) -> annotation
    outlines: list[tuple[str, str, Annotation]] = []  # (base layer name, input Id, annotation)
    for li, ann in enumerate(root.iter("Annotation"), start=1):
        name = _layer_name(ann, li)
        for region in ann.iter("Region"):
            rid = region.get("Id") or "?"
            where = f"layer {name!r} region {rid}"
            rtype = int(_number(path, where, region.get("Type", "0"), "Type"))
            if rtype in (REGION_ARROW, REGION_RULER):
                continue
            verts = (
                np.array(
                    [
                        (
                            _number(path, where, v.get("X"), "vertex X"),
                            _number(path, where, v.get("Y"), "vertex Y"),
                        )
                        for v in region.iter("Vertex")
                    ],
                    dtype=np.float64,
                ).reshape(-1, 2)
                * scale
            )
            if len(verts) == 0:
                raise GlomkitError(f"{path}: {where} has no vertices")
            if rtype == REGION_ELLIPSE:
                if len(verts) != 2:
                    raise GlomkitError(
                        f"{path}: {where} is an ellipse with {len(verts)} vertices, expected 2"
                    )
                x, y, r = ellipse_circle(*verts[0], *verts[1])
                a = Annotation(name, x, y, r, None, "ellipse")
                ellipses[(name, rid)] = a
            elif rtype == REGION_RECTANGLE:
                x, y, r = enclosing_circle(verts)
                a = Annotation(name, x, y, r, None, "rectangle")
            elif len(verts) == 1 or rtype == REGION_POINT:
                x, y, r = enclosing_circle(verts)
                a = Annotation(name, x, y, r, None, "point")
            else:
                poly = open_ring(verts)
                x, y, r = enclosing_circle(poly)
                a = Annotation(name, x, y, r, poly, "polygon")
                input_id = region.get("InputRegionId") or "0"
                if name.endswith(OUTLINE_SUFFIX) and input_id != "0":
                    outlines.append((name[: -len(OUTLINE_SUFFIX)], input_id, a))
                    continue
            out.append(a)
    for base, input_id, a in outlines:
        target = ellipses.get((base, input_id))
        if target is not None and target.polygon is None:
            target.polygon = a.polygon
        else:  # an outline whose detection is not in the file: keep it as a polygon
            out.append(a)
    return out
