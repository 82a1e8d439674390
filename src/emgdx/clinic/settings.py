"""How a clinic service instance is configured: database, model, limits.

Every value can come from the command line (``emgdx serve``) or from an environment variable
``EMGDX_<NAME>`` (e.g. ``EMGDX_DATABASE_URL``), so a hospital can run the service under a
process manager without editing files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from emgdx.errors import ConfigError

__all__ = ["ClinicSettings", "default_data_dir"]

MIB = 1024 * 1024


def default_data_dir() -> Path:
    """``$EMGDX_HOME`` or ``~/.emgdx``: where the default SQLite database lives."""
    return Path(os.environ.get("EMGDX_HOME", Path.home() / ".emgdx"))


@dataclass(frozen=True)
class ClinicSettings:
    """Settings of one service instance.

    Parameters
    ----------
    database_url
        SQLAlchemy URL. Default: SQLite file ``clinic.db`` in :func:`default_data_dir`.
        PostgreSQL: ``postgresql+psycopg://user:password@host:5432/emgdx``.
    model_dir
        A pipeline saved by ``emgdx train`` / :meth:`emgdx.pipeline.Pipeline.save`.
    max_file_bytes
        Largest single uploaded file (default 64 MiB; a 10-min 4-channel EDF at 24 kHz fits).
    max_request_bytes
        Largest request body (default 256 MiB); bigger uploads are refused with 413 before
        they are read.
    max_files_per_request
        Most files in one upload.
    analysis_workers
        Analyses that run at the same time; more requests wait their turn (the model uses
        the CPU fully, so running more at once only adds memory and latency).
    isolate_analyses
        Run analyses in worker processes (default True): a crash in native code or a hung
        analysis then fails that analysis only, never the server.
    analysis_timeout_s
        An analysis running longer is stopped and stored as failed (default 600 s).
    explain_figures
        Evidence figures per record in an analysis (0: none, 1-3 as in the report).
    migrate
        Run the Alembic migrations at start-up (default True).
    data_dir
        The service's own folder (default :func:`default_data_dir`): uploads are staged in its
        ``staging`` folder while they are read, never in the system's temporary folder, and
        what a killed process left there is removed at start-up.
    backend
        Model inference: ``"auto"`` (ONNX when the model folder has ``model.onnx``, written by
        ``emgdx export``, and onnxruntime is installed; else torch), ``"torch"``, ``"onnx"``
        or ``"onnx-int8"``.
    """

    database_url: str = ""
    model_dir: Path | None = None
    max_file_bytes: int = 64 * MIB
    max_request_bytes: int = 256 * MIB
    max_files_per_request: int = 64
    analysis_workers: int = 1
    isolate_analyses: bool = True
    analysis_timeout_s: int = 600
    explain_figures: int = 3
    migrate: bool = True
    backend: str = "auto"
    data_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "data_dir", Path(self.data_dir) if self.data_dir else default_data_dir()
        )
        if not self.database_url:
            object.__setattr__(
                self, "database_url", f"sqlite:///{default_data_dir() / 'clinic.db'}"
            )
        if self.model_dir is not None:
            object.__setattr__(self, "model_dir", Path(self.model_dir))
        for name in ("max_file_bytes", "max_request_bytes", "max_files_per_request"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_file_bytes > self.max_request_bytes:
            raise ConfigError("max_file_bytes cannot exceed max_request_bytes")
        if self.analysis_workers < 1:
            raise ConfigError(f"analysis_workers must be >= 1, got {self.analysis_workers}")
        if self.analysis_timeout_s <= 0:
            raise ConfigError(f"analysis_timeout_s must be positive, got {self.analysis_timeout_s}")
        if not 0 <= self.explain_figures <= 3:
            raise ConfigError(f"explain_figures must be 0-3, got {self.explain_figures}")
        if self.backend not in ("auto", "torch", "onnx", "onnx-int8"):
            raise ConfigError(f"backend must be auto, torch, onnx or onnx-int8: {self.backend!r}")

    @classmethod
    def from_env(cls, **overrides: object) -> ClinicSettings:
        """Settings from ``EMGDX_*`` environment variables, then ``overrides`` (not None)."""
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(f"EMGDX_{f.name.upper()}")
            if raw is None:
                continue
            if f.name in ("model_dir", "data_dir"):
                values[f.name] = Path(raw)
            elif f.name in ("migrate", "isolate_analyses"):
                values[f.name] = raw.strip().lower() not in ("0", "false", "no", "")
            elif f.name in ("database_url", "backend"):
                values[f.name] = raw
            else:
                try:
                    values[f.name] = int(raw)
                except ValueError as exc:
                    raise ConfigError(
                        f"EMGDX_{f.name.upper()} must be an integer: {raw!r}"
                    ) from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
