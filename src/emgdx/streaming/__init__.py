"""Real-time monitoring of a live EMG stream with the offline Pipeline.

``LiveMonitor`` (ring buffer, sliding windows, smoothing, QC on the fly, events) is fed by a
source: ``LSLSource`` (Lab Streaming Layer inlet; ``pip install 'emgdx[stream]'``) or
``ReplaySource`` (a file played at real time or faster). ``run_monitor`` drives one into the
other and handles stalls and reconnection. See docs/streaming.md.
"""

from emgdx.streaming.monitor import (
    LiveMonitor,
    MonitorConfig,
    MonitorEvent,
    RingBuffer,
    WindowResult,
)
from emgdx.streaming.sources import (
    Chunk,
    LSLSource,
    ReplaySource,
    Source,
    StreamEnded,
    StreamError,
    iterate,
    open_source,
    run_monitor,
)

__all__ = [
    "Chunk",
    "LSLSource",
    "LiveMonitor",
    "MonitorConfig",
    "MonitorEvent",
    "ReplaySource",
    "RingBuffer",
    "Source",
    "StreamEnded",
    "StreamError",
    "WindowResult",
    "iterate",
    "open_source",
    "run_monitor",
]
