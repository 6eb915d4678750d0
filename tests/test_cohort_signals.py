"""A ``--workers 2`` cohort killed by SIGTERM stops its workers (no child process survives) and
keeps its finished slides; a rerun completes, skips them and leaves no ``.partial`` folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glomkit.models.registry import WEIGHTS_DIR

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (WEIGHTS_DIR / "detector.onnx").is_file(), reason="bundled models are not built yet"
    ),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]
SRC = Path(__file__).resolve().parents[1] / "src"


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] not in "ZX":
                parents[int(d.name)] = int(fields[1])
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for c, pp in parents.items():
            if pp == p and c not in out:
                out.add(c)
                todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _glomkit(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "GLOMKIT_THREADS": "1"}
    code = "from glomkit.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> Path:
    synth = pytest.importorskip("glomkit.synth.slide")
    d = tmp_path_factory.mktemp("cohort")
    for seed in range(5):
        synth.synthesize_slide(d / f"k{seed}.tif", 1500, 1200, mpp=0.5, seed=seed)
    return d


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_killed_cohort_leaves_no_child_and_rerun_skips_finished(slides, tmp_path, how):
    out = tmp_path / "OUT"
    proc = _glomkit("run", str(slides), "-o", str(out), "--workers", "2", "--quiet")
    deadline = time.monotonic() + 240
    kids: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        kids |= _children(proc.pid)
        if list(out.glob("*/summary.json")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the cohort ended before it could be killed:\n{proc.stderr.read()}"
    kids |= _children(proc.pid)
    assert len(kids) >= 2, "expected worker processes"
    os.kill(proc.pid, getattr(signal, how))
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    if how == "SIGTERM":
        assert proc.returncode == 143 and "terminated" in err, err
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.2)
    assert not [k for k in kids if _alive(k)], "worker processes outlived the cohort"
    # pathlib's "*" also matches the hidden .<stem>.*.partial folders, which may hold a summary
    # when the kill fell between writing it and renaming the folder into place
    finished = {p.parent.name for p in out.glob("*/summary.json") if not p.parent.name.startswith(".")}
    assert finished

    rerun = _glomkit("run", str(slides), "-o", str(out), "--workers", "2", "--quiet")
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert f"{len(finished)} skipped" in err and "5 slides" in err
    assert len(list(out.glob("*/summary.json"))) == 5
    assert not list(out.glob(".*.partial"))
