"""A small load test of the real clinic service (uvicorn in a subprocess, SQLite): 24 clients
upload a record and analyse their visit at the same time; every request must succeed and no
record may be lost or doubled. The full-size version is ``benchmarks/load_clinic.py``, whose
functions this test uses."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import load_clinic
from clinic_support import train_small_model, write_upload_records

pytestmark = pytest.mark.slow

N = 24


def test_simultaneous_uploads_and_analyses_all_succeed_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    model_dir = train_small_model(tmp_path / "model" / "cnn1d")
    headers = write_upload_records(tmp_path / "records")
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    token = load_clinic.create_clinic_token(url)

    with load_clinic.serve(model_dir, url, tmp_path) as server:
        visit_ids = asyncio.run(load_clinic.create_visits(server.url, token, N))
        result = asyncio.run(
            load_clinic.run_load(server.url, token, visit_ids, headers, explain=False)
        )
        api_problems = asyncio.run(load_clinic.check_visits(server.url, token, visit_ids))
        log = server.log

    rows = load_clinic.count_rows(url)
    problems = load_clinic.verify(result, api_problems, rows)
    assert not problems, "\n".join(problems) + "\n" + load_clinic._tail(log)
    assert rows == {"visits": N, "recordings": N, "analyses": N, "analysed_visits": N}
    assert len(result.analysis_s) == N and all(t > 0 for t in result.total_s)
