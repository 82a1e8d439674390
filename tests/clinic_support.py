"""Helpers shared by the clinic-service tests: a small trained model, simulated upload files,
and a client with a clinic and its token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def write_upload_records(out: Path, seed: int = 5) -> list[Path]:
    """Simulated WFDB records (``.hea`` + ``.dat``), one per class; returns the headers."""
    sim = simulate_cohort(1, 1, fs_hz=FS, duration_s=2.0, seed=seed)
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
    return create_app(ClinicSettings(database_url=database_url, model_dir=model_dir, **settings))  # type: ignore[arg-type]


def add_clinic(app, name: str) -> Clinic:
    create_clinic(app.state.db, name)
    token = create_token(app.state.db, name, label="tests")
    return Clinic(TestClient(app, raise_server_exceptions=False), token, name)
