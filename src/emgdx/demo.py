"""The main job on the embedded default: a simulated cohort through QC and preprocessing.

``emgdx demo`` runs :func:`run_demo`. It needs no download: the cohort comes from
:mod:`emgdx.simulate`. Later stages (training, evaluation, reports) extend this same function.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from emgdx.preprocess import PreprocessConfig, preprocess_cohort
from emgdx.progress import ProgressCallback
from emgdx.quality import QC_FLAGS, assess_cohort
from emgdx.recording import LABELS, Cohort, Windows
from emgdx.simulate import simulate_cohort, write_cohort

__all__ = ["DEMO_PREPROCESS", "DemoResult", "run_demo"]

#: Preprocessing used by the demo: band-pass 20 Hz - 5 kHz, notch at the detected mains
#: frequency, resampling to 10 kHz, 1 s windows with 50 % overlap, per-window robust scaling.
DEMO_PREPROCESS = PreprocessConfig(
    band_hz=(20.0, 4000.0),
    target_fs_hz=10_000.0,
    window_s=1.0,
    hop_s=0.5,
    normalise="robust",
    normalise_scope="window",
)


@dataclass
class DemoResult:
    """What the demo produced, with a summary table per class."""

    cohort: Cohort
    windows: Windows
    config: PreprocessConfig
    seconds: dict[str, float] = field(default_factory=dict)
    out_dir: Path | None = None

    def class_table(self) -> pd.DataFrame:
        """Subjects, records, seconds, QC flags and windows per class."""
        man = self.cohort.manifest
        win_counts = self.windows.index.groupby("label").size()
        rows = []
        for label in LABELS:
            part = man[man["label"] == label]
            if part.empty:
                continue
            flagged = int((part["qc_flags"] != "").sum()) if "qc_flags" in part else 0
            rows.append(
                {
                    "label": label,
                    "subjects": part["subject_id"].nunique(),
                    "records": len(part),
                    "duration_s": round(float(part["duration_s"].sum()), 1),
                    "qc_flagged": flagged,
                    "windows": int(win_counts.get(label, 0)),
                }
            )
        return pd.DataFrame(rows)

    def qc_counts(self) -> dict[str, int]:
        man = self.cohort.manifest
        return {f: int(man[f"qc_{f}"].sum()) for f in QC_FLAGS if f"qc_{f}" in man}

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": self.class_table().to_dict(orient="records"),
            "qc_flag_counts": self.qc_counts(),
            "n_windows": len(self.windows),
            "window_samples": self.windows.n_samples,
            "window_fs_hz": self.windows.fs_hz,
            "preprocess": self.config.to_dict(),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "out_dir": None if self.out_dir is None else str(self.out_dir),
        }


def run_demo(
    *,
    seed: int = 0,
    subjects_per_class: int = 3,
    records_per_subject: int = 3,
    duration_s: float = 10.0,
    fs_hz: float = 23_437.5,
    out_dir: Path | None = None,
    config: PreprocessConfig = DEMO_PREPROCESS,
    on_progress: dict[str, ProgressCallback] | None = None,
) -> DemoResult:
    """Simulate a small cohort, check its quality and cut it into preprocessed windows.

    Parameters
    ----------
    seed
        Seed of the simulated cohort; the same seed gives the same result.
    subjects_per_class, records_per_subject, duration_s, fs_hz
        Size of the simulated cohort and its sampling rate (N2001's rate by default).
    out_dir
        If given, the simulated records are also written there (WFDB + manifest + truth).
    config
        Preprocessing configuration.
    on_progress
        Optional callbacks keyed by step (``"simulate"``, ``"quality"``, ``"preprocess"``).
    """
    hooks = on_progress or {}
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    sim = simulate_cohort(
        n_subjects_per_class=subjects_per_class,
        records_per_subject=records_per_subject,
        fs_hz=fs_hz,
        duration_s=duration_s,
        seed=seed,
        on_progress=hooks.get("simulate"),
    )
    seconds["simulate"] = time.perf_counter() - t0
    if out_dir is not None:
        t0 = time.perf_counter()
        write_cohort(sim, out_dir)
        seconds["write"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    reports = assess_cohort(sim.cohort, on_progress=hooks.get("quality"))
    seconds["quality"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    windows = preprocess_cohort(
        sim.cohort, config, qc_reports=reports, on_progress=hooks.get("preprocess")
    )
    seconds["preprocess"] = time.perf_counter() - t0
    return DemoResult(sim.cohort, windows, config, seconds, out_dir)
