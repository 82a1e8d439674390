"""Bounded load test of the clinic service on loopback: N simultaneous upload + analysis.

    python benchmarks/load_clinic.py [--concurrency 200] [--database-url URL ...]
                                     [--explain no|yes|both] [--out docs/benchmarks.md]

For each database (``--database-url`` may be given more than once; ``sqlite`` or no option:
a fresh temporary SQLite file; a PostgreSQL URL: a fresh database ``emgdx_load_<random>`` is
created on that server and dropped at the end):

1. the small test model (``tests/clinic_support.py``, cached under ``out/load_clinic/``) is
   served by the real service, ``emgdx serve`` (uvicorn) in a subprocess on a free
   127.0.0.1 port;
2. setup, not timed: one clinic and its token, N patients with one visit each;
3. timed: N tasks started at once (``asyncio.gather``, one ``httpx.AsyncClient`` with N
   connections, 600 s timeouts): each uploads one simulated WFDB record (.hea + .dat) to its
   visit, then POSTs the visit's analysis without evidence figures (``{"explain": false}``)
   and, in a second run, with them (``--explain`` chooses);
4. verified: every request answered 2xx; through the API every visit has its one recording
   and its one analysis; counting rows in the database: exactly N recordings, N analyses, N
   analysed visits.

It prints a table and replaces the section ``clinic-load`` of docs/benchmarks.md (``--out``).
``tests/test_clinic_load.py`` imports this file for a small version in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

from _common import BENCHMARKS_MD, cpu_model, machine_line, write_section  # noqa: E402

CACHE = ROOT / "out" / "load_clinic"
TIMEOUT_S = 600.0
SECTION = "clinic-load"


# --------------------------------------------------------------------------- inputs


def small_model(cache: Path = CACHE) -> Path:
    """The small fitted 1-D CNN of the clinic tests, trained once and kept in ``cache``."""
    from clinic_support import train_small_model

    model = cache / "model" / "cnn1d"
    if not (model / "pipeline.json").is_file():
        train_small_model(model)
    return model


def upload_records(cache: Path = CACHE) -> list[Path]:
    """Simulated WFDB records (one per class): their header files."""
    from clinic_support import write_upload_records

    headers = sorted((cache / "records").glob("*.hea"))
    return headers or write_upload_records(cache / "records")


def record_parts(header: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    from clinic_support import record_files

    return record_files(header)


# --------------------------------------------------------------------------- database


def _psycopg_conninfo(url: str) -> str:
    # SQLAlchemy's "postgresql+psycopg://" is psycopg's "postgresql://".
    return urlunsplit(urlsplit(url)._replace(scheme="postgresql"))


@contextlib.contextmanager
def fresh_database(url: str | None, workdir: Path) -> Iterator[str]:
    """A fresh empty database: SQLite in ``workdir`` (url None or "sqlite"), or a new
    ``emgdx_load_<random>`` on the PostgreSQL server of ``url``, dropped afterwards."""
    if not url or url == "sqlite":
        yield f"sqlite:///{workdir / 'clinic.db'}"
        return
    if not url.startswith("postgresql"):
        raise SystemExit(f"--database-url: sqlite or a postgresql+psycopg:// URL, got {url!r}")
    import psycopg
    from psycopg import sql

    name = f"emgdx_load_{secrets.token_hex(4)}"
    conninfo = _psycopg_conninfo(url)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=30) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=30) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def create_clinic_token(database_url: str, name: str = "Load clinic") -> str:
    """Migrate the database, create a clinic and return a new API token for it."""
    from emgdx.clinic.admin import create_clinic, create_token
    from emgdx.clinic.db import Database

    db = Database(database_url)
    try:
        create_clinic(db, name)
        return create_token(db, name, label="load test")
    finally:
        db.dispose()


def count_rows(database_url: str) -> dict[str, int]:
    """Rows counted directly in the database (not through the service)."""
    from sqlalchemy import distinct, func, select

    from emgdx.clinic.db import Database
    from emgdx.clinic.models import Analysis, Recording, Visit

    db = Database(database_url, run_migrations=False)
    try:
        with db.session() as s:
            return {
                "visits": int(s.scalar(select(func.count()).select_from(Visit)) or 0),
                "recordings": int(s.scalar(select(func.count()).select_from(Recording)) or 0),
                "analyses": int(s.scalar(select(func.count()).select_from(Analysis)) or 0),
                "analysed_visits": int(
                    s.scalar(select(func.count(distinct(Analysis.visit_id)))) or 0
                ),
            }
    finally:
        db.dispose()


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def serve(
    model_dir: Path, database_url: str, workdir: Path, *, startup_timeout_s: float = 180.0
) -> Iterator[Server]:
    """``emgdx serve`` in a subprocess on a free loopback port, until the block ends."""
    port = free_port()
    log = workdir / "server.log"
    env = {**os.environ, "EMGDX_HOME": str(workdir), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "emgdx.cli", "serve", "--model", str(model_dir)]
    cmd += ["--database-url", database_url, "--port", str(port)]
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited ({process.returncode}):\n{_tail(log)}")
            try:
                if httpx.get(f"{server.url}/api/v1/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start in {startup_timeout_s:.0f} s")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _errors(path: Path, keep: Path = CACHE / "logs") -> str:
    """The server log's error entries (tracebacks included); the whole log is kept in
    ``keep`` for a closer look."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    keep.mkdir(parents=True, exist_ok=True)
    kept = keep / f"server-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.log"
    kept.write_text(text)
    out, inside = [], False
    for line in text.splitlines():
        if " INFO " in line[:40]:
            inside = False
        elif " ERROR " in line[:40] or " WARNING " in line[:40]:
            inside = True
        if inside:
            out.append(line)
    return "\n".join(out[-200:]) + f"\n(whole log: {kept})"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- load


def _client(base_url: str, token: str, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(TIMEOUT_S),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def create_visits(
    base_url: str, token: str, n: int, parallel: int = 16, prefix: str = "LOAD"
) -> list[str]:
    """Setup: n patients (``prefix``-00000, ...) with one visit each; returns the visit ids
    (in patient order)."""
    gate = asyncio.Semaphore(parallel)

    async def one(client: httpx.AsyncClient, i: int) -> str:
        async with gate:
            r = await client.post("/api/v1/patients", json={"external_id": f"{prefix}-{i:05d}"})
            r.raise_for_status()
            r = await client.post(
                f"/api/v1/patients/{r.json()['id']}/visits", json={"date": "2026-11-24"}
            )
            r.raise_for_status()
            return str(r.json()["id"])

    async with _client(base_url, token, parallel) as client:
        return list(await asyncio.gather(*(one(client, i) for i in range(n))))


@dataclass
class LoadResult:
    n: int
    wall_s: float
    upload_s: list[float] = field(default_factory=list)
    analysis_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    analysis_ids: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Analyses per second over the timed phase."""
        return self.n / self.wall_s


async def run_load(
    base_url: str, token: str, visit_ids: list[str], headers: list[Path], *, explain: bool
) -> LoadResult:
    """Timed: one task per visit, all at once: upload one record, then analyse the visit."""
    parts = [record_parts(h) for h in headers]
    n = len(visit_ids)
    uploads: list[float] = [np.nan] * n
    analyses: list[float] = [np.nan] * n
    totals: list[float] = [np.nan] * n
    failures: list[str] = []
    analysis_ids: list[str] = []

    async def one(client: httpx.AsyncClient, i: int, visit_id: str) -> None:
        t0 = time.perf_counter()
        try:
            r = await client.post(f"/api/v1/visits/{visit_id}/recordings", files=parts[i % 3])
            t1 = time.perf_counter()
            uploads[i] = t1 - t0
            if r.status_code // 100 != 2:
                failures.append(f"upload {i}: {r.status_code} {r.text[:300]}")
                return
            r = await client.post(f"/api/v1/visits/{visit_id}/analysis", json={"explain": explain})
            t2 = time.perf_counter()
            analyses[i], totals[i] = t2 - t1, t2 - t0
            if r.status_code // 100 != 2:
                failures.append(f"analysis {i}: {r.status_code} {r.text[:300]}")
                return
            analysis_ids.append(str(r.json()["id"]))
        except httpx.HTTPError as exc:
            failures.append(f"task {i}: {type(exc).__name__}: {exc}")

    async with _client(base_url, token, n) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client, i, v) for i, v in enumerate(visit_ids)))
        wall = time.perf_counter() - started
    return LoadResult(n, wall, uploads, analyses, totals, failures, analysis_ids)


async def check_visits(base_url: str, token: str, visit_ids: list[str]) -> list[str]:
    """Through the API: every visit has one recording and exactly one analysis covering it."""
    problems: list[str] = []
    gate = asyncio.Semaphore(16)

    async def one(client: httpx.AsyncClient, visit_id: str) -> None:
        async with gate:
            v = await client.get(f"/api/v1/visits/{visit_id}")
            a = await client.get(f"/api/v1/visits/{visit_id}/analyses")
        if v.status_code != 200 or a.status_code != 200:
            problems.append(f"visit {visit_id}: {v.status_code} / {a.status_code}")
            return
        body, n_analyses = v.json(), len(a.json()["analyses"])
        if (
            body["n_recordings"] != 1
            or body["analysis"] is None
            or body["status"] != "analysed"
            or n_analyses != 1
        ):
            problems.append(
                f"visit {visit_id}: {body['n_recordings']} recordings, {n_analyses} analyses, "
                f"status {body['status']}"
            )

    async with _client(base_url, token, 16) as client:
        await asyncio.gather(*(one(client, v) for v in visit_ids))
    return problems


async def idle_analysis_s(
    base_url: str, token: str, headers: list[Path], *, explain: bool, repeats: int = 5
) -> list[float]:
    """After the load: analysis latency with nothing else running (one visit at a time)."""
    parts = [record_parts(h) for h in headers]
    times = []
    async with _client(base_url, token, 1) as client:
        for i in range(repeats):
            r = await client.post("/api/v1/patients", json={"external_id": f"IDLE-{i}"})
            r.raise_for_status()
            r = await client.post(
                f"/api/v1/patients/{r.json()['id']}/visits", json={"date": "2026-11-24"}
            )
            r.raise_for_status()
            visit_id = r.json()["id"]
            r = await client.post(f"/api/v1/visits/{visit_id}/recordings", files=parts[i % 3])
            r.raise_for_status()
            t0 = time.perf_counter()
            r = await client.post(f"/api/v1/visits/{visit_id}/analysis", json={"explain": explain})
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
    return times


def verify(result: LoadResult, api_problems: list[str], rows: dict[str, int]) -> list[str]:
    """Everything that went wrong: failed requests, visits without their analysis, rows
    missing or doubled in the database."""
    n = result.n
    problems = list(result.failures) + list(api_problems)
    if len(set(result.analysis_ids)) != n:
        problems.append(f"{len(set(result.analysis_ids))} distinct analyses answered, not {n}")
    expected = {"visits": n, "recordings": n, "analyses": n, "analysed_visits": n}
    for key, want in expected.items():
        if rows.get(key) != want:
            problems.append(f"database: {rows.get(key)} {key}, expected {want}")
    return problems


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return dict.fromkeys(("p50", "p90", "p99", "max"), float("nan"))
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(a.max())}


# --------------------------------------------------------------------------- one run


@dataclass
class RunReport:
    backend: str
    result: LoadResult
    rows: dict[str, int]
    problems: list[str]
    server_log: str = ""
    idle_s: list[float] = field(default_factory=list)
    explain: bool = False


def run_once(
    database_url: str | None, n: int, *, explain: bool, model_dir: Path, headers: list[Path]
) -> RunReport:
    """Fresh database, server, setup, timed load, verification."""
    with (
        tempfile.TemporaryDirectory(prefix="emgdx-load-") as tmp,
        fresh_database(database_url, Path(tmp)) as url,
    ):
        workdir = Path(tmp)
        token = create_clinic_token(url)
        backend = url.split(":", 1)[0].split("+", 1)[0]
        with serve(model_dir, url, workdir) as server:
            visit_ids = asyncio.run(create_visits(server.url, token, n))
            result = asyncio.run(run_load(server.url, token, visit_ids, headers, explain=explain))
            api_problems = asyncio.run(check_visits(server.url, token, visit_ids))
            rows = count_rows(url)  # before the idle probe below adds its own rows
            idle = asyncio.run(idle_analysis_s(server.url, token, headers, explain=explain))
        problems = verify(result, api_problems, rows)
        log = _errors(server.log) if problems else ""
        return RunReport(backend, result, rows, problems, log, idle, explain)


# --------------------------------------------------------------------------- report


def _row(r: RunReport) -> str:
    a, t, u = (percentiles(x) for x in (r.result.analysis_s, r.result.total_s, r.result.upload_s))
    failed = len(r.result.failures)
    return (
        f"| {r.backend} | {'yes' if r.explain else 'no'} | {r.result.n} | "
        f"{r.result.wall_s:.1f} | {r.result.throughput:.2f} | "
        f"{u['p50']:.2f} / {u['p99']:.2f} | "
        f"{a['p50']:.1f} / {a['p90']:.1f} / {a['p99']:.1f} / {a['max']:.1f} | "
        f"{t['p50']:.1f} / {t['p90']:.1f} / {t['p99']:.1f} / {t['max']:.1f} | "
        f"{failed} | {r.rows['recordings']} / {r.rows['analyses']} / "
        f"{r.rows['analysed_visits']} | {_median_ms(r.idle_s)} |"
    )


def _median_ms(values: list[float]) -> str:
    return f"{1000 * float(np.median(values)):.0f}" if values else "–"


TABLE_HEAD = (
    "| database | evidence figures | N | timed phase (s) | analyses / s | upload p50 / p99 (s) | "
    "analysis p50 / p90 / p99 / max (s) | upload + analysis p50 / p90 / p99 / max (s) | "
    "failed requests | recordings / analyses / analysed visits in the DB | "
    "one analysis, idle server (ms, median of 5) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def section(reports: list[RunReport], command: str) -> str:
    import torch

    n = reports[0].result.n
    lines = [
        "## Clinic service under load",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine_line('torch', 'fastapi', 'uvicorn', 'sqlalchemy', 'psycopg')}; "
        f"server and client on the same machine (loopback), server CPU count {os.cpu_count()}, "
        f"torch threads {torch.get_num_threads()} (default: one per core), "
        "`analysis_workers` 1 (default)",
        "",
        f"Work: the real service (`emgdx serve`, uvicorn, one process) with the small 1-D CNN of "
        f"the clinic tests, on a fresh database. Setup (not timed): one clinic and token, {n} "
        f"patients with one visit each. Timed: {n} tasks started at once (`asyncio.gather`, "
        f"one `httpx.AsyncClient` with {n} connections, 600 s timeouts), each uploading one "
        "simulated 2 s, 4 kHz WFDB record (.hea + .dat, 16 kB) to its visit and then POSTing "
        "the analysis, without evidence figures (`explain: false`: model, QC, measures, HTML "
        "and PDF report) and with them (`explain: true`: integrated gradients and three "
        "figures per record, what the web page asks for). Checked afterwards: every "
        "request answered 2xx; through the API, each visit has its recording and exactly one "
        "analysis; counted in the database, exactly N recordings, N analyses and N analysed "
        "visits (no lost or doubled record). Latencies are per task, measured by the client.",
        "",
        TABLE_HEAD,
        *(_row(r) for r in reports),
        "",
    ]
    for r in reports:
        verdict = "all checks passed" if not r.problems else f"{len(r.problems)} problems"
        mode = "with" if r.explain else "without"
        wall = r.result.wall_s
        lines.append(
            f"- **{r.backend}, {mode} figures**: {verdict}; {r.result.n} simultaneous uploads "
            "with analysis "
            f"are worked through in **{wall:.0f} s** ({r.result.throughput:.2f} analyses/s, "
            f"{1000 * wall / r.result.n:.0f} ms per analysis); N / throughput = {wall:.0f} s "
            f"against a measured p99 of {percentiles(r.result.total_s)['p99']:.0f} s."
        )
        lines += [f"  - problem: `{p[:200]}`" for p in r.problems[:5]]
    clean = not any(r.problems for r in reports)
    outcome = " without a failed or lost request" if clean else " (see the problems above)"
    lines += [
        "",
        "Analyses are serialised by `analysis_workers` (default 1): the model already uses "
        "every core, so running more at once would only add memory and contention. Requests "
        "therefore queue, and latency grows with the queue: the last of N simultaneous "
        "analyses finishes after about N / throughput, so p99 ≈ N / throughput is expected "
        "here. Uploads are not serialised; their latency is that of N arriving at once and "
        "sharing the cores with the analyses. For a "
        "clinic this means that a burst of N uploads (far more than a clinic sends at once) "
        f"is worked through at the rate in the table{outcome}, the "
        "last result arriving N / throughput seconds later, while one analysis on an idle "
        "server answers in the time of the last column (QC, model, measures, HTML and PDF "
        "report included). "
        f"Run on {datetime.now(UTC).strftime('%Y-%m-%d')}; timings on the shared 2-core "
        "machine are noisy.",
    ]
    return "\n".join(lines)


def print_table(reports: list[RunReport]) -> None:
    print(TABLE_HEAD)
    for r in reports:
        print(_row(r))
    for r in reports:
        for p in r.problems[:20]:
            print(f"PROBLEM [{r.backend}] {p}")
        if r.server_log:
            print(f"server errors [{r.backend}]:\n{r.server_log}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=200, help="N simultaneous tasks")
    parser.add_argument(
        "--database-url",
        action="append",
        default=None,
        help="'sqlite' (a fresh temporary file; the default) or a PostgreSQL server URL "
        "(postgresql+psycopg://...; a fresh database is created on it and dropped). Repeat "
        "to run one after the other.",
    )
    parser.add_argument(
        "--explain",
        choices=("no", "yes", "both"),
        default="both",
        help="analyses without evidence figures, with them, or one run of each (default)",
    )
    parser.add_argument("--out", type=Path, default=BENCHMARKS_MD, help="markdown file")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    # tests/clinic_support.py imports starlette's TestClient, which warns about httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")

    model_dir, headers = small_model(), upload_records()
    reports = []
    modes = {"no": [False], "yes": [True], "both": [False, True]}[args.explain]
    for url in args.database_url or ["sqlite"]:
        for explain in modes:
            print(
                f"running {args.concurrency} tasks against {url.split('@')[-1]}, "
                f"explain={explain} …",
                flush=True,
            )
            reports.append(
                run_once(
                    url, args.concurrency, explain=explain, model_dir=model_dir, headers=headers
                )
            )
    print_table(reports)
    shown = ["python", "benchmarks/load_clinic.py", *(argv if argv is not None else sys.argv[1:])]
    if not args.no_write:
        write_section(SECTION, section(reports, shlex.join(shown)), args.out)
        print(f"wrote section '{SECTION}' of {args.out}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {platform.platform()}")
    return 1 if any(r.problems for r in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
