"""summary.json and report.html for one slide; the cohort table and report for many.

``write_summary`` gathers the figures of a slide (counts per class, global glomerulosclerosis %,
timings, models, software versions); ``write_report_html`` turns them into one self-contained page
(inline CSS, the thumbnail with the detections as an embedded PNG, a patch gallery that links the
PNGs beside the report). Class names and colours come from the result's scheme.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from glomkit.core.records import GlomerulusRecord, SlideRecord, overlay_of
from glomkit.core.schemes import ClassScheme
from glomkit.io.atomic import atomic_path, encode_jpeg, write_text

# the file names of a slide's output folder (and of its review/ folder) that every writer and
# reader takes from here: summary.json marks a folder complete (written last, by rename)
SUMMARY = "summary.json"
REPORT = "report.html"
GALLERY_PER_CLASS = 24
THUMBNAIL_MAX_PX = 1200
NO_THUMBNAIL_PX = 800
FALLBACK_COLOR = (160, 160, 160)
UNKNOWN_COLOR = (255, 255, 0)  # a detection whose label is not in the scheme


# --------------------------------------------------------------------------- summary.json


def software_versions() -> dict[str, str | None]:
    """Versions of glomkit and of the libraries that shape its results."""
    from importlib import metadata

    import glomkit

    def dist(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    versions: dict[str, str | None] = {
        "glomkit": glomkit.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": dist("onnxruntime") or dist("onnxruntime-gpu"),
        "opencv": dist("opencv-python-headless") or dist("opencv-python"),
        "openslide_python": dist("openslide-python"),
        "openslide": None,
    }
    try:
        import openslide

        versions["openslide"] = str(openslide.__library_version__)
    except Exception:  # the C library may be absent; the version is then unknown
        pass
    return versions


def _jsonable(v: Any) -> Any:
    """Plain JSON values: NaN and infinities become null, numpy scalars and arrays Python ones."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, Path):
        return str(v)
    return str(v)


def _mean_area(result: SlideRecord) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in result.scheme.names:
        a = [g.area_um2 for g in result.glomeruli if g.label == name and math.isfinite(g.area_um2)]
        out[name] = float(np.mean(a)) if a else None
    return out


def summary_of(result: SlideRecord, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary of one slide as a JSON-ready dict (``extra`` keys are added last and win)."""
    ggs = result.ggs_percent()
    summary: dict[str, Any] = {
        "stem": result.stem,
        "source": result.source,
        "mpp": float(result.mpp),
        "width": int(result.width),
        "height": int(result.height),
        "scheme": result.scheme.to_dict(),
        "counts": result.counts(),
        "n_detections": len(result.glomeruli),
        "n_glomeruli": result.n_glomeruli(),
        "n_sclerosed": result.n_sclerosed(),
        "ggs_percent": None if ggs is None else round(ggs, 4),
        "mean_area_um2": _mean_area(result),
        "timings": {k: round(float(v), 4) for k, v in result.timings.items()},
        "models": result.models,
        "versions": software_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    summary.update(result.extra or {})
    summary.update(extra or {})
    if "ggs_interval" not in summary:  # a recount gives its own (checked labels are certain)
        summary.update(trust_of(result, summary))
    return _jsonable(summary)


def trust_of(result: SlideRecord, summary: dict[str, Any]) -> dict[str, Any]:
    """The trust keys (``glomkit.core.trust.trust_summary``) of a slide whose summary says its
    stain, GGS threshold and whether a pathologist reviewed it."""
    from glomkit.core.trust import calls_of, trust_summary

    reviewed = bool(summary.get("reviewed"))
    return trust_summary(
        calls_of(result, reviewed=reviewed),
        len(result.glomeruli),
        stain=summary.get("stain"),
        ggs_threshold=float(summary.get("ggs_threshold") or 0.5),
        reviewed=reviewed,
    )


def write_summary(path: str | Path, result: SlideRecord, extra: dict | None = None) -> dict:
    """Write ``summary.json`` (see docs/OUTPUTS.md for every key), atomically; return the dict."""
    summary = summary_of(result, extra)
    write_text(path, json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return summary


# --------------------------------------------------------------------------- pictures


def _color_of(scheme: ClassScheme, label: str) -> tuple[int, int, int]:
    return tuple(scheme.get(label).color) if label in scheme.names else UNKNOWN_COLOR  # type: ignore[return-value]


def _as_rgb(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def render_thumbnail_overlay(result: SlideRecord, max_px: int = THUMBNAIL_MAX_PX) -> np.ndarray:
    """The slide thumbnail (RGB uint8) with each detection drawn as a circle in its class colour.

    Without a thumbnail the circles are drawn on a light grey canvas of the slide's shape.
    """
    import cv2

    if result.thumbnail is not None:
        img = _as_rgb(result.thumbnail).copy()
        ds = float(result.thumbnail_downsample) or 1.0
    else:
        s = NO_THUMBNAIL_PX / max(result.width, result.height, 1)
        img = np.full((max(1, round(result.height * s)), max(1, round(result.width * s)), 3), 240, np.uint8)
        ds = 1.0 / s
    long_side = max(img.shape[:2])
    if long_side > max_px:
        f = max_px / long_side
        size = (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        ds /= f
    thickness = max(2, round(max(img.shape[:2]) / 500))
    shift = 4  # sub-pixel centres
    ox, oy = result.origin  # the thumbnail starts at the bounds origin
    for g in result.glomeruli:
        centre = (round((g.x - ox) / ds * 16), round((g.y - oy) / ds * 16))
        radius = max(round(2.5 * 16), round(g.radius / ds * 16))
        cv2.circle(img, centre, radius, _color_of(result.scheme, g.label), thickness, cv2.LINE_AA, shift)
    return img


def _jpeg_data_uri(img: np.ndarray, quality: int = 90) -> str:
    """The image as a JPEG data URI (the report's thumbnail: a PNG of it cost 5-10x the CPU)."""
    jpeg = encode_jpeg(_as_rgb(img), quality)
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


# --------------------------------------------------------------------------- report.html

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
color:#222;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:1.5rem}
h1{font-size:1.5rem;margin:.2rem 0 1rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;
padding-bottom:.3rem}h3{font-size:1rem;margin:1.2rem 0 .5rem}
.headline{background:#fff;border:1px solid #ddd;border-left:6px solid #d62728;padding:1rem 1.2rem;
font-size:1.25rem;border-radius:4px}
.headline b{font-size:1.6rem}
.muted{color:#666;font-size:.9rem}
table{border-collapse:collapse;background:#fff;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.swatch{display:inline-block;width:.9rem;height:.9rem;border-radius:50%;vertical-align:middle;
margin-right:.4rem;border:1px solid rgba(0,0,0,.25)}
.thumb img{max-width:100%;height:auto;border:1px solid #ccc;background:#fff}
.legend span{margin-right:1rem;white-space:nowrap}
.gallery{display:flex;flex-wrap:wrap;gap:.5rem}
.gallery figure{margin:0;background:#fff;border:3px solid #ccc;border-radius:3px;width:150px}
.gallery img{display:block;width:144px;height:144px;margin:2px;object-fit:cover}
.gallery figcaption{font-size:.75rem;padding:0 .3rem .2rem;color:#444}
.status-failed{color:#b00020;font-weight:600}
code{font-size:.85rem}
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _url(relative_path: str) -> str:
    """A relative file path as an href/src value: percent-encoded (a '#', '?' or '%' in a file name
    would otherwise cut the link), then HTML-escaped."""
    from urllib.parse import quote

    return _e(quote(Path(relative_path).as_posix(), safe="/"))


def _rgb_css(color: tuple[int, int, int]) -> str:
    r, g, b = (int(c) for c in color)
    return f"rgb({r},{g},{b})"


def _swatch(color: tuple[int, int, int]) -> str:
    return f'<span class="swatch" style="background:{_rgb_css(color)}"></span>'


def _num(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else _e(v)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _headline(summary: dict[str, Any]) -> str:
    from glomkit.core.trust import format_ggs
    from glomkit.core.wording import count_of

    n = summary.get("n_glomeruli") or 0
    ggs = summary.get("ggs_percent")
    if n == 0 or ggs is None:
        head = '<p class="headline" id="ggs">0 glomeruli found: no global glomerulosclerosis percentage.</p>'
    elif summary.get("ggs_reportable") is False:
        head = (
            f'<p class="headline" id="ggs">No global glomerulosclerosis percentage: no kidney cortex '
            f"recognised ({count_of(n, 'detection')} kept as glomeruli).</p>"
        )
    else:
        head = (
            f'<p class="headline" id="ggs">Global glomerulosclerosis: <b>{_e(format_ggs(summary))}</b> '
            f"({summary.get('n_sclerosed', 0)} globally sclerosed of {count_of(n, 'glomerulus')})</p>"
        )
    flags = summary.get("flag_text") or []
    items = "".join(f"<li>{_e(t)}</li>" for t in flags)
    stain = summary.get("stain")
    stain_line = (
        f'<p class="muted" id="stain">Stain recognised: <b>{_e(stain)}</b>'
        + (f" ({_e(summary.get('stain_reason'))})" if summary.get("stain_reason") else "")
        + "</p>"
        if stain
        else ""
    )
    return head + (f'<ul class="flags" id="flags">{items}</ul>' if items else "") + stain_line


def _review_note(summary: dict[str, Any]) -> str:
    """The reviewed mark of a recounted report (``glomkit recount``); empty for the pipeline's."""
    if not summary.get("reviewed"):
        return ""
    r = summary.get("review") or {}
    model = r.get("model") or {}
    who = ", ".join(r.get("reviewers") or []) or "unknown reviewer"
    was = model.get("ggs_percent")
    was_txt = (
        f"{was:.1f} % ({model.get('n_sclerosed')} of {model.get('n_glomeruli')})" if was is not None else "–"
    )
    return (
        '<p class="headline" id="reviewed" style="border-left-color:#0550ae">Reviewed: counts from '
        f"<code>{_e(r.get('annotations', ''))}</code>; {_num(r.get('n_reviewed', 0))} of "
        f"{_num(summary.get('n_detections', 0))} detections reviewed by {_e(who)}"
        f"{', last change ' + _e(r['last_change']) if r.get('last_change') else ''}. "
        f"The model alone said {_e(was_txt)}.</p>"
    )


def _counts_table(result: SlideRecord, summary: dict[str, Any]) -> str:
    counts = summary.get("counts") or result.counts()
    areas = summary.get("mean_area_um2") or {}
    rows = []
    labels = list(result.scheme.names) + [k for k in counts if k not in result.scheme.names]
    for name in labels:
        cls = result.scheme.get(name) if name in result.scheme.names else None
        kind = "—"
        if cls is not None:
            kind = (
                "globally sclerosed"
                if cls.is_ggs
                else ("glomerulus" if cls.is_glomerulus else "not a glomerulus")
            )
        rows.append(
            f"<tr><td>{_swatch(_color_of(result.scheme, name))}{_e(name or '(unlabelled)')}</td>"
            f'<td>{_e(kind)}</td><td class="num">{_num(int(counts.get(name, 0)))}</td>'
            f'<td class="num">{_num(areas.get(name))}</td></tr>'
        )
    total = (
        f'<tr><th colspan="2">all detections</th><th class="num">{_num(summary.get("n_detections", 0))}</th>'
        "<th></th></tr>"
        f'<tr><th colspan="2">glomeruli (non-glomerular excluded)</th>'
        f'<th class="num">{_num(summary.get("n_glomeruli", 0))}</th><th></th></tr>'
    )
    return (
        '<table id="counts"><thead><tr><th>class</th><th>kind</th><th class="num">count</th>'
        '<th class="num">mean area µm²</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody><tfoot>{total}</tfoot></table>"
    )


def _gallery_sample(records: list[GlomerulusRecord], label: str, k: int) -> list[GlomerulusRecord]:
    """Up to ``k`` records evenly spread over the ranking by class probability (confident to doubtful)."""
    ranked = sorted(records, key=lambda g: (-g.probs.get(label, g.score), g.id))
    if len(ranked) <= k:
        return ranked
    idx = sorted({round(float(v)) for v in np.linspace(0, len(ranked) - 1, k)})  # (np.unique loads numpy.ma)
    return [ranked[i] for i in idx]


def _gallery(result: SlideRecord, report_dir: Path, per_class: int) -> str:
    parts = []
    labels = list(result.scheme.names) + sorted(
        {g.label for g in result.glomeruli} - set(result.scheme.names)
    )
    any_patch = False
    for name in labels:
        recs = [g for g in result.glomeruli if g.label == name and g.patch]
        if not recs:
            continue
        any_patch = True
        color = _rgb_css(_color_of(result.scheme, name))
        shown = _gallery_sample(recs, name, per_class)
        figs = []
        for g in shown:
            src = Path(g.patch).as_posix()
            img = f'<img src="{_url(src)}" alt="{_e(name)} {g.id}" loading="lazy">'
            overlay = overlay_of(src)
            if overlay and (report_dir / overlay).is_file():
                img = f'<a href="{_url(overlay)}">{img}</a>'
            p = g.probs.get(name)
            cap = f"#{g.id} · score {g.score:.2f}" + (
                f" · p {p:.2f}" if p is not None and math.isfinite(p) else ""
            )
            figs.append(
                f'<figure style="border-color:{color}">{img}<figcaption>{_e(cap)}</figcaption></figure>'
            )
        parts.append(
            f"<h3>{_swatch(_color_of(result.scheme, name))}{_e(name)} "
            f'<span class="muted">({len(shown)} of {len(recs)} shown)</span></h3>'
            f'<div class="gallery">{"".join(figs)}</div>'
        )
    if not any_patch:
        return '<p class="muted">No patch images were written for this slide.</p>'
    note = (
        f'<p class="muted">At most {per_class} per class, spread from the most to the least confident; '
        "click a patch for its segmentation overlay.</p>"
    )
    return note + "".join(parts)


def size_plot_svg(result: SlideRecord, width: int = 520, height: int = 180, bins: int = 16) -> str:
    """A small SVG histogram of the glomeruli's equivalent diameter (µm), one colour per class
    (stacked); empty when no glomerulus has a measured diameter."""
    rows = [
        (g.label, g.diameter_um)
        for g in result.glomeruli
        if g.is_glomerulus and math.isfinite(g.diameter_um) and g.diameter_um > 0
    ]
    if not rows:
        return ""
    d = np.array([r[1] for r in rows])
    lo, hi = float(np.floor(d.min() / 10) * 10), float(np.ceil(d.max() / 10) * 10)
    hi = max(hi, lo + 10)
    edges = np.linspace(lo, hi, bins + 1)
    labels = [c.name for c in result.scheme.classes if any(r[0] == c.name for r in rows)]
    labels += sorted({r[0] for r in rows} - set(labels))
    hist = {k: np.histogram([r[1] for r in rows if r[0] == k], edges)[0] for k in labels}
    top = max(1, int(sum(hist.values()).max()))
    ml, mb, mt = 34, 30, 8
    pw, ph = width - ml - 8, height - mb - mt
    bw = pw / bins
    parts = [
        f'<svg id="sizes" width="{width}" height="{height}" '
        f'role="img" aria-label="glomerular diameter by class">',
        f'<line x1="{ml}" y1="{mt + ph}" x2="{ml + pw}" y2="{mt + ph}" stroke="#555"/>',
        f'<text x="{ml - 4}" y="{mt + 8}" font-size="10" text-anchor="end">{top}</text>',
        f'<text x="{ml - 4}" y="{mt + ph}" font-size="10" text-anchor="end">0</text>',
    ]
    base = np.zeros(bins)
    for k in labels:
        color = _rgb_css(_color_of(result.scheme, k))
        for i, c in enumerate(hist[k]):
            if c:
                y0 = mt + ph - (base[i] + c) / top * ph
                parts.append(
                    f'<rect x="{ml + i * bw + 1:.1f}" y="{y0:.1f}" width="{bw - 2:.1f}" '
                    f'height="{c / top * ph:.1f}" fill="{color}"><title>{_e(k)}: {int(c)}</title></rect>'
                )
        base += hist[k]
    for i in range(0, bins + 1, 4):
        x = ml + i * bw
        parts.append(
            f'<text x="{x:.1f}" y="{mt + ph + 14}" font-size="10" text-anchor="middle">{edges[i]:.0f}</text>'
        )
    parts.append(
        f'<text x="{ml + pw / 2:.1f}" y="{height - 2}" font-size="11" text-anchor="middle">'
        "equivalent diameter (µm)</text></svg>"
    )
    return "".join(parts)


def _kv_table(items: list[tuple[str, str]], table_id: str) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f'<table id="{table_id}">{rows}</table>'


def _timings_table(timings: dict[str, Any]) -> str:
    if not timings:
        return '<p class="muted">No timings recorded.</p>'
    total = timings.get("total") or sum(float(v) for k, v in timings.items() if k != "total") or None
    rows = []
    for k, v in timings.items():
        share = f"{100.0 * float(v) / total:.0f} %" if total and k != "total" else ""
        rows.append(
            f'<tr><td>{_e(k)}</td><td class="num">{float(v):.2f}</td><td class="num">{share}</td></tr>'
        )
    return (
        '<table id="timings"><thead><tr><th>stage</th><th class="num">seconds</th>'
        f'<th class="num">share</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _models_table(models: dict[str, Any]) -> str:
    if not models:
        return '<p class="muted">No model information recorded.</p>'
    rows = []
    for task, info in models.items():
        if isinstance(info, dict):
            desc = "<br>".join(
                f"{_e(k)}: <code>{_e(str(v)[:16] + '…' if k == 'sha256' and len(str(v)) > 16 else v)}</code>"
                for k, v in info.items()
                if not isinstance(v, (dict, list))
            )
        else:
            desc = f"<code>{_e(info)}</code>"
        rows.append(f"<tr><th>{_e(task)}</th><td>{desc}</td></tr>")
    return f'<table id="models">{"".join(rows)}</table>'


def report_html(result: SlideRecord, summary: dict[str, Any], report_dir: Path | None = None) -> str:
    """The HTML text of a slide's report; patch paths are relative to ``report_dir``."""
    report_dir = Path(report_dir) if report_dir is not None else Path(".")
    scheme = result.scheme
    mpp = float(summary.get("mpp", result.mpp))
    w, h = int(summary.get("width", result.width)), int(summary.get("height", result.height))
    legend = " ".join(f"<span>{_swatch(c.color)}{_e(c.name)}</span>" for c in scheme.classes)
    thumb = (
        f'<div class="thumb"><img src="{_jpeg_data_uri(render_thumbnail_overlay(result))}" '
        f'alt="slide thumbnail with the detections"></div><p class="legend">{legend}</p>'
    )
    slide_items = [
        ("source", f"<code>{_e(summary.get('source', result.source))}</code>"),
        (
            "input mpp (level 0)",
            f"{mpp:.4f} µm/px" + (f" ({_e(summary['mpp_source'])})" if "mpp_source" in summary else ""),
        ),
        ("size", f"{w:,} × {h:,} px = {w * mpp / 1000:.2f} × {h * mpp / 1000:.2f} mm"),
        ("class scheme", _e(scheme.name)),
    ]
    versions = summary.get("versions") or {}
    version_items = [(k, _e(v if v is not None else "not installed")) for k, v in versions.items()]
    body = "\n".join(
        [
            f"<h1>glomkit report — {_e(result.stem)}{' (reviewed)' if summary.get('reviewed') else ''}</h1>",
            _headline(summary),
            _review_note(summary),
            '<p class="muted">Global glomerulosclerosis % = globally sclerosed glomeruli / all glomeruli × 100; '
            "non-glomerular detections are not counted.</p>",
            "<h2>Counts</h2>",
            _counts_table(result, summary),
            "<h2>Glomerular size</h2>",
            size_plot_svg(result) or '<p class="muted">No measured outline.</p>',
            "<h2>Slide</h2>",
            thumb,
            _kv_table(slide_items, "slide"),
            "<h2>Gallery</h2>",
            _gallery(result, report_dir, GALLERY_PER_CLASS),
            "<h2>Timings</h2>",
            _timings_table(summary.get("timings") or {}),
            "<h2>Models</h2>",
            _models_table(summary.get("models") or {}),
            "<h2>Software</h2>",
            _kv_table(version_items, "versions"),
            f'<p class="muted">Written by glomkit {_e(versions.get("glomkit", ""))} on '
            f"{_e(summary.get('created', time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())))}.</p>",
        ]
    )
    return _page(f"glomkit — {result.stem}", body)


def write_report_html(path: str | Path, result: SlideRecord, summary: dict) -> Path:
    """Write the self-contained ``report.html`` of one slide, atomically."""
    path = Path(path)
    return write_text(path, report_html(result, summary, path.parent))


# --------------------------------------------------------------------------- cohorts

COHORT_FIXED = [
    "stem",
    "source",
    "status",
    "error",
    "n_glomeruli",
    "n_sclerosed",
    "ggs_percent",
    "ggs_ci_low",  # the 95 % interval of the GGS % (glomkit.core.trust)
    "ggs_ci_high",
    "stain",
    "flags",  # quality flags, ';'-separated (docs/OUTPUTS.md)
    "reviewed",  # "yes" (or "yes, on an earlier run") for a pathologist's figures (glomkit recount)
    "seconds",
    "worker",
]


def _cohort_counts(row: dict[str, Any]) -> dict[str, int]:
    counts = dict(row.get("counts") or {})
    for k, v in row.items():
        if k.startswith("count_") and k[6:] not in counts and v not in (None, ""):
            counts[k[6:]] = int(v)
    return counts


def _cohort_classes(rows: list[dict[str, Any]]) -> list[str]:
    classes: list[str] = []
    for r in rows:
        classes += [c for c in _cohort_counts(r) if c not in classes]
    return classes


def write_cohort_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """One line per slide: the fixed columns, ``count_<class>`` per class, ``time_<stage>_s`` per stage.

    A slide without figures (failed) has empty count cells; a class a slide lacks counts 0.
    """
    classes = _cohort_classes(rows)
    stages: list[str] = []
    for r in rows:
        stages += [s for s in r.get("timings") or {} if s not in stages]
    header = COHORT_FIXED + [f"count_{c}" for c in classes] + [f"time_{s}_s" for s in stages]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            counts, timings = _cohort_counts(r), r.get("timings") or {}
            has_figures = r.get("n_glomeruli") is not None
            line = ["" if r.get(k) is None else r.get(k) for k in COHORT_FIXED]
            line += [counts.get(c, 0) if has_figures else "" for c in classes]
            line += ["" if timings.get(s) is None else round(float(timings[s]), 3) for s in stages]
            w.writerow(line)
    return Path(path)


def _known_color(name: str, scheme: ClassScheme | None) -> tuple[int, int, int]:
    from glomkit.core.schemes import SCHEMES

    for s in ([scheme] if scheme is not None else []) + list(SCHEMES.values()):
        if name in s.names:
            return tuple(s.get(name).color)  # type: ignore[return-value]
    return FALLBACK_COLOR


def _n_sclerosed(row: dict[str, Any]) -> int | None:
    if row.get("n_sclerosed") is not None:
        return int(row["n_sclerosed"])
    n, ggs = row.get("n_glomeruli"), row.get("ggs_percent")
    if n is None:
        return None
    return 0 if not n or ggs is None else round(float(ggs) * int(n) / 100.0)


def _ci_cell(row: dict[str, Any]) -> str:
    """ " (lo-hi)": a cohort row's 95 % GGS interval, or nothing when it has none."""
    lo, hi = row.get("ggs_ci_low"), row.get("ggs_ci_high")
    if lo in (None, "") or hi in (None, "") or row.get("ggs_percent") in (None, ""):
        return ""
    return f' <span class="muted">({float(lo):.0f}-{float(hi):.0f})</span>'


def write_cohort_report(
    path: str | Path, rows: list[dict[str, Any]], scheme: ClassScheme | None = None
) -> Path:
    """A one-page HTML summary of many slides: one row per slide, pooled totals, links to each report.

    Colours come from ``scheme`` when given, else from the known schemes that hold the class names.
    """
    classes = _cohort_classes(rows)
    head = (
        "<tr><th>slide</th><th>status</th>"
        + '<th class="num">glomeruli</th>'
        + "".join(f'<th class="num">{_swatch(_known_color(c, scheme))}{_e(c)}</th>' for c in classes)
        + '<th class="num">GGS % (95 % interval)</th><th>flags</th><th class="num">seconds</th><th>error</th></tr>'
    )
    body_rows = []
    tot_glom = tot_scl = 0
    tot_counts = dict.fromkeys(classes, 0)
    n_ok = n_failed = 0
    for r in rows:
        stem, status = str(r.get("stem", "")), str(r.get("status", ""))
        has = r.get("n_glomeruli") is not None
        n_failed += status == "failed"
        n_ok += status != "failed"
        counts = _cohort_counts(r)
        if has:
            tot_glom += int(r["n_glomeruli"])
            tot_scl += _n_sclerosed(r) or 0
            for c in classes:
                tot_counts[c] += int(counts.get(c, 0))
        name = _e(stem)
        reviewed = str(r.get("reviewed") or "")
        if has and status != "failed":
            report = stem + ("/review/report.html" if reviewed else "/report.html")
            name = f'<a href="{_url(report)}">{name}</a>'
        if reviewed:
            note = "reviewed" if reviewed == "yes" else "reviewed on an earlier run"
            name += f' <span class="muted">({note})</span>'
        ggs = r.get("ggs_percent")
        cells = [
            f"<td>{name}</td>",
            f'<td class="status-{_e(status)}">{_e(status)}</td>',
            f'<td class="num">{_num(r.get("n_glomeruli")) if has else "–"}</td>',
            *(f'<td class="num">{_num(int(counts.get(c, 0))) if has else "–"}</td>' for c in classes),
            f'<td class="num">{_num(None if ggs is None else float(ggs))}{_ci_cell(r)}</td>',
            f"<td>{_e(str(r.get('flags') or '').replace(';', ', '))}</td>",
            f'<td class="num">{_num(None if r.get("seconds") is None else float(r["seconds"]))}</td>',
            f"<td>{_e(r.get('error') or '')}</td>",
        ]
        body_rows.append(f"<tr>{''.join(cells)}</tr>")
    pooled = None if tot_glom == 0 else 100.0 * tot_scl / tot_glom
    foot = (
        f'<tr><th>all ({len(rows)} slides)</th><th>{n_ok} ok, {n_failed} failed</th><th class="num">{tot_glom:,}</th>'
        + "".join(f'<th class="num">{tot_counts[c]:,}</th>' for c in classes)
        + f'<th class="num">{_num(pooled)}</th><th></th><th></th><th></th></tr>'
    )
    headline = (
        '<p class="headline" id="ggs">0 glomeruli found in the cohort.</p>'
        if pooled is None
        else f'<p class="headline" id="ggs">Pooled global glomerulosclerosis: <b>{pooled:.1f} %</b> '
        f"({tot_scl} globally sclerosed of {tot_glom} glomeruli, {n_ok} slides)</p>"
    )
    body = (
        f"<h1>glomkit cohort report — {len(rows)} slides</h1>{headline}"
        '<p class="muted">Per-slide GGS % = globally sclerosed / all glomeruli × 100 on that slide; the pooled '
        "figure divides the totals. Click a slide for its report.</p>"
        f'<table id="cohort"><thead>{head}</thead><tbody>{"".join(body_rows)}</tbody><tfoot>{foot}</tfoot></table>'
        f'<p class="muted">Written on {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.</p>'
    )
    return write_text(path, _page("glomkit cohort report", body))
