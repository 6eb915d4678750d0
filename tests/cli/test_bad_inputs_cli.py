"""A corpus of bad inputs, made in code, run through the CLI.

Each case must end with a non-zero exit, no traceback, one line on stderr that names the file (or
the option) that is wrong, nothing written outside OUT, and no ``.partial`` folder left after a rerun.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from badinputs import (
    bundled_meta,
    huge_declared_tiff,
    model_with_meta,
    png_header_only,
    rgb_png,
    run_glomkit,
    sparse_tiled_tiff,
)

pytest.importorskip("onnx")


glomkit = run_glomkit


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _names(*names: str) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        for c, n in zip(meta["classes"]["classes"], names, strict=False):
            c["name"] = n

    return edit


def _set(key: str, value) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        d = meta
        *path, last = key.split(".")
        for k in path:
            d = d[k]
        if value is None:
            del d[last]
        else:
            d[last] = value

    return edit


def _slide(tmp: Path) -> Path:
    import cv2

    img = np.full((96, 96, 3), 235, np.uint8)
    path = tmp / "in" / "slide.png"
    path.parent.mkdir(exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def _model(task: str, edit) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / "in").mkdir(exist_ok=True)
        return model_with_meta(task, tmp / "in" / f"bad_{task}.onnx", edit)

    return make


def _run_with(option: str, make_model) -> Callable[[Path, Path], tuple[list, str]]:
    def case(tmp: Path, out: Path):
        model = make_model(tmp)
        return ["run", _slide(tmp), "-o", out, "--mpp", "0.5", option, model], model.name

    return case


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        p = tmp / "in" / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        return p

    return make


def _truncated_png(tmp: Path) -> Path:
    p = rgb_png(tmp / "in" / "cut.png", 200, 200) if (tmp / "in").mkdir(exist_ok=True) is None else None
    p.write_bytes(p.read_bytes()[:300])
    return p


def _truncated_tiled_svs(tmp: Path) -> Path:
    import tifffile

    (tmp / "in").mkdir(exist_ok=True)
    p = tmp / "in" / "cut.svs"
    tifffile.imwrite(p, np.zeros((512, 512, 3), np.uint8), tile=(256, 256), photometric="rgb")
    p.write_bytes(p.read_bytes()[:2000])
    return p


def _bomb(tmp: Path) -> Path:
    (tmp / "in").mkdir(exist_ok=True)
    return png_header_only(tmp / "in" / "bomb.png", 32000, 32000)


def _huge_tiff(tmp: Path) -> Path:
    (tmp / "in").mkdir(exist_ok=True)
    return huge_declared_tiff(tmp / "in" / "huge.tif")


def _sparse(tmp: Path) -> Path:
    (tmp / "in").mkdir(exist_ok=True)
    return sparse_tiled_tiff(tmp / "in" / "sparse.tif")


def _dots(name: str) -> Callable[[Path], Path]:
    """A valid image whose file stem is '..', '.' or hidden: its output folder would leave OUT."""

    def make(tmp: Path) -> Path:
        (tmp / "in").mkdir(exist_ok=True)
        return rgb_png(tmp / "in" / name, 96, 96)

    return make


def _run_file(make, *extra) -> Callable:
    def case(tmp: Path, out: Path):
        f = make(tmp)
        return ["run", f, "-o", out, *extra], f.name

    return case


def _cmd_file(cmd: str, make, *extra) -> Callable:
    def case(tmp: Path, out: Path):
        f = make(tmp)
        o = out / "p.csv" if cmd == "classify" else out
        return [cmd, f if cmd != "mine" else f.parent, "-o", o, *extra], f.name

    return case


def _out_is(kind: str, cmd: str) -> Callable:
    def case(tmp: Path, out: Path):
        if kind == "file":
            target = tmp / "a_file"
            target.write_text("x")
        else:
            target = Path("/proc/glomkit_test_out")
        img = rgb_png(tmp / "in" / "p.png") if (tmp / "in").mkdir(exist_ok=True) is None else None
        args = {
            "run": ["run", _slide(tmp), "-o", target, "--mpp", "0.5"],
            "classify": ["classify", img, "-o", target / "x.csv" if kind == "file" else target],
            "segment": ["segment", img, "-o", target],
            "mine": ["mine", img.parent, "-o", target],
            "demo": ["demo", "-o", target, "--size", "256x256"],
        }[cmd]
        return args, str(target)

    return case


def _dup_stems(tmp: Path, out: Path):
    import cv2

    a, b = tmp / "in" / "a", tmp / "in" / "b"
    a.mkdir(parents=True)
    b.mkdir()
    for d in (a, b):
        cv2.imwrite(str(d / "g.png"), np.full((32, 32, 3), 200, np.uint8))
    return ["segment", a, b, "-o", out], "g.png"


CASES: dict[str, Callable[[Path, Path], tuple[list, str]]] = {
    # models (items 1, 2)
    "class-names-traversal": _run_with(
        "--classifier", _model("classifier", _names("../../escaped", "a/b", "c"))
    ),
    "class-names-slash": _run_with("--classifier", _model("classifier", _names("normal", "x/y/z"))),
    "classifier-std-0": _run_with("--classifier", _model("classifier", _set("input.std", [0, 0, 0]))),
    "classifier-no-classes": _run_with("--classifier", _model("classifier", _set("classes", None))),
    "classifier-count": _run_with(
        "--classifier",
        _model("classifier", _set("classes.classes", bundled_meta("classifier")["classes"]["classes"][:2])),
    ),
    "detector-mpp-0": _run_with("--detector", _model("detector", _set("mpp", 0))),
    "detector-mpp-negative": _run_with("--detector", _model("detector", _set("mpp", -2.0))),
    "detector-stride-0": _run_with("--detector", _model("detector", _set("stride", 0))),
    "detector-no-input-size": _run_with("--detector", _model("detector", _set("input_size", None))),
    "detector-no-task": _run_with("--detector", _model("detector", _set("task", None))),
    "segmenter-bad-json": _run_with("--segmenter", _model("segmenter", '{"format": "glomkit-model/1", ')),
    # bounds (items 3, 17)
    "mpp-huge": lambda t, o: (["run", _slide(t), "-o", o, "--mpp", "1e300"], "--mpp"),
    "mpp-typo": lambda t, o: (["run", _slide(t), "-o", o, "--mpp", "25"], "--mpp"),
    "score-threshold": lambda t, o: (
        ["run", _slide(t), "-o", o, "--mpp", "0.5", "--score-threshold", "5"],
        "--score-threshold",
    ),
    "workers-0": lambda t, o: (["run", _slide(t), "-o", o, "--workers", "0"], "--workers"),
    # output paths (item 7)
    **{f"out-file-{c}": _out_is("file", c) for c in ("run", "classify", "segment", "mine", "demo")},
    **{f"out-proc-{c}": _out_is("proc", c) for c in ("run", "classify", "segment", "mine", "demo")},
    # images and slides (items 4, 11, 12)
    "random-png": _run_file(_bytes("random.png", os.urandom(4000)), "--mpp", "0.5"),
    "empty-png": _run_file(_bytes("empty.png", b""), "--mpp", "0.5"),
    "truncated-png": _run_file(_truncated_png, "--mpp", "0.5"),
    "random-svs": _run_file(_bytes("random.svs", os.urandom(4000))),
    "truncated-svs": _run_file(_truncated_tiled_svs),
    "bomb-run": _run_file(_bomb, "--mpp", "0.5"),
    "huge-stripped-tiff": _run_file(_huge_tiff, "--mpp", "0.5"),
    "sparse-tiled-tiff": _run_file(_sparse),
    "stem-dotdot": _run_file(_dots("...png"), "--mpp", "0.5"),
    "stem-dot": _run_file(_dots("..png"), "--mpp", "0.5"),
    "stem-hidden": _run_file(_dots(".x.png"), "--mpp", "0.5"),
    "huge-tiff-segment": _cmd_file("segment", _huge_tiff),
    "bomb-classify": _cmd_file("classify", _bomb),
    "bomb-segment": _cmd_file("segment", _bomb),
    "bomb-mine": _cmd_file("mine", _bomb),
    "random-classify": _cmd_file("classify", _bytes("r.jpg", os.urandom(3000))),
    # wrong results without a word (item 13)
    "segment-same-stems": _dup_stems,
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_error(name, tmp_path, monkeypatch, capsys):
    out = tmp_path / "OUT"
    args, needle = CASES[name](tmp_path, out)
    before = _files(tmp_path)
    for _attempt in range(2):  # a rerun must not leave .partial folders either
        code, stdout, err = glomkit(monkeypatch, capsys, *args)
        assert code != 0, f"{name}: exit 0\n{stdout}\n{err}"
        assert "Traceback" not in err + stdout
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        if needle.startswith("--"):
            assert "Error: Invalid value" in err and needle in err  # click's usage error
        else:
            errors = [ln for ln in lines if ln.startswith("glomkit: error:")]
            assert len(errors) == 1, f"{name}: expected one error line, got:\n{err}"
            assert needle in errors[0], f"{name}: {needle!r} not in {errors[0]!r}"
        new = {p for p in _files(tmp_path) - before if out not in p.parents and p != out}
        assert not new, f"{name}: wrote outside OUT: {sorted(map(str, new))}"
        if out.is_dir():
            assert not list(out.glob(".*.partial")), f"{name}: .partial left in OUT"
    assert not (tmp_path.parent / "escaped").exists()


def test_dask_scheduler_without_the_extra_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    code, _, err = glomkit(
        monkeypatch,
        capsys,
        "run",
        _slide(tmp_path),
        "-o",
        tmp_path / "o",
        "--mpp",
        "0.5",
        "--dask-scheduler",
        "tcp://127.0.0.1:1",
    )
    assert code == 1 and "Traceback" not in err
    assert "pip install 'glomkit[cohort]'" in err and len(err.strip().splitlines()) == 1


def test_failed_slide_under_quiet_and_silent_still_reaches_stderr(tmp_path, monkeypatch, capsys):
    bad = _bytes("bad.png", b"not an image")(tmp_path)
    for flag in ("--quiet", "--silent"):
        code, out, err = glomkit(monkeypatch, capsys, "run", bad, "-o", tmp_path / "o", "--mpp", "0.5", flag)
        assert code == 1 and "bad.png" in err and "not a readable image" in err
        assert ("1 failed" in err) == (flag == "--quiet")


def test_dash_h_is_help(monkeypatch, capsys):
    for args in (["-h"], ["run", "-h"], ["classify", "-h"]):
        code, out, err = glomkit(monkeypatch, capsys, *args)
        assert code == 0 and "Usage:" in out, (args, out, err)
    _, out, _ = glomkit(monkeypatch, capsys, "run", "-h")
    assert "0.05 to 10" in out and "--max-pixels" in out and "--silent" in out


def test_max_pixels_raises_the_limit(tmp_path, monkeypatch, capsys):
    img = rgb_png(tmp_path / "p.png", 64, 64)
    code, _, err = glomkit(
        monkeypatch, capsys, "classify", img, "-o", tmp_path / "a.csv", "--max-pixels", "100"
    )
    assert code == 1 and "p.png" in err and "--max-pixels" in err
    code, _, err = glomkit(
        monkeypatch, capsys, "classify", img, "-o", tmp_path / "b.csv", "--max-pixels", "10000"
    )
    assert code == 0 and (tmp_path / "b.csv").is_file()


def test_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    import glomkit.io.atomic as atomic

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    img = rgb_png(tmp_path / "p.png")
    monkeypatch.setattr(atomic, "write_text", full)
    code, _, err = glomkit(monkeypatch, capsys, "classify", img, "-o", tmp_path / "o" / "p.csv")
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"glomkit: error: {tmp_path / 'o' / 'p.csv'}: No space left on device (the disk is full)"
    ]

    from glomkit.results import SlideResult

    def full_xml(result, d, xml="both"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(d / f"{result.stem}.xml"))

    monkeypatch.setattr(SlideResult, "_write_annotations", full_xml)
    out = tmp_path / "OUT"
    code, _, err = glomkit(monkeypatch, capsys, "run", _slide(tmp_path), "-o", out, "--mpp", "0.5", "--quiet")
    assert code == 1 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("glomkit: error:")]
    assert "slide.png" in line and "slide.xml: No space left on device (the disk is full)" in line
    assert not list(out.glob(".*.partial")) and not (out / "slide").exists()


def test_demo_remakes_its_slide_for_other_settings(tmp_path):
    pytest.importorskip("glomkit.synth.slide")
    from glomkit.synth.slide import demo_slide

    slide, made = demo_slide(tmp_path, 256, 192, 0)
    assert made and slide.is_file()
    first = slide.read_bytes()
    assert demo_slide(tmp_path, 256, 192, 0) == (slide, False)  # same settings: reused
    assert slide.read_bytes() == first
    _, made = demo_slide(tmp_path, 256, 192, 1)  # another seed: made again
    assert made and slide.read_bytes() != first
    _, made = demo_slide(tmp_path, 320, 192, 1)  # another size
    assert made
    from glomkit.slide.reader import Slide

    with Slide(slide) as s:
        assert (s.width, s.height) == (320, 192)
