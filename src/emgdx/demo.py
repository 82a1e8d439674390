"""The main job on the embedded default: a simulated cohort through QC and preprocessing.

``emgdx demo`` runs :func:`run_demo`. It needs no download: the cohort comes from
:mod:`emgdx.simulate`. Later stages (training, evaluation, reports) extend this same function.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emgdx.preprocess import PreprocessConfig, preprocess_cohort
from emgdx.progress import ProgressCallback
from emgdx.quality import QC_FLAGS, assess_cohort
from emgdx.recording import LABELS, Cohort, Windows
from emgdx.simulate import FAULT_KINDS, SimulatedCohort, inject_fault, simulate_cohort, write_cohort

__all__ = ["DEMO_PREPROCESS", "FAULT_FLAG", "DemoResult", "run_demo"]

#: The QC flag that must catch each injected fault.
FAULT_FLAG: dict[str, str] = {
    "clipping": "clipping",
    "garbage_tail": "garbage_tail",
    "dropout": "empty",
    "line_noise": "line_noise",
}

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
    faults: dict[str, str] = field(default_factory=dict)

    def qc_score(self) -> dict[str, Any]:
        """How the QC did on the injected faults and on the clean records."""
        flags = self.cohort.manifest["qc_flags"].to_dict()
        caught = {
            rid: FAULT_FLAG[kind] in flags[rid].split(";") for rid, kind in self.faults.items()
        }
        clean = [rid for rid in flags if rid not in self.faults]
        return {
            "faults_injected": len(self.faults),
            "faults_caught": int(sum(caught.values())),
            "missed": sorted(rid for rid, ok in caught.items() if not ok),
            "clean_records": len(clean),
            "clean_flagged": sorted(rid for rid in clean if flags[rid]),
        }

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
            "injected_faults": self.faults,
            "qc_score": self.qc_score(),
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
    inject_faults: bool = True,
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
    inject_faults
        Give one record each of the acquisition faults in :data:`emgdx.simulate.FAULT_KINDS`
        (clipping, garbage tail, dropout, 60 Hz hum), so the summary shows the QC at work.
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
    faults: dict[str, str] = {}
    if inject_faults:
        sim, faults = _with_faults(sim, seed)
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
    return DemoResult(sim.cohort, windows, config, seconds, out_dir, faults)


def _with_faults(sim: SimulatedCohort, seed: int) -> tuple[SimulatedCohort, dict[str, str]]:
    """One record per fault kind, picked at random (seeded) among different records."""
    rng = np.random.default_rng([seed, 2])
    recs = list(sim.cohort.recordings)
    n_faults = min(len(FAULT_KINDS), len(recs))
    picks = rng.choice(len(recs), size=n_faults, replace=False)
    faults: dict[str, str] = {}
    for pos, kind in zip(picks, FAULT_KINDS, strict=False):
        recs[pos] = inject_fault(recs[pos], kind, rng=rng)
        faults[recs[pos].record_id] = kind
    cohort = Cohort.from_recordings(recs)
    extra = [c for c in sim.cohort.manifest.columns if c not in cohort.manifest.columns]
    cohort.manifest[extra] = sim.cohort.manifest[extra]
    cohort.manifest["injected_fault"] = cohort.manifest["record_id"].map(faults)
    return replace(sim, cohort=cohort), faults
