"""Compare two glomkit output folders file by file: byte-identical, identical apart from timings, or different.

Used to check that a restructuring changed no output (issue 25): run the same command before and
after into two folders, then::

    python benchmarks/compare_outputs.py BEFORE AFTER

What may differ and is set aside: the wall-clock timings (``timings``, ``read_s``, ``compute_s``,
the report's timing table and the cohort table's seconds columns), the creation time, and the
output folder's own path where a file records it. Everything else must match byte for byte; the
script prints one line per file and exits 1 if any file differs or is missing on one side.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from pathlib import Path

TIMING_KEYS = {"timings", "read_s", "compute_s", "created", "seconds", "elapsed_s"}
CSV_TIMING = re.compile(r"^(seconds|time_|t_|timing)|_s$")
HTML_TIMINGS = re.compile(r'<table id="timings">.*?</table>', re.S)
HTML_WRITTEN = re.compile(r"Written (by glomkit \S+ )?on [0-9TZ:\- ]+( UTC)?")


def _json(text: str, root: str):
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if k not in TIMING_KEYS}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean(json.loads(text.replace(root, "<OUT>")))


def _csv(text: str, root: str):
    rows = list(csv.reader(io.StringIO(text.replace(root, "<OUT>"))))
    if not rows:
        return rows
    keep = [i for i, name in enumerate(rows[0]) if not CSV_TIMING.search(name)]
    return [[r[i] for i in keep if i < len(r)] for r in rows]


def _html(text: str, root: str) -> str:
    text = HTML_WRITTEN.sub("", HTML_TIMINGS.sub("", text.replace(root, "<OUT>")))
    # the cohort table's "seconds" column: blank its cells, found by the header's position
    head = re.search(r'<table id="cohort"><thead>(.*?)</thead>', text, re.S)
    if head:
        names = [re.sub(r"<[^>]*>", "", c) for c in re.findall(r"<th[^>]*>.*?</th>", head.group(1), re.S)]
        if "seconds" in names:
            col = names.index("seconds")

            def blank(row: re.Match) -> str:
                cells = re.findall(r"<t[dh][^>]*>.*?</t[dh]>", row.group(0), re.S)
                return "".join(c if i != col else "<td/>" for i, c in enumerate(cells))

            text = re.sub(r"<tr>.*?</tr>", blank, text, flags=re.S)
    return text


def compare(a: Path, b: Path) -> list[tuple[str, str]]:
    """(relative path, verdict) for every file of either tree."""
    files = sorted(
        {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
        | {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    )
    out = []
    for rel in files:
        pa, pb = a / rel, b / rel
        if not pa.is_file() or not pb.is_file():
            out.append((str(rel), f"MISSING in {'before' if not pa.is_file() else 'after'}"))
            continue
        ba, bb = pa.read_bytes(), pb.read_bytes()
        if ba == bb:
            out.append((str(rel), "identical"))
            continue
        same = False
        if rel.suffix in (".json", ".csv", ".html"):
            ta, tb = ba.decode("utf-8"), bb.decode("utf-8")
            norm = {".json": _json, ".csv": _csv, ".html": _html}[rel.suffix]
            same = norm(ta, str(a)) == norm(tb, str(b))
        out.append((str(rel), "identical apart from timings and the output path" if same else "DIFFERENT"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--all", action="store_true", help="print byte-identical files too")
    args = ap.parse_args()
    rows = compare(args.before, args.after)
    bad = 0
    counts: dict[str, int] = {}
    for rel, verdict in rows:
        counts[verdict] = counts.get(verdict, 0) + 1
        bad += verdict.startswith(("DIFFERENT", "MISSING"))
        if args.all or verdict != "identical":
            print(f"{verdict:50s} {rel}")
    print("; ".join(f"{n} {v}" for v, n in sorted(counts.items())))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
