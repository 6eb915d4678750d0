"""The CSV table, summary.json, report.html and the cohort outputs."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from glomkit import GlomkitError
from glomkit.core.records import GlomerulusRecord, SlideRecord, overlay_of, table_columns
from glomkit.core.schemes import COARSE, FIVE_CLASS, ClassScheme
from glomkit.io.atomic import encode_jpeg, write_bytes, write_png
from glomkit.io.report import (
    render_thumbnail_overlay,
    write_cohort_csv,
    write_cohort_report,
    write_report_html,
    write_summary,
)
from glomkit.io.table import read_table, write_table


def make_result(labels: list[str], scheme: ClassScheme = FIVE_CLASS, mpp: float = 0.5) -> SlideRecord:
    """Detections on a 4000 x 3000 px slide, one per label, with probabilities that favour the label."""
    records = []
    for i, label in enumerate(labels, start=1):
        probs = {n: 0.05 for n in scheme.names}
        probs[label] = 1.0 - 0.05 * (len(scheme) - 1)
        cls = scheme.get(label)
        records.append(
            GlomerulusRecord(
                id=i,
                x=200.0 + 300 * (i % 12),
                y=300.0 + 400 * (i // 12),
                radius=60.0 + i,
                score=0.5 + 0.01 * i,
                label=label,
                probs=probs,
                ggs_probability=float(scheme.ggs_probability([probs[n] for n in scheme.names])),
                is_glomerulus=cls.is_glomerulus,
                area_um2=float("nan") if i == 2 else 2000.0 + i,
                diameter_um=float("nan") if i == 2 else 50.0,
            )
        )
    thumb = np.full((300, 400, 3), 235, np.uint8)
    return SlideRecord(
        "slide-7",
        "/data/slide-7.svs",
        mpp,
        4000,
        3000,
        scheme,
        records,
        timings={"detect": 2.5, "classify": 0.75, "total": 4.0},
        models={"detector": {"file": "detector.onnx", "version": "1", "sha256": "ab" * 32}},
        thumbnail=thumb,
        thumbnail_downsample=10.0,
    )


HAND_MADE = ["normal", "normal", "obsolescent", "non_glomerular", "normal"]  # 3 normal, 1 GGS, 1 non-glom


# --------------------------------------------------------------------------- table


@pytest.mark.parametrize("scheme", [FIVE_CLASS, COARSE])
def test_table_columns_exactly_and_round_trip(tmp_path, scheme):
    labels = [scheme.names[i % len(scheme)] for i in range(7)]
    result = make_result(labels, scheme)
    result.glomeruli[0].patch = "patches/normal/slide-7_1.png"
    path = write_table(tmp_path / "t.csv", result)
    with open(path, newline="") as fh:
        header = next(csv.reader(fh))
    assert header == table_columns(scheme)
    rows = read_table(path)
    assert len(rows) == 7
    for row, g in zip(rows, result.glomeruli, strict=True):
        assert list(row) == table_columns(scheme)
        assert row["id"] == g.id and isinstance(row["id"], int)
        assert row["x"] == pytest.approx(g.x) and row["radius"] == pytest.approx(g.radius)
        assert row["radius_um"] == pytest.approx(g.radius * 0.5)
        assert row["label"] == g.label and row["is_glomerulus"] is g.is_glomerulus
        for n in scheme.names:
            assert row[f"prob_{n}"] == pytest.approx(g.probs[n])
        assert row["ggs_probability"] == pytest.approx(g.ggs_probability)
    assert rows[0]["patch"] == "patches/normal/slide-7_1.png" and rows[1]["patch"] == ""
    assert math.isnan(rows[1]["area_um2"]) and rows[0]["area_um2"] == pytest.approx(2001.0)
    second_line = path.read_text().splitlines()[2]
    assert ",," in second_line  # NaN written as an empty cell, not "nan"
    assert "nan" not in path.read_text().lower()


def test_empty_table_and_bad_table(tmp_path):
    path = write_table(tmp_path / "t.csv", make_result([]))
    assert read_table(path) == [] and path.read_text().strip() == ",".join(table_columns(FIVE_CLASS))
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(GlomkitError, match="bad.csv: not a glomeruli table"):
        read_table(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("id,is_glomerulus\n1,maybe\n")
    with pytest.raises(GlomkitError, match="bad2.csv: line 2"):
        read_table(tmp_path / "bad2.csv")


# --------------------------------------------------------------------------- summary.json


def test_summary_counts_and_ggs_percent(tmp_path):
    result = make_result(HAND_MADE)
    summary = write_summary(
        tmp_path / "summary.json", result, {"outputs": ["a.xml"], "mpp_source": "openslide"}
    )

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    on_disk = json.loads((tmp_path / "summary.json").read_text(), parse_constant=no_constants)
    assert on_disk == summary
    assert summary["ggs_percent"] == 25.0
    assert summary["n_detections"] == 5 and summary["n_glomeruli"] == 4 and summary["n_sclerosed"] == 1
    assert summary["counts"] == {
        "normal": 3,
        "obsolescent": 1,
        "solidified": 0,
        "disappearing": 0,
        "non_glomerular": 1,
    }
    assert summary["stem"] == "slide-7" and summary["source"] == "/data/slide-7.svs"
    assert summary["mpp"] == 0.5 and summary["width"] == 4000 and summary["height"] == 3000
    assert summary["timings"] == {"detect": 2.5, "classify": 0.75, "total": 4.0}
    assert summary["models"]["detector"]["file"] == "detector.onnx"
    assert {"glomkit", "onnxruntime", "numpy", "openslide"} <= set(summary["versions"])
    assert summary["outputs"] == ["a.xml"] and summary["mpp_source"] == "openslide"
    assert summary["scheme"]["name"] == FIVE_CLASS.name
    # the mean area leaves out the unmeasured glomerulus (id 2)
    assert summary["mean_area_um2"]["normal"] == pytest.approx((2001 + 2005) / 2)


def test_summary_without_glomeruli_has_null_percentage(tmp_path):
    summary = write_summary(tmp_path / "s.json", make_result(["non_glomerular"]))
    assert summary["n_glomeruli"] == 0 and summary["ggs_percent"] is None
    assert json.loads((tmp_path / "s.json").read_text())["ggs_percent"] is None


def test_summary_coarse_scheme(tmp_path):
    summary = write_summary(tmp_path / "s.json", make_result(["sclerosed", "sclerosed", "normal"], COARSE))
    assert summary["ggs_percent"] == pytest.approx(200 / 3, abs=1e-3)
    assert summary["counts"] == {"normal": 1, "sclerosed": 2, "non_glomerular": 0}


# --------------------------------------------------------------------------- report.html


class TagBalance(HTMLParser):
    """Checks that every non-void element is closed in order."""

    VOID = {"meta", "img", "br", "hr", "input", "link", "source", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.imgs: list[dict] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag == "a":
            self.links.append(dict(attrs).get("href", ""))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def parse_html(text: str) -> TagBalance:
    p = TagBalance()
    p.feed(text)
    p.close()
    assert text.startswith("<!DOCTYPE html>")
    assert not p.errors and not p.stack, (p.errors, p.stack)
    return p


def test_report_html_counts_percentage_thumbnail_and_gallery(tmp_path):
    labels = ["normal"] * 30 + ["obsolescent"] * 10 + ["non_glomerular"] * 2
    result = make_result(labels)
    out = tmp_path / "slide-7"
    for g in result.glomeruli:  # patches and overlays, as the pipeline writes them
        g.patch = f"patches/{g.label}/slide-7_{g.id}.png"
        write_png(out / g.patch, np.zeros((8, 8, 3), np.uint8))
        write_bytes(out / overlay_of(g.patch), encode_jpeg(np.zeros((8, 8, 3), np.uint8)))
    summary = write_summary(out / "summary.json", result)
    text = write_report_html(out / "report.html", result, summary).read_text()
    page = parse_html(text)

    assert "25.0 %" in text and "10 globally sclerosed of 40 glomeruli" in text
    counts = re.search(r'<table id="counts">.*?</table>', text, re.S).group(0)
    for name, n in (("normal", 30), ("obsolescent", 10), ("solidified", 0), ("non_glomerular", 2)):
        r, g, b = FIVE_CLASS.get(name).color
        assert re.search(
            rf"rgb\({r},{g},{b}\)\"></span>{name}</td><td>[^<]*</td><td class=\"num\">{n}</td>", counts
        )
    # the thumbnail is an embedded JPEG of the thumbnail's size
    (thumb,) = [i for i in page.imgs if i["src"].startswith("data:image/jpeg;base64,")]
    png = cv2.imdecode(
        np.frombuffer(base64.b64decode(thumb["src"].split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR
    )
    assert png.shape == (300, 400, 3)
    # the gallery: relative paths that exist beside the report, at most 24 per class
    gallery = [i["src"] for i in page.imgs if not i["src"].startswith("data:")]
    assert all((out / s).is_file() for s in gallery)
    assert sum(s.startswith("patches/normal/") for s in gallery) == 24
    assert sum(s.startswith("patches/obsolescent/") for s in gallery) == 10
    assert "24 of 30 shown" in text
    assert all((out / h).is_file() for h in page.links)  # overlays
    # timings, models, versions, input mpp
    assert re.search(r"<td>detect</td><td class=\"num\">2.50</td>", text)
    assert "detector.onnx" in text and "0.5000 µm/px" in text and "onnxruntime" in text
    assert "<script" not in text and "http" not in text.replace("http-equiv", "")  # self-contained


def test_report_html_without_glomeruli_or_patches(tmp_path):
    result = make_result([])
    result.thumbnail = None
    summary = write_summary(tmp_path / "summary.json", result)
    text = write_report_html(tmp_path / "report.html", result, summary).read_text()
    parse_html(text)
    assert "0 glomeruli found" in text and "No patch images" in text


def test_report_escapes_text(tmp_path):
    result = make_result(["normal"])
    result.stem = "<b>evil</b>"
    summary = write_summary(tmp_path / "summary.json", result)
    text = write_report_html(tmp_path / "report.html", result, summary).read_text()
    parse_html(text)
    assert "<b>evil</b>" not in text and "&lt;b&gt;evil&lt;/b&gt;" in text


def test_thumbnail_overlay_draws_circles_in_class_colours():
    result = make_result(["normal", "obsolescent"])
    img = render_thumbnail_overlay(result)
    assert img.shape == (300, 400, 3) and img.dtype == np.uint8
    assert (result.thumbnail == 235).all()  # the thumbnail itself is untouched
    for g in result.glomeruli:
        color = np.array(FIVE_CLASS.get(g.label).color)
        # the rightmost point of the circle, in thumbnail pixels
        x, y = round((g.x + g.radius) / 10.0), round(g.y / 10.0)
        patch = img[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).astype(int)
        assert np.abs(patch - color).sum(axis=1).min() < 40
        assert (img[round(g.y / 10.0), round(g.x / 10.0)] == 235).all()  # the centre is not filled
    big = result
    big.thumbnail = np.full((3000, 4000, 3), 235, np.uint8)
    big.thumbnail_downsample = 1.0
    assert render_thumbnail_overlay(big, max_px=800).shape == (600, 800, 3)
    big.thumbnail = None
    assert max(render_thumbnail_overlay(big).shape[:2]) == 800


# --------------------------------------------------------------------------- cohort

COHORT_ROWS = [
    {
        "stem": "a",
        "source": "/in/a.svs",
        "status": "ok",
        "n_glomeruli": 10,
        "n_sclerosed": 2,
        "counts": {"normal": 8, "obsolescent": 2, "non_glomerular": 1},
        "ggs_percent": 20.0,
        "seconds": 12.5,
        "timings": {"detect": 5.0, "total": 12.5},
    },
    {
        "stem": "b",
        "status": "skipped",
        "n_glomeruli": 4,
        "n_sclerosed": 1,
        "counts": {"normal": 3, "solidified": 1},
        "ggs_percent": 25.0,
        "seconds": None,
        "timings": {"detect": 1.0},
    },
    {"stem": "x", "status": "failed", "error": "x.svs: not a readable slide", "counts": {}},
    {"stem": "c", "status": "ok", "n_glomeruli": 0, "counts": {}, "ggs_percent": None, "seconds": 1.0},
]


def test_cohort_csv(tmp_path):
    with open(write_cohort_csv(tmp_path / "cohort.csv", COHORT_ROWS), newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [t["stem"] for t in table] == ["a", "b", "x", "c"]
    assert table[0]["count_obsolescent"] == "2" and table[1]["count_obsolescent"] == "0"
    assert table[1]["count_solidified"] == "1" and table[2]["count_normal"] == ""
    assert table[2]["error"] == "x.svs: not a readable slide" and table[3]["ggs_percent"] == ""
    assert table[0]["time_detect_s"] == "5.0" and table[2]["time_detect_s"] == ""
    assert {"stem", "status", "n_glomeruli", "ggs_percent", "seconds"} <= set(table[0])


def test_cohort_report(tmp_path):
    text = write_cohort_report(tmp_path / "cohort_report.html", COHORT_ROWS).read_text()
    page = parse_html(text)
    assert "21.4 %" in text and "3 globally sclerosed of 14 glomeruli" in text  # (2 + 1) / (10 + 4)
    assert page.links == ["a/report.html", "b/report.html", "c/report.html"]
    assert "x.svs: not a readable slide" in text and 'class="status-failed"' in text
    r, g, b = FIVE_CLASS.get("obsolescent").color
    assert f"rgb({r},{g},{b})" in text
    empty = write_cohort_report(tmp_path / "e.html", [COHORT_ROWS[2]]).read_text()
    assert "0 glomeruli found" in empty


def test_one_list_of_output_writers_names_and_writes_every_format(tmp_path):
    from glomkit.io.outputs import (
        FORMATS,
        annotation_files,
        file_name,
        patch_paths,
        write_annotations,
        write_reviewed,
    )

    res = make_result(["normal", "solidified"])
    names = write_annotations(tmp_path, res, xml="circles")
    assert names == annotation_files(res.stem) == [f"{res.stem}{f.suffix}" for f in FORMATS]
    assert all((tmp_path / n).stat().st_size > 0 for n in names)
    (tmp_path / "review").mkdir()
    reviewed = write_reviewed(tmp_path / "review", res)
    assert sorted(p.name for p in reviewed) == sorted(
        file_name(f.name, res.stem, reviewed=True) for f in FORMATS if f.reviewed
    )
    assert file_name("geojson", "s1", reviewed=True) == "s1_reviewed.geojson"
    rows = read_table(tmp_path / file_name("table", res.stem))
    assert patch_paths(tmp_path, res.stem) == {int(r["id"]): r["patch"] for r in rows if r.get("patch")}
    assert patch_paths(tmp_path / "nowhere", res.stem) == {}
