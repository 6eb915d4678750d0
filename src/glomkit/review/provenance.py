"""Which run a review was made on: a fingerprint of the run's GeoJSON, kept in ``review/run.json``.

``glomkit run --overwrite`` (and ``glomkit demo``) keep ``OUT/<stem>/review/`` when they rewrite a
slide's folder. A review started on an earlier result then no longer matches the folder's
detections: :func:`run_state` compares the fingerprint recorded when the review started with the
run's GeoJSON now, so ``glomkit review``, ``glomkit recount`` and the cohort table can say so.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from glomkit.io.report import SUMMARY

REVIEW_DIR = "review"
RUN_RECORD = "run.json"  # in review/: the fingerprint of the run the review started from
REVIEW_SUMMARY = SUMMARY  # in review/: written by glomkit recount


def geojson_fingerprint(out_dir: Path, stem: str) -> str | None:
    """``sha256:<hex>`` of ``OUT/<stem>/<stem>.geojson`` (the run's detections), None without it."""
    path = Path(out_dir) / f"{stem}.geojson"
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return f"sha256:{h.hexdigest()}"


def run_record(out_dir: Path, stem: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The record of the run a review starts from (what ``review/run.json`` holds)."""
    return {
        "geojson": f"{stem}.geojson",
        "fingerprint": geojson_fingerprint(out_dir, stem),
        "run_created": summary.get("created"),
        "review_started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def read_run_record(out_dir: Path) -> dict[str, Any] | None:
    """``review/run.json``, or None when absent or unreadable (a review of an older glomkit)."""
    try:
        data = json.loads((Path(out_dir) / REVIEW_DIR / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_state(out_dir: Path, stem: str) -> dict[str, Any]:
    """``reviewed_run`` and ``current_run`` fingerprints and ``run_changed``: True when the folder
    was run again with another result after the review started; None when unknown (no record)."""
    rec = read_run_record(out_dir)
    made_on = rec.get("fingerprint") if rec else None
    now = geojson_fingerprint(out_dir, stem)
    changed = None if not isinstance(made_on, str) or now is None else made_on != now
    return {
        "reviewed_run": made_on if isinstance(made_on, str) else None,
        "reviewed_run_created": rec.get("run_created") if rec else None,
        "current_run": now,
        "run_changed": changed,
    }


def stale_message(out_dir: Path) -> str:
    """The one-line warning for a review whose run has changed since it started."""
    return (
        f"{out_dir}: the slide was run again after this review started; the review keeps its own "
        "glomeruli (from the earlier run), which may not match the new detections, patches or report"
    )
