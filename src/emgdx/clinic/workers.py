"""Analyses in worker processes: a native crash (a segfault or SIGFPE in a library) or a hung
analysis ends one worker, never the server, and the analysis is recorded as failed with the
reason.

Each worker loads the pipeline once from its saved folder and then runs analysis jobs sent
over a pipe. Written by hand rather than with ``concurrent.futures.ProcessPoolExecutor``,
because that pool (Python 3.11) can neither kill one hung worker nor say which signal ended a
dead one, and after one crash it refuses every later job until it is rebuilt.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from emgdx.pipeline import Pipeline
    from emgdx.report import ClinicalReport

__all__ = [
    "AnalysisFailed",
    "AnalysisJob",
    "AnalysisProduct",
    "WorkerPool",
    "describe_failure",
    "run_job",
]

log = logging.getLogger("emgdx.clinic")


class AnalysisFailed(Exception):
    """The analysis could not be completed; ``reason`` says why, in words for the clinic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class AnalysisJob:
    recordings: list[Any]
    patient: Mapping[str, str]
    visit: Mapping[str, str]
    explain: bool
    explain_figures: int


@dataclasses.dataclass(frozen=True)
class AnalysisProduct:
    report: ClinicalReport
    html: str
    pdf: bytes


def describe_failure(exc: BaseException) -> str:
    """The reason stored with a failed analysis: an emgdx error's own message (it names the
    problem, never a server path); for anything else only its type, the traceback going to
    the server's log."""
    from emgdx.errors import EmgdxError

    if isinstance(exc, EmgdxError):
        return str(exc)
    log.error("analysis failed", exc_info=exc)
    return f"an internal error in the analysis ({type(exc).__name__}); the server log has details"


def run_job(pipeline: Pipeline, job: AnalysisJob) -> AnalysisProduct:
    """The report of one visit and its two renderings: the same road in a worker or inline."""
    from emgdx.report import build_report, render_html, render_pdf

    report = build_report(
        pipeline,
        job.recordings,
        patient=job.patient,
        visit=job.visit,
        explain_method="integrated_gradients" if job.explain else None,
        n_figures=job.explain_figures if job.explain else 0,
    )
    return AnalysisProduct(report, render_html(report), render_pdf(report))


def _worker_main(conn: Connection, model_dir: str, backend: str, threads: int) -> None:
    """A worker: load the pipeline, say so, then answer jobs until told to stop (or orphaned)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is the server's to handle
    # the server's log format, on the stderr the worker shares with it
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import torch

        torch.set_num_threads(threads)
        from emgdx.pipeline import Pipeline

        pipeline = Pipeline.load(model_dir, backend=backend)
    except Exception as exc:  # reported to the server, which shows it
        conn.send(("error", f"the model could not be loaded: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the server is gone: stop with it
            return
        if job is None:
            return
        try:
            answer: tuple[str, Any] = ("ok", run_job(pipeline, job))
        except Exception as exc:  # a failed analysis is an answer, not the end of the worker
            answer = ("error", describe_failure(exc))
        try:
            conn.send(answer)
        except OSError:  # the server is gone
            return
        except Exception as exc:  # e.g. a result that does not pickle
            conn.send(("error", f"the result could not be returned: {exc}"))


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the analysis process was stopped by {name} (a crash in native code, or memory)"
    return f"the analysis process ended unexpectedly (exit code {code})"


class _Worker:
    def __init__(self, model_dir: Path, backend: str, threads: int) -> None:
        ctx = mp.get_context("spawn")  # a fresh interpreter: no locks or threads of the server
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main,
            args=(child, str(model_dir), backend, threads),
            name="emgdx-analysis",
            daemon=True,
        )
        self.proc.start()
        child.close()
        self.ready = False

    def _receive(self, timeout_s: float) -> tuple[str, Any]:
        if not self.conn.poll(timeout_s):
            self.kill()
            raise AnalysisFailed(f"the analysis took longer than {timeout_s:.0f} s and was stopped")
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(timeout=5)
            raise AnalysisFailed(_describe_exit(self.proc.exitcode)) from None

    def run(self, job: AnalysisJob, timeout_s: float, load_timeout_s: float) -> AnalysisProduct:
        if not self.ready:
            kind, value = self._receive(load_timeout_s)
            if kind != "ready":
                self.kill()
                raise AnalysisFailed(str(value))
            self.ready = True
        try:
            self.conn.send(job)
        except (BrokenPipeError, OSError):
            self.proc.join(timeout=5)
            raise AnalysisFailed(_describe_exit(self.proc.exitcode)) from None
        kind, value = self._receive(timeout_s)
        if kind != "ok":
            raise AnalysisFailed(str(value))
        return value

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.kill()


class WorkerPool:
    """``size`` worker processes, each with the pipeline saved in ``model_dir``; one job each at
    a time, callers queue for a free one. A dead or hung worker is replaced by a fresh one."""

    def __init__(
        self,
        model_dir: Path,
        *,
        size: int = 1,
        backend: str = "auto",
        timeout_s: float = 600.0,
        load_timeout_s: float = 300.0,
    ) -> None:
        self.model_dir = model_dir
        self.backend = backend
        self.timeout_s = timeout_s
        self.load_timeout_s = load_timeout_s
        self.threads = max(1, (os.cpu_count() or 1) // size)
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(size):  # started now, so the model is loaded before the first analysis
            self._idle.put(self._start())

    def _start(self) -> _Worker:
        worker = _Worker(self.model_dir, self.backend, self.threads)
        with self._lock:
            self._all.append(worker)
        return worker

    def _retire(self, worker: _Worker) -> _Worker:
        worker.kill()
        with self._lock:
            self._all.remove(worker)
        return self._start()

    def run(self, job: AnalysisJob) -> AnalysisProduct:
        """The job's product, or :class:`AnalysisFailed` (the worker replaced if it died)."""
        if self._closed:
            raise AnalysisFailed("the service is shutting down")
        worker = self._idle.get()
        try:
            return worker.run(job, self.timeout_s, self.load_timeout_s)
        finally:
            if not worker.alive or not worker.ready:
                worker = self._retire(worker)
            self._idle.put(worker)

    def pids(self) -> list[int]:
        """The worker processes' ids (for monitoring)."""
        with self._lock:
            return [w.proc.pid for w in self._all if w.proc.pid is not None]

    def close(self) -> None:
        """Stop every worker (those busy are killed)."""
        self._closed = True
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.stop()
