"""QuPath GeoJSON: write a slide's detections as annotations QuPath imports, read annotations back.

One Feature per detection. Its geometry is the segmentation outline when there is one, else the
detection circle as a 64-point polygon; rings are closed. Coordinates are level-0 px in QuPath's
frame: QuPath crops OpenSlide images to their bounds, so the geometry is level-0 minus the bounds
origin (``SlideRecord.origin``; zero for most formats, not for MRXS or SCN). Each Feature has a
stable ``id`` (a UUID derived from the slide and the detection), so that a file re-imported after
editing updates objects instead of duplicating them. Properties follow QuPath 0.4+: ``objectType``,
``name``, ``classification {name, color [r, g, b]}``, ``isLocked``, ``measurements`` (a name ->
number map) and ``metadata`` (a string map, which QuPath keeps and exports again). A ``glomkit``
property keeps the detection circle in OpenSlide's level-0 frame so that reading the file back
gives the circle even when the geometry is the outline; QuPath drops it, but ``metadata`` holds
the same circle, so a file exported again by QuPath reads back the same.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from glomkit import GlomkitError
from glomkit.core.records import GlomerulusRecord, SlideRecord
from glomkit.core.trust import record_uncertain
from glomkit.io.annotation_types import MAX_COORD, Annotation
from glomkit.io.atomic import write_text
from glomkit.io.shapes import circle_polygon, closed_ring, enclosing_circle, open_ring, polygon_area

CIRCLE_POINTS = 64
# uuid5 namespace of glomkit detections: id = uuid5(NS, "<stem>/<detection id>/<x>/<y>/<r>")
FEATURE_NAMESPACE = uuid.UUID("5d3c7a52-3f0e-4c55-9b7e-2f4e8a9c6b10")
UNKNOWN_COLOR = (255, 255, 0)  # a detection whose label is not in the scheme


def _finite(v: float) -> bool:
    return v is not None and math.isfinite(float(v))


def _valid_ring(poly: np.ndarray) -> np.ndarray | None:
    """An open ring QuPath accepts: the outline itself, or the largest part of its repaired shape."""
    from shapely.geometry import MultiPolygon, Polygon

    p = open_ring(poly)
    if len(p) < 3:
        return None
    shape = Polygon(p)
    if shape.is_valid and shape.area > 0:
        return p
    fixed = shape.buffer(0)
    if isinstance(fixed, MultiPolygon):
        fixed = max(fixed.geoms, key=lambda g: g.area)
    if not isinstance(fixed, Polygon) or fixed.is_empty or fixed.area <= 0:
        return None
    return open_ring(np.asarray(fixed.exterior.coords))


def _measurements(g: GlomerulusRecord, result: SlideRecord) -> dict[str, float]:
    m: dict[str, Any] = {"score": float(g.score)}
    for name in result.scheme.names:
        m[f"prob_{name}"] = g.probs.get(name, float("nan"))
    m["ggs_probability"] = g.ggs_probability
    m["radius_um"] = float(g.radius) * float(result.mpp)
    m["area_um2"] = g.area_um2
    m["diameter_um"] = g.diameter_um
    m["perimeter_um"] = g.perimeter_um
    # JSON has no NaN: a measurement that was not made is left out
    return {k: round(float(v), 6) for k, v in m.items() if _finite(v)}


def _ring_list(points: np.ndarray) -> list[list[float]]:
    return np.round(closed_ring(points), 2).tolist()


def feature_id(stem: str, g: GlomerulusRecord) -> str:
    """A UUID that stays the same when the same detection of the same slide is written again."""
    key = f"{stem}/{int(g.id)}/{float(g.x):.1f}/{float(g.y):.1f}/{float(g.radius):.1f}"
    return str(uuid.uuid5(FEATURE_NAMESPACE, key))


def feature_of(g: GlomerulusRecord, result: SlideRecord) -> dict[str, Any]:
    """The GeoJSON Feature of one detection, in QuPath's frame (level-0 minus ``result.origin``)."""
    scheme = result.scheme
    color = scheme.get(g.label).color if g.label in scheme.names else UNKNOWN_COLOR
    ring = _valid_ring(g.polygon) if g.polygon is not None else None
    geometry = "outline" if ring is not None else "circle"
    if ring is None:
        ring = circle_polygon(g.x, g.y, g.radius, CIRCLE_POINTS)
    origin = np.asarray(result.origin, dtype=np.float64)
    ring = np.asarray(ring, dtype=np.float64) - origin
    own = {
        "id": int(g.id),
        "x": round(float(g.x), 3),
        "y": round(float(g.y), 3),
        "radius": round(float(g.radius), 3),
        "geometry": geometry,
        "origin": [round(float(v), 3) for v in origin],
    }
    if record_uncertain(g, result):  # near the decision: the review shows these first
        own["uncertain"] = True
    props: dict[str, Any] = {
        "objectType": "annotation",
        "name": f"{g.label} {g.id}" if g.label else str(g.id),
    }
    if g.label:  # an unlabelled detection stays unclassified in QuPath
        props["classification"] = {"name": g.label, "color": [int(c) for c in color]}
    return {
        "type": "Feature",
        "id": feature_id(result.stem, g),
        "geometry": {"type": "Polygon", "coordinates": [_ring_list(ring)]},
        "properties": {
            **props,
            "isLocked": False,
            "measurements": _measurements(g, result),
            "metadata": {f"glomkit_{k}": _meta_text(v) for k, v in own.items()},
            "glomkit": own,
        },
    }


def _meta_text(v: Any) -> str:
    """QuPath's metadata values are strings."""
    return " ".join(str(x) for x in v) if isinstance(v, list) else str(v)


def _own_circle(props: dict[str, Any]) -> dict[str, Any] | None:
    """glomkit's circle record of a feature: ``properties.glomkit``, else (a file exported again
    by QuPath, which drops unknown properties) ``properties.metadata.glomkit_*``."""
    own = props.get("glomkit")
    if isinstance(own, dict) and all(k in own for k in ("x", "y", "radius")):
        return own
    meta = props.get("metadata")
    if isinstance(meta, dict) and all(f"glomkit_{k}" in meta for k in ("x", "y", "radius")):
        out: dict[str, Any] = {k: meta[f"glomkit_{k}"] for k in ("x", "y", "radius")}
        out["geometry"] = meta.get("glomkit_geometry")
        origin = meta.get("glomkit_origin")
        if isinstance(origin, str):
            out["origin"] = origin.split()
        return out
    return None


def geojson_of(result: SlideRecord) -> dict[str, Any]:
    """The FeatureCollection of a slide's detections."""
    return {"type": "FeatureCollection", "features": [feature_of(g, result) for g in result.glomeruli]}


def write_geojson(path: str | Path, result: SlideRecord) -> Path:
    """Write ``result`` as a QuPath-importable GeoJSON FeatureCollection, atomically."""
    text = json.dumps(geojson_of(result), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return write_text(path, text + "\n")


# --------------------------------------------------------------------------- reading


def _points(path: Path, where: str, coords: Any) -> np.ndarray:
    try:
        p = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise GlomkitError(f"{path}: {where}: coordinates are not numbers (or out of range)") from None
    if p.ndim != 2 or p.shape[1] < 2 or len(p) == 0:
        raise GlomkitError(f"{path}: {where}: coordinates are not a list of [x, y] points")
    if not (np.isfinite(p[:, :2]).all() and (np.abs(p[:, :2]) <= MAX_COORD).all()):
        raise GlomkitError(f"{path}: {where}: coordinates are not finite numbers within ±{MAX_COORD:g} px")
    return p[:, :2]


def _circle_number(path: Path, where: str, own: dict[str, Any], key: str) -> float:
    """``properties.glomkit[key]``: a finite, non-negative number of level-0 px."""
    v = own[key]
    try:
        f = float(v) if not isinstance(v, bool) else float("nan")
    except (TypeError, ValueError, OverflowError):
        raise GlomkitError(
            f"{path}: {where}: properties.glomkit.{key} is {str(v)[:20]!r}, not a number"
        ) from None
    if not (math.isfinite(f) and 0.0 <= f <= MAX_COORD):
        raise GlomkitError(
            f"{path}: {where}: properties.glomkit.{key} is {str(v)[:20]}, expected a finite number in [0, {MAX_COORD:g}]"
        )
    return f


def _label(props: dict[str, Any]) -> str:
    cls = props.get("classification")
    if isinstance(cls, dict) and cls.get("name"):
        return str(cls["name"])
    if isinstance(cls, str) and cls:
        return cls
    if "glomkit" in props or _own_circle(props) is not None:  # glomkit names features "<class> <id>"
        return ""
    return str(props.get("name") or "")


def _features(path: Path, data: Any) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        if data.get("type") == "FeatureCollection":
            feats = data.get("features")
            if not isinstance(feats, list):
                raise GlomkitError(f"{path}: FeatureCollection without a 'features' list")
            return feats
        if data.get("type") == "Feature":
            return [data]
    raise GlomkitError(f"{path}: not GeoJSON (expected a FeatureCollection, a Feature or a list of Features)")


def _annotations_of(path: Path, i: int, feat: Any) -> list[Annotation]:
    where = f"feature {i}"
    if not isinstance(feat, dict) or feat.get("type", "Feature") != "Feature":
        raise GlomkitError(f"{path}: {where} is not a GeoJSON Feature")
    props = feat.get("properties") or {}
    if not isinstance(props, dict):
        raise GlomkitError(f"{path}: {where}: 'properties' is not an object")
    geom = feat.get("geometry")
    if geom is None:
        return []
    if not isinstance(geom, dict) or "type" not in geom:
        raise GlomkitError(f"{path}: {where}: 'geometry' is not a GeoJSON geometry")
    label = _label(props)
    gtype, coords = geom["type"], geom.get("coordinates")
    if gtype in ("Point", "MultiPoint"):
        pts = _points(path, where, [coords] if gtype == "Point" else coords)
        return [Annotation(label, float(x), float(y), 0.0, None, "point") for x, y in pts]
    if gtype == "Polygon":
        if not isinstance(coords, list) or not coords:
            raise GlomkitError(f"{path}: {where}: a Polygon without rings")
        parts = [open_ring(_points(path, where, coords[0]))]
    elif gtype == "MultiPolygon":
        if not isinstance(coords, list) or not coords or not all(isinstance(c, list) and c for c in coords):
            raise GlomkitError(f"{path}: {where}: a MultiPolygon without rings")
        parts = [open_ring(_points(path, where, c[0])) for c in coords]
    else:  # lines and collections are not areas
        return []
    own = _own_circle(props)
    if own is not None and "origin" in own:  # written by glomkit in QuPath's frame
        o = own["origin"]
        if not (isinstance(o, list) and len(o) == 2):
            raise GlomkitError(f"{path}: {where}: glomkit origin is not [x, y]")
        shift = np.array([_circle_number(path, where, {"origin": v}, "origin") for v in o])
        parts = [p + shift for p in parts]
    polygon = max(parts, key=polygon_area)
    x, y, r = enclosing_circle(np.concatenate(parts))
    kind = "polygon"
    if own is not None:
        x, y, r = (_circle_number(path, where, own, k) for k in ("x", "y", "radius"))
        kind = "circle"
        if own.get("geometry") == "circle":
            polygon = None
    return [Annotation(label, x, y, r, polygon, kind)]


def read_geojson(path: str | Path) -> list[Annotation]:
    """Read the area features of a GeoJSON file (QuPath export or glomkit output) as annotations.

    Label = ``properties.classification.name`` (else ``properties.name``). Polygons give their
    minimum enclosing circle and keep their outline (the largest part of a MultiPolygon); points
    give radius 0; lines are skipped. Features written by glomkit give back their detection circle.
    """
    return [a for a, _ in read_geojson_features(path)]


def read_geojson_features(path: str | Path) -> list[tuple[Annotation, dict[str, Any]]]:
    """Like :func:`read_geojson`, each annotation with the ``properties`` of its feature."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GlomkitError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise GlomkitError(f"{path}: not a UTF-8 text file") from None
    except json.JSONDecodeError as exc:
        raise GlomkitError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise GlomkitError(f"{path}: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise GlomkitError(f"{path}: not valid JSON ({str(exc).splitlines()[0][:80]})") from None
    out: list[tuple[Annotation, dict[str, Any]]] = []
    for i, feat in enumerate(_features(path, data)):
        props = feat.get("properties") if isinstance(feat, dict) else None
        out.extend((a, props or {}) for a in _annotations_of(path, i, feat))
    return out
