"""Where live samples come from: a Lab Streaming Layer inlet, or a file replayed in time.

Both give :class:`Chunk` objects through ``read(timeout_s)`` (``None`` when nothing came in
time) and raise :class:`StreamEnded` when there will be no more. :func:`run_monitor` drives a
source into a :class:`~emgdx.streaming.monitor.LiveMonitor` and turns silence into ``stall``
events and reconnection attempts.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from emgdx.config import atomic_write
from emgdx.errors import ConfigError, EmgdxError, require
from emgdx.recording import Recording
from emgdx.streaming.monitor import EventKind, Item, LiveMonitor, MonitorEvent

__all__ = [
    "Chunk",
    "LSLSource",
    "ReplaySource",
    "Source",
    "StreamEnded",
    "StreamError",
    "open_source",
    "run_monitor",
]


class StreamError(EmgdxError):
    """A stream that cannot be opened or used (not found, irregular rate, not numeric)."""


class StreamEnded(Exception):
    """The source has no more data (end of a replayed file)."""


@dataclass
class Chunk:
    """Samples of one channel (µV) and, when the source has them, their timestamps (s)."""

    samples: np.ndarray
    timestamps: np.ndarray | None = None


class Source(Protocol):
    """What :func:`run_monitor` needs from a source."""

    name: str
    fs_hz: float

    def read(self, timeout_s: float) -> Chunk | None: ...

    def reconnect(self) -> bool: ...

    def close(self) -> None: ...


class ReplaySource:
    """Play a recording as a live stream, at real time or ``speed`` times faster.

    Parameters
    ----------
    recording
        The record (or a path read with :func:`emgdx.io.read`; ``channel`` picks one).
    speed
        1.0 = real time; ``math.inf`` = as fast as the reader asks.
    chunk_s
        Duration of each chunk (LSL outlets typically send 10-50 ms).
    """

    def __init__(
        self,
        recording: Recording | str | Path,
        *,
        speed: float = 1.0,
        chunk_s: float = 0.02,
        channel: int = 0,
        fs_hz: float | None = None,
    ) -> None:
        if not (speed > 0):
            raise ConfigError(f"replay speed must be positive, got {speed}")
        if not (math.isfinite(chunk_s) and chunk_s > 0):
            raise ConfigError(f"chunk_s must be a positive number, got {chunk_s}")
        if not isinstance(recording, Recording):
            from emgdx.io import read

            recs = read(recording, fs_hz=fs_hz)
            if not 0 <= channel < len(recs):
                raise StreamError(f"{recording}: has {len(recs)} channel(s), asked for {channel}")
            recording = recs[channel]
        self.recording = recording
        self.name = recording.record_id
        self.fs_hz = recording.fs_hz
        self.speed = float(speed)
        self.chunk_n = max(1, round(chunk_s * self.fs_hz))
        self._pos = 0
        self._t0: float | None = None

    def read(self, timeout_s: float) -> Chunk | None:
        signal = self.recording.signal
        if self._pos >= signal.size:
            raise StreamEnded(self.name)
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        stop = min(signal.size, self._pos + self.chunk_n)
        if math.isfinite(self.speed):
            due = self._t0 + stop / self.fs_hz / self.speed
            if due - now > timeout_s:
                time.sleep(max(0.0, timeout_s))
                return None
            if due > now:
                time.sleep(due - now)
        chunk = signal[self._pos : stop]
        ts = np.arange(self._pos, stop) / self.fs_hz
        self._pos = stop
        return Chunk(chunk, ts)

    def reconnect(self) -> bool:
        return False

    def close(self) -> None:
        self._pos = self.recording.signal.size


def _quiet_liblsl() -> None:
    """Keep liblsl's INFO lines ("Loaded default config", ...) off the user's terminal: its
    log level comes from the file named by ``LSLAPICFG``; one is written when none is set.
    Warnings and errors still show."""
    if os.environ.get("LSLAPICFG"):
        return
    path = Path(tempfile.gettempdir()) / "emgdx-lsl_api.cfg"
    try:
        if not path.is_file():
            atomic_write(path, "[log]\nlevel = -1\n")  # loguru: -1 warnings, 0 info
    except OSError:
        return
    os.environ["LSLAPICFG"] = str(path)


class LSLSource:
    """A Lab Streaming Layer inlet on the stream called ``name`` (``pip install 'emgdx[stream]'``).

    The stream must have a regular sampling rate and a numeric channel format. Samples are
    taken as µV times ``uv_per_unit``. pylsl's own recovery (``recover=True``) brings back a
    stream whose outlet restarts with the same source id; :meth:`reconnect` also finds one
    that came back under a new id.
    """

    def __init__(
        self,
        name: str,
        *,
        channel: int = 0,
        uv_per_unit: float = 1.0,
        resolve_timeout_s: float = 5.0,
        max_chunk: int = 4096,
    ) -> None:
        _quiet_liblsl()
        self._lsl = require("pylsl", "LSL streams")
        self.name = name
        self.channel = channel
        self.uv_per_unit = float(uv_per_unit)
        self.max_chunk = max_chunk
        self._inlet: Any = None
        self._uid = ""
        self._open(resolve_timeout_s, first=True)

    def _open(self, timeout_s: float, *, first: bool) -> bool:
        found = self._lsl.resolve_byprop("name", self.name, minimum=1, timeout=timeout_s)
        if not found:
            if first:
                raise StreamError(f"lsl:{self.name}: no LSL stream of that name found")
            return False
        info = found[0]
        fs = float(info.nominal_srate())
        if not fs > 0:
            raise StreamError(f"lsl:{self.name}: irregular sampling rate; EMG needs a fixed rate")
        fmt = info.channel_format()
        if fmt == self._lsl.cf_string:
            raise StreamError(f"lsl:{self.name}: carries strings, not samples")
        if not 0 <= self.channel < info.channel_count():
            raise StreamError(
                f"lsl:{self.name}: has {info.channel_count()} channel(s), asked for {self.channel}"
            )
        if not first and info.uid() == self._uid:
            return False  # same outlet; pylsl's recovery handles it
        if self._inlet is not None:
            self._inlet.close_stream()
        self._inlet = self._lsl.StreamInlet(info, max_buflen=30, recover=True)
        self._inlet.open_stream(timeout=timeout_s)
        self._uid = info.uid()
        self.fs_hz = fs
        return True

    def read(self, timeout_s: float) -> Chunk | None:
        try:
            samples, ts = self._inlet.pull_chunk(timeout=timeout_s, max_samples=self.max_chunk)
        except self._lsl.LostError:
            return None
        if not ts:
            return None
        data = np.asarray(samples, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] <= self.channel:
            raise StreamError(f"lsl:{self.name}: chunk of shape {data.shape}")
        x = (data[:, self.channel] * self.uv_per_unit).astype(np.float32)
        return Chunk(x, np.asarray(ts, dtype=np.float64))

    def reconnect(self) -> bool:
        """Resolve the name again; ``True`` when a new outlet was found and opened."""
        try:
            return self._open(0.5, first=False)
        except StreamError:
            return False

    def close(self) -> None:
        if self._inlet is not None:
            self._inlet.close_stream()
            self._inlet = None


def open_source(spec: str, *, speed: float = 1.0, channel: int = 0, **kwargs: Any) -> Source:
    """``lsl:NAME`` or ``file:PATH`` (replayed at ``speed``) to a source.

    Raises
    ------
    ConfigError
        For any other form.
    StreamError
        When an LSL stream of that name is not found.
    """
    kind, _, rest = spec.partition(":")
    if kind == "lsl" and rest:
        return LSLSource(rest, channel=channel, **kwargs)
    if kind == "file" and rest:
        return ReplaySource(Path(rest), speed=speed, channel=channel, **kwargs)
    raise ConfigError(f"source must be lsl:NAME or file:PATH, got {spec!r}")


def run_monitor(
    source: Source,
    monitor: LiveMonitor,
    on_item: Callable[[Item], None],
    *,
    stop: threading.Event | None = None,
    duration_s: float | None = None,
    poll_s: float = 0.05,
    on_chunk: Callable[[Chunk, float], None] | None = None,
) -> None:
    """Feed ``source`` into ``monitor`` until the source ends, ``stop`` is set or
    ``duration_s`` of wall time passed; every window and event goes to ``on_item``, and
    every chunk (with the stream time of its first sample) to ``on_chunk`` (for display).

    Silence longer than ``stall_s`` gives one ``stall`` event (and ``resume`` when data
    returns); every ``reconnect_s`` of silence the source is asked to reconnect. Errors of
    the source become ``error`` events; only :class:`StreamEnded` ends the loop early.
    """
    cfg = monitor.config

    def event(kind: EventKind, text: str, **fields: Any) -> None:
        on_item(MonitorEvent(kind, monitor.now_s, f"{source.name}: {text}", **fields))

    t_start = time.monotonic()
    last_data = t_start
    last_reconnect = t_start
    stalled = False
    while not (stop is not None and stop.is_set()):
        now = time.monotonic()
        if duration_s is not None and now - t_start >= duration_s:
            break
        try:
            chunk = source.read(poll_s)
        except StreamEnded:
            for item in monitor.flush():
                on_item(item)
            event("end", "end of stream")
            return
        except EmgdxError as exc:
            on_item(MonitorEvent("error", monitor.now_s, str(exc)))
            time.sleep(poll_s)
            chunk = None
        now = time.monotonic()
        if chunk is None:
            silent = now - last_data
            if not stalled and silent >= cfg.stall_s:
                stalled = True
                on_item(monitor.note_stall(silent))
            if silent >= cfg.reconnect_s and now - last_reconnect >= cfg.reconnect_s:
                last_reconnect = now
                if source.reconnect():
                    event("reconnect", "reconnected to a new outlet")
            continue
        if stalled:
            stalled = False
            event("resume", f"data again after {now - last_data:.1f} s", old="stalled")
        last_data = now
        last_reconnect = now
        t_first = monitor.now_s
        for item in monitor.push(chunk.samples, chunk.timestamps):
            on_item(item)
        if on_chunk is not None:
            on_chunk(chunk, t_first)


def iterate(source: Source, monitor: LiveMonitor, **kwargs: Any) -> Iterator[Item]:
    """:func:`run_monitor` as a generator (for scripts and tests; runs in a thread)."""
    import queue

    items: queue.Queue[Item | None] = queue.Queue()
    stop = kwargs.pop("stop", None) or threading.Event()

    def work() -> None:
        try:
            run_monitor(source, monitor, items.put, stop=stop, **kwargs)
        finally:
            items.put(None)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not None:
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
