"""Few-shot site calibration: how fast a model catches up at a new hospital.

For each ``k`` in ``shots`` and each draw, ``k`` labelled subjects per class of the *target*
site join the training data of the other sites; the rest of the target site is the test set.
``k = 0`` is leave-one-site-out (the zero-shot figure, one draw: nothing is drawn).

Two ways to use the ``k`` labelled subjects: *joined* (default), where they are added to the
other sites' training data and the model is trained from scratch, or *fine-tuned*
(``fine_tune=``), where one model is trained on the other sites only and then, for each draw,
a copy of it is fine-tuned on the labelled subjects alone (transfer learning, torch models).
The test set shrinks as ``k`` grows, so the curve compares like with like only within a
draw; draws are repeated to average over which subjects were labelled. A ``k`` that would
leave some class of the target with no test subject is skipped (and said so in
:attr:`FewShotResult.skipped`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from emgdx.config import ProgressCallback, json_ready
from emgdx.errors import ConfigError
from emgdx.evaluation.cv import PipelineLike, _adapt, _check_fold_probs, evaluate_predictions
from emgdx.evaluation.splits import assert_subject_disjoint, subject_labels
from emgdx.recording import Windows
from emgdx.tasks import class_names as task_class_names
from emgdx.tasks import encode_labels

if TYPE_CHECKING:
    from emgdx.training import TrainConfig

__all__ = ["FEW_SHOTS", "FewShotResult", "few_shot_curve", "fine_tuning_config"]

#: Labelled subjects per class of the new site (the issue's calibration curve).
FEW_SHOTS: tuple[int, ...] = (0, 1, 2, 5, 10)
#: Metrics kept per draw (record and subject level, mean aggregation).
_KEPT = ("balanced_accuracy", "roc_auc", "macro_f1")


@dataclass
class FewShotResult:
    """The rows of a few-shot curve: one per ``k`` and draw.

    Attributes
    ----------
    target
        The new site.
    rows
        ``k``, ``draw``, ``labelled_subjects`` (the target's subjects trained on),
        ``n_test_subjects``, ``fit_s``, then ``<level>_<metric>`` for record and subject
        level (balanced accuracy, ROC-AUC, macro F1) and ``<level>_recall_<class>``.
    skipped
        ``k -> reason`` for the ``k`` that could not be run.
    config
        The run's settings.
    """

    target: str
    rows: pd.DataFrame
    skipped: dict[int, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Per ``k``: the mean, minimum and maximum over draws of every metric."""
        metrics = [c for c in self.rows.columns if c.startswith(("record_", "subject_"))]
        grouped = self.rows.groupby("k")[metrics]
        out = grouped.mean().add_suffix("_mean")
        out = out.join(grouped.min().add_suffix("_min")).join(grouped.max().add_suffix("_max"))
        out.insert(0, "draws", self.rows.groupby("k").size())
        return out.reset_index()

    def to_dict(self) -> dict[str, Any]:
        return json_ready(
            {
                "target": self.target,
                "rows": self.rows.to_dict(orient="records"),
                "summary": self.summary().to_dict(orient="records"),
                "skipped": {str(k): v for k, v in self.skipped.items()},
                "config": self.config,
            }
        )


def fine_tuning_config(train: TrainConfig) -> TrainConfig:
    """``train`` made for fine-tuning on a few labelled subjects of a new site.

    A handful of subjects leaves none to validate on, so every epoch runs (no validation split,
    no early stopping) and there are few of them; the pretrained layers learn ten times more
    slowly than the classifier head, so a few subjects adjust the decision more than they
    rewrite the features learnt from the other sites.
    """
    return replace(
        train, epochs=10, val_fraction=0.0, patience=None, lr=3e-4, features_lr_scale=0.1
    )


def _draw(by_class: dict[int, list[str]], k: int, rng: np.random.Generator) -> list[str]:
    return [s for subjects in by_class.values() for s in rng.choice(subjects, k, replace=False)]


def few_shot_curve(
    make_pipeline: Callable[[], PipelineLike],
    windows: Windows,
    *,
    target: str,
    shots: Sequence[int] = FEW_SHOTS,
    draws: int = 5,
    task: str = "3class",
    seed: int = 0,
    n_boot: int = 0,
    config: dict[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
    adapt: bool = False,
    fine_tune: Callable[[], Any] | None = None,
) -> FewShotResult:
    """Train on the other sites plus ``k`` labelled subjects per class of ``target``; test on
    the rest of ``target`` (module docstring).

    Parameters
    ----------
    make_pipeline
        A fresh, unfitted pipeline per run (as for :func:`~emgdx.evaluation.cross_validate`).
    windows
        Windows of every site, with a ``site`` column in their index.
    target
        The site playing the new hospital.
    shots
        The ``k`` values (labelled subjects per class of the target).
    draws
        Repetitions per ``k`` > 0, each labelling other subjects (seeded).
    task, seed
        The task, and the seed of the draws and the bootstrap.
    n_boot
        Subject-bootstrap replicates per run (0: point estimates only, the draws give the spread).
    config
        The caller's description of the run, saved with the result.
    on_progress
        ``on_progress(done_runs, n_runs)``.
    adapt
        Adapt each fitted pipeline to the target's test windows, unlabelled, before predicting
        (as ``cross_validate(adapt=True)``).
    """
    if "site" not in windows.index.columns:
        raise ConfigError("few-shot calibration needs windows with a site column (several sites)")
    y, keep = encode_labels(windows.index["label"].to_list(), task)
    windows = windows.select(keep) if not keep.all() else windows
    sites = windows.index["site"].astype(str).to_numpy()
    if target not in set(sites):
        raise ConfigError(f"target site {target!r} is not among {sorted(set(sites))}")
    if len(set(sites)) < 2:
        raise ConfigError("few-shot calibration needs at least one other site to train on")
    groups = windows.index["subject_id"].astype(str).to_numpy()
    names = task_class_names(task)
    at_target = sites == target
    labels = subject_labels(groups[at_target], y[at_target])
    by_class = {c: sorted(labels.index[labels == c]) for c in range(len(names))}
    by_class = {c: subjects for c, subjects in by_class.items() if subjects}

    plan: list[tuple[int, int]] = []
    skipped: dict[int, str] = {}
    if draws < 1 or any(int(k) < 0 for k in shots):
        raise ConfigError(f"shots must be >= 0 and draws >= 1, got {list(shots)} and {draws}")
    for k in sorted({int(k) for k in shots}):
        short = [names[c] for c, subjects in by_class.items() if len(subjects) <= k]
        if short:
            skipped[k] = f"{target} has {k} or fewer subjects of {', '.join(short)}"
            continue
        plan += [(k, d) for d in range(1 if k == 0 else draws)]
    if not plan:
        raise ConfigError(f"no k in {list(shots)} can be run: {skipped}")

    rows = []
    positions = np.arange(len(windows))
    base: Any = None
    base_s = 0.0
    if fine_tune is not None:
        # one model of the other sites; every draw fine-tunes its own copy of it
        t0 = time.perf_counter()
        base = make_pipeline().fit(windows.select(positions[~at_target]))
        base_s = time.perf_counter() - t0
    for run, (k, draw) in enumerate(plan):
        labelled = _draw(by_class, k, np.random.default_rng([seed, k, draw]))
        chosen = np.isin(groups, labelled)
        train_idx = positions[~at_target | chosen]
        test_idx = positions[at_target & ~chosen]
        assert_subject_disjoint(groups[train_idx], groups[test_idx])
        t0 = time.perf_counter()
        if base is None:
            pipeline = make_pipeline()
            pipeline.fit(windows.select(train_idx))
        elif k == 0:
            pipeline = base
        else:
            pipeline = fine_tune()  # type: ignore[misc]
            pipeline.fit(windows.select(positions[chosen]), init_from=base)
        fit_s = time.perf_counter() - t0 + (base_s if k == 0 else 0.0)
        if adapt:
            _adapt(pipeline, windows.select(test_idx))
        probs = _check_fold_probs(
            pipeline.predict_windows(windows.select(test_idx)), test_idx.size, len(names), run
        )
        index = windows.index.iloc[test_idx].reset_index(drop=True)
        _, evaluation = evaluate_predictions(probs, index, task=task, n_boot=n_boot, seed=seed)
        row: dict[str, Any] = {
            "k": k,
            "draw": draw,
            "labelled_subjects": ";".join(sorted(labelled)),
            "n_test_subjects": int(np.unique(groups[test_idx]).size),
            "fit_s": round(fit_s, 3),
        }
        for level in ("record", "subject"):
            metrics = evaluation["all"]["mean"][level]["metrics"]
            row |= {f"{level}_{key}": float(metrics[key]) for key in _KEPT}
            row |= {
                f"{level}_recall_{name}": float(values["recall"])
                for name, values in metrics["per_class"].items()
            }
        rows.append(row)
        if on_progress is not None:
            on_progress(run + 1, len(plan))
    run_config = {
        "target": target,
        "shots": list(shots),
        "draws": draws,
        "task": task,
        "seed": seed,
        "labelled_subjects_used": "joined" if fine_tune is None else "fine-tuned",
        **(config or {}),
    }
    return FewShotResult(target, pd.DataFrame(rows), skipped, run_config)
