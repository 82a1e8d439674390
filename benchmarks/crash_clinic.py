"""kill -9 of the clinic service during a burst of uploads and analyses, with clients that retry.

    python benchmarks/crash_clinic.py [--rounds 5] [--n 200] [--database-url URL]

One fresh database and the real service (``emgdx serve``, the small model of the clinic
tests) with its data directory (``EMGDX_HOME``) and a private system temporary folder
(``TMPDIR``) in a scratch folder. Each round:

1. setup: N patients with one visit each;
2. the burst: N tasks at once, each uploading one simulated WFDB record to its visit and then
   POSTing the visit's analysis, every request with its own ``Idempotency-Key``; a request
   that gets no answer (connection refused or reset, timeout) or a 5xx is retried with the
   same key until it is answered;
3. after a random number of answered uploads (10-60 % of N), the server is killed with
   SIGKILL and started again on the same port and data;
4. checked, counting rows in the database: every visit has exactly one recording and one
   analysis (0 lost, 0 duplicates), every recording has all its files with the uploaded
   bytes (0 half-stored), the staging folder and the private temporary folder are empty
   (0 files outside the data directory).

It prints a table and replaces the section ``crash-safety`` of docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOCS, machine_line, write_section
from load_clinic import (
    create_clinic_token,
    create_visits,
    free_port,
    fresh_database,
    record_parts,
    small_model,
    upload_records,
)

RELIABILITY_MD = DOCS / "reliability.md"
SECTION = "crash-safety"
RETRY_PAUSE_S = 0.25


@dataclass
class Service:
    """``emgdx serve`` in a subprocess that can be killed and started again."""

    model_dir: Path
    database_url: str
    home: Path
    tmp: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180.0) -> float:
        """Start and wait until it answers; the seconds that took."""
        env = {**os.environ, "EMGDX_HOME": str(self.home), "TMPDIR": str(self.tmp)}
        cmd = [sys.executable, "-m", "emgdx.cli", "serve", "--model", str(self.model_dir)]
        cmd += ["--database-url", self.database_url, "--port", str(self.port)]
        log = (self.home / "server.log").open("ab")
        t0 = time.monotonic()
        self.process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        log.close()
        while time.monotonic() - t0 < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            time.sleep(0.1)
        raise RuntimeError(f"the server did not start in {timeout_s:.0f} s")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind (its worker processes notice and exit)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Burst:
    retries: int = 0
    replayed: int = 0
    failures: list[str] = field(default_factory=list)
    killed_after_uploads: int = 0
    restart_s: float = 0.0
    seconds: float = 0.0


async def _post_until_answered(
    client: httpx.AsyncClient, url: str, burst: Burst, **kwargs: object
) -> httpx.Response:
    """POST with one Idempotency-Key, repeated (same key) until the service answers."""
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    for attempt in range(2000):
        try:
            r = await client.post(url, headers=headers, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError:
            r = None
        if r is not None and r.status_code < 500:
            burst.replayed += r.headers.get("Idempotent-Replayed") == "true"
            return r
        burst.retries += attempt == 0
        await asyncio.sleep(RETRY_PAUSE_S)
    raise RuntimeError(f"{url}: no answer after 2000 attempts")


async def burst_with_kill(
    service: Service, token: str, visit_ids: list[str], headers: list[Path], kill_after: int
) -> Burst:
    parts = [record_parts(h) for h in headers]
    burst = Burst(killed_after_uploads=kill_after)
    uploaded = 0
    reached = asyncio.Event()

    async def one(client: httpx.AsyncClient, i: int, visit_id: str) -> None:
        nonlocal uploaded
        r = await _post_until_answered(
            client, f"/api/v1/visits/{visit_id}/recordings", burst, files=parts[i % len(parts)]
        )
        if r.status_code != 201:
            burst.failures.append(f"upload {i}: {r.status_code} {r.text[:200]}")
            return
        uploaded += 1
        if uploaded >= kill_after:
            reached.set()
        r = await _post_until_answered(
            client, f"/api/v1/visits/{visit_id}/analysis", burst, json={"explain": False}
        )
        if r.status_code != 201:
            burst.failures.append(f"analysis {i}: {r.status_code} {r.text[:200]}")

    async def killer() -> None:
        await reached.wait()
        service.kill()
        burst.restart_s = await asyncio.to_thread(service.start)

    n = len(visit_ids)
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(
        base_url=service.url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(600.0, connect=5.0),
        limits=limits,
    ) as client:
        t0 = time.monotonic()
        await asyncio.gather(killer(), *(one(client, i, v) for i, v in enumerate(visit_ids)))
        burst.seconds = time.monotonic() - t0
    return burst


def audit(database_url: str, visit_ids: list[str], records: list[dict[str, str]]) -> dict[str, int]:
    """Counted in the database: visits without, or with several, recordings or analyses;
    analyses that failed; recordings whose files are not exactly those of one uploaded record
    (``records``: each record's file names and SHA-256)."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from emgdx.clinic.db import Database
    from emgdx.clinic.models import Recording, Visit

    db = Database(database_url, run_migrations=False)
    counts = dict.fromkeys(
        ("lost_recordings", "duplicate_recordings", "lost_analyses", "duplicate_analyses",
         "failed_analyses", "half_stored_recordings"), 0,
    )  # fmt: skip
    try:
        with db.session() as s:
            visits = s.scalars(
                select(Visit)
                .where(Visit.id.in_(visit_ids))
                .options(
                    selectinload(Visit.recordings).selectinload(Recording.files),
                    selectinload(Visit.analyses),
                )
            ).all()
            for v in visits:
                n_rec, n_an = len(v.recordings), len(v.analyses)
                counts["lost_recordings"] += n_rec == 0
                counts["duplicate_recordings"] += max(n_rec - 1, 0)
                counts["lost_analyses"] += n_an == 0
                counts["duplicate_analyses"] += max(n_an - 1, 0)
                counts["failed_analyses"] += sum(a.status != "done" for a in v.analyses)
                for rec in v.recordings:
                    stored = {f.filename: hashlib.sha256(f.content).hexdigest() for f in rec.files}
                    counts["half_stored_recordings"] += stored not in records
            counts["lost_recordings"] += len(visit_ids) - len(visits)
    finally:
        db.dispose()
    return counts


def files_under(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=200, help="uploads (each with analysis) a round")
    parser.add_argument("--database-url", default="sqlite", help="sqlite or a PostgreSQL URL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RELIABILITY_MD)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    headers = upload_records()
    records = [
        {name: hashlib.sha256(data).hexdigest() for _, (name, data, _) in record_parts(h)}
        for h in headers
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="emgdx-crash-") as scratch:
        work = Path(scratch)
        home, tmp = work / "home", work / "tmp"
        home.mkdir()
        tmp.mkdir()
        with fresh_database(None if args.database_url == "sqlite" else args.database_url,
                            home) as url:  # fmt: skip
            token = create_clinic_token(url, "Crash clinic")
            service = Service(small_model(), url, home, tmp)
            service.start()
            try:
                for round_no in range(1, args.rounds + 1):
                    visit_ids = asyncio.run(
                        create_visits(service.url, token, args.n, prefix=f"CRASH{round_no}")
                    )
                    kill_after = rng.randint(args.n // 10, args.n * 6 // 10)
                    burst = asyncio.run(
                        burst_with_kill(service, token, visit_ids, headers, kill_after)
                    )
                    counts = audit(url, visit_ids, records)
                    row = {
                        "round": round_no,
                        "n": args.n,
                        "killed_after_uploads": kill_after,
                        "restart_s": round(burst.restart_s, 1),
                        "burst_s": round(burst.seconds, 1),
                        "requests_retried": burst.retries,
                        "answers_replayed": burst.replayed,
                        "failed_requests": len(burst.failures),
                        **counts,
                        "files_in_staging": files_under(home / "staging"),
                        "files_in_system_tmp": files_under(tmp),
                    }
                    print(row, flush=True)
                    for failure in burst.failures[:5]:
                        print("  ", failure, flush=True)
                    rows.append(row)
            finally:
                service.stop()
    command = "python benchmarks/crash_clinic.py " + shlex.join(argv or sys.argv[1:])
    write_section(SECTION, section(rows, command.strip(), args.database_url), args.out)
    bad = [r for r in rows if any(r[k] for k in BAD_COUNTS)]
    print(f"wrote the {SECTION} section of {args.out}; {len(bad)} round(s) with a problem")
    return 1 if bad else 0


BAD_COUNTS = (
    "failed_requests", "lost_recordings", "duplicate_recordings", "lost_analyses",
    "duplicate_analyses", "failed_analyses", "half_stored_recordings", "files_in_staging",
    "files_in_system_tmp",
)  # fmt: skip


def section(rows: list[dict[str, object]], command: str, database: str) -> str:
    cols = ("round", "killed_after_uploads", "restart_s", "burst_s", "requests_retried",
            "answers_replayed", "failed_requests", "lost_recordings", "duplicate_recordings",
            "lost_analyses", "duplicate_analyses", "failed_analyses", "half_stored_recordings",
            "files_in_staging", "files_in_system_tmp")  # fmt: skip
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {machine_line()}; database: {database}",
        "",
        "| " + " | ".join(c.replace("_", " ") for c in cols) + " |",
        "|" + "---|" * len(cols),
        *("| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
