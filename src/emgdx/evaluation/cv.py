"""The cross-validation runner: subject-wise folds, out-of-fold probabilities, metrics.

:func:`cross_validate` fits a fresh pipeline on the training subjects of every fold, predicts
the held-out subjects' windows, and evaluates the pooled out-of-fold probabilities at window,
record and subject level, on all records and on low-contraction records only (in N2001 only
controls have moderate-level records, so a model could win by recognising the protocol).

A pipeline is anything with ``fit(windows)`` and ``predict_windows(windows) -> probs``: the
runner never looks inside it, so torch models, sklearn models and test stand-ins share it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from emgdx.config import ProgressCallback, json_ready
from emgdx.errors import ConfigError, SignalError
from emgdx.evaluation.aggregate import LEVELS, METHODS, Method, aggregate_all
from emgdx.evaluation.metrics import SCALAR_METRICS, evaluate_table, per_subject_table
from emgdx.evaluation.splits import (
    Split,
    assert_subject_disjoint,
    grouped_kfold,
    leaky_random_window_split,
    leave_one_site_out,
    loso,
    site_stratified_kfold,
)
from emgdx.preprocess import PreprocessConfig
from emgdx.recording import Cohort, Windows, muscle_group
from emgdx.tasks import class_names as task_class_names
from emgdx.tasks import encode_labels, targets_of

__all__ = [
    "CV_SCHEMES",
    "CVResult",
    "PipelineLike",
    "cross_validate",
    "evaluate_predictions",
    "package_versions",
    "subset_masks",
    "windows_hash",
]

CVScheme = Literal["loso", "kfold", "site", "pooled", "leaky"]
#: Named cross-validation schemes: leave one subject out, subject-wise k-fold, leave one site
#: out, pooled subject-wise k-fold stratified by site and class, and window-wise ("leaky", for
#: demonstration only).
CV_SCHEMES: tuple[CVScheme, ...] = ("loso", "kfold", "site", "pooled", "leaky")

# Packages whose versions are saved with every result (read from metadata, never imported).
_VERSIONED = ("emgdx", "numpy", "scipy", "pandas", "scikit-learn", "torch", "pywavelets")


@runtime_checkable
class PipelineLike(Protocol):
    """What :func:`cross_validate` needs from a pipeline."""

    def fit(self, windows: Windows) -> Any: ...

    def predict_windows(self, windows: Windows) -> np.ndarray: ...


def package_versions() -> dict[str, str]:
    """Python, platform and the installed versions of the packages results depend on."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def windows_hash(windows: Windows) -> str:
    """SHA-256 of the window samples and of who/where each window is (ids, label, start)."""
    digest = hashlib.sha256()
    digest.update(f"{windows.fs_hz!r}{windows.data.shape}".encode())
    digest.update(np.ascontiguousarray(windows.data).tobytes())
    cols = [c for c in ("record_id", "subject_id", "label", "start_sample") if c in windows.index]
    digest.update(windows.index[cols].to_csv(index=False).encode())
    return digest.hexdigest()


@dataclass
class CVResult:
    """Everything a cross-validation produced.

    Attributes
    ----------
    task, cv
        The task and the scheme (``"custom"`` for user-given splits).
    class_names
        Class order of :attr:`probs`.
    probs
        Out-of-fold probabilities ``[n, n_classes]`` of the evaluated windows.
    index
        Index table of those windows, with a ``fold`` column.
    folds
        Per fold: test subjects, window counts, fit and predict seconds.
    tables
        ``tables[subset][method][level]``: the aggregated DataFrames (subset "all" and those
        of :func:`subset_masks`).
    evaluation
        ``evaluation[subset][method][level]``: :func:`~emgdx.evaluation.metrics.evaluate_table`
        output (metrics, bootstrap CIs, ROC points).
    config
        The run's settings (scheme, seed, task, and whatever the caller passed).
    data_hash
        :func:`windows_hash` of the windows cross-validated.
    versions
        :func:`package_versions` at run time.
    calibration
        When the pipelines calibrate (:mod:`emgdx.calibration`): record-level expected
        calibration error and reliability tables before and after, overall and per site
        (:func:`calibration_summary`); else empty.
    ood
        When the pipelines store a training distribution (:mod:`emgdx.ood`): each tested
        record's out-of-distribution score and verdict against its fold's training data, and
        the verdict counts per site; else empty.
    quality
        QC of the evaluated records (:func:`quality_summary`).
    """

    task: str
    cv: str
    class_names: tuple[str, ...]
    probs: np.ndarray
    index: pd.DataFrame
    folds: list[dict[str, Any]]
    tables: dict[str, dict[str, dict[str, pd.DataFrame]]]
    evaluation: dict[str, dict[str, dict[str, dict[str, Any]]]]
    config: dict[str, Any] = field(default_factory=dict)
    data_hash: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    ood: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)

    def metric(
        self, name: str, *, level: str = "record", method: str = "mean", subset: str = "all"
    ) -> float:
        """One summary metric, e.g. ``result.metric("balanced_accuracy", level="subject")``."""
        return float(self.evaluation[subset][method][level]["metrics"][name])

    def summary(self) -> pd.DataFrame:
        """Summary metrics with CIs: one row per subset, method and level."""
        rows = []
        for subset, by_method in self.evaluation.items():
            for method, by_level in by_method.items():
                for level, ev in by_level.items():
                    row: dict[str, Any] = {
                        "subset": subset,
                        "method": method,
                        "level": level,
                        "n": ev["metrics"]["n"],
                        "n_subjects": ev["n_subjects"],
                    }
                    for key in SCALAR_METRICS:
                        row[key] = ev["metrics"][key]
                        low, high = ev["ci"].get(key, [np.nan, np.nan])
                        row[f"{key}_low"], row[f"{key}_high"] = low, high
                    rows.append(row)
        return pd.DataFrame(rows)

    def per_subject(self, *, method: str = "mean", subset: str = "all") -> pd.DataFrame:
        """Per-subject table: true label, mean probabilities, predicted, correct."""
        return per_subject_table(self.tables[subset][method]["subject"], self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready results (what :func:`emgdx.evaluation.report.write_report` reads)."""
        tables = {
            subset: {
                method: {
                    level: _records(frame)
                    for level, frame in by_level.items()
                    if level != "window"  # window rows are many; their metrics are kept
                }
                for method, by_level in by_method.items()
            }
            for subset, by_method in self.tables.items()
        }
        return {
            "task": self.task,
            "cv": self.cv,
            "class_names": list(self.class_names),
            "config": self.config,
            "data_hash": self.data_hash,
            "versions": self.versions,
            "folds": self.folds,
            "evaluation": self.evaluation,
            "tables": tables,
            "per_subject": {
                subset: _records(self.per_subject(subset=subset)) for subset in self.tables
            },
            "calibration": json_ready(self.calibration),
            "ood": json_ready(self.ood),
            "quality": json_ready(self.quality),
        }


def quality_summary(index: pd.DataFrame) -> dict[str, Any]:
    """How many of the evaluated records carry each QC flag (records with a window)."""
    if "qc_flags" not in index or not len(index):
        return {}
    flags = index.groupby("record_id")["qc_flags"].first().fillna("")
    counts: dict[str, int] = {}
    for value in flags:
        for flag in filter(None, str(value).split(";")):
            counts[flag] = counts.get(flag, 0) + 1
    return {"n_records": len(flags), "n_clean": int((flags == "").sum()), "flags": counts}


def _ood_of_fold(pipeline: Any, test: Windows, fold: int) -> dict[str, dict[str, Any]]:
    """Each test record's out-of-distribution score against this fold's training data."""
    dist = getattr(pipeline, "distribution_", None)
    if dist is None:
        return {}
    scores = pipeline.ood_scores(test)
    return {
        rid: {"score": score, "verdict": dist.verdict(score), "fold": fold}
        for rid, score in scores.items()
    }


def _ood_summary(records: dict[str, dict[str, Any]], index: pd.DataFrame) -> dict[str, Any]:
    """Verdict counts overall and per site, and the records' scores."""
    site_of = (
        dict(zip(index["record_id"].astype(str), index["site"].astype(str), strict=False))
        if "site" in index
        else {}
    )
    counts: dict[str, dict[str, int]] = {}
    for rid, info in records.items():
        for key in ("all", *([site_of[rid]] if rid in site_of else [])):
            by_verdict = counts.setdefault(key, {"typical": 0, "unusual": 0, "alien": 0})
            by_verdict[info["verdict"]] += 1
    return {"counts": counts, "records": records}


def calibration_summary(
    raw: np.ndarray, calibrated: np.ndarray, index: pd.DataFrame, task: str
) -> dict[str, Any]:
    """Record-level ECE and reliability tables before and after calibration, for all records
    and per site (records of windows whose label is in the task)."""
    from emgdx.calibration import expected_calibration_error, record_probs, reliability_table

    y = np.asarray(targets_of(index["label"].to_list(), task))
    keep = y >= 0
    rec_ids = index["record_id"].astype(str).to_numpy()
    sites = index["site"].astype(str).to_numpy() if "site" in index else None
    groups: dict[str, np.ndarray] = {"all": keep}
    if sites is not None and len(set(sites[keep].tolist())) > 1:
        for site in sorted(set(sites[keep].tolist())):
            groups[site] = keep & (sites == site)
    out: dict[str, Any] = {}
    for name, mask in groups.items():
        entry: dict[str, Any] = {}
        for stage, p in (("before", raw), ("after", calibrated)):
            rec, rec_y = record_probs(p[mask], rec_ids[mask], y[mask])
            assert rec_y is not None
            entry[f"ece_{stage}"] = expected_calibration_error(rec, rec_y)
            entry[f"reliability_{stage}"] = _records(reliability_table(rec, rec_y))
            entry["n_records"] = len(rec)
        out[name] = entry
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-ready dicts (:func:`~emgdx.config.json_ready`)."""
    return list(json_ready(frame.to_dict(orient="records")))


def subset_masks(index: pd.DataFrame) -> dict[str, np.ndarray]:
    """The subsets every evaluation also reports, as boolean masks over the index's rows.

    ``"low"``: low-contraction records (the protocol confound of N2001, see DESIGN.md);
    ``"without_hum"``: records QC did not flag ``line_noise`` (the mains-hum confound of the
    Algiers data, where hum is commoner in healthy records), when some are flagged;
    ``"site=<name>"`` and ``"muscle=<name>"``: one per site and per muscle (names from
    :func:`~emgdx.recording.muscle_group`) when the index holds more than one of them. A
    subset is present only when it has rows.
    """
    masks: dict[str, np.ndarray] = {}
    if "level" in index.columns:
        masks["low"] = index["level"].astype(str).str.lower().eq("low").to_numpy()
    if "qc_flags" in index.columns:
        hum = index["qc_flags"].fillna("").astype(str).str.contains("line_noise").to_numpy()
        if hum.any():
            masks["without_hum"] = ~hum
    for column, key in (("site", str), ("muscle", muscle_group)):
        if column not in index.columns:
            continue
        values = np.array([None if pd.isna(v) else key(v) for v in index[column]], dtype=object)
        found = sorted({v for v in values if v is not None})
        if len(found) > 1:
            masks.update({f"{column}={v}": values == v for v in found})
    return {name: mask for name, mask in masks.items() if mask.any()}


def evaluate_predictions(
    probs: np.ndarray,
    index: pd.DataFrame,
    *,
    task: str = "3class",
    methods: Sequence[Method] = METHODS,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Aggregate window probabilities and evaluate them at every level and subset.

    Parameters
    ----------
    probs
        ``[n_windows, n_classes]`` (out-of-fold) probabilities.
    index
        The windows' index (``record_id``, ``subject_id``, ``label``; ``level``, ``site`` and
        ``muscle`` for the subsets).
    task
        One of :data:`emgdx.tasks.TASKS`.
    methods
        Aggregation rules to evaluate.
    n_boot, ci, seed
        Subject bootstrap settings.

    Returns
    -------
    tables, evaluation
        ``[subset][method][level]`` DataFrames and evaluation dicts for subset ``"all"`` and
        those of :func:`subset_masks`.
    """
    names = task_class_names(task)
    subsets: dict[str, tuple[np.ndarray, pd.DataFrame]] = {"all": (probs, index)}
    for name, mask in subset_masks(index).items():
        subsets[name] = (probs[mask], index.loc[mask].reset_index(drop=True))
    tables: dict[str, Any] = {}
    evaluation: dict[str, Any] = {}

    def evaluate(frame: pd.DataFrame) -> dict[str, Any]:
        return evaluate_table(frame, names, n_boot=n_boot, ci=ci, seed=seed)

    for subset, (p, idx) in subsets.items():
        tables[subset] = {m: aggregate_all(p, idx, method=m, task=task) for m in methods}
        # Window results do not depend on the aggregation rule: computed once, shared.
        window = evaluate(tables[subset][methods[0]]["window"]) if methods else None
        evaluation[subset] = {
            m: {lvl: window if lvl == "window" else evaluate(frames[lvl]) for lvl in LEVELS}
            for m, frames in tables[subset].items()
        }
    return tables, evaluation


def _make_splits(
    cv: CVScheme | Sequence[Split],
    index: pd.DataFrame,
    groups: np.ndarray,
    y: np.ndarray,
    k: int,
    seed: int,
    keep: np.ndarray,
) -> tuple[str, list[Split]]:
    if isinstance(cv, str):
        if cv == "loso":
            return cv, loso(groups)
        if cv == "kfold":
            return cv, grouped_kfold(groups, y, k, seed)
        if cv in ("site", "pooled"):
            sites = index["site"] if "site" in index.columns else [None] * len(index)
            if cv == "site":
                return cv, leave_one_site_out(groups, sites)
            return cv, site_stratified_kfold(groups, y, sites, k, seed)
        if cv == "leaky":
            return cv, leaky_random_window_split(groups.size, seed, n_splits=k)
        raise ConfigError(f"unknown cv scheme {cv!r}; choose one of {list(CV_SCHEMES)}")
    # Custom splits index the caller's windows; map them onto the windows kept for the task.
    new_position = np.cumsum(keep) - 1

    def remap(positions: Any) -> np.ndarray:
        arr = np.asarray(positions, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= keep.size):
            raise ConfigError(
                f"split positions must lie in [0, {keep.size}), got {arr.min()} to {arr.max()}"
            )
        return new_position[arr[keep[arr]]]

    return "custom", [(remap(tr), remap(te)) for tr, te in cv]


def _adapt(pipeline: PipelineLike, windows: Windows) -> None:
    """Unsupervised adaptation of a fitted fold pipeline to its test windows (labels hidden)."""
    adapt = getattr(pipeline, "adapt", None)
    if adapt is None:
        raise ConfigError(f"{type(pipeline).__name__} has no adapt(): cannot adapt to a site")
    unlabelled = Windows(windows.data, windows.fs_hz, windows.index.assign(label=None))
    adapt(unlabelled)


def _check_fold_probs(probs: Any, n_test: int, n_classes: int, fold: int) -> np.ndarray:
    arr = np.asarray(probs, dtype=np.float64)
    if arr.shape != (n_test, n_classes):
        raise SignalError(
            f"fold {fold}: predict_windows returned shape {arr.shape}, "
            f"expected ({n_test}, {n_classes})"
        )
    if not np.all(np.isfinite(arr)) or arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
        raise SignalError(f"fold {fold}: predict_windows returned values outside [0, 1]")
    if not np.allclose(arr.sum(axis=1), 1.0, atol=1e-3):
        raise SignalError(f"fold {fold}: predicted probabilities do not sum to 1 per window")
    return arr


def _windows_of(
    data: Windows | Cohort,
    preprocess: PreprocessConfig | Callable[[Cohort], Windows] | None,
    qc: bool,
) -> Windows:
    if isinstance(data, Windows):
        return data
    if not isinstance(data, Cohort):
        raise ConfigError(f"cross_validate needs Windows or a Cohort, got {type(data).__name__}")
    if preprocess is None:
        raise ConfigError(
            "cross-validating a Cohort needs preprocess=: a PreprocessConfig, or a callable "
            "turning a Cohort into Windows (e.g. Pipeline(...).prepare)"
        )
    if not isinstance(preprocess, PreprocessConfig):
        # e.g. Pipeline.prepare: per-record QC and windowing, fitted statistics deferred to fit
        windows = preprocess(data)
        if not isinstance(windows, Windows):
            raise ConfigError(f"preprocess callable returned {type(windows).__name__}, not Windows")
        return windows
    if preprocess.normalisation.fitted:
        # Only a fold's own pipeline can fit it, on its training subjects: windowing with a
        # config alone would leave it out silently.
        raise ConfigError(
            "normalise_scope='fitted' is fitted inside each fold: pass the pipeline's prepare "
            "(preprocess=Pipeline(...).prepare) instead of a config"
        )
    from emgdx.frontend import FrontEnd

    return FrontEnd(preprocess, qc=qc).prepare(data).windows


def cross_validate(
    make_pipeline: Callable[[], PipelineLike],
    data: Windows | Cohort,
    *,
    cv: CVScheme | Sequence[Split] = "loso",
    task: str = "3class",
    k: int = 5,
    seed: int = 0,
    preprocess: PreprocessConfig | Callable[[Cohort], Windows] | None = None,
    qc: bool = True,
    methods: Sequence[Method] = METHODS,
    n_boot: int = 1000,
    ci: float = 0.95,
    config: Mapping[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
    on_epoch: ProgressCallback | None = None,
    adapt: bool = False,
) -> CVResult:
    """Subject-wise cross-validation of a pipeline, evaluated at window/record/subject level.

    Parameters
    ----------
    make_pipeline
        Called once per fold to get a fresh, unfitted pipeline (``fit(windows)``,
        ``predict_windows(windows) -> [n, n_classes]`` probabilities in the task's class
        order). Everything fitted (scalers, normalisation, thresholds) lives in it, so it
        sees training subjects only.
    data
        Windows, or a Cohort plus ``preprocess``. Windowing is per record, so doing it once
        before splitting leaks nothing.
    cv
        ``"loso"`` (leave-one-subject-out), ``"kfold"`` (subject-wise stratified k-fold),
        ``"site"`` (leave-one-site-out: train on the other sites, test on one; the windows'
        ``site`` column), ``"pooled"`` (subject-wise k-fold stratified by site and class),
        ``"leaky"`` (window-wise k-fold, warns: for demonstrating leakage only) or a sequence
        of ``(train_idx, test_idx)`` positions into ``data``'s windows, which must be
        subject-disjoint (windows outside the task are dropped from them).
    task
        One of :data:`emgdx.tasks.TASKS`; windows outside the task (e.g. myopathy for
        ``"als_vs_healthy"``) or without a label are left out before splitting.
    k
        Folds for ``"kfold"``, ``"pooled"`` and ``"leaky"``.
    seed
        Seed for fold assignment and the bootstrap.
    preprocess, qc
        Only for a Cohort: a :class:`~emgdx.preprocess.PreprocessConfig` for the front end
        (:class:`emgdx.frontend.FrontEnd`, with quality control unless ``qc`` is False), or a
        callable ``Cohort -> Windows`` such as :meth:`emgdx.pipeline.Pipeline.prepare`.
    methods
        Aggregation rules to evaluate (``"mean"``, ``"vote"``).
    n_boot, ci
        Subject bootstrap replicates and interval coverage.
    config
        The caller's description of the run (model, representation, ...), saved with results.
    on_progress
        ``on_progress(done_folds, n_folds)`` after every fold.
    on_epoch
        Passed to every fold's ``fit(windows, on_progress=on_epoch)`` (the training's own
        progress, e.g. epochs of a torch model); ``None``: ``fit(windows)``.
    adapt
        Before predicting, adapt each fold's fitted pipeline to its test windows without their
        labels (:meth:`emgdx.pipeline.Pipeline.adapt`: what a new site can do with its own
        unlabelled records). Meant for ``cv="site"``, where a fold's test windows are one site.

    Returns
    -------
    CVResult

    Raises
    ------
    SubjectLeakError
        When a (custom) subject-wise split shares subjects between training and test.
    SignalError
        When a pipeline returns malformed probabilities.
    ConfigError
        For an unknown scheme, too few subjects, or windows tested twice.
    """
    windows = _windows_of(data, preprocess, qc)
    names = task_class_names(task)
    y, keep = encode_labels(windows.index["label"].to_list(), task)
    if not keep.any():
        raise ConfigError(f"no window has a label usable for task {task!r}")
    windows = windows.select(keep) if not keep.all() else windows
    groups = windows.index["subject_id"].astype(str).to_numpy()
    scheme, splits = _make_splits(cv, windows.index, groups, y, k, seed, keep)
    # A custom fold may test only windows outside the task (e.g. a myopathy subject).
    splits = [(tr, te) for tr, te in splits if te.size > 0]
    if not splits:
        raise ConfigError("the cross-validation scheme produced no folds")

    probs = np.full((len(windows), len(names)), np.nan)
    raw_probs = np.full((len(windows), len(names)), np.nan)
    ood_records: dict[str, dict[str, Any]] = {}
    fold_of = np.full(len(windows), -1, dtype=np.int64)
    folds: list[dict[str, Any]] = []
    for i, (train_idx, test_idx) in enumerate(splits):
        if scheme != "leaky":
            assert_subject_disjoint(groups[train_idx], groups[test_idx])
        if train_idx.size == 0:
            raise ConfigError(f"fold {i}: no training windows left for task {task!r}")
        if np.any(fold_of[test_idx] >= 0):
            raise ConfigError(f"fold {i}: some windows were already tested in an earlier fold")
        pipeline = make_pipeline()
        t0 = time.perf_counter()
        fit_options: dict[str, Any] = {} if on_epoch is None else {"on_progress": on_epoch}
        pipeline.fit(windows.select(train_idx), **fit_options)
        t1 = time.perf_counter()
        if adapt:
            _adapt(pipeline, windows.select(test_idx))
        test = windows.select(test_idx)
        calibration = getattr(pipeline, "calibration_", None)
        if calibration is not None:  # the model's own and the calibrated probabilities
            calibrating: Any = pipeline  # an emgdx Pipeline (it has a calibration)
            raw = _check_fold_probs(
                calibrating.predict_windows(test, calibrated=False), test_idx.size, len(names), i
            )
            fold_probs = calibrating.calibrate_probs(raw)
            raw_probs[test_idx] = raw
        else:
            fold_probs = pipeline.predict_windows(test)
        t2 = time.perf_counter()
        probs[test_idx] = _check_fold_probs(fold_probs, test_idx.size, len(names), i)
        if calibration is None:
            raw_probs[test_idx] = probs[test_idx]
        fold_of[test_idx] = i
        ood_records.update(_ood_of_fold(pipeline, test, i))
        folds.append(
            {
                "fold": i,
                "temperature": None if calibration is None else calibration["temperature"],
                "test_subjects": sorted(set(groups[test_idx].tolist())),
                "n_train_windows": int(train_idx.size),
                "n_test_windows": int(test_idx.size),
                "n_train_subjects": len(set(groups[train_idx].tolist())),
                "fit_s": round(t1 - t0, 3),
                "predict_s": round(t2 - t1, 3),
            }
        )
        if on_progress is not None:
            on_progress(i + 1, len(splits))

    tested = fold_of >= 0
    index = windows.index.loc[tested].reset_index(drop=True).copy()
    index["fold"] = fold_of[tested]
    oof = probs[tested]
    tables, evaluation = evaluate_predictions(
        oof, index, task=task, methods=methods, n_boot=n_boot, ci=ci, seed=seed
    )
    run_config = {
        "cv": scheme,
        "task": task,
        "k": k if scheme in ("kfold", "pooled", "leaky") else None,
        "seed": seed,
        "adapt": adapt,
        "n_folds": len(splits),
        "n_boot": n_boot,
        "ci": ci,
        "methods": list(methods),
        "n_windows": int(tested.sum()),
        "window_s": windows.window_s,
        "fs_hz": windows.fs_hz,
        "command": " ".join(sys.argv),  # what produced these numbers (DESIGN: provenance)
        **(
            {"preprocess": preprocess.to_dict()} if isinstance(preprocess, PreprocessConfig) else {}
        ),
        **dict(config or {}),
    }
    return CVResult(
        task=task,
        cv=scheme,
        class_names=tuple(names),
        probs=oof,
        index=index,
        folds=folds,
        tables=tables,
        evaluation=evaluation,
        config=run_config,
        data_hash=windows_hash(windows),
        versions=package_versions(),
        calibration=(
            calibration_summary(raw_probs[tested], oof, index, task)
            if any(f["temperature"] is not None for f in folds)
            else {}
        ),
        ood=_ood_summary(ood_records, index) if ood_records else {},
        quality=quality_summary(windows.index),
    )
