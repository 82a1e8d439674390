"""Live monitoring of a real Lab Streaming Layer outlet on loopback (pylsl / liblsl).

The outlet runs in a thread of the test and misbehaves on purpose: it drops samples, sends
garbage, stalls, and restarts under a new source id. The monitor must report each fault and go
on judging windows, never crash.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from emgdx.pipeline import Pipeline
from emgdx.recording import Recording
from emgdx.simulate import simulate_cohort
from emgdx.streaming import (
    LiveMonitor,
    LSLSource,
    MonitorConfig,
    MonitorEvent,
    StreamError,
    WindowResult,
    run_monitor,
)
from emgdx.training import TrainConfig

pylsl = pytest.importorskip("pylsl")

FS = 10_000.0
CHUNK = 200  # 20 ms


@pytest.fixture(scope="module")
def recs() -> list[Recording]:
    return simulate_cohort(1, 1, fs_hz=FS, duration_s=8.0, seed=11).cohort.recordings


@pytest.fixture(scope="module")
def forest(recs: list[Recording]) -> Pipeline:
    pipe = Pipeline(model="random_forest", train=TrainConfig(seed=0))
    return pipe.fit(pipe.prepare(recs))


class Outlet:
    """An LSL outlet pushing a signal in 20 ms chunks, ``pace`` times faster than real time."""

    def __init__(self, name: str, source_id: str, pace: float = 4.0) -> None:
        self.name = name
        self.pace = pace
        self.open(source_id)
        self.clock = pylsl.local_clock()

    def open(self, source_id: str) -> None:
        info = pylsl.StreamInfo(self.name, "EMG", 1, FS, pylsl.cf_float32, source_id)
        self.outlet = pylsl.StreamOutlet(info, chunk_size=CHUNK)

    def push(self, x: np.ndarray) -> None:
        for i in range(0, x.size, CHUNK):
            part = np.asarray(x[i : i + CHUNK], dtype=np.float32).reshape(-1, 1)
            self.clock += part.shape[0] / FS
            self.outlet.push_chunk(part, self.clock)
            time.sleep(part.shape[0] / FS / self.pace)

    def skip(self, seconds: float) -> None:
        self.clock += seconds

    def close(self) -> None:
        del self.outlet


@contextmanager
def monitoring(
    outlet: Outlet, name: str, pipe: Pipeline, config: MonitorConfig
) -> Iterator[tuple[list[WindowResult | MonitorEvent], threading.Thread]]:
    """``run_monitor`` on the LSL stream ``name`` in a thread; stopped (and the inlet and
    ``outlet`` closed) on leaving, also when the test fails inside."""
    source = LSLSource(name, resolve_timeout_s=5.0)
    mon = LiveMonitor(pipe, source.fs_hz, config, name=name)
    items: list[WindowResult | MonitorEvent] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=run_monitor, args=(source, mon, items.append), kwargs={"stop": stop}, daemon=True
    )
    thread.start()
    try:
        yield items, thread
    finally:
        stop.set()
        thread.join(timeout=10)
        source.close()
        outlet.close()


def wait_for(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def kinds(items: list[WindowResult | MonitorEvent]) -> list[str]:
    return [i.kind for i in list(items) if isinstance(i, MonitorEvent)]


def test_unknown_stream_is_a_clear_error() -> None:
    with pytest.raises(StreamError, match="no LSL stream"):
        LSLSource(f"emgdx-missing-{uuid.uuid4().hex[:8]}", resolve_timeout_s=0.5)


def test_lsl_stream_is_judged_like_offline(forest: Pipeline, recs: list[Recording]) -> None:
    rec = recs[0]
    name = f"emgdx-test-{uuid.uuid4().hex[:8]}"
    outlet = Outlet(name, name + "-a", pace=8.0)
    with monitoring(outlet, name, forest, MonitorConfig()) as (items, thread):
        time.sleep(0.3)  # let the inlet open before the first sample
        outlet.push(rec.signal)
        wait_for(lambda: sum(isinstance(i, WindowResult) for i in items) >= 20)
    assert not thread.is_alive()
    wins = [i for i in items if isinstance(i, WindowResult) and i.probs is not None]
    # The inlet was open before the first sample: stream time 0 is the record's start, and
    # every judged window equals the offline window at that start.
    off = forest.prepare(rec)
    p_off = dict(zip(np.round(off.index["start_s"], 6), forest.predict_windows(off), strict=True))
    matched = 0
    for w in wins:
        p = p_off.get(round(w.start_s, 6))
        if p is not None:
            # A forest's probability is a vote count: a feature differing in the 5th digit
            # (float32 filtering of a segment vs the whole record) can move one tree of 300.
            assert np.abs(w.probs - p).max() <= 2 / 300 + 1e-9
            assert np.argmax(w.probs) == np.argmax(p)
            matched += 1
    assert matched >= 10
    assert "error" not in kinds(items)


def test_lsl_faults_are_reported_and_survived(forest: Pipeline, recs: list[Recording]) -> None:
    x = recs[1].signal
    second = int(FS)
    name = f"emgdx-test-{uuid.uuid4().hex[:8]}"
    outlet = Outlet(name, name + "-a", pace=4.0)
    config = MonitorConfig(stall_s=0.5, reconnect_s=1.0, max_fill_s=1.0)
    with monitoring(outlet, name, forest, config) as (items, thread):

        def windows_since(n: int) -> int:
            return sum(isinstance(i, WindowResult) and i.probs is not None for i in items[n:])

        time.sleep(0.3)
        outlet.push(x[: 3 * second])
        wait_for(lambda: windows_since(0) >= 3)
        # 1. dropped samples: 0.2 s never sent
        outlet.skip(0.2)
        outlet.push(x[3 * second : 5 * second])
        wait_for(lambda: "gap" in kinds(items))
        # 2. garbage: NaN and absurd values
        junk = x[5 * second : 6 * second].copy()
        junk[100:300] = np.nan
        junk[500:520] = 1e9
        outlet.push(junk)
        wait_for(lambda: "garbage" in kinds(items))
        # 3. a stall longer than stall_s, then data again
        time.sleep(1.0)
        mark = len(items)
        outlet.push(x[6 * second : 8 * second])
        wait_for(lambda: "resume" in kinds(items[mark:]) and windows_since(mark) >= 2)
        # 4. the outlet dies and comes back under a new source id (a new device session)
        outlet.close()
        time.sleep(0.5)
        outlet.open(name + "-b")
        mark = len(items)
        for _ in range(6):  # keep sending until the monitor has found the new outlet
            outlet.push(x[:second])
            if "reconnect" in kinds(items[mark:]) and windows_since(mark) >= 2:
                break
        wait_for(lambda: "reconnect" in kinds(items[mark:]) and windows_since(mark) >= 2)
    assert not thread.is_alive()
    seen = kinds(items)
    for kind in ("gap", "garbage", "stall", "resume", "reconnect"):
        assert kind in seen, (kind, seen)
    assert "error" not in seen
    gap = next(i for i in items if isinstance(i, MonitorEvent) and i.kind == "gap")
    assert gap.details["missing_s"] == pytest.approx(0.2, abs=0.01)
    # windows over the dropped and the garbage samples were withheld, others judged
    wins = [i for i in items if isinstance(i, WindowResult)]
    assert any(w.probs is None for w in wins)
    assert sum(w.probs is not None for w in wins) > len(wins) // 2


def test_an_unknown_stream_on_the_command_line_is_one_clear_error_without_liblsl_chatter(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"}
    env["TMPDIR"] = str(tmp_path)  # where the quiet liblsl config is written
    name = f"emgdx-missing-{uuid.uuid4().hex[:8]}"
    run = subprocess.run(
        [sys.executable, "-m", "emgdx.cli", "monitor", "--source", f"lsl:{name}", "--no-live"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode != 0 and name in run.stderr
    assert "INFO|" not in run.stderr and "Traceback" not in run.stderr, run.stderr
