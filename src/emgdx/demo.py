"""The main job on the embedded default: a simulated cohort through QC, preprocessing,
training and subject-wise evaluation, with a report.

``emgdx demo`` runs :func:`run_demo`. It needs no download: the cohort comes from
:mod:`emgdx.simulate`. Steps:

1. simulate 3 subjects per class (healthy / neurogenic / myopathy), 3 records each, and
   inject one acquisition fault of each kind, so the QC summary shows it at work;
2. the pipeline's front end: QC + preprocessing into windows (the summary table);
3. leave-one-subject-out cross-validation of exactly that pipeline (a fresh one per fold,
   fitted on the training subjects only, on those same windows), and ``results.json`` +
   ``report.html``.

The preprocessing the summary prints is the one the evaluated pipeline runs
(:data:`DEMO_PREPROCESS`, the defaults of ``emgdx train`` / ``evaluate``).

Model choice (:data:`DEMO_MODEL`, :data:`DEMO_EPOCHS`): the demo must finish in under 2 minutes
on a 2-core CPU. The 1-D CNN on raw windows is the project's main model, so the demo shows it.
With 9 subjects, LOSO is 9 fits of ~430 windows (early stopping on a held-out training
subject). Measured on the 2-core development CPU while another training job was running, one
torch thread: 15 epochs took 49 s for the whole LOSO (record-level balanced accuracy 0.74,
macro AUC 0.95), 25 epochs 71 s (0.81, 0.96); 20 epochs then kept the whole demo near 70 s.
Each fold now also fits a temperature and a training distribution (:mod:`emgdx.calibration`,
:mod:`emgdx.ood`): the whole demo took 103 s on an idle machine (2026-12-03,
``benchmarks/cli_times.py``). The
numbers show the machinery at work, not clinical performance (that is ``docs/results.md``,
on real data).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from emgdx.config import ProgressCallback
from emgdx.errors import ConfigError
from emgdx.frontend import FrontEnd, PreprocessConfig
from emgdx.recording import LABELS, Cohort, Windows
from emgdx.simulate import FAULT_KINDS, SimulatedCohort, inject_fault, simulate_cohort, write_cohort

if TYPE_CHECKING:
    from emgdx.evaluation import CVResult

__all__ = [
    "DEMO_CV",
    "DEMO_EPOCHS",
    "DEMO_MODEL",
    "DEMO_PREPROCESS",
    "DEMO_TORCH_THREADS",
    "FAULT_FLAG",
    "SERVICE_DEMO_PREPROCESS",
    "DemoResult",
    "run_demo",
    "train_demo_model",
]

#: Model evaluated by the demo (see the module docstring for why).
DEMO_MODEL = "cnn1d"
#: Training epochs per fold: enough on the simulated cohort, short enough for < 2 min.
DEMO_EPOCHS = 20
#: Torch threads while the demo trains (see :func:`_torch_threads`).
DEMO_TORCH_THREADS = 1
#: Subject-wise scheme of the demo: leave one subject out.
DEMO_CV = "loso"

#: The QC flag that must catch each injected fault.
FAULT_FLAG: dict[str, str] = {
    "clipping": "clipping",
    "garbage_tail": "garbage_tail",
    "dropout": "empty",
    "line_noise": "line_noise",
}

#: Preprocessing of the demo's pipeline: the defaults of ``emgdx train`` / ``evaluate``
#: (band-pass 20 Hz - 2.5 kHz, notch at the mains frequency QC finds, exactly 6 kHz, 1 s
#: windows with 50 % overlap, amplitudes kept in µV).
DEMO_PREPROCESS = PreprocessConfig()
#: Preprocessing of the small model ``emgdx serve --demo-model`` trains: 10 kHz, per-window
#: robust scaling (the service and its live page then exercise window-scope normalisation).
SERVICE_DEMO_PREPROCESS = PreprocessConfig(
    band_hz=(20.0, 4000.0),
    target_fs_hz=10_000.0,
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
    evaluation: CVResult | None = None
    report: dict[str, Path] | None = None

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
        flags = [f for cell in self.cohort.manifest["qc_flags"] for f in str(cell).split(";")]
        return {f: flags.count(f) for f in dict.fromkeys(flags) if f}

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
            "evaluation": self.evaluation_summary(),
        }

    def evaluation_summary(self) -> dict[str, Any] | None:
        """Model, scheme, headline metrics per subset and level, subjects right, report paths."""
        res = self.evaluation
        if res is None:
            return None
        metrics: dict[str, dict[str, float]] = {}
        for subset, by_method in res.evaluation.items():
            for level, ev in by_method["mean"].items():
                metrics[f"{subset}/{level}"] = {
                    key: float(ev["metrics"][key])
                    for key in ("balanced_accuracy", "macro_f1", "roc_auc")
                }
        subjects = res.per_subject()
        return {
            "model": res.config.get("model"),
            "epochs": res.config.get("epochs"),
            "cv": res.cv,
            "n_folds": len(res.folds),
            "n_windows": len(res.index),
            "metrics": metrics,
            "subjects_correct": int(subjects["correct"].sum()),
            "subjects_total": len(subjects),
            "report": None if self.report is None else {k: str(v) for k, v in self.report.items()},
        }


def _clear_previous_demo(folder: Path) -> None:
    """Remove an earlier demo's records from ``folder``, so ``emgdx demo`` can run again.

    Only a folder that holds nothing but simulated records listed in its ``manifest.csv``
    (with their ``.hea`` / ``.dat`` / ``.truth.json``) is cleared; anything else in it makes
    :func:`~emgdx.simulate.write_cohort` refuse, so no other data is ever replaced.
    """
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        return
    try:
        ids = set(pd.read_csv(manifest)["record_id"].astype(str))
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return
    ours = {"manifest.csv"} | {f"{r}{ext}" for r in ids for ext in (".hea", ".dat", ".truth.json")}
    files = list(folder.iterdir())
    if not all(f.is_file() and f.name in ours for f in files):
        return
    for f in files:
        if f.name.endswith(".hea") and "simulated: true" not in f.read_text(errors="replace"):
            return
    for f in files:
        f.unlink()


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
    evaluate: bool = True,
    model: str = DEMO_MODEL,
    epochs: int = DEMO_EPOCHS,
    cv: str = DEMO_CV,
    k: int = 3,
    report_dir: Path | None = None,
    n_boot: int = 1000,
    on_progress: dict[str, ProgressCallback] | None = None,
) -> DemoResult:
    """Simulate a small cohort, check its quality, window it, then train and evaluate a model.

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
        Preprocessing of the pipeline: its windows are the summary's and the evaluation's.
    evaluate
        Cross-validate ``model`` subject-wise (False: stop after preprocessing).
    model, epochs
        Model name (:data:`emgdx.models.MODELS`) and maximum training epochs per fold.
    cv, k
        ``"loso"`` or ``"kfold"`` (subject-wise, ``k`` folds); never a leaky split.
    report_dir
        If given, ``results.json`` and ``report.html`` are written there.
    n_boot
        Subject-bootstrap replicates for the confidence intervals.
    on_progress
        Optional callbacks keyed by step (``"simulate"``, ``"prepare"``, ``"folds"``,
        ``"epochs"``).

    Returns
    -------
    DemoResult

    Raises
    ------
    ConfigError
        For ``cv`` other than ``"loso"`` / ``"kfold"``, or an unknown model.
    """
    if evaluate and cv not in ("loso", "kfold"):
        raise ConfigError(
            f"the demo evaluates subject-wise: cv must be 'loso' or 'kfold', not {cv!r}"
        )
    if evaluate:
        # Fail before anything is written when the ml extra (torch) is missing.
        import emgdx.pipeline  # noqa: F401
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
        _clear_previous_demo(out_dir)
        write_cohort(sim, out_dir)
        seconds["write"] = time.perf_counter() - t0

    # The evaluated pipeline's own front end (QC + preprocessing, fits nothing), once for the
    # whole cohort: its windows are the summary's and every fold's.
    t0 = time.perf_counter()
    prepared = FrontEnd(config).prepare(sim.cohort, on_progress=hooks.get("prepare"))
    assert prepared.qc is not None
    qc = prepared.qc.set_index("record_id")
    sim.cohort.manifest[list(qc.columns)] = qc.loc[sim.cohort.manifest["record_id"]].to_numpy()
    seconds["prepare"] = time.perf_counter() - t0
    result = DemoResult(sim.cohort, prepared.windows, config, seconds, out_dir, faults)
    if not evaluate:
        return result

    # Subject-wise cross-validation of a fresh pipeline per fold, and the report.
    from emgdx.evaluation import cross_validate, write_report
    from emgdx.pipeline import Pipeline, TrainConfig

    train = TrainConfig(seed=seed, epochs=epochs)

    def make() -> Pipeline:
        """A fresh pipeline with the demo's preprocessing."""
        return Pipeline(preprocess=result.config, model=model, train=train)

    t0 = time.perf_counter()
    with _torch_threads(DEMO_TORCH_THREADS):
        res = cross_validate(
            make,
            result.windows,
            cv=cv,  # type: ignore[arg-type]  # checked above
            k=k,
            seed=seed,
            n_boot=n_boot,
            config={
                "model": model,
                "epochs": epochs,
                "train": train.to_dict(),
                "preprocess": result.config.to_dict(),
                "demo": True,
            },
            on_progress=hooks.get("folds"),
            on_epoch=hooks.get("epochs"),
        )
    result.seconds["evaluate"] = time.perf_counter() - t0
    result.evaluation = res
    if report_dir is not None:
        t0 = time.perf_counter()
        result.report = write_report(
            res, report_dir, title=f"emgdx demo: {model}, {res.cv} on a simulated cohort"
        )
        result.seconds["report"] = time.perf_counter() - t0
    return result


def train_demo_model(path: Path) -> Path:
    """A small 1-D CNN trained on simulated data, for trying the service out (not for patients)."""
    from emgdx.pipeline import Pipeline, TrainConfig

    sim = simulate_cohort(3, 3, fs_hz=23_437.5, duration_s=6.0, seed=2026)
    pipeline = Pipeline(
        preprocess=SERVICE_DEMO_PREPROCESS, model="cnn1d", train=TrainConfig(epochs=6, seed=0)
    )
    pipeline.fit(sim.cohort)
    return pipeline.save(path, overwrite=True)


@contextmanager
def _torch_threads(n_threads: int) -> Iterator[None]:
    """Run the block with ``n_threads`` torch intra-op threads, then restore the setting.

    Why: the demo's batches are small, and on a 2-core CPU shared with another busy process,
    2 torch threads over-subscribe the cores. Measured there, a 9-fold LOSO of cnn1d with 2
    epochs took 137 s with torch's default 2 threads and 10 s with 1 thread.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
