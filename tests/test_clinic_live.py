"""Live monitoring in the clinic service (``/api/v1/live``): REST and WebSocket auth, a replayed
stored recording streamed to the end, sessions stopped (threads joined), the per-clinic limit,
a real LSL outlet on loopback, the slow-client queue and the display decimation."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from clinic_support import (
    FS,
    Clinic,
    LslOutlet,
    add_clinic,
    close_app,
    make_app,
    record_files,
    train_small_model,
    write_upload_records,
)
from emgdx.clinic import live

pytestmark = pytest.mark.slow

LIVE = "/api/v1/live"


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_small_model(tmp_path_factory.mktemp("model") / "cnn1d")


@pytest.fixture(scope="module")
def long_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-s simulated WFDB record (its header)."""
    return write_upload_records(tmp_path_factory.mktemp("rec") / "sim", duration_s=4.0)[0]


@pytest.fixture(scope="module")
def app(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    application = make_app(f"sqlite:///{tmp_path_factory.mktemp('db') / 'clinic.db'}", model_dir)
    yield application
    application.state.live.shutdown()
    close_app(application)


@pytest.fixture
def clinic(app: Any) -> Clinic:
    return add_clinic(app, f"Clinic {uuid.uuid4().hex[:8]}")


@pytest.fixture
def other(app: Any) -> Clinic:
    return add_clinic(app, f"Other {uuid.uuid4().hex[:8]}")


def _recording(c: Clinic, header: Path) -> str:
    """A patient, a visit and the uploaded record; returns the recording's id."""
    r = c.client.post(
        "/api/v1/patients", json={"external_id": f"MRN-{uuid.uuid4().hex[:6]}"}, headers=c.headers
    )
    assert r.status_code == 201, r.text
    r = c.client.post(
        f"/api/v1/patients/{r.json()['id']}/visits", json={"date": "2026-01-10"}, headers=c.headers
    )
    assert r.status_code == 201, r.text
    r = c.client.post(
        f"/api/v1/visits/{r.json()['id']}/recordings", files=record_files(header), headers=c.headers
    )
    assert r.status_code == 201, r.text
    return str(r.json()["recordings"][0]["id"])


def _start(c: Clinic, **body: Any) -> dict[str, Any]:
    r = c.client.post(f"{LIVE}/sessions", json=body, headers=c.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _stop(c: Clinic, session_id: str) -> None:
    r = c.client.delete(f"{LIVE}/sessions/{session_id}", headers=c.headers)
    assert r.status_code == 204, r.text


def _live_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("emgdx-live-")]


def _messages(ws: Any, until: Any, limit: int = 5000) -> list[dict[str, Any]]:
    """Messages received until ``until(message)`` is true (inclusive)."""
    out: list[dict[str, Any]] = []
    for _ in range(limit):
        out.append(json.loads(ws.receive_text()))
        if until(out[-1]):
            return out
    raise AssertionError(f"condition not met in {limit} messages: {[m['type'] for m in out][-20:]}")


def _close_code(c: Clinic, path: str, first: str | None) -> int:
    with c.client.websocket_connect(path) as ws:
        if first is not None:
            ws.send_text(first)
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
    return int(info.value.code)


# --------------------------------------------------------------------------- auth


def test_rest_routes_need_a_token(clinic: Clinic) -> None:
    bad = {"Authorization": "Bearer emgdx_not-a-real-token"}
    for method, path in [
        ("GET", "/streams"),
        ("GET", "/sessions"),
        ("POST", "/sessions"),
        ("GET", "/sessions/x"),
        ("DELETE", "/sessions/x"),
    ]:
        for headers in ({}, bad):
            r = clinic.client.request(method, f"{LIVE}{path}", headers=headers, json={})
            assert r.status_code == 401, (method, path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert "content-security-policy" in r.headers


def test_websocket_auth_and_clinic_separation(
    clinic: Clinic, other: Clinic, long_record: Path, monkeypatch: pytest.MonkeyPatch, app: Any
) -> None:
    rid = _recording(clinic, long_record)
    session = _start(clinic, recording_id=rid, speed=1.0)
    path = session["ws_url"]
    assert path == f"{LIVE}/sessions/{session['id']}/ws"
    try:
        assert _close_code(clinic, path, json.dumps({"token": "emgdx_wrong"})) == 4401
        assert _close_code(clinic, path, json.dumps({"nothing": 1})) == 4401
        assert _close_code(clinic, path, "not json") == 4401
        monkeypatch.setattr(live, "AUTH_TIMEOUT_S", 0.3)
        assert _close_code(clinic, path, None) == 4401  # silent client: timed out
        # Another clinic's token: the session does not exist for it.
        assert _close_code(clinic, path, json.dumps({"token": other.token})) == 4404
        unknown = f"{LIVE}/sessions/{uuid.uuid4().hex}/ws"
        assert _close_code(clinic, unknown, json.dumps({"token": clinic.token})) == 4404
        # ... and over REST: not listed, not readable, not stoppable, its recording not usable.
        assert other.client.get(f"{LIVE}/sessions", headers=other.headers).json() == {
            "sessions": []
        }
        for method in ("GET", "DELETE"):
            r = other.client.request(
                method, f"{LIVE}/sessions/{session['id']}", headers=other.headers
            )
            assert r.status_code == 404, r.text
        r = other.client.post(f"{LIVE}/sessions", json={"recording_id": rid}, headers=other.headers)
        assert r.status_code == 404 and r.json()["detail"] == "no such recording"
        # The right token opens it.
        with clinic.client.websocket_connect(path) as ws:
            ws.send_text(json.dumps({"token": clinic.token}))
            hello = json.loads(ws.receive_text())
            assert hello["type"] == "hello" and hello["session_id"] == session["id"]
    finally:
        _stop(clinic, session["id"])


def test_no_token_or_name_in_the_log(
    clinic: Clinic, long_record: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rid = _recording(clinic, long_record)
    caplog.set_level(logging.INFO, logger="emgdx.clinic")
    session = _start(clinic, recording_id=rid, speed=20.0)
    with clinic.client.websocket_connect(session["ws_url"]) as ws:
        ws.send_text(json.dumps({"token": clinic.token}))
        _messages(ws, lambda m: m["type"] == "event" and m["kind"] == "end")
    _stop(clinic, session["id"])
    text = caplog.text
    assert "WS /api/v1/live/sessions/{session_id}/ws open" in text
    assert "POST /api/v1/live/sessions 201" in text
    for secret in (clinic.token, session["id"], long_record.stem, clinic.name):
        assert secret not in text


# --------------------------------------------------------------------------- replay


def test_replay_streams_signal_windows_events_then_end(
    clinic: Clinic, long_record: Path, app: Any
) -> None:
    rid = _recording(clinic, long_record)
    assert not _live_threads()
    session = _start(clinic, recording_id=rid, speed=20.0)
    assert session["kind"] == "replay" and session["status"] in {"running", "ended"}
    assert session["fs_hz"] == pytest.approx(FS) and session["hop_s"] == pytest.approx(0.25)
    assert session["class_names"] == list(app.state.runner.pipeline.class_names)
    assert session["model"]["name"] == "cnn1d" and len(session["model"]["weights_sha256"]) == 64
    assert long_record.stem in session["source"] and "20×" in session["source"]

    with clinic.client.websocket_connect(session["ws_url"]) as ws:
        ws.send_text(json.dumps({"token": clinic.token}))
        got = _messages(ws, lambda m: m["type"] == "event" and m["kind"] == "end")
    hello, rest = got[0], got[1:]
    assert hello["type"] == "hello" and hello["class_names"] == session["class_names"]
    assert hello["fs_hz"] == pytest.approx(FS) and hello["window_s"] == pytest.approx(0.5)
    kinds = {m["type"] for m in rest}
    assert kinds == {"signal", "window", "event"}, kinds

    # Display signal: min/max pairs at 1000 per second, covering the whole 4-s record.
    signal = [m for m in rest if m["type"] == "signal"]
    assert all(m["dt_s"] == pytest.approx(0.001) for m in signal)
    assert all(len(m["min"]) == len(m["max"]) > 0 for m in signal)
    assert all(lo <= hi for m in signal for lo, hi in zip(m["min"], m["max"], strict=True))
    starts = [m["t0_s"] for m in signal]
    assert starts == sorted(starts) and starts[0] == pytest.approx(0.0)
    covered = sum(len(m["min"]) for m in signal) * 0.001
    assert covered == pytest.approx(4.0, abs=0.002)
    assert max(max(m["max"]) for m in signal) > 10.0  # µV: real EMG, not zeros

    windows = [m for m in rest if m["type"] == "window"]
    assert len(windows) >= 12  # hop 0.25 s over 4 s (the last ones flushed at the end)
    judged = [w for w in windows if w["probs"] is not None]
    assert judged, windows[:3]
    for w in judged:
        assert list(w["probs"]) == session["class_names"]
        assert sum(w["probs"].values()) == pytest.approx(1.0, abs=1e-4)
        assert w["latency_ms"] > 0
    assert [w["index"] for w in windows] == sorted(w["index"] for w in windows)

    events = [m for m in rest if m["type"] == "event"]
    states = [e for e in events if e["kind"] == "state"]
    assert states and states[0]["old"] == "starting" and states[0]["new"] != "starting"
    assert rest[-1]["kind"] == "end"
    # just before the end, the session summed up by the offline aggregation of its windows
    summary = rest[-2]
    assert summary["kind"] == "summary" and "session reading" in summary["message"]
    assert summary["details"]["visit"]["n_windows"] == len(judged)

    # Ended: still listed (as ended) until deleted; the monitor thread has finished.
    listed = clinic.client.get(f"{LIVE}/sessions", headers=clinic.headers).json()["sessions"]
    assert [(x["id"], x["status"]) for x in listed] == [(session["id"], "ended")]
    # A client that comes late gets the recent past: hello, then the same end.
    with clinic.client.websocket_connect(session["ws_url"]) as ws:
        ws.send_text(json.dumps({"token": clinic.token}))
        late = _messages(ws, lambda m: m["type"] == "event" and m["kind"] == "end")
    assert late[0]["type"] == "hello" and late[0]["status"] == "ended"
    assert [m for m in late if m["type"] == "event"] == events
    _stop(clinic, session["id"])
    assert clinic.client.get(f"{LIVE}/sessions", headers=clinic.headers).json() == {"sessions": []}
    assert not _live_threads()
    assert (
        clinic.client.delete(f"{LIVE}/sessions/{session['id']}", headers=clinic.headers).status_code
        == 404
    )


def test_delete_stops_a_running_session_and_closes_its_socket(
    clinic: Clinic, long_record: Path
) -> None:
    rid = _recording(clinic, long_record)
    # Only the session's own thread is counted: the test client's event-loop portal and
    # thread pool come and go on their own.
    assert not _live_threads()
    session = _start(clinic, recording_id=rid, speed=0.5)  # 8 s: still running below
    try:
        assert session["status"] == "running"
        assert [t.name for t in _live_threads()] == [f"emgdx-live-{session['id'][:8]}"]
        with clinic.client.websocket_connect(session["ws_url"]) as ws:
            ws.send_text(json.dumps({"token": clinic.token}))
            _messages(ws, lambda m: m["type"] == "signal")
            _stop(clinic, session["id"])
            assert not _live_threads()
            with pytest.raises(WebSocketDisconnect) as info:
                _messages(ws, lambda m: False)
            assert info.value.code == 1000
    finally:
        clinic.client.delete(f"{LIVE}/sessions/{session['id']}", headers=clinic.headers)
    assert not _live_threads()


def test_at_most_four_running_sessions_per_clinic(
    clinic: Clinic, other: Clinic, long_record: Path
) -> None:
    rid = _recording(clinic, long_record)
    ids = [_start(clinic, recording_id=rid, speed=0.2)["id"] for _ in range(4)]
    try:
        r = clinic.client.post(
            f"{LIVE}/sessions", json={"recording_id": rid}, headers=clinic.headers
        )
        assert r.status_code == 429, r.text
        assert "at most 4" in r.json()["detail"]
        assert len(_live_threads()) == 4
        # Another clinic has its own allowance.
        other_id = _start(other, recording_id=_recording(other, long_record), speed=0.2)["id"]
        _stop(other, other_id)
        # One stopped: room again.
        _stop(clinic, ids.pop())
        ids.append(_start(clinic, recording_id=rid, speed=0.2)["id"])
    finally:
        for session_id in ids:
            _stop(clinic, session_id)
    assert not _live_threads()


def test_bad_requests(clinic: Clinic, long_record: Path) -> None:
    rid = _recording(clinic, long_record)
    for body in (
        {},
        {"source": "lsl:x", "recording_id": rid},
        {"recording_id": rid, "speed": 0},
        {"recording_id": rid, "speed": 51},
        {"source": "file:/etc/passwd"},
        {"recording_id": rid, "extra": 1},
    ):
        r = clinic.client.post(f"{LIVE}/sessions", json=body, headers=clinic.headers)
        assert r.status_code == 422, (body, r.text)
    r = clinic.client.post(
        f"{LIVE}/sessions", json={"recording_id": rid, "channel": 3}, headers=clinic.headers
    )
    assert r.status_code == 422 and "1 channel" in r.json()["detail"]
    r = clinic.client.post(
        f"{LIVE}/sessions", json={"recording_id": uuid.uuid4().hex}, headers=clinic.headers
    )
    assert r.status_code == 404
    name = f"emgdx-absent-{uuid.uuid4().hex[:8]}"
    r = clinic.client.post(
        f"{LIVE}/sessions", json={"source": f"lsl:{name}"}, headers=clinic.headers
    )
    assert r.status_code == 422 and "no LSL stream" in r.json()["detail"], r.text
    assert not _live_threads()


def test_no_model_answers_503(tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'c.db'}", None)
    c = add_clinic(app, "No model")
    r = c.client.post(f"{LIVE}/sessions", json={"source": "lsl:x"}, headers=c.headers)
    assert r.status_code == 503 and "no model" in r.json()["detail"]
    assert c.client.get(f"{LIVE}/sessions", headers=c.headers).json() == {"sessions": []}
    close_app(app)


def test_openapi_documents_the_live_routes(clinic: Clinic) -> None:
    spec = clinic.client.get("/openapi.json").json()
    post = spec["paths"][f"{LIVE}/sessions"]["post"]
    assert post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/LiveSessionOut"
    )
    assert {"401", "422", "429", "503"} <= set(post["responses"])
    assert spec["paths"][f"{LIVE}/streams"]["get"]["security"]
    assert "LiveStreamList" in spec["components"]["schemas"]


def test_app_shutdown_stops_every_session(
    model_dir: Path, long_record: Path, tmp_path: Path
) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'c.db'}", model_dir)
    c = add_clinic(app, "Shutdown")
    with TestClient(app) as client:  # runs the lifespan
        c = Clinic(client, c.token, c.name)
        rid = _recording(c, long_record)
        _start(c, recording_id=rid, speed=0.2)
        assert len(_live_threads()) == 1
    assert not _live_threads()
    close_app(app)


# --------------------------------------------------------------------------- LSL


def test_real_lsl_outlet_is_listed_and_monitored(clinic: Clinic) -> None:
    pytest.importorskip("pylsl")
    with LslOutlet() as outlet:
        r = clinic.client.get(f"{LIVE}/streams", headers=clinic.headers)
        assert r.status_code == 200, r.text
        found = [x for x in r.json()["streams"] if x["name"] == outlet.name]
        assert found == [
            {
                "name": outlet.name,
                "type": "EMG",
                "channel_count": 1,
                "nominal_srate": FS,
                "source_id": outlet.name,
            }
        ]
        session = _start(clinic, source=f"lsl:{outlet.name}")
        assert session["kind"] == "lsl" and session["source"] == f"lsl:{outlet.name}"
        assert session["fs_hz"] == pytest.approx(FS)
        try:
            with clinic.client.websocket_connect(session["ws_url"]) as ws:
                ws.send_text(json.dumps({"token": clinic.token}))
                got = _messages(
                    ws, lambda m: m["type"] == "window" and m["probs"] is not None, limit=2000
                )
            assert got[0]["type"] == "hello"
            assert any(m["type"] == "signal" for m in got)
            window = got[-1]
            assert sum(window["probs"].values()) == pytest.approx(1.0, abs=1e-4)
            assert window["start_s"] >= 0 and window["end_s"] - window["start_s"] == pytest.approx(
                0.5
            )
        finally:
            _stop(clinic, session["id"])
    assert not _live_threads()


# --------------------------------------------------------------------------- pieces


def test_slow_client_queue_drops_signal_never_events() -> None:
    async def scenario() -> live._Subscriber:
        sub = live._Subscriber(asyncio.get_running_loop(), maxsize=10)
        for i in range(50):
            sub.put("signal", f"s{i}")
            if i % 5 == 0:
                sub.put("event", f"e{i}")
        return sub

    sub = asyncio.run(scenario())
    kinds = [k for k, _ in sub.items]
    assert kinds.count("event") == 10  # every event kept, even beyond maxsize
    assert len(sub.items) == 10 and sub.dropped == 50
    assert [t for _, t in sub.items] == [f"e{i}" for i in range(0, 50, 5)]


def test_slow_client_keeps_newest_signal() -> None:
    async def scenario() -> live._Subscriber:
        sub = live._Subscriber(asyncio.get_running_loop(), maxsize=4)
        sub.put("event", "e0")
        for i in range(20):
            sub.put("signal", f"s{i}")
        return sub

    sub = asyncio.run(scenario())
    assert list(sub.items) == [
        ("event", "e0"),
        ("signal", "s17"),
        ("signal", "s18"),
        ("signal", "s19"),
    ]


def test_decimator_keeps_spikes_and_one_time_grid() -> None:
    d = live.Decimator(4000.0)
    assert d.bucket == 4 and d.dt_s == pytest.approx(0.001)
    x = np.zeros(4000, np.float32)
    x[1001] = 500.0  # one sample: must survive as a max
    x[2002] = -300.0
    x[3000] = np.nan
    messages = [d.push(x[i : i + 90], i / 4000) for i in range(0, 4000, 90)]
    got = [m for m in messages if m is not None]
    assert sum(len(m["min"]) for m in got) == 1000  # every sample, buckets on one grid
    t = np.concatenate([m["t0_s"] + np.arange(len(m["max"])) * m["dt_s"] for m in got])
    np.testing.assert_allclose(t, np.arange(1000) * 0.001, atol=1e-9)
    hi = [v for m in got for v in m["max"]]
    lo = [v for m in got for v in m["min"]]
    assert hi[250] == 500.0 and lo[500] == -300.0
    assert hi[750] == 0.0  # NaN ignored within a bucket with finite samples
    assert live.Decimator(4000.0).push(np.full(8, np.nan), 0.0)["min"] == [None, None]  # type: ignore[index]
    # A jump in stream time (a restart) starts a new grid instead of joining the samples.
    d2 = live.Decimator(4000.0)
    assert d2.push(np.ones(6), 0.0)["t0_s"] == 0.0  # type: ignore[index]
    assert d2.push(np.ones(6), 10.0)["t0_s"] == 10.0  # type: ignore[index]
    # A slow stream is sent as it is (one bucket per sample).
    assert live.Decimator(500.0).bucket == 1


def test_replay_wall_time_follows_speed(clinic: Clinic, long_record: Path) -> None:
    """A replay at 4× takes about a quarter of the record's duration (real-time pacing)."""
    rid = _recording(clinic, long_record)
    t0 = time.monotonic()
    session = _start(clinic, recording_id=rid, speed=4.0)
    with clinic.client.websocket_connect(session["ws_url"]) as ws:
        ws.send_text(json.dumps({"token": clinic.token}))
        _messages(ws, lambda m: m["type"] == "event" and m["kind"] == "end")
    elapsed = time.monotonic() - t0
    _stop(clinic, session["id"])
    assert 0.9 <= elapsed < 4.0, elapsed
