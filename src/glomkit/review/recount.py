"""Count again from reviewed annotations: ``OUT/<stem>/review/summary.json`` and ``report.html``.

The annotations are the review saved by ``glomkit review``, or any edited GeoJSON or ImageScope
XML (for example one corrected in QuPath or ImageScope). Classes are matched to the review scheme
(the model's classes plus the GGS subtypes); a label outside it is counted under its own name but
not as a glomerulus. The summary has the keys of the pipeline's, plus ``reviewed: true`` and a
``review`` block (file, progress, reviewers, the model's own figures for comparison).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from glomkit import GlomkitError
from glomkit.core.records import SlideRecord
from glomkit.core.trust import TRUST_KEYS
from glomkit.core.wording import count_of
from glomkit.io.outputs import file_name, patch_paths
from glomkit.io.paths import path_under
from glomkit.io.report import REPORT, SUMMARY
from glomkit.review.provenance import run_state
from glomkit.review.session import (
    REVIEW_DIR,
    find_slide,
    geojson_origin,
    read_items,
    read_summary,
    record_of,
    review_counts,
    review_scheme,
)

THUMBNAIL_PX = 2048


def recount(
    out_dir: str | Path,
    annotations: str | Path | None = None,
    slide: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``review/summary.json`` and ``review/report.html`` of an output folder; return the summary.

    ``glomkit.cohort.recount_slide`` also rewrites the cohort table beside the folder."""
    from glomkit.core.schemes import ClassScheme
    from glomkit.io.report import write_report_html, write_summary

    t0 = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    if not out_dir.is_dir():
        raise GlomkitError(f"{out_dir}: no such output folder")
    summary = read_summary(out_dir)
    stem, mpp = str(summary["stem"]), float(summary["mpp"])
    try:
        model_scheme = ClassScheme.from_dict(summary["scheme"])
    except (KeyError, TypeError, ValueError) as exc:
        raise GlomkitError(f"{out_dir / SUMMARY}: bad class scheme ({exc})") from None
    scheme = review_scheme(model_scheme)
    review_dir = path_under(out_dir, REVIEW_DIR)
    path = (
        Path(annotations)
        if annotations is not None
        else path_under(review_dir, file_name("geojson", stem, reviewed=True))
    )
    if annotations is None and not path.is_file():
        raise GlomkitError(f"{path}: no review yet (run 'glomkit review {out_dir}' or pass --annotations)")
    items = read_items(path, scheme, mpp)
    # the run the review was made on: known for glomkit's own reviewed GeoJSON (review/run.json)
    own_review = path.resolve() == path_under(review_dir, file_name("geojson", stem, reviewed=True)).resolve()
    state = run_state(out_dir, stem) if own_review else {"run_changed": None}
    patches = {} if state["run_changed"] else patch_paths(out_dir, stem)  # ids of another run differ
    for it in items:
        if it.status != "added" and it.id in patches:
            it.patch = "../" + patches[it.id]  # the report sits in review/
    counts = review_counts(items, scheme, mpp)
    unknown = sorted({it.label for it in items if it.label not in scheme.names})
    result = SlideRecord(
        stem=stem,
        source=str(summary.get("source", "")),
        mpp=mpp,
        width=int(summary["width"]),
        height=int(summary["height"]),
        scheme=scheme,
        glomeruli=[record_of(it, scheme, mpp) for it in items],
        models=summary.get("models") or {},
    )
    result.origin = geojson_origin(path) or (0.0, 0.0)
    try:
        with _open_slide(summary, out_dir, slide, mpp) as s:
            result.thumbnail, result.thumbnail_downsample = s.thumbnail(THUMBNAIL_PX)
            result.origin = (float(s.bounds[0]), float(s.bounds[1]))  # the thumbnail's (0, 0)
    except GlomkitError:
        pass  # the report is drawn without the slide
    reviewers = sorted({it.reviewer for it in items if it.reviewer})
    times = sorted(it.time for it in items if it.time)
    result.timings = {"recount": time.perf_counter() - t0}
    extra = {
        "reviewed": True,
        "review": {
            "annotations": _shown_path(path, out_dir),
            "n_reviewed": counts["n_reviewed"],
            "n_unreviewed": counts["status"]["unreviewed"],
            "status": counts["status"],
            "reviewers": reviewers,
            "last_change": times[-1] if times else None,
            "labels_outside_scheme": unknown,
            "n_shapes": len(items),
            **state,
            "model": {
                "scheme": model_scheme.name,
                "n_glomeruli": summary.get("n_glomeruli"),
                "n_sclerosed": summary.get("n_sclerosed"),
                "ggs_percent": summary.get("ggs_percent"),
            },
        },
        "mpp_source": summary.get("mpp_source"),
        "slide_format": summary.get("slide_format"),
        "stain": summary.get("stain"),
        **{k: counts[k] for k in TRUST_KEYS if k in counts},
        "outputs": [REPORT],
    }
    review_dir.mkdir(parents=True, exist_ok=True)
    tmp = path_under(review_dir, "." + SUMMARY)
    data = write_summary(tmp, result, extra)
    write_report_html(path_under(review_dir, REPORT), result, data)
    tmp.replace(path_under(review_dir, SUMMARY))
    return data


def _open_slide(summary: dict[str, Any], out_dir: Path, slide: str | Path | None, mpp: float):
    from glomkit.slide.reader import Slide

    return Slide(find_slide(summary, out_dir, slide), mpp=mpp)


def _shown_path(path: Path, out_dir: Path) -> str:
    p = path.resolve()
    return p.relative_to(out_dir).as_posix() if p.is_relative_to(out_dir) else str(path)


def describe(summary: dict[str, Any]) -> str:
    """One line for the terminal."""
    pct = summary.get("ggs_percent")
    model = summary.get("review", {}).get("model", {})
    mp = model.get("ggs_percent")
    was = (
        f" (model: {mp:.1f} %, {model.get('n_sclerosed')} of {model.get('n_glomeruli')})"
        if isinstance(mp, (int, float)) and math.isfinite(mp)
        else ""
    )
    now = "no glomeruli" if pct is None else f"GGS {pct:.1f} %"
    of = count_of(int(summary.get("n_glomeruli") or 0), "glomerulus")
    return f"{now}: {summary.get('n_sclerosed')} sclerosed of {of}{was}"
