"""A review of one slide's results: the glomeruli as the reviewer corrects them, saved as they go.

The reviewed set starts as the pipeline's detections (``OUT/<stem>/<stem>.geojson``) or, when a
review exists, as the saved review (``OUT/<stem>/review/<stem>_reviewed.geojson``), so reopening
resumes it. Every change is written at once, atomically, to that GeoJSON (QuPath-compatible, with
the reviewer and the time in each feature's ``review`` property) and to an ImageScope XML beside
it. The pipeline's own outputs are only read.

Changes arrive as small operations (``accept``, ``reject``, ``relabel``, ``add``, ``delete``),
checked by :func:`validate_op` before anything changes: they come from a browser.
"""

from __future__ import annotations

import copy
import getpass
import json
import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from glomkit import GlomkitError
from glomkit.core.records import GlomerulusRecord, SlideRecord
from glomkit.core.schemes import FIVE_CLASS, ClassScheme
from glomkit.core.trust import call_of, trust_summary
from glomkit.io.annotations import Annotation
from glomkit.io.outputs import file_name, patch_paths
from glomkit.io.paths import path_under
from glomkit.io.report import SUMMARY
from glomkit.review.provenance import REVIEW_DIR, RUN_RECORD, run_record, run_state

STATUSES = ("unreviewed", "accepted", "relabelled", "rejected", "added")
OPS = ("accept", "reject", "relabel", "add", "delete", "undo")
UNDO_DEPTH = 1000
MAX_LABEL_CHARS = 100
SPARE_COLORS = [(140, 20, 60), (23, 190, 207), (188, 189, 34), (227, 119, 194), (140, 86, 75)]


class ReviewInputError(ValueError):
    """An operation from the browser that is malformed or not allowed; nothing was changed."""

    status_code = 400


class UnknownItemError(ReviewInputError):
    """An operation on a glomerulus id that does not exist (or was deleted meanwhile)."""

    status_code = 404


def review_scheme(model: ClassScheme) -> ClassScheme:
    """The classes a reviewer may choose: the model's, plus the five-class scheme's that it lacks.

    A coarse model (normal / sclerosed / non_glomerular) gets the three GGS subtypes, so a
    pathologist can grade what the model cannot. Glomerular classes come first, then the others.
    """
    have = set(model.names)
    extra = [c for c in FIVE_CLASS.classes if c.name not in have]
    if not extra:
        return model
    used = {tuple(c.color) for c in model.classes}
    spare = [c for c in SPARE_COLORS if c not in used]
    for k, c in enumerate(extra):  # a subtype must not share the colour of a model class
        if tuple(c.color) in used and spare:
            extra[k] = replace(c, color=spare.pop(0))
        used.add(tuple(extra[k].color))
    classes = [c for c in model.classes if c.is_glomerulus] + [c for c in extra if c.is_glomerulus]
    classes += [c for c in model.classes if not c.is_glomerulus] + [c for c in extra if not c.is_glomerulus]
    return ClassScheme(
        name=f"{model.name}+subtypes",
        classes=tuple(classes),
        description=f"{model.name} with the Glo-In-One GGS subtypes added for review",
    )


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _nan(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f if math.isfinite(f) else float("nan")


@dataclass
class ReviewItem:
    """One glomerulus of the reviewed set: its circle, its current class and how it got there."""

    id: int
    x: float  # level-0 px
    y: float
    radius: float
    label: str
    model_label: str = ""  # the pipeline's class; "" for a glomerulus the reviewer added
    score: float = float("nan")  # detection score; NaN when added by hand
    status: str = "unreviewed"
    polygon: np.ndarray | None = None
    area_um2: float = float("nan")
    diameter_um: float = float("nan")
    perimeter_um: float = float("nan")
    probs: dict[str, float] = field(default_factory=dict)
    reviewer: str = ""
    time: str = ""
    patch: str = ""  # patch PNG relative to the slide's output folder
    uncertain: bool = False  # the model's call was near the decision (the browser lists these first)

    def to_json(self) -> dict[str, Any]:
        """What the browser gets: plain JSON, NaN as null, the outline rounded to 0.1 px."""

        def num(v: float, digits: int = 3) -> float | None:
            return round(float(v), digits) if math.isfinite(float(v)) else None

        return {
            "id": self.id,
            "x": num(self.x),
            "y": num(self.y),
            "radius": num(self.radius),
            "label": self.label,
            "model_label": self.model_label,
            "score": num(self.score, 4),
            "status": self.status,
            "area_um2": num(self.area_um2, 1),
            "diameter_um": num(self.diameter_um, 1),
            "polygon": None if self.polygon is None else np.round(self.polygon, 1).tolist(),
            "reviewer": self.reviewer,
            "time": self.time,
            "uncertain": self.uncertain,
        }


def match_label(label: str, scheme: ClassScheme) -> str:
    """The scheme's spelling of ``label`` (exact, else case-insensitive); unknown labels unchanged."""
    if label in scheme.names:
        return label
    low = {n.lower(): n for n in scheme.names}
    return low.get(label.strip().lower(), label)


def items_from_annotations(
    pairs: list[tuple[Annotation, dict[str, Any]]], scheme: ClassScheme, mpp: float
) -> list[ReviewItem]:
    """Review items from read annotations and their GeoJSON properties (``{}`` for XML regions).

    Ids, scores, probabilities and measurements come from glomkit's properties where present;
    otherwise ids are numbered on and an outline's area is measured from the polygon.
    """
    items: list[ReviewItem] = []
    used: set[int] = set()
    pending: list[ReviewItem] = []
    for ann, props in pairs:
        own = props.get("glomkit") if isinstance(props.get("glomkit"), dict) else {}
        meas = props.get("measurements") if isinstance(props.get("measurements"), dict) else {}
        review = props.get("review") if isinstance(props.get("review"), dict) else {}
        label = match_label(ann.label, scheme)
        status = str(review.get("status", "unreviewed"))
        if status not in STATUSES:
            status = "unreviewed"
        area = _nan(meas.get("area_um2"))
        diameter = _nan(meas.get("diameter_um"))
        if not math.isfinite(area) and ann.polygon is not None and len(ann.polygon) >= 3:
            from glomkit.io.shapes import polygon_area

            area = polygon_area(ann.polygon) * mpp * mpp
            diameter = math.sqrt(4.0 * area / math.pi)
        item = ReviewItem(
            id=0,
            x=ann.x,
            y=ann.y,
            radius=ann.radius,
            label=label,
            model_label=match_label(str(review.get("model_label", label)), scheme),
            score=_nan(meas.get("score")),
            status=status,
            polygon=ann.polygon,
            area_um2=area,
            diameter_um=diameter,
            perimeter_um=_nan(meas.get("perimeter_um")),
            probs={k[5:]: _nan(v) for k, v in meas.items() if k.startswith("prob_")},
            reviewer=str(review.get("reviewer", "")),
            time=str(review.get("time", "")),
            uncertain=own.get("uncertain") is True,
        )
        if status == "added":
            item.model_label = ""
        raw_id = own.get("id")
        meta = props.get("metadata") if isinstance(props.get("metadata"), dict) else {}
        text_id = meta.get("glomkit_id")
        if raw_id is None and isinstance(text_id, str) and text_id.isascii() and text_id.isdigit():
            raw_id = int(text_id)  # a file QuPath exported again keeps glomkit's id here
        if isinstance(raw_id, int) and not isinstance(raw_id, bool) and raw_id > 0 and raw_id not in used:
            item.id = raw_id
            used.add(raw_id)
            items.append(item)
        else:
            pending.append(item)
    next_id = max(used, default=0) + 1
    for item in pending:
        item.id = next_id
        next_id += 1
        items.append(item)
    items.sort(key=lambda it: it.id)
    return items


def record_of(item: ReviewItem, scheme: ClassScheme, mpp: float) -> GlomerulusRecord:
    """The pipeline's record of a reviewed glomerulus (what the writers and counts take)."""
    cls = scheme.get(item.label) if item.label in scheme.names else None
    ggs = [c.name for c in scheme.classes if c.is_ggs]
    return GlomerulusRecord(
        id=item.id,
        x=item.x,
        y=item.y,
        radius=item.radius,
        score=item.score,
        label=item.label,
        probs=dict(item.probs),
        ggs_probability=sum(item.probs[n] for n in ggs if n in item.probs) if item.probs else float("nan"),
        # a label outside the scheme is not counted as a glomerulus
        is_glomerulus=bool(cls is not None and cls.is_glomerulus),
        area_um2=item.area_um2,
        diameter_um=item.diameter_um,
        perimeter_um=item.perimeter_um,
        polygon=item.polygon,
        patch=item.patch,
    )


def read_summary(out_dir: Path) -> dict[str, Any]:
    path = out_dir / SUMMARY
    if not path.is_file():
        raise GlomkitError(f"{out_dir}: not a glomkit output folder (no summary.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GlomkitError(f"{path}: unreadable ({exc})") from None
    missing = [k for k in ("stem", "mpp", "width", "height", "scheme") if k not in data]
    if not isinstance(data, dict) or missing:
        raise GlomkitError(f"{path}: not a glomkit summary (missing {', '.join(missing) or 'keys'})")
    return data


def find_slide(summary: dict[str, Any], out_dir: Path, given: str | Path | None = None) -> Path:
    """The slide of an output folder: ``given``, else ``summary.json``'s ``source`` (as written,
    or relative to the output folders)."""
    if given is not None:
        p = Path(given)
        if not p.is_file():
            raise GlomkitError(f"{p}: slide not found")
        return p
    source = Path(str(summary.get("source", "")))
    candidates = [source]
    if not source.is_absolute():
        candidates += [out_dir.parent / source, out_dir / source, out_dir.parent / source.name]
    for c in candidates:
        if str(c) and c.is_file():
            return c
    raise GlomkitError(
        f"{out_dir}: the slide {str(source)!r} named in summary.json is not found; pass --slide"
    )


def geojson_origin(path: Path) -> tuple[float, float] | None:
    """The bounds origin glomkit wrote into a GeoJSON (``properties.glomkit.origin``), if any."""
    if path.suffix.lower() not in (".geojson", ".json") or not path.is_file():
        return None
    from glomkit.io.geojson import read_geojson_features

    for _, props in read_geojson_features(path):
        own = props.get("glomkit")
        o = own.get("origin") if isinstance(own, dict) else None
        if isinstance(o, list) and len(o) == 2 and all(isinstance(v, (int, float)) for v in o):
            return float(o[0]), float(o[1])
    return None


def read_items(path: Path, scheme: ClassScheme, mpp: float) -> list[ReviewItem]:
    """Items from a GeoJSON (with properties) or an ImageScope XML file."""
    from glomkit.io.annotations import read_annotations

    if path.suffix.lower() in (".geojson", ".json"):
        from glomkit.io.geojson import read_geojson_features

        if not path.is_file():
            raise GlomkitError(f"{path}: annotation file not found")
        pairs = read_geojson_features(path)
    else:
        pairs = [(a, {}) for a in read_annotations(path, mpp=mpp)]
    return items_from_annotations(pairs, scheme, mpp)


class ReviewSession:
    """The reviewed set of one output folder, its changes and its files. Thread-safe."""

    def __init__(self, out_dir: str | Path, slide: str | Path | None = None, reviewer: str | None = None):
        self.out_dir = Path(out_dir).resolve()
        if not self.out_dir.is_dir():
            raise GlomkitError(f"{out_dir}: no such output folder")
        self.summary = read_summary(self.out_dir)
        self.stem = str(self.summary["stem"])
        self.mpp = float(self.summary["mpp"])
        self.width, self.height = int(self.summary["width"]), int(self.summary["height"])
        try:
            self.model_scheme = ClassScheme.from_dict(self.summary["scheme"])
        except (KeyError, TypeError, ValueError) as exc:
            raise GlomkitError(f"{self.out_dir / SUMMARY}: bad class scheme ({exc})") from None
        self.scheme = review_scheme(self.model_scheme)
        self.reviewer = (reviewer or _default_reviewer())[:MAX_LABEL_CHARS]
        self.slide_path = find_slide(self.summary, self.out_dir, slide)
        # the stem comes from summary.json: every path is checked to stay in the output folder
        self.review_dir = path_under(self.out_dir, REVIEW_DIR)
        self.geojson_path = path_under(self.review_dir, file_name("geojson", self.stem, reviewed=True))
        self.xml_path = path_under(self.review_dir, file_name("imagescope", self.stem, reviewed=True))
        self.original_path = path_under(self.out_dir, file_name("geojson", self.stem))
        self._lock = threading.RLock()
        self._features: dict[int, dict[str, Any]] = {}  # id -> cached GeoJSON feature
        self.resumed = self.geojson_path.is_file()
        source = self.geojson_path if self.resumed else self.original_path
        if not source.is_file():
            raise GlomkitError(f"{source}: not found (the slide's GeoJSON output)")
        items = read_items(source, self.scheme, self.mpp)
        # GeoJSON geometry is in QuPath's frame (level-0 minus the slide's bounds origin)
        self.origin = geojson_origin(source) or slide_origin(self.slide_path, self.mpp)
        # the run this review started from: recorded at the first save of a new review; a resumed
        # review whose run has changed since keeps its items but not the new run's patches (ids differ)
        self.run_record = None if self.resumed else run_record(self.out_dir, self.stem, self.summary)
        self.run_changed = bool(self.resumed and run_state(self.out_dir, self.stem)["run_changed"])
        patches = {} if self.run_changed else self._patches()
        for it in items:
            it.patch = patches.get(it.id, "") if it.status != "added" else ""
        self.items: dict[int, ReviewItem] = {it.id: it for it in items}
        self._next_id = max(self.items, default=0) + 1
        self._history: list[tuple[int, ReviewItem | None]] = []  # (id, the item before the change)
        self.saved_at = ""

    def _patches(self) -> dict[int, str]:
        return patch_paths(self.out_dir, self.stem)

    # -- reading ---------------------------------------------------------------------------
    def item_list(self) -> list[ReviewItem]:
        with self._lock:
            return sorted(self.items.values(), key=lambda it: it.id)

    def result(self) -> SlideRecord:
        """The reviewed set as a :class:`SlideRecord` in the review scheme (counts, writers)."""
        recs = [record_of(it, self.scheme, self.mpp) for it in self.item_list()]
        return SlideRecord(
            stem=self.stem,
            source=str(self.summary.get("source", self.slide_path)),
            mpp=self.mpp,
            width=self.width,
            height=self.height,
            scheme=self.scheme,
            glomeruli=recs,
            models=self.summary.get("models") or {},
            origin=self.origin,
        )

    def counts(self) -> dict[str, Any]:
        return review_counts(self.item_list(), self.scheme, self.mpp)

    # -- changing --------------------------------------------------------------------------
    def apply(self, op: Any) -> dict[str, Any]:
        """Validate and apply one operation, save, and return what changed plus the new counts."""
        with self._lock:  # validated under the lock: a concurrent delete cannot pull an id away
            op = validate_op(op, self)
            kind = op["op"]
            stamp = now_utc()
            out: dict[str, Any] = {}
            if kind == "undo":
                return self._undo()
            before = copy.deepcopy(self.items.get(op.get("id", -1)))
            if kind == "add":
                item = ReviewItem(
                    id=self._next_id,
                    x=op["x"],
                    y=op["y"],
                    radius=op["radius"],
                    label=op.get("label") or self.default_label(),
                    status="added",
                )
                self._next_id += 1
                self.items[item.id] = item
            else:
                item = self.items[op["id"]]
                if kind == "delete":
                    del self.items[item.id]
                    self._features.pop(item.id, None)
                    out["deleted"] = item.id
                elif kind == "reject":
                    item.label = self.reject_label()
                elif kind == "relabel":
                    item.label = op["label"]
            if kind != "delete":
                item.status = self._status(item, kind)
                item.reviewer, item.time = self.reviewer, stamp
                self._features.pop(item.id, None)
                out["item"] = item.to_json()
            self._history = [*self._history[-(UNDO_DEPTH - 1) :], (item.id, before)]
            self.save()
            out["counts"] = self.counts()
            out["saved"] = self.saved_at
            return out

    def _undo(self) -> dict[str, Any]:
        """Take back the last change of this session (a deleted glomerulus comes back; an added one goes)."""
        if not self._history:
            raise ReviewInputError("nothing to undo")
        gid, before = self._history.pop()
        self._features.pop(gid, None)
        out: dict[str, Any] = {}
        if before is None:
            self.items.pop(gid, None)
            out["deleted"] = gid
        else:
            self.items[gid] = before
            out["item"] = before.to_json()
        self.save()
        out["counts"] = self.counts()
        out["saved"] = self.saved_at
        out["undo_left"] = len(self._history)
        return out

    def _status(self, item: ReviewItem, kind: str) -> str:
        if item.status == "added" or kind == "add":
            return "added"
        if item.label in self.scheme.names and not self.scheme.get(item.label).is_glomerulus:
            return "rejected"
        return "accepted" if item.label == item.model_label else "relabelled"

    def default_label(self) -> str:
        """The class of a glomerulus drawn by hand, until relabelled: the first glomerular class."""
        return next(c.name for c in self.scheme.classes if c.is_glomerulus)

    def reject_label(self) -> str:
        return next(c.name for c in self.scheme.classes if not c.is_glomerulus)

    # -- saving ----------------------------------------------------------------------------
    def geojson(self) -> dict[str, Any]:
        """The reviewed FeatureCollection: glomkit's features plus a ``review`` property each."""
        from glomkit.io.geojson import feature_of

        result = self.result()
        feats = []
        for item, rec in zip(self.item_list(), result.glomeruli, strict=True):
            feat = self._features.get(item.id)
            if feat is None:
                feat = feature_of(rec, result)
                self._features[item.id] = feat
            review = {"status": item.status, "model_label": item.model_label}
            if item.reviewer:
                review.update(reviewer=item.reviewer, time=item.time)
            feats.append({**feat, "properties": {**feat["properties"], "review": review}})
        return {
            "type": "FeatureCollection",
            "glomkit_review": {
                "stem": self.stem,
                "mpp": self.mpp,
                "scheme": self.scheme.to_dict(),
                "model_scheme": self.model_scheme.name,
                "updated": now_utc(),
            },
            "features": feats,
        }

    def save(self) -> None:
        """Write the reviewed GeoJSON (with each item's review status) and the other reviewed
        formats of ``glomkit.io.outputs``, each atomically."""
        from glomkit.io.atomic import write_text
        from glomkit.io.outputs import write_reviewed

        with self._lock:
            text = json.dumps(self.geojson(), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            if self.run_record is not None:  # the first save of a new review
                write_text(
                    path_under(self.review_dir, RUN_RECORD), json.dumps(self.run_record, indent=2) + "\n"
                )
                self.run_record = None
            write_text(self.geojson_path, text + "\n")
            write_reviewed(self.review_dir, self.result(), skip=("geojson",))
            self.saved_at = now_utc()


def review_counts(items: list[ReviewItem], scheme: ClassScheme, mpp: float = 1.0) -> dict[str, Any]:
    """Counts per class, glomeruli, sclerosed and the GGS % of a reviewed set, plus review progress."""
    recs = [record_of(it, scheme, mpp) for it in items]
    result = SlideRecord(stem="", source="", mpp=mpp, width=0, height=0, scheme=scheme, glomeruli=recs)
    ggs = result.ggs_percent()
    status = {s: 0 for s in STATUSES}
    for it in items:
        status[it.status] = status.get(it.status, 0) + 1
    # the interval: a label the pathologist checked is certain (only sampling remains); an
    # unchecked one keeps the model's calibrated P(GGS)
    calls = [
        call_of(rec, scheme, reviewed=it.status != "unreviewed") for it, rec in zip(items, recs, strict=True)
    ]
    trust = trust_summary([c for c in calls if c is not None], len(recs), reviewed=True)
    return {
        "counts": result.counts(),
        "n_detections": len(recs),
        "n_glomeruli": result.n_glomeruli(),
        "n_sclerosed": result.n_sclerosed(),
        "ggs_percent": None if ggs is None else round(ggs, 4),
        "n_reviewed": len(items) - status["unreviewed"],
        "status": status,
        **trust,
        "ggs_interval_kind": "checked labels certain, unchecked ones by calibrated P(GGS); and sampling",
    }


def slide_origin(path: Path, mpp: float) -> tuple[float, float]:
    """Level-0 (x, y) of the slide's bounds (not zero for formats such as MRXS)."""
    from glomkit.slide.reader import Slide

    with Slide(path, mpp=mpp) as slide:
        return float(slide.bounds[0]), float(slide.bounds[1])


def _default_reviewer() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "reviewer"


def _number(op: dict[str, Any], key: str) -> float:
    v = op.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ReviewInputError(f"'{key}' must be a number")
    f = float(v)
    if not math.isfinite(f):
        raise ReviewInputError(f"'{key}' must be a finite number")
    return f


ALLOWED_KEYS = {
    "undo": {"op"},
    "accept": {"op", "id"},
    "reject": {"op", "id"},
    "delete": {"op", "id"},
    "relabel": {"op", "id", "label"},
    "add": {"op", "x", "y", "radius", "label"},
}


def validate_op(op: Any, session: ReviewSession) -> dict[str, Any]:
    """Check an operation from the browser: its shape, types, finite coordinates inside the slide,
    a known glomerulus id, a class of the review scheme. Returns a clean copy."""
    if not isinstance(op, dict):
        raise ReviewInputError("an operation is a JSON object")
    kind = op.get("op")
    if not isinstance(kind, str) or kind not in ALLOWED_KEYS:
        raise ReviewInputError(f"'op' must be one of {', '.join(OPS)}")
    extra = set(op) - ALLOWED_KEYS[kind]
    if extra:
        raise ReviewInputError(f"unexpected field(s) for '{kind}': {', '.join(sorted(map(str, extra)))}")
    clean: dict[str, Any] = {"op": kind}
    if "id" in ALLOWED_KEYS[kind]:
        gid = op.get("id")
        if isinstance(gid, bool) or not isinstance(gid, int):
            raise ReviewInputError("'id' must be an integer")
        if gid not in session.items:
            raise UnknownItemError(f"no glomerulus with id {gid}")
        clean["id"] = gid
    if "label" in op or kind == "relabel":
        label = op.get("label")
        if not isinstance(label, str) or label not in session.scheme.names:
            raise ReviewInputError(
                f"'label' must be a class of the scheme: {', '.join(session.scheme.names)}"
            )
        clean["label"] = label
    if kind == "add":
        x, y, r = _number(op, "x"), _number(op, "y"), _number(op, "radius")
        if not (0 <= x <= session.width and 0 <= y <= session.height):
            raise ReviewInputError("the centre is outside the slide")
        max_r = max(session.width, session.height) / 2
        if not 0 < r <= max_r:
            raise ReviewInputError(f"'radius' must be in (0, {max_r:g}] px")
        clean.update(x=x, y=y, radius=r)
    return clean
