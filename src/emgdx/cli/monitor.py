"""``emgdx monitor``: watch a live stream (LSL) or a replayed file in the terminal."""

from __future__ import annotations

import collections
import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import IO, Annotated, Any

import numpy as np
import typer
from rich import box
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from emgdx.cli import console as ui
from emgdx.config import json_ready

__all__ = ["app"]

app = typer.Typer(add_completion=False)

_BLOCKS = " ▁▂▃▄▅▆▇█"
_STATE_STYLE = {
    "healthy": "bold green",
    "neurogenic": "bold red",
    "myopathy": "bold magenta",
    "uncertain": "bold yellow",
    "no signal": "bold white on red",
    "not interpretable": "bold black on yellow",
    "starting": "dim",
    "stalled": "bold white on red",
}


class _View:
    """What the terminal shows, updated from the monitor's items and chunks."""

    def __init__(self, source: str, fs_hz: float, class_names: list[str], span_s: float = 5.0):
        self.source = source
        self.fs_hz = fs_hz
        self.class_names = class_names
        self.span_s = span_s
        self.bucket = max(1, round(fs_hz / 100.0))  # 100 envelope values per second
        self.envelope: collections.deque[float] = collections.deque(maxlen=round(span_s * 100))
        self.events: collections.deque[str] = collections.deque(maxlen=8)
        self.smoothed: np.ndarray | None = None
        self.state = "starting"
        self.stalled = False
        self.qc: tuple[str, ...] = ()
        self.line_hz: float | None = None
        self.latencies: collections.deque[float] = collections.deque(maxlen=200)
        self.windows = 0
        self.withheld = 0
        self.t_s = 0.0
        self._rest = np.zeros(0, np.float32)

    def on_chunk(self, samples: np.ndarray) -> None:
        x = np.concatenate((self._rest, np.abs(np.nan_to_num(samples.astype(np.float32)))))
        n = x.size // self.bucket
        if n:
            self.envelope.extend(x[: n * self.bucket].reshape(n, self.bucket).max(axis=1).tolist())
        self._rest = x[n * self.bucket :]

    def on_item(self, item: Any) -> None:
        from emgdx.streaming import WindowResult

        if isinstance(item, WindowResult):
            self.windows += 1
            self.withheld += item.probs is None
            self.latencies.append(item.latency_ms)
            self.smoothed = item.smoothed
            self.state = item.state
            self.qc = item.qc_flags
            self.line_hz = item.line_freq_hz
            self.t_s = item.end_s
            return
        if item.kind == "stall":
            self.stalled = True
        elif item.kind in ("resume", "reconnect"):
            self.stalled = False
        self.events.appendleft(f"{item.t_s:8.2f} s  {item.kind:<9} {item.message}")

    def render(self) -> Panel:
        state = "stalled" if self.stalled else self.state
        head = Text.assemble(
            ("state ", "bold"),
            (f" {state} ", _STATE_STYLE.get(state, "bold")),
            f"   t = {self.t_s:7.2f} s   windows {self.windows} ({self.withheld} withheld)",
        )
        probs = Table(box=None, show_header=False, pad_edge=False)
        probs.add_column(width=11)
        probs.add_column()
        probs.add_column(justify="right", width=6)
        for i, name in enumerate(self.class_names):
            p = None if self.smoothed is None else float(self.smoothed[i])
            bar = "" if p is None else "█" * round(p * 30)
            probs.add_row(name, Text(bar.ljust(30), _STATE_STYLE.get(name, "")), _pct(p))
        qc = ", ".join(self.qc) if self.qc else "ok"
        if self.line_hz:
            qc += f" (mains {self.line_hz:g} Hz)"
        lat = np.asarray(self.latencies)
        speed = ""
        if lat.size:
            speed = (
                f"latency p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms"
            )
        body = Group(
            head,
            Text(f"signal |µV| (last {self.span_s:g} s, peak {self._peak():.0f} µV)", "dim"),
            Text(self._sparkline(60), "cyan"),
            probs,
            Text.assemble(("QC ", "bold"), qc, "   ", (speed, "dim")),
            Text("\n".join(self.events) or "no events yet", "dim"),
        )
        return Panel(body, title=Text(f"emgdx monitor · {self.source}"), box=box.ROUNDED)

    def _peak(self) -> float:
        return max(self.envelope, default=0.0)

    def _sparkline(self, width: int) -> str:
        values = np.asarray(self.envelope, dtype=np.float64)
        if values.size == 0:
            return " " * width
        cols = np.array_split(values, min(width, values.size))
        peaks = np.array([c.max() for c in cols])
        top = peaks.max() or 1.0
        levels = np.clip(np.round(peaks / top * (len(_BLOCKS) - 1)), 0, len(_BLOCKS) - 1)
        return "".join(_BLOCKS[int(v)] for v in levels).rjust(width)


def _pct(p: float | None) -> str:
    return "  -  " if p is None else f"{p * 100:5.1f}%"


@app.command()
def monitor(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="lsl:NAME (a Lab Streaming Layer stream) or file:PATH (a record replayed).",
        ),
    ],
    model_dir: Annotated[
        Path | None,
        typer.Argument(
            envvar="EMGDX_MODEL_DIR",
            help="A folder written by `emgdx train` (or EMGDX_MODEL_DIR; neither: the shipped "
            "model, docs/model-card.md).",
            show_default=False,
        ),
    ] = None,
    speed: Annotated[
        float, typer.Option(help="Replay speed for file: sources (1 = real time; 0 = max).")
    ] = 1.0,
    channel: Annotated[int, typer.Option(help="Channel of the stream or file to watch.")] = 0,
    fs_hz: Annotated[
        float | None,
        typer.Option("--fs-hz", help="file: sources whose format stores no rate (CSV, NPY)."),
    ] = None,
    uv_per_unit: Annotated[
        float, typer.Option(help="LSL only: µV per stream unit (e.g. 1e6 for volts).")
    ] = 1.0,
    hop_s: Annotated[float, typer.Option("--hop", help="Seconds between judged windows.")] = 0.25,
    context_s: Annotated[
        float, typer.Option("--context", help="Seconds of filter context on each side.")
    ] = 0.3,
    smooth_s: Annotated[
        float, typer.Option("--smooth", help="Time constant of probability smoothing (s).")
    ] = 2.0,
    threshold: Annotated[
        float, typer.Option(help="Smoothed probability a class needs to become the state.")
    ] = 0.6,
    duration_s: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds.")
    ] = None,
    jsonl: Annotated[
        Path | None,
        typer.Option(help="Also write every window and event as JSON lines here ('-': stdout)."),
    ] = None,
    live: Annotated[bool, typer.Option(help="Live terminal view (off: print events only).")] = True,
    backend: Annotated[
        str, typer.Option(help="Model inference: auto, torch, onnx or onnx-int8.")
    ] = "auto",
    threads: Annotated[int, typer.Option(help="torch threads (1 suits a live stream).")] = 1,
    demo_model: Annotated[
        bool,
        typer.Option(
            help="No model at hand: use (and first train) the small model trained on simulated "
            "data that `emgdx serve --demo-model` uses (for trying it out; NOT for patients)."
        ),
    ] = False,
) -> None:
    """Judge a live EMG stream window by window, with the same pipeline as offline."""
    from emgdx.streaming import LiveMonitor, MonitorConfig, open_source, run_monitor

    ui.set_threads(threads)
    if model_dir is None:
        model_dir = ui.demo_model_dir() if demo_model else ui.shipped_model_dir()
    with ui.failing(OSError):
        pipe = ui.load_pipeline(model_dir, backend)
        kwargs: dict[str, Any] = (
            {"uv_per_unit": uv_per_unit} if source.startswith("lsl:") else {"fs_hz": fs_hz}
        )
        src = open_source(
            source, speed=math.inf if speed == 0 else speed, channel=channel, **kwargs
        )
        mon = LiveMonitor(
            pipe,
            src.fs_hz,
            MonitorConfig(
                hop_s=hop_s, context_s=context_s, smooth_s=smooth_s, state_threshold=threshold
            ),
            name=src.name,
        )

    sink: IO[str] | None = None
    if jsonl is not None:
        sink = sys.stdout if str(jsonl) == "-" else jsonl.open("w", encoding="utf-8")
    view = _View(source, src.fs_hz, list(pipe.class_names))
    show_live = live and sink is not sys.stdout and ui.err.is_terminal
    console = ui.plain_console(stderr=True)

    last_drawn = 0.0

    def on_item(item: Any) -> None:
        nonlocal last_drawn
        view.on_item(item)
        if sink is not None:
            payload = item.to_dict(pipe.class_names) if hasattr(item, "probs") else item.to_dict()
            sink.write(json.dumps(json_ready(payload), allow_nan=False) + "\n")
            sink.flush()
        elif not show_live and not hasattr(item, "probs"):
            console.print(f"{item.t_s:8.2f} s  {item.kind:<9} {item.message}", highlight=False)
        # The live view redraws at most every 0.1 s; without it, events print as they come.
        if show_live and time.monotonic() - last_drawn > 0.1:
            last_drawn = time.monotonic()
            live_view.update(view.render())

    started = time.monotonic()
    try:
        live_view = Live(view.render(), console=console, refresh_per_second=8)
        with live_view if show_live else contextlib.nullcontext():
            run_monitor(
                src,
                mon,
                on_item,
                duration_s=duration_s,
                on_chunk=lambda c, _t: view.on_chunk(c.samples),
            )
            if show_live:
                live_view.update(view.render())
    except KeyboardInterrupt:
        pass
    finally:
        src.close()
        # The session as one record: the offline aggregation of every window judged.
        reading = mon.summary()
        if sink is not None:
            sink.write(json.dumps(json_ready(reading.to_dict()), allow_nan=False) + "\n")
            if sink is not sys.stdout:
                sink.close()
    console.print(reading.message, highlight=False)
    summary = mon.latency_summary()
    elapsed = time.monotonic() - started
    if summary:
        console.print(
            f"{int(summary['windows'])} windows in {elapsed:.1f} s; final state: {mon.state}; "
            f"compute per window p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms "
            f"({summary['realtime_factor']:.0f}x faster than real time)",
            highlight=False,
        )
