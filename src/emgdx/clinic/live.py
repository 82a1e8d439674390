"""Live monitoring in the clinic service (``/api/v1/live``): LSL streams and replayed recordings
judged window by window, pushed to the browser over a WebSocket.

A *session* is one :class:`emgdx.streaming.LiveMonitor` on the app's pipeline, fed by
:func:`emgdx.streaming.run_monitor` in its own thread from a source: an LSL stream visible from
the server (``lsl:NAME``) or a recording stored in the clinic's database, replayed in time.
Every window, event and (decimated) signal chunk becomes a JSON message; each subscribed
WebSocket has its own bounded queue in its event loop, so a slow client never holds up the
monitor thread: when a queue is full its oldest *signal* message goes first (then its oldest
window), events are never dropped. A client that connects late (or reconnects) first gets the
recent past: the last few seconds of signal, the last windows and the events.

WebSocket protocol (browsers cannot put a bearer token on a WebSocket): the client's first
message must be ``{"token": "..."}`` within 5 s, else the server closes with code 4401; a
session of another clinic, or none, closes with 4404. Then the server sends ``hello`` and
streams ``signal`` / ``window`` / ``event`` messages. A deleted session closes with 1000.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Request, Response, WebSocket
from fastapi.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect, WebSocketState

from emgdx.clinic import schemas as s
from emgdx.clinic import scoped
from emgdx.clinic.admin import authenticate
from emgdx.clinic.api import ERRORS, ClinicId
from emgdx.clinic.ingest import UploadedFile, read_stored
from emgdx.config import json_ready
from emgdx.streaming import (
    Chunk,
    LiveMonitor,
    LSLSource,
    MonitorEvent,
    ReplaySource,
    Source,
    StreamError,
    WindowResult,
    run_monitor,
)

if TYPE_CHECKING:
    from emgdx.clinic.db import Database
    from emgdx.pipeline import Pipeline

__all__ = ["Decimator", "LiveHub", "LiveSession", "TooManySessions", "router"]

log = logging.getLogger("emgdx.clinic")

PREFIX = "/api/v1/live"
WS_TEMPLATE = f"{PREFIX}/sessions/{{session_id}}/ws"
MAX_SESSIONS_PER_CLINIC = 4
ENDED_TTL_S = 600.0
AUTH_TIMEOUT_S = 5.0
LSL_RESOLVE_S = 2.0
DISPLAY_RATE_HZ = 1000.0
QUEUE_MAX = 256  # messages waiting for one client
HISTORY_SIGNAL_S = 6.0  # a late client gets this much signal (the page shows 5 s)
HISTORY_WINDOWS = 40
HISTORY_EVENTS = 200
CLOSE_UNAUTHORISED = 4401
CLOSE_NOT_FOUND = 4404

Kind = Literal["signal", "window", "event"]


class TooManySessions(Exception):
    """The clinic has :data:`MAX_SESSIONS_PER_CLINIC` running sessions already."""


class Decimator:
    """Raw chunks to a display envelope: at most ``max_rate_hz`` min/max pairs per second.

    Buckets of ``ceil(fs / max_rate_hz)`` samples each give their minimum and maximum, so a
    single-sample spike stays visible. Samples left over at the end of a chunk wait for the
    next one (the buckets stay on one time grid); a jump in stream time starts a new grid.
    """

    def __init__(self, fs_hz: float, max_rate_hz: float = DISPLAY_RATE_HZ) -> None:
        self.fs_hz = float(fs_hz)
        self.bucket = max(1, math.ceil(self.fs_hz / max_rate_hz))
        self.dt_s = self.bucket / self.fs_hz
        self._carry = np.zeros(0, np.float64)
        self._carry_t0 = 0.0

    def push(self, samples: np.ndarray, t0_s: float) -> dict[str, Any] | None:
        x = np.asarray(samples)
        if x.ndim != 1 or x.dtype.kind not in "fiu" or x.size == 0:
            return None  # the monitor reports garbage chunks; nothing to draw
        x = x.astype(np.float64, copy=False)
        expected = self._carry_t0 + self._carry.size / self.fs_hz
        if self._carry.size == 0 or abs(t0_s - expected) > 1.5 / self.fs_hz:
            self._carry = np.zeros(0, np.float64)
            self._carry_t0 = float(t0_s)
        data = np.concatenate((self._carry, x)) if self._carry.size else x
        n = data.size // self.bucket * self.bucket
        start = self._carry_t0
        self._carry = data[n:].copy()
        self._carry_t0 = start + n / self.fs_hz
        if n == 0:
            return None
        b = data[:n].reshape(-1, self.bucket)
        finite = np.isfinite(b)
        lo = np.round(np.where(finite, b, np.inf).min(axis=1), 2)
        hi = np.round(np.where(finite, b, -np.inf).max(axis=1), 2)
        mins: list[float | None] = lo.tolist()
        maxs: list[float | None] = hi.tolist()
        if not finite.all():
            for i in np.flatnonzero(~finite.any(axis=1)):
                mins[i] = maxs[i] = None
        return {"type": "signal", "t0_s": start, "dt_s": self.dt_s, "min": mins, "max": maxs}


class _Subscriber:
    """One WebSocket's queue; :meth:`put` and :meth:`close` run in that socket's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int = QUEUE_MAX) -> None:
        self.loop = loop
        self.maxsize = maxsize
        self.items: deque[tuple[Kind, str]] = deque()
        self.wake = asyncio.Event()
        self.closed: tuple[int, str] | None = None
        self.dropped = 0

    def put(self, kind: Kind, text: str) -> None:
        self.items.append((kind, text))
        if len(self.items) > self.maxsize:
            for victim in ("signal", "window"):
                found = next((i for i, (k, _) in enumerate(self.items) if k == victim), None)
                if found is not None:
                    del self.items[found]
                    self.dropped += 1
                    break
        self.wake.set()

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.wake.set()


class LiveSession:
    """One monitored source, its thread, its recent past and its subscribers."""

    def __init__(
        self,
        *,
        clinic_id: str,
        kind: Literal["lsl", "replay"],
        description: str,
        source: Source,
        monitor: LiveMonitor,
        model_info: dict[str, str],
    ) -> None:
        self.id = uuid.uuid4().hex
        self.clinic_id = clinic_id
        self.kind = kind
        self.description = description
        self.source = source
        self.monitor = monitor
        self.model_info = model_info
        self.created_at = dt.datetime.now(dt.UTC)
        self.status: Literal["running", "ended"] = "running"
        self.ended_at: float | None = None
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._signal: deque[tuple[int, float, str]] = deque()
        self._windows: deque[tuple[int, str]] = deque(maxlen=HISTORY_WINDOWS)
        self._events: deque[tuple[int, str]] = deque(maxlen=HISTORY_EVENTS)
        self._subscribers: set[_Subscriber] = set()
        self._decimator = Decimator(monitor.fs_hz)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"emgdx-live-{self.id[:8]}")
        self._thread.daemon = True

    # ---- the monitor thread --------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            run_monitor(
                self.source, self.monitor, self._on_item, stop=self._stop, on_chunk=self._on_chunk
            )
        except Exception:  # never a silent dead thread: the page hears of it
            log.exception("live session %s: the monitor stopped on an error", self.id)
            self._publish(
                "event",
                MonitorEvent(
                    "error",
                    self.monitor.now_s,
                    "the monitor stopped on an internal error (see the server log)",
                ).to_dict(),
            )
        finally:
            try:
                self.source.close()
            except Exception:
                log.exception("live session %s: closing the source failed", self.id)
            self._mark_ended()

    def _mark_ended(self) -> None:
        with self._lock:
            if self.status == "running":
                self.status = "ended"
                self.ended_at = time.monotonic()

    def _on_item(self, item: WindowResult | MonitorEvent) -> None:
        if isinstance(item, WindowResult):
            self._publish("window", item.to_dict(self.monitor.class_names))
            return
        if item.kind == "end":
            # the session summed up as one record (LiveMonitor.summary), then the end; listed
            # as ended by the time a client reads the end
            self._publish("event", self.monitor.summary().to_dict())
            self._mark_ended()
        self._publish("event", item.to_dict())

    def _on_chunk(self, chunk: Chunk, t0_s: float) -> None:
        message = self._decimator.push(chunk.samples, t0_s)
        if message is not None:
            self._publish("signal", message)

    def _publish(self, kind: Kind, message: dict[str, Any]) -> None:
        text = json.dumps(json_ready(message), allow_nan=False, separators=(",", ":"))
        with self._lock:
            seq = next(self._seq)
            if kind == "signal":
                t0 = float(message["t0_s"])
                self._signal.append((seq, t0, text))
                while self._signal and self._signal[0][1] < t0 - HISTORY_SIGNAL_S:
                    self._signal.popleft()
            elif kind == "window":
                self._windows.append((seq, text))
            else:
                self._events.append((seq, text))
            subscribers = list(self._subscribers)
        for sub in subscribers:
            try:
                sub.loop.call_soon_threadsafe(sub.put, kind, text)
            except RuntimeError:  # its event loop is gone
                with self._lock:
                    self._subscribers.discard(sub)

    # ---- subscribers (called from an event loop) -----------------------------------------

    def subscribe(self) -> tuple[_Subscriber, list[str]]:
        """A new subscriber and the recent past to send it first (atomically: no gap)."""
        sub = _Subscriber(asyncio.get_running_loop())
        with self._lock:
            past = sorted(
                itertools.chain(
                    ((seq, text) for seq, _, text in self._signal), self._windows, self._events
                )
            )
            if self._stop.is_set():
                sub.close(1000, "session stopped")
            else:
                self._subscribers.add(sub)
        return sub, [text for _, text in past]

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def hello(self) -> str:
        """The first message to a client: what :meth:`describe` says, less model, time and URL."""
        described = self.describe().model_dump(exclude={"id", "model", "created_at", "ws_url"})
        message = {"type": "hello", "session_id": self.id, **described}
        return json.dumps(json_ready(message), allow_nan=False)

    # ---- stopping ------------------------------------------------------------------------

    @property
    def thread_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, code: int = 1000, reason: str = "session stopped") -> None:
        """Stop the monitor thread (joined) and close every subscriber's socket."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=15)
            if self._thread.is_alive():
                log.warning("live session %s: the monitor thread did not stop in time", self.id)
        self._mark_ended()
        with self._lock:
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for sub in subscribers:
            with contextlib.suppress(RuntimeError):
                sub.loop.call_soon_threadsafe(sub.close, code, reason)

    def describe(self) -> s.LiveSessionOut:
        return s.LiveSessionOut(
            id=self.id,
            source=self.description,
            kind=self.kind,
            status=self.status,
            fs_hz=self.monitor.fs_hz,
            hop_s=self.monitor.config.hop_s,
            window_s=self.monitor.window_s,
            class_names=list(self.monitor.class_names),
            model=self.model_info,
            created_at=self.created_at,
            ws_url=WS_TEMPLATE.format(session_id=self.id),
        )


class LiveHub:
    """The app's live sessions (``app.state.live``): at most ``max_per_clinic`` running per
    clinic; an ended one is removed ``ended_ttl_s`` after it ended (or when deleted)."""

    def __init__(
        self,
        pipeline: Pipeline | None,
        model_info: dict[str, str] | None = None,
        *,
        max_per_clinic: int = MAX_SESSIONS_PER_CLINIC,
        ended_ttl_s: float = ENDED_TTL_S,
    ) -> None:
        self.pipeline = pipeline
        self.model_info = dict(model_info or {})
        self.max_per_clinic = max_per_clinic
        self.ended_ttl_s = ended_ttl_s
        self._sessions: dict[str, LiveSession] = {}
        self._lock = threading.Lock()

    def _running(self, clinic_id: str) -> int:
        return sum(
            1 for x in self._sessions.values() if x.clinic_id == clinic_id and x.status == "running"
        )

    def check_room(self, clinic_id: str) -> None:
        """Raise :class:`TooManySessions` when the clinic has no room for another session."""
        self.sweep()
        with self._lock:
            if self._running(clinic_id) >= self.max_per_clinic:
                raise TooManySessions

    def create(
        self,
        clinic_id: str,
        *,
        kind: Literal["lsl", "replay"],
        description: str,
        open_source: Callable[[], Source],
        name: str,
    ) -> LiveSession:
        """Open the source, build the monitor and start the session's thread.

        Raises
        ------
        TooManySessions
            When the clinic runs :attr:`max_per_clinic` sessions already.
        EmgdxError
            When the source cannot be opened or the model cannot judge it (e.g. its rate).
        """
        if self.pipeline is None:
            raise RuntimeError("no pipeline loaded")
        self.check_room(clinic_id)
        source = open_source()
        try:
            monitor = LiveMonitor(self.pipeline, source.fs_hz, name=name)
            session = LiveSession(
                clinic_id=clinic_id,
                kind=kind,
                description=description,
                source=source,
                monitor=monitor,
                model_info=self.model_info,
            )
            with self._lock:  # again: another request may have taken the last place
                if self._running(clinic_id) >= self.max_per_clinic:
                    raise TooManySessions
                self._sessions[session.id] = session
        except BaseException:
            source.close()
            raise
        session.start()
        return session

    def get(self, clinic_id: str, session_id: str) -> LiveSession | None:
        self.sweep()
        with self._lock:
            session = self._sessions.get(session_id)
        return session if session is not None and session.clinic_id == clinic_id else None

    def sessions_of(self, clinic_id: str) -> list[LiveSession]:
        self.sweep()
        with self._lock:
            found = [x for x in self._sessions.values() if x.clinic_id == clinic_id]
        return sorted(found, key=lambda x: x.created_at)

    def delete(self, clinic_id: str, session_id: str) -> bool:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.clinic_id != clinic_id:
                return False
            del self._sessions[session_id]
        session.stop()
        return True

    def sweep(self) -> None:
        """Remove sessions that ended more than ``ended_ttl_s`` ago."""
        now = time.monotonic()
        with self._lock:
            old = [
                x
                for x in self._sessions.values()
                if x.ended_at is not None and now - x.ended_at >= self.ended_ttl_s
            ]
            for x in old:
                del self._sessions[x.id]
        for x in old:
            x.stop(1000, "session expired")

    def shutdown(self) -> None:
        """Stop every session (threads joined); for the app's shutdown."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for x in sessions:
            x.stop(1001, "server shutting down")


# --------------------------------------------------------------------------- HTTP routes

router = APIRouter(
    prefix=PREFIX,
    tags=["live"],
    responses={
        400: {"model": s.Error, "description": "Malformed request."},
        413: {"model": s.Error, "description": "Request body over the size limit."},
    },
)


def _hub(request: Request) -> LiveHub:
    hub: LiveHub = request.app.state.live
    return hub


def _not_found() -> HTTPException:
    return HTTPException(404, "no such live session")


@router.get("/streams", responses={**ERRORS, 503: {"model": s.Error}})
def list_streams(clinic_id: ClinicId) -> s.LiveStreamList:
    """Lab Streaming Layer streams visible from the server now (looks for 1 s)."""
    try:
        import pylsl
    except ImportError:
        raise HTTPException(
            503, "LSL support is not installed on this server (pip install 'emgdx[stream]')"
        ) from None
    found: Iterable[Any] = pylsl.resolve_streams(wait_time=1.0)
    streams = [
        s.LiveStreamOut(
            name=str(info.name()),
            type=str(info.type()),
            channel_count=int(info.channel_count()),
            nominal_srate=float(info.nominal_srate()),
            source_id=str(info.source_id()),
        )
        for info in found
    ]
    return s.LiveStreamList(streams=sorted(streams, key=lambda x: (x.name, x.source_id)))


def _stored_recording(
    db: Database, clinic_id: str, recording_id: str, channel: int
) -> tuple[Any, str]:
    """A stored recording's channel as a Recording, and the recording's name (404 if not the
    clinic's)."""
    with db.session() as session:
        row = scoped.recording(session, clinic_id, recording_id)
        files = [UploadedFile(f.filename, f.content) for f in row.files]
        options = dict(row.read_options)
        name = row.name
    channels = read_stored(files, options)
    if not 0 <= channel < len(channels):
        raise HTTPException(422, f"the recording has {len(channels)} channel(s), not {channel + 1}")
    return channels[channel], name


@router.post(
    "/sessions",
    status_code=201,
    responses={
        **ERRORS,
        422: {"model": s.Error, "description": "The stream cannot be opened or judged."},
        429: {"model": s.Error, "description": "The clinic runs the most sessions already."},
        503: {"model": s.Error, "description": "No model is loaded."},
    },
)
def create_session(
    request: Request, clinic_id: ClinicId, body: s.LiveSessionIn
) -> s.LiveSessionOut:
    """Start monitoring an LSL stream (`source: "lsl:NAME"`) or replaying a stored recording
    (`recording_id`, `speed`). Then connect to the returned `ws_url` to follow it."""
    hub = _hub(request)
    if hub.pipeline is None:
        raise HTTPException(503, "no model is loaded on this server (start it with --model)")
    too_many = HTTPException(
        429, f"at most {hub.max_per_clinic} live sessions at a time; stop one first"
    )
    try:
        hub.check_room(clinic_id)  # before the (slow) opening of a stream
        if body.source is not None:
            name = body.source.removeprefix("lsl:")
            session = hub.create(
                clinic_id,
                kind="lsl",
                description=body.source,
                open_source=partial(
                    LSLSource, name, channel=body.channel, resolve_timeout_s=LSL_RESOLVE_S
                ),
                name=name,
            )
        else:
            assert body.recording_id is not None
            recording, rec_name = _stored_recording(
                request.app.state.db, clinic_id, body.recording_id, body.channel
            )
            session = hub.create(
                clinic_id,
                kind="replay",
                description=f"replay: {rec_name} at {body.speed:g}×",
                open_source=partial(ReplaySource, recording, speed=body.speed),
                name=rec_name,
            )
    except TooManySessions:
        raise too_many from None
    except StreamError as exc:
        raise HTTPException(422, str(exc)) from None
    return session.describe()


@router.get("/sessions", responses=ERRORS)
def list_sessions(request: Request, clinic_id: ClinicId) -> s.LiveSessionList:
    """The clinic's live sessions (running, and ended ones not yet deleted)."""
    return s.LiveSessionList(sessions=[x.describe() for x in _hub(request).sessions_of(clinic_id)])


@router.get("/sessions/{session_id}", responses=ERRORS)
def get_session(request: Request, clinic_id: ClinicId, session_id: str) -> s.LiveSessionOut:
    """One live session."""
    session = _hub(request).get(clinic_id, session_id)
    if session is None:
        raise _not_found()
    return session.describe()


@router.delete("/sessions/{session_id}", status_code=204, response_class=Response, responses=ERRORS)
def delete_session(request: Request, clinic_id: ClinicId, session_id: str) -> Response:
    """Stop a session (its thread is joined) and close its WebSockets."""
    if not _hub(request).delete(clinic_id, session_id):
        raise _not_found()
    return Response(status_code=204)


# --------------------------------------------------------------------------- WebSocket


def _clinic_for_token(db: Database, token: str) -> str | None:
    with db.session() as session:
        clinic = authenticate(session, token)
        return None if clinic is None else clinic.id


async def _first_token(websocket: WebSocket) -> str | None:
    try:
        text = await asyncio.wait_for(websocket.receive_text(), timeout=AUTH_TIMEOUT_S)
        message = json.loads(text)
    except (TimeoutError, ValueError, KeyError, RuntimeError):
        return None
    token = message.get("token") if isinstance(message, dict) else None
    return token if isinstance(token, str) and token else None


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=code, reason=reason)


@router.websocket("/sessions/{session_id}/ws")
async def session_socket(websocket: WebSocket, session_id: str) -> None:
    """Follow a session: first message ``{"token": ...}``, then hello, signal, window, event."""
    app = websocket.app
    await websocket.accept()
    try:
        token = await _first_token(websocket)
    except WebSocketDisconnect:
        return
    clinic_id = await run_in_threadpool(_clinic_for_token, app.state.db, token) if token else None
    if clinic_id is None:
        log.info("WS %s %d clinic=-", WS_TEMPLATE, CLOSE_UNAUTHORISED)
        await _close(websocket, CLOSE_UNAUTHORISED, "missing, invalid or revoked token")
        return
    hub: LiveHub = app.state.live
    session = await run_in_threadpool(hub.get, clinic_id, session_id)
    if session is None:
        log.info("WS %s %d clinic=%s", WS_TEMPLATE, CLOSE_NOT_FOUND, clinic_id)
        await _close(websocket, CLOSE_NOT_FOUND, "no such live session")
        return
    log.info("WS %s open clinic=%s", WS_TEMPLATE, clinic_id)
    sub, past = session.subscribe()

    async def watch_client() -> None:
        # The client sends nothing more; this notices when it goes away.
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        sub.close(1000, "client left")

    watcher = asyncio.create_task(watch_client())
    try:
        await websocket.send_text(session.hello())
        for text in past:
            await websocket.send_text(text)
        while True:
            while sub.items:
                _, text = sub.items.popleft()
                await websocket.send_text(text)
            if sub.closed is not None:
                break
            sub.wake.clear()
            if not sub.items and sub.closed is None:
                await sub.wake.wait()
        code, reason = sub.closed
        if reason != "client left":
            await _close(websocket, code, reason)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        session.unsubscribe(sub)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
        log.info("WS %s closed clinic=%s dropped=%d", WS_TEMPLATE, clinic_id, sub.dropped)
