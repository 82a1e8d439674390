"""The live monitor: a ring buffer of raw samples, sliding windows, the offline Pipeline on
each window, smoothed probabilities, QC on the fly and events.

How a streamed window equals the offline one. Offline, a record is resampled and filtered
as a whole, then cut into windows. Live, the future is not there yet, so each window is
computed from a *segment* of raw signal: the window plus ``context_s`` on both sides (the
window is reported ``context_s`` after it ends). The pipeline's front end on the stream
(:class:`emgdx.frontend.LiveFrontEnd`) starts the segment where the resampler's output grid
meets the offline one, so the resampled segment's samples fall on exactly the offline sample
times, and runs the *same* QC, preprocessing and normalisation as offline; the model is
:meth:`Pipeline.predict_windows`, and a stream's windows add up to a
:class:`~emgdx.diagnosis.Diagnosis` like a record's (:meth:`LiveMonitor.diagnosis`). What is left
is the zero-phase filter's edge transient at the segment's ends, which decays within the
context: measured on an N2001 record, 0.25 s of context leaves a largest sample difference
of 2.4e-4 of the window's standard deviation (0.1 s: 1.1e-2; float32 rounding: ~1e-4). The
parity test (``tests/test_streaming.py``) checks the probabilities.

Time. Every sample that arrives advances the stream clock by ``1 / fs``; gaps that a source
reports through timestamps are filled with samples marked unusable (up to ``max_fill_s``)
so that the clock stays true; a longer gap, or time running backwards, restarts the buffer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from emgdx.config import check_fields
from emgdx.errors import ConfigError, SignalError
from emgdx.frontend import QCConfig, not_interpretable_reasons

if TYPE_CHECKING:
    from emgdx.diagnosis import Diagnosis
    from emgdx.pipeline import Pipeline

__all__ = [
    "EventKind",
    "LiveMonitor",
    "MonitorConfig",
    "MonitorEvent",
    "RingBuffer",
    "WindowResult",
]

EventKind = Literal[
    "state",
    "qc",
    "gap",
    "restart",
    "garbage",
    "stall",
    "resume",
    "reconnect",
    "error",
    "end",
    "summary",
]

#: Timestamp steps up to this (either way) are an outlet's send jitter, not lost samples;
#: dropped stretches shorter than this go unnoticed (the stream is spliced there).
GAP_TOLERANCE_S = 0.05
#: How fast the expected timestamp follows the source's clock (fraction per chunk).
GAP_TRACKING = 0.05

#: QC flags that mean "no EMG to judge here"; shown as the state instead of a diagnosis.
_NO_SIGNAL_FLAGS = ("empty",)


@dataclass(frozen=True)
class MonitorConfig:
    """How the monitor cuts, judges and smooths the stream.

    Attributes
    ----------
    hop_s
        Time between consecutive windows (a window is judged every ``hop_s``).
    context_s
        Raw signal kept on both sides of a window for the filters to settle; a window is
        reported this long after it ends (see the module docstring).
    smooth_s
        Time constant of the exponential smoothing of window probabilities.
    qc_window_s
        Span of recent signal the on-the-fly QC looks at (clipping, flat, mains hum).
    state_threshold
        Smoothed probability a class needs to become the state (else ``"uncertain"``).
    min_state_s
        A new state must hold this long before a ``state`` event is raised (no flicker).
    max_fill_s
        Gaps up to this long are filled with unusable samples; longer ones restart.
    max_abs_uv
        Samples beyond this magnitude (100 mV) are garbage, as are NaN and infinity.
    buffer_s
        Ring buffer length (at least QC span + window + 2 x context).
    stall_s
        No data for this long raises a ``stall`` event (used by :func:`run_monitor`).
    reconnect_s
        After this long without data the source is asked to reconnect (and every
        ``reconnect_s`` after that).
    """

    hop_s: float = 0.25
    context_s: float = 0.3
    smooth_s: float = 2.0
    qc_window_s: float = 2.0
    state_threshold: float = 0.6
    min_state_s: float = 1.0
    max_fill_s: float = 1.0
    max_abs_uv: float = 1e5
    buffer_s: float = 12.0
    stall_s: float = 1.0
    reconnect_s: float = 3.0

    def __post_init__(self) -> None:
        problems = check_fields(
            self,
            positive="hop_s smooth_s qc_window_s buffer_s stall_s reconnect_s max_abs_uv",
            non_negative="context_s min_state_s max_fill_s",
            fraction="state_threshold",
        )
        if problems:
            raise ConfigError("invalid MonitorConfig: " + "; ".join(problems))


def _by_class(class_names: Sequence[str], p: np.ndarray | None) -> dict[str, float] | None:
    return None if p is None else {c: float(v) for c, v in zip(class_names, p, strict=True)}


@dataclass
class WindowResult:
    """One judged (or withheld) window.

    ``start_s`` / ``end_s`` are stream time (seconds since the stream started, gaps
    included). ``probs`` is ``None`` when the window was withheld (unusable samples in it);
    ``smoothed`` and ``state`` then keep their last values. ``latency_ms`` is the compute
    time of this window (QC + preprocessing + model).
    """

    index: int
    start_s: float
    end_s: float
    probs: np.ndarray | None
    smoothed: np.ndarray | None
    state: str
    qc_flags: tuple[str, ...]
    line_freq_hz: float | None
    usable_fraction: float
    latency_ms: float

    def to_dict(self, class_names: Sequence[str]) -> dict[str, Any]:
        """JSON-ready form (probabilities by class name)."""
        return {
            "type": "window",
            **asdict(self),
            "probs": _by_class(class_names, self.probs),
            "smoothed": _by_class(class_names, self.smoothed),
            "qc_flags": list(self.qc_flags),
        }


@dataclass
class MonitorEvent:
    """Something the user should know: a state change, a QC change or a stream fault."""

    kind: EventKind
    t_s: float
    message: str
    old: str | None = None
    new: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"type": "event", **asdict(self)}


#: What the monitor reports, in time order: judged windows and events.
Item = WindowResult | MonitorEvent


class RingBuffer:
    """Fixed-capacity buffer of float32 samples plus a usable flag per sample.

    Samples are addressed by their absolute position since the buffer was (re)started;
    only the last ``capacity`` stay readable. A numpy ring (not a deque): reads are one or
    two slice copies, appends are vectorised.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ConfigError(f"ring buffer capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._data = np.zeros(self.capacity, dtype=np.float32)
        self._ok = np.zeros(self.capacity, dtype=bool)
        self.total = 0  # samples ever appended since the last clear()

    def clear(self) -> None:
        self.total = 0

    @property
    def oldest(self) -> int:
        """Absolute position of the oldest readable sample."""
        return max(0, self.total - self.capacity)

    def append(self, values: np.ndarray, usable: np.ndarray | None = None) -> None:
        values = np.asarray(values, dtype=np.float32).ravel()
        ok = np.ones(values.size, dtype=bool) if usable is None else np.asarray(usable, bool)
        if values.size > self.capacity:  # only the newest samples can be kept
            skip = values.size - self.capacity
            self.total += skip
            values, ok = values[skip:], ok[skip:]
        at = (self.total + np.arange(values.size)) % self.capacity
        self._data[at], self._ok[at] = values, ok
        self.total += values.size

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of samples and flags at absolute positions ``[start, stop)``."""
        if start < self.oldest or stop > self.total or start > stop:
            raise SignalError(
                f"samples {start}-{stop} are not in the buffer "
                f"(it holds {self.oldest}-{self.total})"
            )
        if stop == start:
            return np.zeros(0, np.float32), np.zeros(0, bool)
        a, b = start % self.capacity, (stop - 1) % self.capacity + 1
        if a < b:
            return self._data[a:b].copy(), self._ok[a:b].copy()
        return (
            np.concatenate((self._data[a:], self._data[:b])),
            np.concatenate((self._ok[a:], self._ok[:b])),
        )


class LiveMonitor:
    """Judge a live single-channel stream window by window with a fitted :class:`Pipeline`.

    Feed it with :meth:`push` (samples in µV, optionally with their timestamps); it returns
    the windows judged and the events raised by that chunk, in order.

    Parameters
    ----------
    pipeline
        A fitted pipeline (torch, ONNX or classical backend).
    fs_hz
        The stream's sampling rate.
    config
        :class:`MonitorConfig`; defaults when ``None``.
    qc_config
        Thresholds of the on-the-fly QC (:class:`emgdx.quality.QCConfig`).
    name
        Shown in messages.

    Raises
    ------
    ConfigError
        When the pipeline is not fitted or normalises per record (a stream has no record).
    SamplingRateError
        When the stream is sampled too slowly for the model (as offline).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        fs_hz: float,
        config: MonitorConfig | None = None,
        *,
        qc_config: QCConfig | None = None,
        name: str = "stream",
    ) -> None:
        if not pipeline.fitted:
            raise ConfigError("the live monitor needs a fitted pipeline")
        self.front = pipeline.frontend.live(fs_hz, name, qc_config=qc_config)
        self.pipeline = pipeline
        self.fs_hz = self.front.fs_hz
        self.config = config or MonitorConfig()
        self.name = name
        self.class_names = list(pipeline.class_names)
        self.fs_out, self.n_win = self.front.fs_out, self.front.n_win
        self.window_s = self.n_win / self.fs_out
        self.hop_out = max(1, round(self.config.hop_s * self.fs_out))
        self.context_out = round(self.config.context_s * self.fs_out)
        self.qc_n = round(self.config.qc_window_s * self.fs_hz)
        start, stop = self.front.segment(self.context_out, self.context_out)
        need = self.qc_n + stop - start + self.front.plan.down
        self.buffer = RingBuffer(max(round(self.config.buffer_s * self.fs_hz), need + 16))
        self._alpha = 1.0 - math.exp(-self.config.hop_s / self.config.smooth_s)
        self._time_offset_s = 0.0  # stream time at the buffer's sample 0
        self._ts_ref: float | None = None  # source clock minus stream time
        self._ts_chunks = 0
        self._last_garbage_event = -math.inf
        self._reset_windows()
        self.state = "starting"
        self._candidate: tuple[str, int] | None = None
        self.qc_flags: tuple[str, ...] = ()
        self.latencies_ms: list[float] = []
        self.n_windows = 0
        self._judged: list[tuple[float, np.ndarray]] = []  # (start_s, probs) of judged windows
        #: How often each reason made a window not interpretable (for the summary).
        self.refusals: dict[str, int] = {}

    # ---- stream time ---------------------------------------------------------------------

    def _reset_windows(self) -> None:
        self._next_k = 0
        self.smoothed: np.ndarray | None = None

    @property
    def now_s(self) -> float:
        """Stream time of the newest sample."""
        return self._time_offset_s + self.buffer.total / self.fs_hz

    def _event(self, kind: EventKind, text: str, **fields: Any) -> MonitorEvent:
        """An event at the current stream time, its message prefixed with the stream's name."""
        return MonitorEvent(kind, self.now_s, f"{self.name}: {text}", **fields)

    # ---- input ---------------------------------------------------------------------------

    def push(self, samples: np.ndarray, timestamps: np.ndarray | None = None) -> list[Item]:
        """Add a chunk; judge every window it completes.

        Parameters
        ----------
        samples
            1-D samples in µV (other shapes are reported as garbage and dropped).
        timestamps
            Optional per-sample times in seconds (e.g. LSL's); used to find dropped samples.

        Returns
        -------
        list
            :class:`WindowResult` and :class:`MonitorEvent` items, in time order.
        """
        out: list[Item] = []
        try:
            x = np.asarray(samples)
            if x.ndim != 1 or x.dtype.kind not in "fiu":
                out.append(
                    self._event(
                        "garbage",
                        f"dropped a chunk of shape {x.shape} and type {x.dtype} "
                        "(expected one channel of numbers)",
                    )
                )
                return out
            if x.size == 0:
                return out
            x = x.astype(np.float32, copy=False)
            ts = None
            if timestamps is not None:
                ts = np.asarray(timestamps, dtype=np.float64).ravel()
                if ts.size != x.size or not np.isfinite(ts).all():
                    ts = None
            self._append(x, ts, out)
            self._judge_ready(out)
        except (SignalError, ValueError, FloatingPointError) as exc:
            # Never let one bad chunk end the monitor: report it and start afresh.
            out.append(self._event("error", str(exc)))
            self._restart(out, "after an error")
        return out

    def _append(self, x: np.ndarray, ts: np.ndarray | None, out: list[Item]) -> None:
        pos = 0
        while pos < x.size:
            stop = x.size
            if ts is not None:
                # Lateness of each sample against the stream clock: the timestamp minus where
                # the sample count says it should be. Jitter moves it a little either way; a
                # dropped stretch moves it up for good, a new clock far down.
                now = self.now_s
                if self._ts_ref is None:
                    self._ts_ref = float(ts[pos]) - now
                    self._ts_chunks = 0
                late = ts[pos:] - (self._ts_ref + now + np.arange(x.size - pos) / self.fs_hz)
                tol = max(GAP_TOLERANCE_S, 5.0 / self.fs_hz)
                jumps = np.flatnonzero((late > tol) | (late < -max(self.config.max_fill_s, tol)))
                if jumps.size and jumps[0] == 0:
                    # Filled (the clock moved on by the gap) or restarted (anchored afresh):
                    # either way the same samples are on time now.
                    self._gap(float(late[0]), out)
                    continue
                if jumps.size:
                    stop = pos + int(jumps[0])
                # Follow the outlet's clock slowly (its true rate differs a little from the
                # nominal one), so that drift never adds up to a false gap; at first as a
                # running mean, since the first chunk's own jitter set the anchor.
                self._ts_chunks += 1
                weight = max(GAP_TRACKING, 1.0 / self._ts_chunks)
                self._ts_ref += weight * float(late[stop - pos - 1])
            self._append_samples(x[pos:stop], out)
            pos = stop

    def _append_samples(self, part: np.ndarray, out: list[Item]) -> None:
        ok = np.isfinite(part) & (np.abs(part) <= self.config.max_abs_uv)
        if not ok.all():
            n_bad = int(np.count_nonzero(~ok))
            if self.now_s - self._last_garbage_event >= 1.0:
                self._last_garbage_event = self.now_s
                out.append(
                    self._event(
                        "garbage",
                        f"{n_bad} sample(s) not finite or beyond "
                        f"{self.config.max_abs_uv:g} µV, marked unusable",
                        details={"samples": n_bad},
                    )
                )
            part = np.where(ok, part, np.float32(0.0))
        self.buffer.append(part, ok)

    def _gap(self, gap_s: float, out: list[Item]) -> None:
        if 0 < gap_s <= self.config.max_fill_s:
            n = round(gap_s * self.fs_hz)
            out.append(
                self._event(
                    "gap",
                    f"{gap_s * 1000:.0f} ms of samples missing ({n} samples), marked unusable",
                    details={"missing_s": gap_s, "samples": n},
                )
            )
            self.buffer.append(np.zeros(n, np.float32), np.zeros(n, bool))
            return
        what = "time went backwards" if gap_s < 0 else f"{gap_s:.2f} s of samples missing"
        self._restart(out, f"({what})", skipped_s=max(0.0, gap_s))

    def _restart(self, out: list[Item], why: str, skipped_s: float = 0.0) -> None:
        """Empty the buffer; stream time goes on from now (plus ``skipped_s`` not received)."""
        self._time_offset_s = self.now_s + skipped_s
        self._ts_ref = None
        self.buffer.clear()
        self._reset_windows()
        out.append(self._event("restart", f"windows restart {why}"))

    def note_stall(self, seconds: float) -> MonitorEvent:
        """Event for a source that sent nothing for ``seconds`` (from :func:`run_monitor`)."""
        return self._event("stall", f"no data for {seconds:.1f} s", new="stalled")

    # ---- judging -------------------------------------------------------------------------

    def _judge_ready(self, out: list[Item], final: bool = False) -> None:
        while True:
            # Raw [start, stop) of the window's segment (window plus context).
            raw_start, raw_stop = self.front.segment(self._next_k * self.hop_out, self.context_out)
            if raw_stop > self.buffer.total:
                # At the end of a stream the last windows go without their right context:
                # the stream's end is then an edge exactly like the end of an offline record.
                end = self.front.segment(self._next_k * self.hop_out, 0)[1]
                if not final or end > self.buffer.total:
                    return
                raw_stop = self.buffer.total
            if raw_start < self.buffer.oldest:  # fell behind the buffer: skip ahead
                self._next_k += 1
                continue
            out.extend(self._judge(self._next_k, raw_start, raw_stop))
            self._next_k += 1

    def flush(self) -> list[Item]:
        """Judge the windows still waiting for their right context (at the end of a stream)."""
        out: list[Item] = []
        try:
            self._judge_ready(out, final=True)
        except (SignalError, ValueError) as exc:
            out.append(self._event("error", str(exc)))
        return out

    def _judge(self, k: int, raw_start: int, raw_stop: int) -> list[Item]:
        t0 = time.perf_counter()
        events: list[Item] = []
        qc_start = max(self.buffer.oldest, min(raw_start, raw_stop - self.qc_n))
        raw, ok = self.buffer.read(qc_start, raw_stop)
        start_s = self._time_offset_s + k * self.hop_out / self.fs_out
        live = self.front.window(
            raw, ok, raw_start - qc_start, raw_start, k * self.hop_out, start_s
        )
        flags = live.qc_flags
        if flags != self.qc_flags:
            events.append(
                self._event(
                    "qc",
                    "signal quality "
                    + (", ".join(flags) if flags else "ok")
                    + (f" (mains {live.line_freq_hz:g} Hz)" if live.line_freq_hz else ""),
                    old=",".join(self.qc_flags) or "ok",
                    new=",".join(flags) or "ok",
                )
            )
            self.qc_flags = flags
        probs: np.ndarray | None = None
        # Signal QC says is not needle EMG one can judge gets no probability (as offline).
        reasons = not_interpretable_reasons(flags) if "empty" not in flags else []
        for why in reasons:
            self.refusals[why] = self.refusals.get(why, 0) + 1
        if live.windows is not None and not reasons:
            probs = self.pipeline.predict_windows(live.windows)[0]
            self._judged.append((start_s, probs))
            s = self.smoothed
            self.smoothed = probs.copy() if s is None else s + self._alpha * (probs - s)
        state = self._next_state(flags, reasons, events)
        latency = (time.perf_counter() - t0) * 1000.0
        self.latencies_ms.append(latency)
        self.n_windows += 1
        events.append(
            WindowResult(
                k,
                start_s,
                start_s + self.window_s,
                probs,
                None if self.smoothed is None else self.smoothed.copy(),
                state,
                flags,
                live.line_freq_hz,
                live.usable_fraction,
                latency,
            )
        )
        return events

    def summary(self) -> MonitorEvent:
        """The session so far as one record's reading (:meth:`diagnosis`), as an event whose
        ``details`` hold the whole diagnosis."""
        dx = self.diagnosis()
        verdict = dx.visit
        text = "no window could be judged"
        if verdict.predicted is None and self.refusals:
            common = sorted(self.refusals, key=lambda r: -self.refusals[r])
            text = "not interpretable: " + "; ".join(common)
        if verdict.predicted is not None:
            low, high = verdict.interval[verdict.predicted]
            text = (
                f"session reading {verdict.predicted} {verdict.probs[verdict.predicted]:.2f} "
                f"(95 % interval {low:.2f}-{high:.2f}) over {verdict.n_windows} windows"
            )
        return self._event("summary", text, new=verdict.predicted, details=dx.to_dict())

    def diagnosis(self) -> Diagnosis:
        """The windows judged so far as one record's :class:`~emgdx.diagnosis.Diagnosis` (the
        offline aggregation, with its interval): the session's summary."""
        from emgdx.diagnosis import Diagnosis

        record = pd.DataFrame({"record_id": [self.name], "subject_id": [self.name], "label": None})
        index = record.loc[[0] * len(self._judged)].assign(start_s=[t for t, _ in self._judged])
        probs = np.array([p for _, p in self._judged]).reshape(-1, len(self.class_names))
        pipe = self.pipeline
        return Diagnosis.from_windows(
            probs,
            index,
            class_names=pipe.class_names,
            task=pipe.task,
            aggregation=pipe.aggregation,
            model=pipe.identity(),
            block=max(1, round(self.window_s / self.config.hop_s)),
            base=record,
        )

    def _next_state(self, flags: tuple[str, ...], reasons: list[str], events: list[Item]) -> str:
        if any(f in _NO_SIGNAL_FLAGS for f in flags):
            proposal = "no signal"
            self.smoothed = None  # what came before the silence is stale
        elif reasons:
            proposal = "not interpretable"
            self.smoothed = None
        elif self.smoothed is None:
            proposal = self.state
        else:
            best = int(np.argmax(self.smoothed))
            high = self.smoothed[best] >= self.config.state_threshold
            proposal = self.class_names[best] if high else "uncertain"
        if proposal == self.state:
            self._candidate = None
            return self.state
        hops_needed = max(1, math.ceil(self.config.min_state_s / self.config.hop_s - 1e-9))
        if self.state in ("starting", "no signal") or proposal == "no signal":
            hops_needed = 1
        name, count = self._candidate if self._candidate else (proposal, 0)
        count = count + 1 if name == proposal else 1
        self._candidate = (proposal, count)
        if count < hops_needed:
            return self.state
        details: dict[str, Any] = _by_class(self.class_names, self.smoothed) or {}
        why = f" ({'; '.join(reasons)})" if proposal == "not interpretable" else ""
        if why:
            details = {"reasons": list(reasons)}
        events.append(
            self._event(
                "state",
                f"{self.state} -> {proposal}{why}",
                old=self.state,
                new=proposal,
                details=details,
            )
        )
        self.state = proposal
        self._candidate = None
        return self.state

    def latency_summary(self) -> dict[str, float]:
        """p50 / p99 / max of the per-window compute time (ms) and the real-time factor."""
        lat = np.asarray(self.latencies_ms)
        if lat.size == 0:
            return {}
        return {
            "windows": float(lat.size),
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max()),
            "realtime_factor": float(self.config.hop_s * 1000.0 / np.mean(lat)),
        }
