"""Run a cohort of slides: in this process, in local worker processes, or on a dask cluster.

Each slide is one unit of work, processed by :func:`glomkit.pipeline.process_slide`, which writes
``OUT/<stem>/`` completely (summary.json last) before it returns. So a slide is either finished
on disk or not at all: a rerun skips the finished ones (resume), and a worker that dies loses only
the slide it was running, which is given to another worker.

Three modes, one result (a row per slide, in input order):

- sequential: ``workers=1`` and no scheduler; the models are loaded once.
- local processes: ``workers=N``; a ``ProcessPoolExecutor`` (forkserver or spawn, never fork),
  each worker's ONNX Runtime using ``cores // N`` threads.
- dask.distributed: ``scheduler="tcp://HOST:PORT"`` or a ``Client``/cluster object; one task per
  slide, gathered as they finish.

A slide that fails (a ``GlomkitError``, or a crash) gets a ``failed`` row with the reason and
the others go on. The rows are written to ``OUT/cohort_summary.csv`` and ``OUT/cohort_report.html``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from glomkit import GlomkitError
from glomkit.core.wording import count_of
from glomkit.io.partial import process_alive
from glomkit.pipeline import PipelineConfig, find_slides

SlideRunner = Callable[[Path, Path, Any], dict[str, Any]]  # (slide, out_root, config) -> summary
StageHook = Callable[[str, int, int], None]  # (stage, done, total), as process_slide's progress
COHORT_CSV = "cohort_summary.csv"
COHORT_HTML = "cohort_report.html"
TASK_PREFIX = "glomkit-slide"
CONNECT_TIMEOUT = "30s"  # to reach a dask scheduler
LOST_WORKER_ATTEMPTS = 3  # like dask's distributed.scheduler.allowed-failures


# --------------------------------------------------------------------------- rows


def _base_row(slide: Path, status: str, error: str = "", worker: str = "") -> dict[str, Any]:
    return {
        "stem": slide.stem,
        "source": str(slide),
        "status": status,
        "error": error,
        "n_glomeruli": None,
        "n_sclerosed": None,
        "counts": {},
        "ggs_percent": None,
        "seconds": None,
        "worker": worker,
        "timings": {},
    }


def _fill_from_summary(row: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    row["n_glomeruli"] = summary.get("n_glomeruli")
    row["n_sclerosed"] = summary.get("n_sclerosed")
    row["counts"] = dict(summary.get("counts") or {})
    row["ggs_percent"] = summary.get("ggs_percent") if summary.get("ggs_reportable", True) else None
    ci = summary.get("ggs_interval") or [None, None]
    row["ggs_ci_low"], row["ggs_ci_high"] = ci[0], ci[1]
    row["stain"] = summary.get("stain")
    row["flags"] = ";".join(summary.get("flags") or [])
    row["timings"] = {k: float(v) for k, v in (summary.get("timings") or {}).items()}
    return row


def ok_row(slide: Path, summary: dict[str, Any], seconds: float, worker: str) -> dict[str, Any]:
    """The row of a slide processed in this run."""
    row = _fill_from_summary(_base_row(slide, "ok", worker=worker), summary)
    row["seconds"] = round(seconds, 3)
    return row


def skipped_row(slide: Path, out_root: Path, worker: str = "") -> dict[str, Any]:
    """The row of a slide whose outputs are complete: its figures are read back from summary.json."""
    from glomkit.pipeline import SUMMARY, output_dir

    row = _base_row(slide, "skipped", worker=worker)
    try:
        summary = json.loads((output_dir(slide, out_root) / SUMMARY).read_text())
    except (OSError, ValueError):
        return row
    return _fill_from_summary(row, summary)


def failed_row(slide: Path, error: str, worker: str = "", seconds: float | None = None) -> dict[str, Any]:
    row = _base_row(slide, "failed", error, worker)
    row["seconds"] = None if seconds is None else round(seconds, 3)
    return row


def missing_row(path: Path) -> dict[str, Any]:
    """The row of an input that does not exist (the others are run; the run exits non-zero)."""
    return _base_row(Path(path), "missing", f"{path}: no such file or folder")


def with_review(row: dict[str, Any], out_root: Path) -> dict[str, Any]:
    """The row with a pathologist's figures where ``glomkit recount`` wrote them
    (``OUT/<stem>/review/summary.json``): counts, GGS % and the like come from the review, and
    ``reviewed`` is ``yes`` (``yes, on an earlier run`` when the slide was run again since)."""
    from glomkit.review.provenance import REVIEW_DIR, REVIEW_SUMMARY, run_state

    row["reviewed"] = ""
    if row.get("status") not in ("ok", "skipped"):
        return row
    folder = Path(out_root) / str(row["stem"])
    try:
        summary = json.loads((folder / REVIEW_DIR / REVIEW_SUMMARY).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return row
    if not isinstance(summary, dict) or summary.get("reviewed") is not True:
        return row
    timings = row.get("timings")
    _fill_from_summary(row, summary)
    row["timings"] = timings  # the run's, not the recount's
    row["reviewed"] = (
        "yes, on an earlier run" if run_state(folder, str(row["stem"]))["run_changed"] else "yes"
    )
    return row


def crash_message(slide: Path, exc: BaseException) -> str:
    """One line for an unexpected exception: the slide, the exception type and its message."""
    if isinstance(exc, GlomkitError):
        return str(exc)
    if isinstance(exc, OSError):  # a full disk, an unwritable output: the file and the reason
        from glomkit.io.paths import os_error_message

        return f"{slide}: {os_error_message(exc)}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{slide}: internal error {type(exc).__name__}" + (f": {text}" if text else "")


# --------------------------------------------------------------------------- one slide, in a worker

_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()


def _cached_models(config: Any) -> Any:
    """The process's models for ``config``, loaded on first use and kept for later slides."""
    from glomkit.pipeline import Models

    key = (config.detector, config.classifier, config.segmenter, config.device, config.threads)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = Models(config)
        return _MODELS[key]


def _default_runner(
    slide: Path, out_root: Path, config: Any, hook: StageHook | None = None
) -> dict[str, Any]:
    from glomkit.pipeline import process_slide

    return process_slide(slide, out_root, config, models=_cached_models(config), progress=hook)


def _worker_name() -> str:
    if "distributed" in sys.modules:  # imported in every dask worker; not imported for nothing here
        try:
            from distributed import get_worker

            w = get_worker()
            return w.name if isinstance(w.name, str) else w.address  # LocalCluster names are 0, 1...
        except ValueError:  # not inside a dask worker
            pass
    if multiprocessing.parent_process() is not None:
        return f"process-{os.getpid()}"
    return "main"


def slide_row(
    slide: Path,
    out_root: Path,
    config: Any,
    overwrite: bool = False,
    runner: SlideRunner | None = None,
    hook: StageHook | None = None,
) -> dict[str, Any]:
    """Process one slide of a cohort in the calling process (a worker) and return its row.

    A bad slide (``GlomkitError``) gives a ``failed`` row. Any other exception propagates, so the
    executor can retry the slide elsewhere and finally record the crash. The cohort has already
    skipped the slides that were complete before the run, so complete outputs found here were
    written in this run by an earlier attempt of the same task (its worker died after the slide was
    finished, before the row reached the client): the row is ``ok``, read back from summary.json.
    """
    from glomkit.pipeline import outputs_complete

    slide, out_root = Path(slide), Path(out_root)
    worker = _worker_name()
    if not overwrite and outputs_complete(slide, out_root):
        row = skipped_row(slide, out_root, worker)
        row.update(status="ok", error="")
        total = row["timings"].get("total")
        row["seconds"] = None if total is None else round(total, 3)
        return row
    t0 = time.perf_counter()
    try:
        if runner is None:
            summary = _default_runner(slide, out_root, config, hook)
        else:
            summary = runner(slide, out_root, config)
    except GlomkitError as exc:
        return failed_row(slide, str(exc), worker, time.perf_counter() - t0)
    return ok_row(slide, summary, time.perf_counter() - t0, worker)


def _dask_task(slide: Path, out_root: Path, config: Any, overwrite: bool, runner: SlideRunner | None):
    """One slide on a dask worker: ONNX threads shared among the tasks this worker runs at once."""
    if config.threads is None and not os.environ.get("GLOMKIT_THREADS"):
        try:
            from distributed import get_worker

            nthreads = max(1, int(get_worker().state.nthreads))
        except (ImportError, ValueError, AttributeError):
            nthreads = 1
        config = replace(config, threads=max(1, usable_cores() // nthreads))
    return slide_row(slide, out_root, config, overwrite, runner)


def _init_local_worker(threads: int, parent_pid: int | None = None) -> None:
    """Initializer of a local worker process: keep OpenMP/OpenCV to this worker's share of cores,
    and die with the cohort's process (``PR_SET_PDEATHSIG`` plus a thread watching ``parent_pid``).
    Ctrl-C is left to the parent, which stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:  # pragma: no cover - opencv is a dependency
        pass


PARENT_POLL_S = 0.5


def _die_with_parent(parent_pid: int | None) -> None:
    """End this worker when its parent dies, even by SIGKILL: the kernel's parent-death signal
    (Linux; the parent of a forkserver worker is the forkserver, which exits with the cohort),
    and a daemon thread that polls the cohort's process ``parent_pid``."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl here
            pass
    if parent_pid is None:
        return

    def watch() -> None:
        while process_alive(parent_pid):
            time.sleep(PARENT_POLL_S)
        os._exit(1)  # the cohort is gone: nobody will read this worker's result

    threading.Thread(target=watch, name="glomkit-parent-watch", daemon=True).start()


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that the cohort stops its workers and unwinds."""


@contextmanager
def _stop_on_sigterm():
    """While running a cohort in the main thread, SIGTERM unwinds it like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise _Terminated(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _stop_workers(pool: ProcessPoolExecutor, grace_s: float = 5.0) -> None:
    """Terminate the pool's worker processes (their slides' partial folders are cleaned on rerun)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(1.0)
    pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- the cohort


def usable_cores() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def threads_per_worker(config: Any, workers: int) -> int | None:
    """ONNX threads for each of ``workers`` local processes: ``--threads``, else GLOMKIT_THREADS
    (read by the runtime), else an equal share of the cores."""
    if config.threads is not None:
        return config.threads
    if os.environ.get("GLOMKIT_THREADS"):
        return None
    return max(1, usable_cores() // max(1, workers))


def _check_stems(slides: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for s in slides:
        if s.stem in ("", ".", "..") or s.stem.startswith("."):
            raise GlomkitError(
                f"{s}: its name gives the output folder name {s.stem!r}, which would be hidden or "
                "outside OUT; rename the file"
            )
        if s.stem in seen:
            raise GlomkitError(
                f"{s}: same name as {seen[s.stem]}; their outputs would collide in OUT/{s.stem}/"
            )
        seen[s.stem] = s


def _absolute_models(config: Any) -> Any:
    """Resolve model files on the client and fail early: a missing model would fail every slide.
    Paths become absolute so that workers in other folders (or on other machines) find them."""
    from glomkit.models.registry import resolve_model

    changes = {}
    for task in ("detector", "classifier", "segmenter"):
        path = resolve_model(getattr(config, task), task)
        if getattr(config, task) is not None:
            changes[task] = str(path.resolve())
    return replace(config, **changes) if changes else config


def _check_models(config: Any, in_process: bool) -> None:
    """Load the models once here, so that a bad model file is one error before any slide runs
    (it would fail every slide). A sequential run keeps them; workers load their own."""
    if in_process:
        _cached_models(config)
        return
    from glomkit.pipeline import Models

    Models(replace(config, threads=1, device="cpu"))


def run_cohort(
    slides: list[Path],
    out_root: Path,
    config: Any,
    workers: int = 1,
    scheduler: Any = None,
    overwrite: bool = False,
    progress: bool = True,
    *,
    retries: int = 1,
    runner: SlideRunner | None = None,
    missing: list[Path] | None = None,
) -> list[dict[str, Any]]:
    """Run every slide; return one row per slide in input order and write the cohort CSV and HTML.

    ``scheduler`` is a dask address (``tcp://HOST:PORT``), a ``distributed.Client`` or a cluster
    object (e.g. ``LocalCluster``, ``SLURMCluster``); otherwise ``workers`` local processes run
    the slides (1 = in this process). Slides whose outputs are complete are skipped unless
    ``overwrite``. ``retries`` re-runs a slide whose worker crashed with an unexpected exception
    or died. ``runner`` replaces :func:`glomkit.pipeline.process_slide` (``(slide, out_root, config)
    -> summary``; it must be importable by the workers). ``missing``: inputs that do not exist,
    each reported in one line and as a ``missing`` row after the slides.

    Rows show a slide's reviewed figures where ``glomkit recount`` counted it again. When the run
    is interrupted (Ctrl-C, SIGTERM), the cohort table is written with the slides finished so far
    (the others ``interrupted``) before the interruption goes on.
    """
    if workers < 1:
        raise GlomkitError(f"--workers {workers}: must be at least 1")
    slides = [Path(s).resolve() for s in slides]
    out_root = Path(out_root).resolve()
    if not slides:
        raise GlomkitError("no slides to run")
    _check_stems(slides)
    if scheduler is not None:
        _require_distributed()
    if runner is None:
        config = _absolute_models(config)
        _check_models(config, in_process=scheduler is None and workers == 1)
    from glomkit.io.paths import prepare_out_dir

    prepare_out_dir(out_root)
    from glomkit.io.partial import clean_stale_partials

    for s in slides:  # partial folders of killed runs, the skipped slides' included
        clean_stale_partials(out_root, s.stem)

    from glomkit.pipeline import outputs_complete

    rows: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    for i, s in enumerate(slides):
        if not overwrite and outputs_complete(s, out_root):
            rows[i] = skipped_row(s, out_root)
        else:
            todo.append(i)

    absent = [missing_row(p) for p in missing or []]
    try:
        with _stop_on_sigterm(), _CohortProgress(len(slides), len(rows), progress) as prog:
            for row in absent:
                prog.done(row, advance=False)
            if todo:
                if scheduler is not None:
                    _run_dask(
                        slides, todo, out_root, config, scheduler, overwrite, retries, runner, rows, prog
                    )
                elif workers > 1:
                    _run_processes(
                        slides, todo, out_root, config, workers, overwrite, retries, runner, rows, prog
                    )
                else:
                    _run_sequential(slides, todo, out_root, config, overwrite, runner, rows, prog)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM (_Terminated): the table of what is finished, then stop
        done = [rows.get(i) or _base_row(s, "interrupted") for i, s in enumerate(slides)]
        try:
            write_cohort_outputs(out_root, [with_review(r, out_root) for r in done] + absent)
        except OSError:
            pass
        raise
    ordered = [with_review(rows[i], out_root) for i in range(len(slides))] + absent
    write_cohort_outputs(out_root, ordered)
    return ordered


class _CohortProgress:
    """A rich progress bar over slides, plus one line per finished slide (all off when disabled)."""

    def __init__(self, total: int, skipped: int, enabled: bool) -> None:
        from rich.console import Console

        from glomkit.progress import job_progress

        self.enabled = enabled
        self.console = Console(stderr=True)
        self.progress = job_progress(disable=not enabled, console=self.console)
        self.task = self.progress.add_task("slides", total=total, completed=skipped, info="")
        self.stage_task = self.progress.add_task("", total=None, visible=False, info="")
        if enabled and skipped:
            self.console.print(
                f"{count_of(skipped, 'slide')} already complete: skipped (use --overwrite to redo)"
            )

    def __enter__(self) -> _CohortProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def start(self, slide: Path) -> StageHook:
        """Show the slide being run (one process) and return a hook for its stage bar."""
        self.progress.update(self.task, description=f"slides ({slide.name})")
        self.progress.update(self.stage_task, completed=0, total=None, visible=False)

        def hook(stage: str, done: int, total: int) -> None:
            self.progress.update(
                self.stage_task, description=f"  {stage}", completed=done, total=total, visible=True
            )

        return hook

    def done(self, row: dict[str, Any], advance: bool = True) -> None:
        self.progress.update(self.stage_task, visible=False)
        self.progress.update(self.task, description="slides")
        if advance:
            self.progress.advance(self.task)
        if not self.enabled:
            if row["status"] in ("failed", "missing"):  # an error always reaches stderr, whatever the flags
                self.console.print(
                    f"glomkit: error: {row['error']}", markup=False, highlight=False, soft_wrap=True
                )
            return
        where = f" [dim]({row['worker']}, {row['seconds']} s)[/dim]" if row.get("worker") else ""
        if row["status"] in ("failed", "missing"):
            self.console.print(f"glomkit: error: {row['error']}", style="red", markup=False, soft_wrap=True)
        else:
            g = row.get("ggs_percent")
            ggs = f", global sclerosis {g:.1f} %" if isinstance(g, (int, float)) else ""
            if isinstance(g, (int, float)) and row.get("ggs_ci_low") is not None:
                ggs += f" (95 % interval {row['ggs_ci_low']:.0f}-{row['ggs_ci_high']:.0f} %)"
            n = count_of(row.get("n_glomeruli") or 0, "glomerulus")
            flags = f" [yellow]flags: {row['flags'].replace(';', ', ')}[/yellow]" if row.get("flags") else ""
            self.console.print(f"{row['stem']}: {n}{ggs}{flags}{where}")


def _run_sequential(slides, todo, out_root, config, overwrite, runner, rows, prog) -> None:
    for i in todo:
        try:
            hook = prog.start(slides[i])
            rows[i] = slide_row(slides[i], out_root, config, overwrite, runner, hook)
        except Exception as exc:  # noqa: BLE001 - one broken slide must not stop a cohort
            rows[i] = failed_row(slides[i], crash_message(slides[i], exc), _worker_name())
        prog.done(rows[i])


def _process_context() -> multiprocessing.context.BaseContext:
    """forkserver where it exists (POSIX), else spawn; never fork (threads + ONNX Runtime)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _run_processes(slides, todo, out_root, config, workers, overwrite, retries, runner, rows, prog) -> None:
    """Local worker processes, at most ``workers`` slides in flight.

    A worker that dies breaks the whole pool and fails every slide in flight, so which slide killed
    it is unknown: those slides become suspects, and a new pool runs each suspect alone. A slide
    whose worker dies ``LOST_WORKER_ATTEMPTS`` times is recorded as failed; the others go on.
    """
    threads = threads_per_worker(config, workers)
    wconfig = replace(config, threads=threads)
    queue, suspects = deque(todo), deque()
    crashes: Counter[int] = Counter()
    deaths: Counter[int] = Counter()
    while queue or suspects:
        pool = ProcessPoolExecutor(
            min(workers, len(queue) + len(suspects)),
            mp_context=_process_context(),
            initializer=_init_local_worker,
            initargs=(threads or 1, os.getpid()),
        )
        running: dict[Future, int] = {}
        broken = False
        try:
            while running or ((queue or suspects) and not broken):
                while not broken and len(running) < workers and (queue or suspects):
                    if any(j in deaths for j in running.values()) or (suspects and running):
                        break  # a suspect runs alone
                    i = suspects.popleft() if suspects else queue.popleft()
                    running[pool.submit(slide_row, slides[i], out_root, wconfig, overwrite, runner)] = i
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = running.pop(fut)
                    exc = fut.exception()
                    if isinstance(exc, BrokenProcessPool):
                        broken = True
                        deaths[i] += 1
                        if deaths[i] < LOST_WORKER_ATTEMPTS:
                            suspects.append(i)
                            continue
                        rows[i] = failed_row(
                            slides[i],
                            f"{slides[i]}: the worker process died {deaths[i]} times running this slide",
                        )
                    elif exc is not None:
                        crashes[i] += 1
                        if crashes[i] <= retries:
                            queue.append(i)
                            continue
                        rows[i] = failed_row(slides[i], crash_message(slides[i], exc))
                    else:
                        rows[i] = fut.result()
                    prog.done(rows[i])
        except BaseException:  # Ctrl-C, SIGTERM: stop the workers now; finished slides stay
            _stop_workers(pool)
            raise
        pool.shutdown(wait=True)


def _require_distributed() -> None:
    """A one-line GlomkitError naming the extra to install when dask.distributed is unusable."""
    try:
        import distributed  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install failing on import
        raise GlomkitError(
            "--dask-scheduler: needs dask.distributed, which is not installed or cannot be imported "
            f"({type(exc).__name__}); install the 'cohort' extra: pip install 'glomkit[cohort]'"
        ) from None


def _get_client(scheduler: Any) -> tuple[Any, bool]:
    """A ``distributed.Client`` for an address, a client or a cluster; and whether we own it."""
    _require_distributed()
    from distributed import Client

    if isinstance(scheduler, Client):
        return scheduler, False
    if isinstance(scheduler, str):
        try:
            return Client(scheduler, timeout=CONNECT_TIMEOUT), True
        except (OSError, TimeoutError) as exc:
            raise GlomkitError(f"{scheduler}: cannot connect to the dask scheduler ({exc})") from exc
    if hasattr(scheduler, "scheduler_address"):  # LocalCluster, SLURMCluster, KubeCluster...
        return Client(scheduler), True
    raise GlomkitError(f"{scheduler!r}: not a dask scheduler address, Client or cluster")


def _run_dask(slides, todo, out_root, config, scheduler, overwrite, retries, runner, rows, prog) -> None:
    """One task per slide, gathered as they finish. The scheduler re-runs elsewhere the task of a
    worker that died (``distributed.scheduler.allowed-failures`` times, then KilledWorker);
    ``retries`` re-runs a task that raised."""
    client, owned = _get_client(scheduler)  # first: it says which extra is missing
    from distributed import as_completed

    run_id = uuid.uuid4().hex[:8]
    futures: dict[str, tuple[Any, int]] = {}
    try:
        for i in todo:
            fut = client.submit(
                _dask_task,
                slides[i],
                out_root,
                config,
                overwrite,
                runner,
                key=f"{TASK_PREFIX}-{slides[i].stem}-{run_id}",
                pure=False,
                retries=retries,
            )
            futures[fut.key] = (fut, i)
        for fut in as_completed([f for f, _ in futures.values()], raise_errors=False):
            entry = futures.pop(fut.key, None)
            if entry is None:  # already handled
                continue
            i = entry[1]
            # result() rather than the status: a result held by a worker that has just died is
            # recomputed, and result() waits for it.
            try:
                rows[i] = fut.result()
            except Exception as exc:  # noqa: BLE001 - the task's own exception, or KilledWorker
                rows[i] = failed_row(slides[i], _dask_error(slides[i], exc))
            fut.release()
            prog.done(rows[i])
    except BaseException:
        if futures:
            client.cancel([f for f, _ in futures.values()], force=True)
        raise
    finally:
        if owned:
            client.close()


def _dask_error(slide: Path, exc: BaseException) -> str:
    if type(exc).__name__ == "KilledWorker":
        return f"{slide}: the dask workers running this slide died repeatedly (KilledWorker)"
    if type(exc).__name__ == "CancelledError":
        return f"{slide}: the dask task was cancelled"
    return crash_message(slide, exc)


# --------------------------------------------------------------------------- outputs


def write_cohort_outputs(out_root: Path, rows: list[dict[str, Any]]) -> list[Path]:
    """OUT/cohort_summary.csv and OUT/cohort_report.html."""
    from glomkit.io.report import write_cohort_csv, write_cohort_report

    csv_path, html_path = Path(out_root) / COHORT_CSV, Path(out_root) / COHORT_HTML
    write_cohort_csv(csv_path, rows)
    write_cohort_report(html_path, rows)
    return [csv_path, html_path]


def recount_slide(
    out_dir: str | Path, annotations: str | Path | None = None, slide: str | Path | None = None
) -> dict[str, Any]:
    """``glomkit recount``: the reviewed summary and report of one slide folder
    (``glomkit.review.recount.recount``), then the cohort table beside it, if it has a row for the
    slide, rewritten with the reviewed figures."""
    from glomkit.review.recount import recount

    summary = recount(out_dir, annotations=annotations, slide=slide)
    out_dir = Path(out_dir).resolve()
    if out_dir.name == summary.get("stem"):
        refresh_cohort_outputs(out_dir.parent, str(summary["stem"]))
    return summary


def refresh_cohort_outputs(out_root: Path, stem: str | None = None) -> Path | None:
    """Rewrite ``OUT/cohort_summary.csv`` and the cohort report from the slides' folders (their
    reviewed figures included), keeping each row's status, error, time and worker. Returns the
    CSV, or None when ``out_root`` holds no cohort table (or none with a row for ``stem``)."""
    import csv

    from glomkit.pipeline import SUMMARY

    out_root = Path(out_root)
    path = out_root / COHORT_CSV
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            old = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if stem is not None and all(rec.get("stem") != stem for rec in old):
        return None
    rows = []
    for rec in old:
        slide = Path(rec.get("source") or rec.get("stem") or "")
        row = _base_row(slide, rec.get("status") or "", rec.get("error") or "", rec.get("worker") or "")
        row["stem"] = rec.get("stem") or slide.stem
        try:
            row["seconds"] = float(rec["seconds"]) if rec.get("seconds") else None
        except ValueError:
            pass
        if row["status"] in ("ok", "skipped") and row["stem"]:
            try:
                _fill_from_summary(row, json.loads((out_root / row["stem"] / SUMMARY).read_text()))
            except (OSError, UnicodeDecodeError, ValueError):
                pass
        rows.append(with_review(row, out_root))
    write_cohort_outputs(out_root, rows)
    return path


# -- many inputs: discovery, then the cohort ------------------------------------------------


def run_inputs(
    inputs: list[Path],
    out_root: Path,
    config: PipelineConfig,
    overwrite: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
) -> list[dict[str, Any]]:
    """Run every slide found in ``inputs``; one row per slide (status ok, skipped or failed), then
    one per input that does not exist (status missing), when others do."""
    if isinstance(scheduler, str):
        check_scheduler_address(scheduler)
    missing: list[Path] = []
    slides = find_slides(inputs, missing)
    if not slides and missing:
        raise GlomkitError(f"{', '.join(map(str, missing))}: no such file or folder")
    if not slides:
        raise GlomkitError(f"{', '.join(map(str, inputs))}: no slides or images found")
    if config.mpp_table and not config.quiet:
        _warn_unmatched(config.mpp_table, slides)
    return run_cohort(
        slides,
        Path(out_root),
        config,
        workers=workers,
        scheduler=scheduler,
        overwrite=overwrite,
        progress=not config.quiet,
        missing=missing,
    )


def _warn_unmatched(table_path: str, slides: list[Path]) -> None:
    """One line on stderr naming the scale-table rows that match no input (likely typos)."""
    from glomkit.slide.mpp_table import load_mpp_table

    missing = load_mpp_table(table_path).unmatched(slides)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        print(
            f"glomkit: warning: --mpp-table rows match no input: {', '.join(missing[:3])}{more}",
            file=sys.stderr,
        )


def check_scheduler_address(address: str) -> None:
    """A one-line GlomkitError for a ``--dask-scheduler`` that is not a scheduler address
    (``tcp://HOST:PORT``; dask's other schemes too), checked before any slide runs. Without the
    ``cohort`` extra nothing is checked here (the cohort says that the extra is missing)."""
    try:
        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import get_backend
    except ImportError:
        return
    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            host, port = parse_host_port(location)
            if not host:
                raise ValueError("no host")
            if not 1 <= int(port) <= 65535:
                raise ValueError(f"port {port} is not 1-65535")
    except (ValueError, TypeError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise GlomkitError(
            f"--dask-scheduler {address!r}: not a scheduler address ({reason}); expected tcp://HOST:PORT"
        ) from None
