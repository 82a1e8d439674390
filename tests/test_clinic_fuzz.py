"""Fuzz every operation of the clinic API from its own OpenAPI schema (schemathesis).

Each operation is called with generated data (valid and invalid) and a valid bearer token.
Path ids are either the fuzzer's own strings (→ 404 paths) or ids that exist in the database
(a patient, a visit with a recording and an analysis, that analysis, one of its figures), so
the handlers' real work runs too. Every response must: never be a 5xx, use a documented status
code, carry the documented content type, match the documented body schema and headers, and
reject invalid data with a 4xx.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
import torch
from hypothesis import HealthCheck, settings
from schemathesis import checks as st_checks
from schemathesis.specs.openapi import checks as oa_checks

from clinic_support import (
    add_clinic,
    close_app,
    make_app,
    record_files,
    train_small_model,
    write_upload_records,
)

pytestmark = pytest.mark.slow

#: Examples per operation and test: 19 operations, a few ms each, except analyses (~0.5 s
#: each). ``EMGDX_FUZZ_EXAMPLES=500`` for a deeper (minutes long) run.
MAX_EXAMPLES = int(os.environ.get("EMGDX_FUZZ_EXAMPLES", "20"))

#: Robustness: no input makes the server fail, and invalid input is refused with a 4xx.
ROBUSTNESS_CHECKS = [st_checks.not_a_server_error, oa_checks.negative_data_rejection]
#: Contract: what comes back is what the OpenAPI document says.
CONTRACT_CHECKS = [
    oa_checks.status_code_conformance,
    oa_checks.content_type_conformance,
    oa_checks.response_schema_conformance,
    oa_checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
def fuzz_state(tmp_path_factory: pytest.TempPathFactory) -> Any:
    torch.set_num_threads(2)
    model_dir = train_small_model(tmp_path_factory.mktemp("model") / "cnn1d")
    headers_on_disk = write_upload_records(tmp_path_factory.mktemp("upload") / "sim")
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'clinic.db'}"
    # One evidence figure per record keeps the one explained analysis below short.
    app = make_app(
        url, model_dir, max_file_bytes=2_000_000, max_request_bytes=4_000_000, explain_figures=1
    )
    clinic = add_clinic(app, "Fuzz clinic")
    c, h = clinic.client, clinic.headers

    def ok(r: Any) -> dict[str, Any]:
        assert r.status_code in (200, 201), r.text
        return r.json()

    patient = ok(c.post("/api/v1/patients", json={"external_id": "FUZZ-1"}, headers=h))["id"]
    visit = ok(c.post(f"/api/v1/patients/{patient}/visits", json={"date": "2026-01-10"}, headers=h))
    # Uploads go to a visit of their own, so that whatever the fuzzer manages to upload never
    # makes the analysed visit (and every analysis the fuzzer runs) bigger.
    upload_visit = ok(
        c.post(f"/api/v1/patients/{patient}/visits", json={"date": "2026-02-10"}, headers=h)
    )
    files = record_files(headers_on_disk[0])
    ok(c.post(f"/api/v1/visits/{visit['id']}/recordings", files=files, headers=h))
    analysis = ok(
        c.post(f"/api/v1/visits/{visit['id']}/analysis", json={"explain": True}, headers=h)
    )
    figures = [f["id"] for rec in analysis["records"] for f in rec["figures"]]
    assert figures, "the explained analysis has an evidence figure"
    ids = {
        "patient_id": patient,
        "visit_id": visit["id"],
        "analysis_id": analysis["id"],
        "figure_id": figures[0],
        "upload_visit_id": upload_visit["id"],
    }
    REAL_IDS.update(ids)
    yield {"app": app, "headers": h, "ids": ids}
    REAL_IDS.clear()
    close_app(app)
    if report := os.environ.get("EMGDX_FUZZ_REPORT"):
        counts: dict[str, dict[str, int]] = {}
        for (phase, code), n in sorted(RESPONSES.items()):
            counts.setdefault(phase, {})[str(code)] = n
        Path(report).write_text(json.dumps(counts, indent=1) + "\n")


def _schema_app() -> Any:
    # The OpenAPI document depends on neither the model nor the data: an app without either
    # (in-memory database, not migrated) gives it at collection time, cheaply. The requests go
    # to the real app of the fixture below (``call_and_validate(app=...)``).
    from emgdx.clinic.app import create_app
    from emgdx.clinic.settings import ClinicSettings

    return create_app(ClinicSettings(database_url="sqlite://", migrate=False))


schema = schemathesis.openapi.from_asgi("/openapi.json", _schema_app())

#: Ids that exist in the fuzzed app's database, filled in by the ``fuzz_state`` fixture.
REAL_IDS: dict[str, str] = {}
#: Responses by phase and status code; written to $EMGDX_FUZZ_REPORT (a JSON file) when set,
#: for benchmarks/fuzz_api.py.
RESPONSES: Counter[tuple[str, int]] = Counter()


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    # Half the time, the generated ids; else ids that exist (the fuzzer's own strings almost
    # never name a row, which would leave the handlers' real work untested).
    if not path_parameters:
        return st.just(path_parameters)
    if context.operation.method.lower() == "delete":
        # erasure gets the fuzzer's ids only: the seeded rows must outlive the fuzzing
        # (tests/test_clinic_api.py erases real rows)
        return st.just(path_parameters)
    real = {k: REAL_IDS.get(k, v) for k, v in path_parameters.items()}
    op = context.operation
    if op.method.lower() == "post" and op.path.endswith("/recordings"):
        real["visit_id"] = REAL_IDS["upload_visit_id"]
    return st.sampled_from([path_parameters, real])


def _explain_off(case: Any) -> None:
    if case.method.upper() == "POST" and case.operation.path.endswith("/analysis"):
        # Evidence figures cost seconds per analysis; the fuzzer's analyses skip them (an
        # absent body or {} means explain=true).
        if case.body is None or (isinstance(case.body, dict) and case.body.get("explain", True)):
            case.body = {**(case.body or {}), "explain": False}


def _call(case: Any, state: dict[str, Any], checks: list[Any], phase: str) -> None:
    _explain_off(case)
    response = case.call(app=state["app"], headers=state["headers"])
    RESPONSES[phase, response.status_code] += 1
    case.validate_response(response, checks=checks)


# Two tests rather than one with every check: hypothesis stops an operation at its first
# failure, so a contract mismatch must not hide a server error (or the other way round).


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_server_fail(case: Any, fuzz_state: Any) -> None:
    _call(case, fuzz_state, ROBUSTNESS_CHECKS, "robustness")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_responses_match_the_openapi_document(case: Any, fuzz_state: Any) -> None:
    _call(case, fuzz_state, CONTRACT_CHECKS, "contract")


#: Stateful phase: sequences of up to 10 calls, chained by the links schemathesis infers from
#: the schema (a created patient's id into its visits, a visit's into uploads and analyses, a
#: listed analysis into its reports, ids into erasures ...).
STATEFUL_EXAMPLES = int(os.environ.get("EMGDX_FUZZ_STATEFUL_EXAMPLES", "15"))


def test_call_sequences_keep_the_contract(fuzz_state: Any) -> None:
    """Every check above, on chained calls. Each sequence runs in a fresh clinic of its own:
    its erasures cannot touch the seeded rows, and a replayed sequence (hypothesis shrinking)
    meets the same state, not the rows an earlier sequence left."""
    import uuid

    from emgdx.clinic.admin import create_clinic, create_token

    app = fuzz_state["app"]

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            name = f"Stateful {uuid.uuid4().hex[:12]}"
            create_clinic(app.state.db, name)
            self.headers = {"Authorization": f"Bearer {create_token(app.state.db, name)}"}

        def call(self, case: Any, **kwargs: Any) -> Any:
            _explain_off(case)
            response = case.call(app=app, headers=self.headers, **kwargs)
            RESPONSES["stateful", response.status_code] += 1
            return response

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(
                response, checks=ROBUSTNESS_CHECKS + CONTRACT_CHECKS, transport_kwargs=kwargs
            )

    Workflow.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )


def test_fuzzed_schema_is_the_served_one(fuzz_state: Any) -> None:
    assert fuzz_state["app"].openapi() == _schema_app().openapi()


def test_fuzz_state_is_intact(fuzz_state: Any) -> None:
    """After the fuzzing, the seeded visit and analysis still answer normally."""
    from fastapi.testclient import TestClient

    client = TestClient(fuzz_state["app"], raise_server_exceptions=False)
    ids, h = fuzz_state["ids"], fuzz_state["headers"]
    r = client.get(f"/api/v1/analyses/{ids['analysis_id']}/report.pdf", headers=h)
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    r = client.get(f"/api/v1/visits/{ids['visit_id']}", headers=h)
    assert r.status_code == 200 and r.json()["analysis"] is not None
