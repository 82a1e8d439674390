"""Helpers shared by the clinic-service tests: a small trained model, simulated upload files,
and a client with a clinic and its token."""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from emgdx.clinic.admin import create_clinic, create_token
from emgdx.clinic.app import create_app
from emgdx.clinic.settings import ClinicSettings
from emgdx.pipeline import Pipeline
from emgdx.preprocess import PreprocessConfig
from emgdx.simulate import simulate_cohort, write_cohort
from emgdx.training import TrainConfig

FS = 4000.0
PRE = PreprocessConfig(target_fs_hz=FS, band_hz=(20.0, 1800.0), window_s=0.5, hop_s=0.25)


def train_small_model(out: Path) -> Path:
    """A 1-D CNN fitted for two epochs on a small simulated cohort, saved to ``out``."""
    sim = simulate_cohort(3, 2, fs_hz=FS, duration_s=3.0, seed=11)
    pipeline = Pipeline(
        preprocess=PRE, model="cnn1d", train=TrainConfig(epochs=2, batch_size=32, seed=0)
    )
    pipeline.fit(pipeline.prepare(sim.cohort))
    pipeline.save(out)
    return out


def write_upload_records(out: Path, seed: int = 5, duration_s: float = 2.0) -> list[Path]:
    """Simulated WFDB records (``.hea`` + ``.dat``), one per class; returns the headers."""
    sim = simulate_cohort(1, 1, fs_hz=FS, duration_s=duration_s, seed=seed)
    write_cohort(sim, out)
    return sorted(out.glob("*.hea"))


def record_files(header: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The multipart ``files`` of one WFDB record (header + signal file)."""
    dat = header.with_suffix(".dat")
    return [
        ("files", (header.name, header.read_bytes(), "text/plain")),
        ("files", (dat.name, dat.read_bytes(), "application/octet-stream")),
    ]


@dataclass
class Clinic:
    client: TestClient
    token: str
    name: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_app(database_url: str, model_dir: Path | None, **settings: object):
    # the service's own folder (upload staging) in a fresh temporary folder, not the home
    settings.setdefault("data_dir", Path(tempfile.mkdtemp(prefix="emgdx-test-home-")))
    return create_app(ClinicSettings(database_url=database_url, model_dir=model_dir, **settings))  # type: ignore[arg-type]


def close_app(app) -> None:
    """What the service's shutdown does: stop the analysis workers, close the database."""
    if app.state.runner is not None:
        app.state.runner.close()
    app.state.db.dispose()


def add_clinic(app, name: str) -> Clinic:
    create_clinic(app.state.db, name)
    token = create_token(app.state.db, name, label="tests")
    return Clinic(TestClient(app, raise_server_exceptions=False), token, name)


class LslOutlet:
    """A real LSL outlet on loopback pushing a simulated EMG signal in real time (20 ms chunks,
    looping), from a thread; ``with LslOutlet() as outlet: ... outlet.name``."""

    def __init__(self, fs_hz: float = FS, seconds: float = 4.0, seed: int = 3) -> None:
        import pylsl

        self.name = f"emgdx-test-{uuid.uuid4().hex[:10]}"
        self.fs_hz = fs_hz
        rec = simulate_cohort(1, 1, fs_hz=fs_hz, duration_s=seconds, labels=("healthy",), seed=seed)
        self.signal = np.asarray(rec.cohort.recordings[0].signal, dtype=np.float32)
        info = pylsl.StreamInfo(self.name, "EMG", 1, fs_hz, pylsl.cf_float32, self.name)
        self._outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=30)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._push, daemon=True)
        self.pushed = 0

    def _push(self) -> None:
        n = round(0.02 * self.fs_hz)
        t0 = time.monotonic()
        while not self._stop.is_set():
            i = self.pushed % self.signal.size
            chunk = self.signal[i : i + n]
            self._outlet.push_chunk(chunk[:, None].tolist())
            self.pushed += chunk.size
            due = t0 + self.pushed / self.fs_hz
            self._stop.wait(max(0.0, due - time.monotonic()))

    def __enter__(self) -> LslOutlet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        del self._outlet
