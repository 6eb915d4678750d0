"""Cohort orchestration (sequential, local processes, dask) with a stand-in for run_slide.

The stand-in follows run_slide's contract: it writes OUT/<stem>/ completely (summary.json last,
by rename) and returns the summary, or raises GlomkitError for a file that is not a slide. The
slide files here are small JSON documents that tell it what to do, so the tests can make a slide
crash or kill its worker. tests/test_cohort_pipeline.py runs the real pipeline.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import pytest

from glomkit import GlomkitError
from glomkit.cohort import COHORT_CSV, COHORT_HTML, run_cohort, threads_per_worker
from glomkit.io.report import write_cohort_csv
from glomkit.pipeline import PipelineConfig, outputs_complete

SCLEROSED = ("obsolescent", "solidified", "disappearing")


def fake_run_slide(slide: Path, out_root: Path, config: PipelineConfig) -> dict:
    """run_slide's contract on JSON 'slides': {"counts": {...}, "crash": bool, "die_once": bool}."""
    data = Path(slide).read_bytes()
    try:
        spec = json.loads(data)
    except ValueError:
        raise GlomkitError(f"{slide}: not a readable slide (unknown format)") from None
    if spec.get("die_once") or spec.get("die_always"):
        marker = Path(out_root) / f".{Path(slide).stem}.died"
        if spec.get("die_always") or not marker.exists():
            with open(marker, "a") as fh:
                fh.write("died\n")
            os._exit(3)  # the worker process dies without a word
    if spec.get("crash"):
        raise ValueError("division by zero somewhere deep")
    time.sleep(spec.get("sleep", 0.0))
    counts = spec.get("counts", {})
    n_glom = sum(v for k, v in counts.items() if k != "non_glomerular")
    n_scl = sum(counts.get(k, 0) for k in SCLEROSED)
    summary = {
        "stem": Path(slide).stem,
        "source": str(slide),
        "mpp": 0.5,
        "counts": counts,
        "n_glomeruli": n_glom,
        "n_sclerosed": n_scl,
        "ggs_percent": 100.0 * n_scl / n_glom if n_glom else None,
        "timings": {"detect": 0.01, "classify": 0.02, "total": 0.03},
        "total_seconds": 0.03,
        "threads": config.threads,
        "pid": os.getpid(),
        "outputs": ["table.csv"],
    }
    tmp = Path(out_root) / f".{Path(slide).stem}.partial"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "table.csv").write_text("id\n")
    (tmp / "summary.json").write_text(json.dumps(summary))
    final = Path(out_root) / Path(slide).stem
    if final.exists():
        for f in final.iterdir():
            f.unlink()
        final.rmdir()
    os.replace(tmp, final)
    return summary


def make_slides(folder: Path, specs: dict[str, dict | bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, spec in specs.items():
        p = folder / name
        p.write_bytes(spec if isinstance(spec, bytes) else json.dumps(spec).encode())
        paths.append(p)
    return paths


COHORT = {
    "a.svs": {"counts": {"normal": 8, "obsolescent": 2, "non_glomerular": 1}},
    "b.svs": {"counts": {"normal": 3, "solidified": 1}},
    "x.svs": b"\x00garbage\xff" * 20,
    "c.tif": {"counts": {}},
    "d.ndpi": {"crash": True},
}


def by_stem(rows: list[dict]) -> dict[str, dict]:
    return {r["stem"]: r for r in rows}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_sequential_records_failures_resumes_and_overwrites(tmp_path):
    slides = make_slides(tmp_path / "in", COHORT)
    out = tmp_path / "out"
    rows = run_cohort(slides, out, PipelineConfig(), progress=False, runner=fake_run_slide)
    assert [r["stem"] for r in rows] == ["a", "b", "x", "c", "d"]  # input order
    r = by_stem(rows)
    assert r["a"]["status"] == "ok" and r["a"]["n_glomeruli"] == 10 and r["a"]["ggs_percent"] == 20.0
    assert r["a"]["counts"] == {"normal": 8, "obsolescent": 2, "non_glomerular": 1}
    assert r["c"]["status"] == "ok" and r["c"]["n_glomeruli"] == 0 and r["c"]["ggs_percent"] is None
    assert r["x"]["status"] == "failed" and "x.svs" in r["x"]["error"] and "not a readable" in r["x"]["error"]
    assert r["d"]["status"] == "failed"
    assert "ValueError" in r["d"]["error"] and "d.ndpi" in r["d"]["error"] and "\n" not in r["d"]["error"]
    assert r["a"]["worker"] == "main" and r["a"]["seconds"] >= 0
    table = read_csv(out / COHORT_CSV)
    assert [t["stem"] for t in table] == ["a", "b", "x", "c", "d"]
    assert table[0]["count_obsolescent"] == "2" and table[1]["count_obsolescent"] == "0"
    assert table[2]["status"] == "failed" and table[2]["count_normal"] == ""
    html = (out / COHORT_HTML).read_text()
    assert "not a readable slide" in html and 'href="a/report.html"' in html

    # resume: finished slides are skipped (their figures read back), failed ones are tried again
    before = (out / "a" / "summary.json").stat().st_mtime_ns
    rows2 = by_stem(run_cohort(slides, out, PipelineConfig(), progress=False, runner=fake_run_slide))
    assert {s: rows2[s]["status"] for s in rows2} == {
        "a": "skipped",
        "b": "skipped",
        "c": "skipped",
        "x": "failed",
        "d": "failed",
    }
    assert rows2["a"]["n_glomeruli"] == 10 and rows2["a"]["ggs_percent"] == 20.0
    assert (out / "a" / "summary.json").stat().st_mtime_ns == before

    # an incomplete output folder (a listed file missing) is not skipped
    (out / "b" / "table.csv").unlink()
    assert not outputs_complete(slides[1], out)
    rows3 = by_stem(run_cohort(slides[:2], out, PipelineConfig(), progress=False, runner=fake_run_slide))
    assert rows3["a"]["status"] == "skipped" and rows3["b"]["status"] == "ok"

    rows4 = run_cohort(
        slides[:2], out, PipelineConfig(), overwrite=True, progress=False, runner=fake_run_slide
    )
    assert [r["status"] for r in rows4] == ["ok", "ok"]


@pytest.mark.slow
def test_dask_local_cluster_runs_one_task_per_slide(tmp_path):
    from distributed import Client, LocalCluster

    slides = make_slides(tmp_path / "in", COHORT)
    out = tmp_path / "out"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        rows = by_stem(
            run_cohort(slides, out, PipelineConfig(), scheduler=client, progress=False, runner=fake_run_slide)
        )
        assert {s: r["status"] for s, r in rows.items()} == {
            "a": "ok",
            "b": "ok",
            "x": "failed",
            "c": "ok",
            "d": "failed",
        }
        workers = set(client.scheduler_info()["workers"])
        assert {rows[s]["worker"] for s in "abc"} <= {str(w.name) for w in cluster.workers.values()} | workers
        assert "ValueError" in rows["d"]["error"] and "d.ndpi" in rows["d"]["error"]
        assert "not a readable" in rows["x"]["error"]
        assert rows["b"]["ggs_percent"] == 25.0
        assert not client.futures  # every task released
        # the cluster object and its address are accepted too; finished slides are skipped
        for scheduler in (cluster, cluster.scheduler_address):
            again = by_stem(
                run_cohort(
                    slides, out, PipelineConfig(), scheduler=scheduler, progress=False, runner=fake_run_slide
                )
            )
            assert again["a"]["status"] == "skipped" and again["x"]["status"] == "failed"
            assert again["a"]["n_glomeruli"] == 10
    assert len(read_csv(out / COHORT_CSV)) == 5


@pytest.mark.slow
def test_two_local_worker_processes(tmp_path):
    specs = {f"s{k}.svs": {"counts": {"normal": k}, "sleep": 0.3} for k in range(4)}
    specs["x.svs"] = b"garbage"
    slides = make_slides(tmp_path / "in", specs)
    out = tmp_path / "out"
    rows = by_stem(
        run_cohort(slides, out, PipelineConfig(), workers=2, progress=False, runner=fake_run_slide)
    )
    assert [rows[f"s{k}"]["n_glomeruli"] for k in range(4)] == [0, 1, 2, 3]
    assert rows["x"]["status"] == "failed"
    pids = {json.loads((out / f"s{k}" / "summary.json").read_text())["pid"] for k in range(4)}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert all(rows[f"s{k}"]["worker"].startswith("process-") for k in range(4))


@pytest.mark.slow
def test_dead_local_worker_loses_no_slide(tmp_path):
    specs = {f"s{k}.svs": {"counts": {"normal": 1}, "sleep": 0.2} for k in range(3)}
    specs["dies.svs"] = {"counts": {"normal": 5}, "die_once": True}
    slides = make_slides(tmp_path / "in", specs)
    out = tmp_path / "out"
    rows = by_stem(
        run_cohort(slides, out, PipelineConfig(), workers=2, progress=False, runner=fake_run_slide)
    )
    assert (out / ".dies.died").exists()  # the worker did die once
    assert {s: r["status"] for s, r in rows.items()} == dict.fromkeys(rows, "ok")
    assert rows["dies"]["n_glomeruli"] == 5
    assert all(outputs_complete(s, out) for s in slides)


@pytest.mark.slow
def test_slide_that_always_kills_its_worker_fails_alone(tmp_path):
    specs = {"killer.svs": {"die_always": True}}  # first, so it shares the pool with s0
    specs.update({f"s{k}.svs": {"counts": {"normal": 1}, "sleep": 0.1} for k in range(3)})
    slides = make_slides(tmp_path / "in", specs)
    out = tmp_path / "out"
    rows = by_stem(
        run_cohort(slides, out, PipelineConfig(), workers=2, progress=False, runner=fake_run_slide)
    )
    assert rows["killer"]["status"] == "failed" and "died 3 times" in rows["killer"]["error"]
    assert (out / ".killer.died").read_text().count("died") == 3
    assert [rows[f"s{k}"]["status"] for k in range(3)] == ["ok"] * 3  # the others were not blamed


def test_threads_shared_between_local_workers(monkeypatch):
    monkeypatch.delenv("GLOMKIT_THREADS", raising=False)
    monkeypatch.setattr("glomkit.cohort.usable_cores", lambda: 8)
    assert threads_per_worker(PipelineConfig(), 2) == 4
    assert threads_per_worker(PipelineConfig(), 16) == 1
    assert threads_per_worker(PipelineConfig(threads=3), 2) == 3  # --threads wins
    monkeypatch.setenv("GLOMKIT_THREADS", "2")
    assert threads_per_worker(PipelineConfig(), 2) is None  # the runtime reads GLOMKIT_THREADS


def test_user_mistakes(tmp_path, monkeypatch):
    slides = make_slides(tmp_path / "one", {"a.svs": {}}) + make_slides(tmp_path / "two", {"a.tif": {}})
    with pytest.raises(GlomkitError, match="collide"):
        run_cohort(slides, tmp_path / "out", PipelineConfig(), progress=False, runner=fake_run_slide)
    with pytest.raises(GlomkitError, match="workers"):
        run_cohort(slides[:1], tmp_path / "out", PipelineConfig(), workers=0, runner=fake_run_slide)
    with pytest.raises(GlomkitError, match="not a dask scheduler"):
        run_cohort(slides[:1], tmp_path / "out", PipelineConfig(), scheduler=42, runner=fake_run_slide)
    monkeypatch.setattr("glomkit.cohort.CONNECT_TIMEOUT", "0.5s")
    with pytest.raises(GlomkitError, match="tcp://127.0.0.1:9: cannot connect"):
        run_cohort(
            slides[:1],
            tmp_path / "out",
            PipelineConfig(),
            scheduler="tcp://127.0.0.1:9",
            runner=fake_run_slide,
        )
    with pytest.raises(GlomkitError, match="nope.onnx"):
        run_cohort(slides[:1], tmp_path / "out", PipelineConfig(detector="nope.onnx"), progress=False)


def test_fallback_csv_columns(tmp_path):
    rows = [
        {"stem": "a", "status": "ok", "n_glomeruli": 2, "counts": {"normal": 2}, "timings": {"detect": 1.5}},
        {"stem": "b", "status": "ok", "n_glomeruli": 1, "counts": {"obsolescent": 1}, "timings": {}},
        {"stem": "c", "status": "failed", "error": "c.svs: bad", "counts": {}},
    ]
    table = read_csv(write_cohort_csv(tmp_path / "t.csv", rows))
    assert table[0]["count_normal"] == "2" and table[0]["count_obsolescent"] == "0"
    assert table[1]["count_obsolescent"] == "1" and table[0]["time_detect_s"] == "1.5"
    assert table[2]["count_normal"] == "" and table[2]["error"] == "c.svs: bad"


@pytest.mark.slow
def test_dask_worker_processes_survive_a_dead_worker(tmp_path):
    import dask
    from distributed import LocalCluster

    specs = {f"s{k}.svs": {"counts": {"normal": 2}} for k in range(3)}
    specs["dies.svs"] = {"counts": {"normal": 5, "obsolescent": 5}, "die_once": True}
    slides = make_slides(tmp_path / "in", specs)
    out = tmp_path / "out"
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 2}),
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
    ):
        rows = by_stem(
            run_cohort(
                slides, out, PipelineConfig(), scheduler=cluster, progress=False, runner=fake_run_slide
            )
        )
    assert (out / ".dies.died").exists()  # its first worker died; the scheduler gave it to another
    assert {s: r["status"] for s, r in rows.items()} == dict.fromkeys(rows, "ok"), rows
    assert rows["dies"]["ggs_percent"] == 50.0
    assert all(outputs_complete(s, out) for s in slides)
