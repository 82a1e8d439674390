"""Shared fixtures. Real-data tests skip with a reason when the data is absent, except in CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emgdx.datasets import n2001_dir

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_MISSING = (
    "real N2001 data not found: set EMGDX_DATA or place it at ../shared/data/n2001 "
    "beside the project checkout"
)


def pytest_configure(config: pytest.Config) -> None:
    # In CI the real data is always present: its absence is a broken set-up, not a reason to
    # skip half the suite quietly. Fail the whole run before any test starts.
    if IN_CI and n2001_dir() is None:
        raise pytest.UsageError(f"CI=true but {_MISSING}")


@pytest.fixture(scope="session")
def n2001() -> Path:
    """Path of the real N2001 folder; skip (or fail under CI=true) when it is absent."""
    path = n2001_dir()
    if path is None:
        if IN_CI:
            pytest.fail(f"CI=true but {_MISSING}")
        pytest.skip(_MISSING)
    return path


@pytest.fixture(scope="session")
def muap_table() -> Path:
    """Path of the ehealthlab MUAP table; skip (or fail under CI=true) when absent."""
    path = n2001_dir()
    csv = None if path is None else path.parent / "ehealthlab_muap" / "muap.csv"
    if csv is None or not csv.is_file():
        msg = "ehealthlab MUAP table not found at ../shared/data/ehealthlab_muap/muap.csv"
        if IN_CI:
            pytest.fail(f"CI=true but {msg}")
        pytest.skip(msg)
    return csv
