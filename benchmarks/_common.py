"""Shared helpers for benchmark scripts: machine description and docs/benchmarks.md sections."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
BENCHMARKS_MD = DOCS / "benchmarks.md"
_HEADER = (
    "# Benchmarks\n\n"
    "Figures written by the scripts in `benchmarks/`, one section each, with the machine and "
    "the command that produced them. Timings on a shared 2-core machine are noisy: compare "
    "ratios measured in one run and read medians.\n"
)


def n2001_folder() -> Path:
    """The N2001 data folder (``emgdx.datasets.n2001_dir``); exits with a message without it."""
    from emgdx.datasets import n2001_dir

    folder = n2001_dir()
    if folder is None:
        raise SystemExit("N2001 data not found (set EMGDX_DATA or use ../shared/data)")
    return folder


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def versions(*packages: str) -> str:
    parts = [f"python {platform.python_version()}"]
    for name in packages:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(parts)


def git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=DOCS.parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_line(*packages: str) -> str:
    mem = memory_gib()
    mem_txt = f", {mem:.0f} GiB RAM" if mem else ""
    return (
        f"{cpu_model()}, {os.cpu_count()} logical cores{mem_txt}; {platform.system()} "
        f"{platform.release()}; {versions(*packages)}; emgdx commit {git_revision()}; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"
    )


def time_runs(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD, header: str = _HEADER) -> None:
    """Replace (or append) the generated section ``name`` (between ``<!-- BEGIN name -->`` and
    ``<!-- END name -->``) of a docs page, leaving the rest intact; a new page starts with
    ``header``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else header
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else (text.rstrip() + "\n\n" + block + "\n")
    )
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
