"""The clinic service's API, on SQLite and on a real PostgreSQL server: the whole workflow,
clinic separation, tokens, upload limits and validation, transactions, safe errors and logs."""

from __future__ import annotations

import io
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy import func, select, text

from clinic_support import (
    Clinic,
    add_clinic,
    close_app,
    make_app,
    record_files,
    train_small_model,
    write_upload_records,
)
from emgdx.clinic.models import Analysis, ApiToken, Figure, Recording, RecordResult

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_small_model(tmp_path_factory.mktemp("model") / "cnn1d")


@pytest.fixture(scope="module")
def headers_on_disk(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_upload_records(tmp_path_factory.mktemp("upload") / "sim")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def app(
    request: pytest.FixtureRequest, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'clinic.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    application = make_app(url, model_dir, max_file_bytes=2_000_000, max_request_bytes=4_000_000)
    yield application
    close_app(application)


@pytest.fixture
def clinic(app: Any) -> Clinic:
    return add_clinic(app, f"Clinic {uuid.uuid4().hex[:8]}")


def _patient_visit(
    c: Clinic, external_id: str = "MRN-1", date: str = "2026-01-10"
) -> tuple[str, str]:
    r = c.client.post(
        "/api/v1/patients", json={"external_id": external_id, "name": "Ada Test"}, headers=c.headers
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = c.client.post(f"/api/v1/patients/{pid}/visits", json={"date": date}, headers=c.headers)
    assert r.status_code == 201, r.text
    return pid, r.json()["id"]


def _count(app: Any, model: Any, **where: str) -> int:
    with app.state.db.session() as s:
        q = select(func.count()).select_from(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return int(s.scalar(q) or 0)


# --------------------------------------------------------------------------- workflow


def test_health_needs_no_token_and_names_the_model(clinic: Clinic) -> None:
    r = clinic.client.get("/api/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["model"]["name"] == "cnn1d"
    assert len(body["model"]["weights_sha256"]) == 64
    assert r.headers["x-request-id"]
    page = clinic.client.get("/")
    for response in (r, page, clinic.client.get("/api/v1/me")):  # 200, page, 401
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self';" in csp
        assert response.headers["x-content-type-options"] == "nosniff"


def test_whole_visit_workflow(clinic: Clinic, headers_on_disk: list[Path], app: Any) -> None:
    c = clinic
    pid, vid = _patient_visit(c)
    r = c.client.post(
        f"/api/v1/visits/{vid}/recordings",
        files=record_files(headers_on_disk[0]) + record_files(headers_on_disk[1]),
        data={"muscle": "biceps"},
        headers=c.headers,
    )
    assert r.status_code == 201, r.text
    recs = r.json()["recordings"]
    assert len(recs) == 2 and {len(x["files"]) for x in recs} == {2}
    assert recs[0]["fs_hz"] == pytest.approx(4000.0) and recs[0]["duration_s"] == pytest.approx(
        2.0, abs=0.01
    )
    assert recs[0]["muscle"] == "biceps" and recs[0]["format"].startswith("wfdb")
    assert c.client.get(f"/api/v1/visits/{vid}", headers=c.headers).json()["status"] == "new"

    r = c.client.post(f"/api/v1/visits/{vid}/analysis", json={"explain": True}, headers=c.headers)
    assert r.status_code == 201, r.text
    a = r.json()
    names = set(a["probs"])
    assert names == {"healthy", "neurogenic", "myopathy"}
    assert a["predicted"] in names and sum(a["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert len(a["records"]) == 2 and all(rec["n_windows"] > 0 for rec in a["records"])
    assert {rec["recording_id"] for rec in a["records"]} == {x["id"] for x in recs}
    assert any(m["value"] is not None for m in a["records"][0]["measures"])
    figures = [f for rec in a["records"] for f in rec["figures"]]
    assert figures, "an explained analysis has evidence figures"
    png = c.client.get(figures[0]["url"], headers=c.headers)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    html = c.client.get(a["report_html_url"], headers=c.headers)
    assert html.status_code == 200 and "Decision support, not a diagnosis" in html.text
    assert "Ada Test" in html.text  # the clinic's own report names its patient
    pdf = c.client.get(a["report_pdf_url"], headers=c.headers)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    visit = c.client.get(f"/api/v1/visits/{vid}", headers=c.headers).json()
    assert visit["status"] == "analysed" and visit["analysis"]["id"] == a["id"]
    assert c.client.get(f"/api/v1/visits/{vid}/analysis", headers=c.headers).json()["id"] == a["id"]
    listed = c.client.get("/api/v1/patients", headers=c.headers).json()["patients"]
    assert [p["n_visits"] for p in listed if p["id"] == pid] == [1]

    tl = c.client.get(f"/api/v1/patients/{pid}/timeline", headers=c.headers).json()
    assert [p["analysis_id"] for p in tl["points"]] == [a["id"]]
    plot = c.client.get(tl["plot_url"], headers=c.headers)
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")


def test_timeline_follows_visits_in_date_order(clinic: Clinic, headers_on_disk: list[Path]) -> None:
    c = clinic
    pid, v1 = _patient_visit(c, "MRN-T", "2026-03-01")
    v0 = c.client.post(
        f"/api/v1/patients/{pid}/visits", json={"date": "2025-09-01"}, headers=c.headers
    ).json()["id"]
    for vid, header in ((v1, headers_on_disk[0]), (v0, headers_on_disk[2])):
        assert (
            c.client.post(
                f"/api/v1/visits/{vid}/recordings", files=record_files(header), headers=c.headers
            ).status_code
            == 201
        )
        assert (
            c.client.post(
                f"/api/v1/visits/{vid}/analysis", json={"explain": False}, headers=c.headers
            ).status_code
            == 201
        )
    tl = c.client.get(f"/api/v1/patients/{pid}/timeline", headers=c.headers).json()
    assert [p["date"] for p in tl["points"]] == ["2025-09-01", "2026-03-01"]
    p_neuro = next(t for t in tl["trends"] if t["quantity"] == "p_neurogenic")
    first, last = (p["probs"]["neurogenic"] for p in tl["points"])
    years = (182 + 0.0) / 365.25
    assert p_neuro["slope_per_year"] == pytest.approx((last - first) / years, rel=0.02)
    assert p_neuro["ci95"] is None and p_neuro["n_visits"] == 2  # two visits: no uncertainty


# --------------------------------------------------------------------------- security


def test_every_route_but_health_needs_a_valid_token(clinic: Clinic, app: Any) -> None:
    c = clinic.client
    some = str(uuid.uuid4())
    routes = [
        ("get", "/api/v1/me"),
        ("get", "/api/v1/patients"),
        ("post", "/api/v1/patients"),
        ("get", f"/api/v1/patients/{some}"),
        ("get", f"/api/v1/patients/{some}/timeline"),
        ("get", f"/api/v1/visits/{some}"),
        ("post", f"/api/v1/visits/{some}/analysis"),
        ("get", f"/api/v1/analyses/{some}/report.pdf"),
        ("get", f"/api/v1/figures/{some}.png"),
    ]
    for headers in (
        {},
        {"Authorization": "Bearer emgdx_not-a-real-token"},
        {"Authorization": "Basic abc"},
    ):
        for method, path in routes:
            r = getattr(c, method)(path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert set(r.json()) == {"detail", "request_id"}


def test_tokens_are_stored_hashed_and_can_be_revoked(clinic: Clinic, app: Any) -> None:
    from emgdx.clinic.admin import revoke_token

    with app.state.db.engine.connect() as conn:
        dump = " ".join(str(row) for row in conn.execute(select(ApiToken.__table__)))
    assert clinic.token not in dump and clinic.token[10:] not in dump
    assert (
        clinic.client.get("/api/v1/me", headers=clinic.headers).json()["clinic"]["name"]
        == clinic.name
    )
    assert revoke_token(app.state.db, clinic.token[:12]) == 1
    assert clinic.client.get("/api/v1/me", headers=clinic.headers).status_code == 401


def test_one_clinic_never_sees_another_clinics_data(app: Any, headers_on_disk: list[Path]) -> None:
    a = add_clinic(app, f"A {uuid.uuid4().hex[:6]}")
    b = add_clinic(app, f"B {uuid.uuid4().hex[:6]}")
    pid, vid = _patient_visit(a, "SHARED-ID")
    up = a.client.post(
        f"/api/v1/visits/{vid}/recordings",
        files=record_files(headers_on_disk[0]),
        headers=a.headers,
    )
    assert up.status_code == 201
    an = a.client.post(
        f"/api/v1/visits/{vid}/analysis", json={"explain": True}, headers=a.headers
    ).json()
    fig = an["records"][0]["figures"][0]["url"]
    for method, path, kw in [
        ("get", f"/api/v1/patients/{pid}", {}),
        ("get", f"/api/v1/patients/{pid}/visits", {}),
        ("post", f"/api/v1/patients/{pid}/visits", {"json": {"date": "2026-01-01"}}),
        ("get", f"/api/v1/patients/{pid}/timeline", {}),
        ("get", f"/api/v1/patients/{pid}/timeline.png", {}),
        ("get", f"/api/v1/visits/{vid}", {}),
        ("get", f"/api/v1/visits/{vid}/recordings", {}),
        ("post", f"/api/v1/visits/{vid}/recordings", {"files": record_files(headers_on_disk[1])}),
        ("post", f"/api/v1/visits/{vid}/analysis", {"json": {}}),
        ("get", f"/api/v1/visits/{vid}/analysis", {}),
        ("get", f"/api/v1/visits/{vid}/analyses", {}),
        ("get", f"/api/v1/analyses/{an['id']}", {}),
        ("get", an["report_html_url"], {}),
        ("get", an["report_pdf_url"], {}),
        ("get", fig, {}),
    ]:
        r = getattr(b.client, method)(path, headers=b.headers, **kw)
        assert r.status_code == 404, (method, path, r.status_code)
    assert b.client.get("/api/v1/patients", headers=b.headers).json() == {"patients": []}
    # The same external id is free in another clinic, and B's upload attempt left nothing.
    assert (
        b.client.post(
            "/api/v1/patients", json={"external_id": "SHARED-ID"}, headers=b.headers
        ).status_code
        == 201
    )
    assert (
        len(
            a.client.get(f"/api/v1/visits/{vid}/recordings", headers=a.headers).json()["recordings"]
        )
        == 1
    )


def test_upload_size_limits(clinic: Clinic, app: Any, headers_on_disk: list[Path]) -> None:
    c = clinic
    _, vid = _patient_visit(c)
    big = io.BytesIO(b"\0" * 2_100_000)  # over max_file_bytes (2 MB), under the request limit
    r = c.client.post(
        f"/api/v1/visits/{vid}/recordings",
        files=[("files", ("big.npy", big, "application/octet-stream"))],
        headers=c.headers,
    )
    assert r.status_code == 413 and "big.npy" in r.json()["detail"]
    huge = b"\0" * 4_100_000  # over the whole-request limit: refused before it is read
    r = c.client.post(
        f"/api/v1/visits/{vid}/recordings",
        files=[("files", ("huge.dat", huge, "application/octet-stream"))],
        headers=c.headers,
    )
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert _count(app, Recording, visit_id=vid) == 0


def test_header_limits(clinic: Clinic) -> None:
    from emgdx.clinic.middleware import MAX_HEADER_BYTES, MAX_HEADERS

    c = clinic
    ok = c.client.get("/api/v1/patients", headers={**c.headers, "X-Pad": "a" * 1000})
    assert ok.status_code == 200
    fat = c.client.get("/api/v1/patients", headers={**c.headers, "X-Pad": "a" * MAX_HEADER_BYTES})
    assert fat.status_code == 431 and "headers too large" in fat.json()["detail"]
    many = {**c.headers, **{f"X-H{i}": "1" for i in range(MAX_HEADERS + 1)}}
    r = c.client.get("/api/v1/patients", headers=many)
    assert r.status_code == 431 and r.headers["x-request-id"] == r.json()["request_id"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([("notes.xyz", b"hello, this is not EMG at all " * 20)], "notes.xyz"),
        ([("empty.edf", b"")], "empty.edf: the file is empty"),
        (
            [("rec.hea", b"rec 1 4000 8000\nrec.dat 16 200/uV 16 0 0 0 0 x\n")],
            "not uploaded with it",
        ),
        (
            [("rec.hea", b"rec 1 4000 8000\n../../etc/passwd 16 200/uV 16 0 0 0 0 x\n")],
            "not a plain file name",
        ),
        ([("bad$name.csv", b"1,2\n3,4\n")], "file names may only hold"),
        ([("nan.csv", b"time,emg_uV\n0,1\n0.001,nan\n0.002,3\n")], "nan.csv"),
    ],
)
def test_bad_uploads_are_refused_naming_the_file(
    clinic: Clinic,
    app: Any,
    headers_on_disk: list[Path],
    files: list[tuple[str, bytes]],
    message: str,
) -> None:
    c = clinic
    _, vid = _patient_visit(c)
    # One good record next to the bad file: all or nothing, the good one is not stored either.
    parts = record_files(headers_on_disk[0]) + [
        ("files", (n, b, "application/octet-stream")) for n, b in files
    ]
    r = c.client.post(f"/api/v1/visits/{vid}/recordings", files=parts, headers=c.headers)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert message in detail
    assert "/tmp" not in detail and "emgdx-upload" not in detail and "Traceback" not in detail
    assert _count(app, Recording, visit_id=vid) == 0


def test_edf_csv_and_wav_in_one_upload_are_analysed(
    clinic: Clinic, headers_on_disk: list[Path], tmp_path: Path
) -> None:
    """Any readable format: one signal written as EDF (2 channels), CSV with a time column and
    16-bit WAV (with its µV per unit) goes in one request and through the analysis."""
    import edfio
    from scipy.io import wavfile

    from emgdx.io import read

    signal = read(headers_on_disk[1])[0].signal.astype(np.float64)
    fs = 4000
    edfio.Edf(
        [
            edfio.EdfSignal(
                signal, fs, label="EMG 1", physical_dimension="uV", physical_range=(-5000, 5000)
            ),
            edfio.EdfSignal(
                -signal, fs, label="EMG 2", physical_dimension="uV", physical_range=(-5000, 5000)
            ),
        ]
    ).write(tmp_path / "visit.edf")
    t = np.arange(signal.size) / fs
    csv = "time_s,emg_uV\n" + "\n".join(f"{a:.6f},{b:.3f}" for a, b in zip(t, signal, strict=True))
    wav = io.BytesIO()
    wavfile.write(wav, fs, np.round(signal / 0.5).astype(np.int16))  # 0.5 µV per unit
    c = clinic
    _, vid = _patient_visit(c)
    parts = [
        ("files", ("visit.edf", (tmp_path / "visit.edf").read_bytes(), "application/octet-stream")),
        ("files", ("trace.csv", csv.encode(), "text/csv")),
    ]
    r = c.client.post(f"/api/v1/visits/{vid}/recordings", files=parts, headers=c.headers)
    assert r.status_code == 201, r.text
    r = c.client.post(
        f"/api/v1/visits/{vid}/recordings",
        files=[("files", ("needle.wav", wav.getvalue(), "audio/wav"))],
        data={"uv_per_unit": "0.5"},
        headers=c.headers,
    )
    assert r.status_code == 201, r.text
    visit = c.client.get(f"/api/v1/visits/{vid}", headers=c.headers).json()
    formats = {x["name"]: (x["format"], x["channels"], x["fs_hz"]) for x in visit["recordings"]}
    assert formats["visit"][1] == ["EMG 1", "EMG 2"] and formats["visit"][0].startswith("edf")
    assert formats["trace"][0] == "csv" and formats["trace"][2] == pytest.approx(fs, rel=1e-3)
    assert formats["needle"][0] == "wav"
    a = c.client.post(
        f"/api/v1/visits/{vid}/analysis", json={"explain": False}, headers=c.headers
    ).json()
    assert len(a["records"]) == 4 and all(rec["n_windows"] > 0 for rec in a["records"])
    # The same signal in three formats gets the same answer (within file quantisation).
    probs = [rec["probs"]["neurogenic"] for rec in a["records"]]
    assert max(probs[0], probs[2], probs[3]) - min(probs[0], probs[2], probs[3]) < 0.02


def test_truncated_or_mismatched_wfdb_record_is_refused(
    clinic: Clinic, app: Any, headers_on_disk: list[Path]
) -> None:
    c = clinic
    _, vid = _patient_visit(c)
    hea = headers_on_disk[0]
    dat = hea.with_suffix(".dat").read_bytes()
    cut = [
        ("files", (hea.name, hea.read_bytes(), "text/plain")),
        ("files", (hea.with_suffix(".dat").name, dat[: len(dat) // 3], "application/octet-stream")),
    ]
    r = c.client.post(f"/api/v1/visits/{vid}/recordings", files=cut, headers=c.headers)
    assert r.status_code == 422
    assert r.json()["detail"].startswith(f"{hea.name}: ") and "/tmp" not in r.json()["detail"]
    assert _count(app, Recording, visit_id=vid) == 0


def test_record_too_slow_for_the_model_is_refused_at_upload(clinic: Clinic, app: Any) -> None:
    c = clinic
    _, vid = _patient_visit(c)
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).normal(0, 50, 6000).astype(np.float32))
    part = [("files", ("slow.npy", buf.getvalue(), "application/octet-stream"))]
    r = c.client.post(
        f"/api/v1/visits/{vid}/recordings", files=part, data={"fs_hz": "300"}, headers=c.headers
    )
    assert r.status_code == 422
    assert r.json()["detail"].startswith("slow.npy: sampled at 300 Hz, too slowly for this model")
    r = c.client.post(f"/api/v1/visits/{vid}/recordings", files=part, headers=c.headers)
    assert r.status_code == 422 and "slow.npy: no sampling rate" in r.json()["detail"]
    r = c.client.post(
        f"/api/v1/visits/{vid}/recordings", files=part, data={"fs_hz": "4000"}, headers=c.headers
    )
    assert r.status_code == 201 and "reduced_band" not in r.json()["recordings"][0]["qc_flags"]
    r = c.client.post(
        f"/api/v1/visits/{vid}/recordings", files=part, data={"fs_hz": "3000"}, headers=c.headers
    )
    assert r.status_code == 201 and "reduced_band" in r.json()["recordings"][0]["qc_flags"]
    assert _count(app, Recording, visit_id=vid) == 2


def test_record_shorter_than_a_window_is_refused_at_upload(clinic: Clinic, app: Any) -> None:
    """A 1-sample record once killed the server at analysis (SIGFPE in the resampler)."""
    c = clinic
    _, vid = _patient_visit(c)
    for n in (1, 2, 100):  # 100 samples at 10 kHz: 10 ms
        buf = io.BytesIO()
        np.save(buf, np.ones(n, dtype=np.float32))
        part = [("files", (f"short{n}.npy", buf.getvalue(), "application/octet-stream"))]
        r = c.client.post(f"/api/v1/visits/{vid}/recordings", files=part,
                          data={"fs_hz": "10000"}, headers=c.headers)  # fmt: skip
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert detail.startswith(f"short{n}.npy: {n} sample(s)") and "analysis window" in detail
    assert _count(app, Recording, visit_id=vid) == 0


def test_uploads_are_staged_in_the_data_folder_and_leftovers_removed_at_start(
    model_dir: Path, headers_on_disk: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import emgdx.clinic.ingest as ingest

    home = tmp_path / "home"
    leftover = home / "staging" / "upload-killed"
    leftover.mkdir(parents=True)
    (leftover / "patient.hea").write_text("what a kill -9 left")
    application = make_app(f"sqlite:///{tmp_path / 'c.db'}", model_dir, data_dir=home)
    assert not leftover.exists()  # removed at start-up
    c = add_clinic(application, "Staging")
    _, vid = _patient_visit(c)
    seen: list[Path] = []
    read_group = ingest._read_group

    def spy(folder: Path, *args: Any) -> Any:
        seen.append(folder)
        assert any(folder.iterdir())  # the upload is there while it is read
        return read_group(folder, *args)

    monkeypatch.setattr(ingest, "_read_group", spy)
    r = c.client.post(f"/api/v1/visits/{vid}/recordings", files=record_files(headers_on_disk[0]),
                      headers=c.headers)  # fmt: skip
    assert r.status_code == 201, r.text
    assert seen and all(f.parent == home / "staging" for f in seen)
    assert list((home / "staging").iterdir()) == []  # nothing left once stored
    close_app(application)


def test_idempotency_key_makes_a_retried_post_answer_instead_of_create_twice(
    clinic: Clinic, app: Any, headers_on_disk: list[Path]
) -> None:
    c = clinic
    keyed = {**c.headers, "Idempotency-Key": "k-patient-1"}
    body = {"external_id": "MRN-IDEM", "name": "Ada Retry"}
    first = c.client.post("/api/v1/patients", json=body, headers=keyed)
    again = c.client.post("/api/v1/patients", json=body, headers=keyed)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert c.client.post("/api/v1/patients", json=body, headers=c.headers).status_code == 409
    pid = first.json()["id"]
    visit_key = {**c.headers, "Idempotency-Key": "k-visit-1"}
    v1 = c.client.post(f"/api/v1/patients/{pid}/visits", json={"date": "2026-02-01"},
                       headers=visit_key)  # fmt: skip
    v2 = c.client.post(f"/api/v1/patients/{pid}/visits", json={"date": "2026-02-01"},
                       headers=visit_key)  # fmt: skip
    assert v1.json()["id"] == v2.json()["id"]
    vid = v1.json()["id"]
    upload_key = {**c.headers, "Idempotency-Key": "k-upload-1"}
    url = f"/api/v1/visits/{vid}/recordings"
    u1 = c.client.post(url, files=record_files(headers_on_disk[0]), headers=upload_key)
    u2 = c.client.post(url, files=record_files(headers_on_disk[0]), headers=upload_key)
    assert u1.status_code == u2.status_code == 201 and u1.json() == u2.json()
    assert _count(app, Recording, visit_id=vid) == 1
    analysis_key = {**c.headers, "Idempotency-Key": "k-analysis-1"}
    a1 = c.client.post(f"/api/v1/visits/{vid}/analysis", headers=analysis_key)
    a2 = c.client.post(f"/api/v1/visits/{vid}/analysis", headers=analysis_key)
    assert a1.status_code == a2.status_code == 201 and a1.json()["id"] == a2.json()["id"]
    assert _count(app, Analysis, visit_id=vid) == 1
    # a key belongs to one request: reused for another, it is refused
    other = c.client.post(url, files=record_files(headers_on_disk[1]), headers=analysis_key)
    assert other.status_code == 422 and "another request" in other.json()["detail"]
    assert _count(app, Recording, visit_id=vid) == 1
    # keys are per clinic: another clinic's same key is its own
    d = add_clinic(app, f"Other {uuid.uuid4().hex[:6]}")
    mine = c.client.post("/api/v1/patients", json={"external_id": "X"},
                         headers={**d.headers, "Idempotency-Key": "k-patient-1"})  # fmt: skip
    assert mine.status_code == 201 and mine.json()["id"] != pid


def test_erasure_takes_everything_derived_and_is_audit_logged(
    clinic: Clinic, app: Any, headers_on_disk: list[Path]
) -> None:
    from emgdx.clinic.models import AuditEvent, IdempotentRequest, Patient, Visit

    c = clinic
    keyed = {**c.headers, "Idempotency-Key": f"erase-{uuid.uuid4().hex}"}
    pid = c.client.post("/api/v1/patients", json={"external_id": "MRN-ERASE", "name": "Eve Gone"},
                        headers=keyed).json()["id"]  # fmt: skip
    visits = []
    for date in ("2026-03-01", "2026-04-01"):
        vid = c.client.post(f"/api/v1/patients/{pid}/visits", json={"date": date},
                            headers=c.headers).json()["id"]  # fmt: skip
        url = f"/api/v1/visits/{vid}/recordings"
        for hea in headers_on_disk[:2]:
            assert c.client.post(url, files=record_files(hea), headers=c.headers).status_code == 201
        assert c.client.post(f"/api/v1/visits/{vid}/analysis", headers=c.headers).status_code == 201
        visits.append(vid)
    # another clinic cannot erase it: not found, and nothing goes
    other = add_clinic(app, f"Other {uuid.uuid4().hex[:6]}")
    assert c.client.delete(f"/api/v1/patients/{pid}", headers=other.headers).status_code == 404
    # a recording goes with the analysis that read it; the visit's other recording stays
    listed = c.client.get(f"/api/v1/visits/{visits[0]}/recordings", headers=c.headers).json()
    first, second = (r["id"] for r in listed["recordings"])
    r = c.client.delete(f"/api/v1/recordings/{first}", headers=c.headers)
    assert r.status_code == 200 and r.json()["deleted"] == {
        "recordings": 1, "analyses": 1, "stored_answers": 0}  # fmt: skip
    assert _count(app, Recording, visit_id=visits[0]) == 1
    assert _count(app, Analysis, visit_id=visits[0]) == 0
    assert (
        c.client.get(f"/api/v1/visits/{visits[0]}/analysis", headers=c.headers).status_code == 404
    )
    assert c.client.delete(f"/api/v1/recordings/{first}", headers=c.headers).status_code == 404
    # a visit goes with its recordings and analyses
    r = c.client.delete(f"/api/v1/visits/{visits[1]}", headers=c.headers)
    assert r.json()["deleted"] == {"visits": 1, "recordings": 2, "analyses": 1, "stored_answers": 0}
    # the patient goes with the rest, and with the stored answer that held their name
    r = c.client.delete(f"/api/v1/patients/{pid}", headers=c.headers)
    assert r.json()["deleted"] == {"patients": 1, "visits": 1, "recordings": 1, "analyses": 0,
                                   "stored_answers": 1}  # fmt: skip
    assert _count(app, Patient, id=pid) == 0 and _count(app, Visit, patient_id=pid) == 0
    assert _count(app, Recording, visit_id=visits[0]) == 0
    assert _count(app, IdempotentRequest, clinic_id=_clinic_id(app, c)) == 0
    assert _count(app, Recording, id=second) == 0
    # the audit log: who, what, when; ids and counts, nothing of the patient
    log = c.client.get("/api/v1/audit", headers=c.headers).json()["events"]
    assert [e["action"] for e in log] == ["delete patient", "delete visit", "delete recording"]
    assert all(e["actor"].startswith("token emgdx_") for e in log)
    assert "Eve" not in json.dumps(log) and "MRN-ERASE" not in json.dumps(log)
    assert c.client.get("/api/v1/audit", headers=other.headers).json()["events"] == []
    assert _count(app, AuditEvent, clinic_id=_clinic_id(app, c)) == 3


def _clinic_id(app: Any, c: Clinic) -> str:
    from emgdx.clinic.models import Clinic as ClinicRow

    with app.state.db.session() as session:
        return str(session.scalar(select(ClinicRow.id).where(ClinicRow.name == c.name)))


def test_client_paths_never_reach_the_disk(
    clinic: Clinic, app: Any, headers_on_disk: list[Path], tmp_path: Path
) -> None:
    c = clinic
    _, vid = _patient_visit(c)
    hea = headers_on_disk[0]
    target = tmp_path / "escaped.hea"
    parts = [
        (
            "files",
            (
                f"../../../../{target.parent}/escaped.hea".replace("//", "/"),
                hea.read_bytes().replace(hea.stem.encode(), b"escaped"),
                "text/plain",
            ),
        ),
        (
            "files",
            (
                "..\\..\\escaped.dat",
                hea.with_suffix(".dat").read_bytes(),
                "application/octet-stream",
            ),
        ),
    ]
    r = c.client.post(f"/api/v1/visits/{vid}/recordings", files=parts, headers=c.headers)
    assert r.status_code == 201, r.text
    assert [f["filename"] for f in r.json()["recordings"][0]["files"]] == [
        "escaped.dat",
        "escaped.hea",
    ]
    assert not target.exists()
    # A ".." name alone is refused.
    r = c.client.post(
        f"/api/v1/visits/{vid}/recordings",
        files=[("files", ("..", b"x", "text/plain"))],
        headers=c.headers,
    )
    assert r.status_code == 422


def test_failed_analysis_leaks_nothing_and_stores_nothing(
    clinic: Clinic,
    app: Any,
    headers_on_disk: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = clinic
    _, vid = _patient_visit(c)
    assert (
        c.client.post(
            f"/api/v1/visits/{vid}/recordings",
            files=record_files(headers_on_disk[0]),
            headers=c.headers,
        ).status_code
        == 201
    )

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("secret detail at /srv/emgdx/internal.py line 42")

    monkeypatch.setattr(app.state.runner, "analyse", boom)
    with caplog.at_level(logging.ERROR, logger="emgdx.clinic"):
        r = c.client.post(f"/api/v1/visits/{vid}/analysis", json={}, headers=c.headers)
    assert r.status_code == 500
    body = r.json()
    assert set(body) == {"detail", "request_id"} and "secret" not in r.text and "/srv" not in r.text
    assert body["request_id"] in caplog.text and "secret detail" in caplog.text  # for the admin
    assert _count(app, Analysis, visit_id=vid) == 0
    assert c.client.get(f"/api/v1/visits/{vid}/recordings", headers=c.headers).json()["recordings"]


def test_analysis_is_one_transaction(
    clinic: Clinic, app: Any, headers_on_disk: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while the result is written (here: a record row pointing nowhere, which the
    database refuses at flush) leaves no analysis, no record result and no figure behind."""
    c = clinic
    _, vid = _patient_visit(c)
    files = record_files(headers_on_disk[0]) + record_files(headers_on_disk[1])
    assert (
        c.client.post(
            f"/api/v1/visits/{vid}/recordings", files=files, headers=c.headers
        ).status_code
        == 201
    )
    runner = app.state.runner
    real = runner.to_rows

    def broken(visit_id: str, report: Any, origin: Any) -> Any:
        analysis = real(visit_id, report, origin)
        analysis.records[-1].recording_id = str(uuid.uuid4())  # foreign key violation
        return analysis

    monkeypatch.setattr(runner, "to_rows", broken)
    before = {m: _count(app, m) for m in (Analysis, RecordResult, Figure)}
    r = c.client.post(f"/api/v1/visits/{vid}/analysis", json={"explain": True}, headers=c.headers)
    assert r.status_code == 500
    assert {m: _count(app, m) for m in (Analysis, RecordResult, Figure)} == before
    monkeypatch.setattr(runner, "to_rows", real)
    assert (
        c.client.post(
            f"/api/v1/visits/{vid}/analysis", json={"explain": False}, headers=c.headers
        ).status_code
        == 201
    )


def test_no_patient_data_in_the_logs(
    clinic: Clinic, headers_on_disk: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    c = clinic
    secret_name, secret_mrn = "Zebulon Quuxworth", "MRN-ZQ-9137"
    with caplog.at_level(logging.INFO):  # the level `emgdx serve` logs at
        r = c.client.post(
            "/api/v1/patients",
            json={"external_id": secret_mrn, "name": secret_name, "birth_year": 1950},
            headers=c.headers,
        )
        pid = r.json()["id"]
        vid = c.client.post(
            f"/api/v1/patients/{pid}/visits",
            json={"date": "2026-02-02", "notes": secret_name},
            headers=c.headers,
        ).json()["id"]
        c.client.post(
            f"/api/v1/visits/{vid}/recordings",
            files=record_files(headers_on_disk[0]),
            headers=c.headers,
        )
        c.client.post(f"/api/v1/visits/{vid}/analysis", json={"explain": False}, headers=c.headers)
        c.client.post(
            "/api/v1/patients",
            json={"external_id": "bad id!", "name": secret_name},
            headers=c.headers,
        )
        c.client.get(f"/api/v1/patients/{pid}/timeline", headers=c.headers)
    # Everything the server side logged (the test client's own httpx lines are not the server's).
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert "/api/v1/patients/{patient_id}/timeline 200" in logged  # the access log is there
    for secret in (secret_name, secret_mrn, headers_on_disk[0].stem, c.token, pid, vid):
        assert secret not in logged


def test_validation_errors_do_not_echo_input(clinic: Clinic) -> None:
    r = clinic.client.post(
        "/api/v1/patients",
        json={"external_id": "has space", "name": "Echo Me"},
        headers=clinic.headers,
    )
    assert r.status_code == 422
    assert "Echo Me" not in r.text and "has space" not in r.text
    assert r.json()["detail"][0]["loc"] == ["body", "external_id"]


def test_analysis_without_recordings_or_model(clinic: Clinic, app: Any) -> None:
    _, vid = _patient_visit(clinic)
    assert (
        clinic.client.post(f"/api/v1/visits/{vid}/analysis", headers=clinic.headers).status_code
        == 409
    )
    # by hand, not monkeypatch: its undo deletes an attribute of Starlette's State
    runner, app.state.runner = app.state.runner, None
    try:
        r = clinic.client.post(f"/api/v1/visits/{vid}/analysis", headers=clinic.headers)
        assert r.status_code == 503
    finally:
        app.state.runner = runner


def test_migrations_match_the_models(app: Any) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from emgdx.clinic.db import migrations_dir
    from emgdx.clinic.models import Base

    with app.state.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        version = conn.execute(text("select version_num from alembic_version")).scalar()
    newest = max(p.name[:4] for p in migrations_dir().glob("versions/0*.py"))
    assert version == newest


def test_migrations_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect

    from emgdx.clinic.db import make_engine, migrate, migrations_dir

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    assert {"patient", "visit", "analysis", "recording_file"} <= set(
        inspect(engine).get_table_names()
    )
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(engine)
    assert "patient" in inspect(engine).get_table_names()


def test_a_crashed_or_hung_analysis_fails_alone(
    tmp_path: Path, model_dir: Path, headers_on_disk: list[Path]
) -> None:
    """Analyses run in worker processes: a worker killed by a native crash (SIGSEGV) or hung
    (SIGSTOP, past the timeout) fails that one analysis, stored with its reason; the server
    answers on, and the next analysis runs in a fresh worker."""
    import os
    import signal
    import time

    app = make_app(f"sqlite:///{tmp_path / 'c.db'}", model_dir, analysis_timeout_s=3)
    c = add_clinic(app, "Crashes")
    pid, vid = _patient_visit(c)
    r = c.client.post(
        f"/api/v1/visits/{vid}/recordings",
        files=record_files(headers_on_disk[0]),
        headers=c.headers,
    )
    assert r.status_code == 201, r.text
    url = f"/api/v1/visits/{vid}/analysis"

    def analyse() -> dict[str, Any]:
        r = c.client.post(url, json={"explain": False}, headers=c.headers)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    first = analyse()
    assert first["status"] == "done" and first["failure"] is None
    pool = app.state.runner.pool
    (worker,) = pool.pids()
    assert worker != os.getpid()

    os.kill(worker, signal.SIGSEGV)
    crashed = analyse()
    assert crashed["status"] == "failed" and "SIGSEGV" in crashed["failure"], crashed
    assert crashed["predicted"] is None and crashed["records"] == []
    page = c.client.get(crashed["report_html_url"], headers=c.headers)
    assert page.status_code == 409 and "SIGSEGV" in page.json()["detail"]
    assert c.client.get(f"/api/v1/visits/{vid}", headers=c.headers).json()["status"] == "failed"
    timeline = c.client.get(f"/api/v1/patients/{pid}/timeline", headers=c.headers).json()
    assert [p["analysis_id"] for p in timeline["points"]] == [first["id"]]  # failures left out

    again = analyse()
    assert again["status"] == "done" and again["probs"] == pytest.approx(first["probs"])
    (replacement,) = pool.pids()
    assert replacement != worker

    os.kill(replacement, signal.SIGSTOP)
    t0 = time.monotonic()
    hung = analyse()
    assert hung["status"] == "failed" and "longer than 3 s" in hung["failure"], hung
    assert time.monotonic() - t0 < 30
    assert analyse()["status"] == "done"
    assert c.client.get(f"/api/v1/visits/{vid}", headers=c.headers).json()["status"] == "analysed"

    app.state.runner.close()
    assert pool.pids() == []
    close_app(app)


def test_a_failing_analysis_in_process_is_stored_failed_without_internals(
    tmp_path: Path, model_dir: Path, headers_on_disk: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without worker processes (``isolate_analyses=False``) a failure is the same outcome: a
    failed analysis whose reason names no server internals (the traceback goes to the log)."""
    import emgdx.clinic.analysis as analysis

    app = make_app(f"sqlite:///{tmp_path / 'c.db'}", model_dir, isolate_analyses=False)
    assert app.state.runner.pool is None
    c = add_clinic(app, "Inline")
    _, vid = _patient_visit(c)
    files = record_files(headers_on_disk[0])
    r = c.client.post(f"/api/v1/visits/{vid}/recordings", files=files, headers=c.headers)
    assert r.status_code == 201, r.text

    def broken(*_: Any) -> Any:
        raise ValueError("cannot open /srv/emgdx/secret/model.bin")

    monkeypatch.setattr(analysis, "run_job", broken)
    r = c.client.post(f"/api/v1/visits/{vid}/analysis", json={"explain": False}, headers=c.headers)
    assert r.status_code == 201, r.text
    failed = r.json()
    assert failed["status"] == "failed" and "ValueError" in failed["failure"]
    assert "/srv" not in r.text and "secret" not in r.text
    monkeypatch.undo()
    r = c.client.post(f"/api/v1/visits/{vid}/analysis", json={"explain": False}, headers=c.headers)
    assert r.json()["status"] == "done" and r.json()["predicted"] is not None
    close_app(app)


def test_noise_is_stored_not_interpretable_and_left_out_of_the_timeline(clinic: Clinic) -> None:
    """The new user's noise CSV: an answer ("not interpretable", with the reason), not a
    probability; the visit says so and the patient's trends ignore it."""
    c = clinic
    pid, vid = _patient_visit(c)
    fs = 4000
    noise = np.random.default_rng(11).normal(0, 40, 5 * fs)
    csv = "time_s,emg_uV\n" + "\n".join(f"{i / fs:.6f},{v:.3f}" for i, v in enumerate(noise))
    r = c.client.post(
        f"/api/v1/visits/{vid}/recordings",
        files=[("files", ("noise.csv", csv.encode(), "text/csv"))],
        headers=c.headers,
    )
    assert r.status_code == 201, r.text
    r = c.client.post(f"/api/v1/visits/{vid}/analysis", json={"explain": False}, headers=c.headers)
    assert r.status_code == 201, r.text
    a = r.json()
    assert a["status"] == "done" and a["outcome"] == "not interpretable"
    assert a["predicted"] is None and a["reasons"][0].startswith("no motor-unit activity")
    assert a["summary"].startswith("NOT INTERPRETABLE: no motor-unit activity")
    (rec,) = a["records"]
    assert rec["outcome"] == "not interpretable" and rec["note"].startswith("Not interpretable")
    assert all(p is None for p in rec["probs"].values())
    visit = c.client.get(f"/api/v1/visits/{vid}", headers=c.headers).json()
    assert visit["status"] == "not interpretable"
    html = c.client.get(a["report_html_url"], headers=c.headers).text
    assert "NOT INTERPRETABLE" in html and "no motor-unit activity" in html
    timeline = c.client.get(f"/api/v1/patients/{pid}/timeline", headers=c.headers).json()
    assert timeline["points"] == []
