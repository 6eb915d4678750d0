"""The HTML contact sheet of a mining run: thumbnails of kept and rejected panels, with reasons."""

from __future__ import annotations

import base64
import html

import cv2
import numpy as np


def thumbnail_data_uri(rgb: np.ndarray, max_side: int = 128) -> str:
    """A JPEG thumbnail of an RGB panel as a data: URI (the sheet is one self-contained file)."""
    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w, 1))
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii") if ok else ""


def _card(r: dict, thumb: str) -> str:
    score = "" if r["score"] == "" else f"score {float(r['score']):.2f}"
    why = "kept" if r["kept"] else str(r["reason"])
    img = f'<img src="{thumb}" alt="">' if thumb else ""
    return (
        f'<figure class="{"kept" if r["kept"] else "rej"}">{img}<figcaption>'
        f"<b>{html.escape(str(r['name']))}</b><br>{html.escape(str(r['modality']))} {score}"
        f"<br>{html.escape(why)}</figcaption></figure>"
    )


def contact_sheet_html(rows: list[dict], thumbs: dict[str, str], threshold: float) -> str:
    """The page: kept panels first, then rejected panels grouped by reason, then a count table."""
    kept = [r for r in rows if r["kept"]]
    rejected = [r for r in rows if not r["kept"] and r["name"] in thumbs]
    counts: dict[str, int] = {}
    for r in rows:
        key = "kept" if r["kept"] else str(r["reason"]).split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    table = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in sorted(counts.items()))
    rejected.sort(key=lambda r: str(r["reason"]).split(":")[0])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>glomkit mine: contact sheet</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
figure {{ display: inline-block; margin: 4px; width: 140px; vertical-align: top; font-size: 11px; }}
figure img {{ max-width: 128px; max-height: 128px; display: block; }}
figure.kept {{ border: 3px solid #2a2; }} figure.rej {{ border: 3px solid #c33; opacity: 0.85; }}
table {{ border-collapse: collapse; }} td {{ border: 1px solid #ccc; padding: 2px 8px; }}
</style></head><body>
<h1>Mined panels</h1>
<p>Glomerulus score threshold {threshold:g}. Fragments (too_small) and unreadable figures are listed in
manifest.csv only.</p>
<table>{table}</table>
<h2>Kept ({len(kept)})</h2>
{"".join(_card(r, thumbs.get(r["name"], "")) for r in kept)}
<h2>Rejected ({len(rejected)})</h2>
{"".join(_card(r, thumbs.get(r["name"], "")) for r in rejected)}
</body></html>
"""
