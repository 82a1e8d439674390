"""Federated learning building blocks shared by the Flower apps (no Flower import here).

A *site* (hospital) holds its own subjects. Every site builds the same
:class:`emgdx.pipeline.Pipeline` (front end, representation, model) from one JSON config sent
by the server, and trains it with :meth:`Pipeline.fit` — the central training code — for a few
local epochs per round, starting from the global weights (``init_state``). Weights travel as
the model adapter's state (:meth:`Pipeline.get_state` / :meth:`Pipeline.set_state`).

Normalisation: the default ``cnn1d`` pipeline normalises each window by itself, so no
statistics are shared or fitted. A pipeline with a *fitted* normaliser
(``normalise_scope="fitted"``) fits it on each site's own training windows (site-local
statistics, never sent to the server), like FedBN keeps batch-norm statistics local.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from emgdx.config import JsonConfig, check_fields, config_from_dict
from emgdx.errors import ConfigError, SignalError

Strategy = Literal["fedavg", "fedprox", "fedbn"]
STRATEGIES: tuple[str, ...] = ("fedavg", "fedprox", "fedbn")


@dataclasses.dataclass(frozen=True)
class SiteSpec:
    """One site: where its data lie and which subjects it trains and tests on.

    ``train_subjects`` empty means every labelled subject in ``data_dir`` that is not a test
    subject; ``test_subjects`` empty means no local held-out evaluation.
    """

    name: str
    data_dir: str
    train_subjects: tuple[str, ...] = ()
    test_subjects: tuple[str, ...] = ()

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> SiteSpec:
        """From a SuperNode's ``--node-config`` (keys ``site``, ``data-dir``, ``train-subjects``,
        ``test-subjects``; subject lists comma-separated)."""
        if "data-dir" not in node_config:
            raise ConfigError(
                "this SuperNode has no 'data-dir' in its --node-config; start it with e.g. "
                "--node-config \"site='A' data-dir='/data/site-a'\""
            )

        def subjects(key: str) -> tuple[str, ...]:
            text = str(node_config.get(key, ""))
            return tuple(s.strip() for s in text.split(",") if s.strip())

        return cls(
            name=str(node_config.get("site", Path(str(node_config["data-dir"])).name)),
            data_dir=str(node_config["data-dir"]),
            train_subjects=subjects("train-subjects"),
            test_subjects=subjects("test-subjects"),
        )

    def to_node_config(self) -> str:
        """The ``--node-config`` string of this site for ``flower-supernode``."""
        return (
            f"site='{self.name}' data-dir='{self.data_dir}' "
            f"train-subjects='{','.join(self.train_subjects)}' "
            f"test-subjects='{','.join(self.test_subjects)}'"
        )


@dataclasses.dataclass
class FedSettings(JsonConfig):
    """Server-side settings of a federated run (JSON round trip)."""

    config_name: ClassVar[str] = "federated settings"

    pipeline: dict[str, Any]
    strategy: Strategy = "fedavg"
    rounds: int = 3
    local_epochs: int = 1
    proximal_mu: float = 0.01
    n_sites: int = 3
    out_dir: str = ""
    threads: int = 1
    seed: int = 0
    sites: list[SiteSpec] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.sites:
            self.n_sites = len(self.sites)
        problems = check_fields(
            self,
            choices={"strategy": STRATEGIES},
            positive_int="rounds local_epochs n_sites",
            non_negative="proximal_mu",
        )
        if problems:
            raise ConfigError("invalid federated settings: " + "; ".join(problems))
        self.sites = [
            s if isinstance(s, SiteSpec) else config_from_dict(SiteSpec, s, what="site")
            for s in self.sites
        ]


# ---- data -------------------------------------------------------------------------------------

_CACHE: dict[tuple[str, ...], Any] = {}
_CACHE_LOCK = threading.Lock()


def site_windows(pipe: Any, site: SiteSpec) -> tuple[Any, Any]:
    """``(train windows, test windows)`` of a site (prepared by ``pipe``; cached per process).

    Raises
    ------
    SignalError
        The site has no usable training windows, or a listed subject is not in its folder.
    """
    from emgdx.io import read_cohort

    key = (
        site.data_dir,
        ",".join(site.train_subjects),
        ",".join(site.test_subjects),
        json.dumps(pipe.preprocess.to_dict(), sort_keys=True),
        str(pipe.qc),
    )
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    cohort = read_cohort(site.data_dir)
    subjects = cohort.manifest["subject_id"].astype(str)
    missing = sorted(set(site.train_subjects + site.test_subjects) - set(subjects))
    if missing:
        raise SignalError(f"site {site.name}: subject(s) {missing} not in {site.data_dir}")
    test = set(site.test_subjects)
    train = set(site.train_subjects) if site.train_subjects else set(subjects) - test
    ids = cohort.manifest["record_id"].astype(str)
    train_w = pipe.prepare(cohort.subset(ids[subjects.isin(train)].tolist()))
    test_ids = ids[subjects.isin(test)].tolist()
    test_w = pipe.prepare(cohort.subset(test_ids)) if test_ids else None
    if len(train_w) == 0:
        raise SignalError(f"site {site.name}: no usable training windows in {site.data_dir}")
    with _CACHE_LOCK:
        _CACHE[key] = (train_w, test_w)
    return train_w, test_w


# ---- model state ------------------------------------------------------------------------------


def initial_state(pipe: Any) -> dict[str, np.ndarray]:
    """The global model's first weights, from the config alone (the server holds no data):
    the pipeline's model at its training seed, the same on every node."""
    if pipe.preprocess.target_fs_hz is None:
        raise ConfigError(
            "federated training needs preprocess.target_fs_hz, so that every site's windows "
            "have the same rate and length"
        )
    model = pipe.new_model()
    if not model.has_weights:
        raise ConfigError(f"federated training needs a torch model, not {pipe.model_name!r}")
    return dict(model.get_state())


# ---- local work -------------------------------------------------------------------------------


def local_pipeline(pipe_config: Mapping[str, Any], local_epochs: int, seed: int) -> Any:
    """The site's Pipeline: the server's config, with the round's training budget and seed.

    Local rounds train on all of the site's training subjects (no inner validation split nor
    early stopping within a round) with a constant learning rate, and fit no calibration or
    training distribution (a round's local model is not the one that answers).
    """
    from emgdx.pipeline import Pipeline

    pipe = Pipeline.from_config(pipe_config)
    pipe.train = dataclasses.replace(
        pipe.train,
        epochs=int(local_epochs),
        val_fraction=0.0,
        schedule="none",
        seed=int(seed),
        calibrate=False,
    )
    return pipe


def fit_local(
    pipe: Any,
    windows: Any,
    state: Mapping[str, np.ndarray] | None,
    *,
    proximal_mu: float = 0.0,
) -> tuple[dict[str, np.ndarray], int]:
    """:meth:`Pipeline.fit` on a site's windows from ``state`` (``None``: the seeded init),
    with FedProx's term when ``proximal_mu`` > 0. Leaves ``pipe`` fitted (it can ``predict``).

    Returns
    -------
    state, n_windows
        The trained weights and the number of training windows (FedAvg's weight).
    """
    pipe.fit(windows, init_state=state, proximal_mu=proximal_mu)
    result = pipe.train_result_
    return pipe.get_state(), int(result.n_train + result.n_val)


def prepare_for_predict(pipe: Any, train_windows: Any, state: Mapping[str, np.ndarray]) -> Any:
    """Make ``pipe`` predict with ``state`` (front end and representation fitted on the site)."""
    pipe.fit_inputs(train_windows)
    return pipe.set_state(state)


def evaluate_local(pipe: Any, test_windows: Any) -> tuple[dict[str, float], Any, Any]:
    """Record-level metrics of a fitted ``pipe`` on a site's held-out windows.

    Returns
    -------
    metrics, probs, index
        ``balanced-accuracy``, ``roc-auc`` (macro, NaN when a class is absent),
        ``num-examples`` (records); window probabilities and the windows' index.
    """
    probs = pipe.predict_windows(test_windows)
    m = _metrics(probs, test_windows.index, pipe.task, pipe.aggregation)["record"]
    out = {"balanced-accuracy": m["balanced_accuracy"], "roc-auc": m["roc_auc"]}
    return {**out, "num-examples": int(m["n"])}, probs, test_windows.index


def _metrics(probs: np.ndarray, index: Any, task: str, method: Any) -> dict[str, dict[str, float]]:
    """Balanced accuracy, macro AUC and n at record and subject level (no bootstrap)."""
    from emgdx.evaluation.cv import evaluate_predictions

    _, ev = evaluate_predictions(probs, index, task=task, methods=(method,), n_boot=0)
    return {
        level: {k: float(ev["all"][method][level]["metrics"][k]) for k in _METRICS}
        for level in ("record", "subject")
    }


_METRICS = ("balanced_accuracy", "roc_auc", "n")


def write_predictions(out_dir: str, site: str, probs: np.ndarray, index: Any) -> Path:
    """Window probabilities + index of a site's held-out subjects (``<site>.npz`` + ``.csv``)."""
    folder = Path(out_dir) / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{site}.npy", np.asarray(probs, dtype=np.float64))
    cols = [c for c in ("record_id", "subject_id", "label", "level", "start_s") if c in index]
    index[cols].to_csv(folder / f"{site}.csv", index=False)
    return folder


def read_predictions(out_dir: str | Path, sites: Sequence[str]) -> tuple[np.ndarray, Any]:
    """The held-out window probabilities and index written by the sites' last evaluation."""
    import pandas as pd

    folder = Path(out_dir) / "predictions"
    probs, index = [], []
    for s in sites:
        probs.append(np.load(folder / f"{s}.npy"))
        index.append(pd.read_csv(folder / f"{s}.csv", dtype={"record_id": str, "subject_id": str}))
    return np.concatenate(probs), pd.concat(index, ignore_index=True)


def pooled_metrics(
    out_dir: str | Path, sites: Sequence[SiteSpec], task: str = "3class"
) -> dict[str, dict[str, float]] | None:
    """Record- and subject-level metrics over every site's held-out predictions (or ``None``).

    Only on one machine (simulation, loopback demo, the benchmark): in a real federation the
    predictions stay at the sites.
    """
    names = [s.name for s in sites if s.test_subjects]
    folder = Path(out_dir) / "predictions"
    if not names or not all((folder / f"{n}.npy").exists() for n in names):
        return None
    return _metrics(*read_predictions(out_dir, names), task, "mean")


def split_sites(
    data_dir: str,
    n_sites: int = 3,
    *,
    holdout_per_site: int = 1,
    exclude: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
) -> list[SiteSpec]:
    """Deal a folder's subjects to ``n_sites`` sites (round robin within each label).

    ``exclude`` maps a site name (``"A"``, ``"B"``, ...) to labels it must not hold (a
    non-IID federation, e.g. ``{"C": ["myopathy"]}``; those subjects go to the other sites).
    Each site holds out its last ``holdout_per_site`` subjects for evaluation.
    """
    from emgdx.io import read_cohort

    table = read_cohort(data_dir).manifest
    rng = np.random.default_rng(seed)
    names = [chr(ord("A") + i) for i in range(n_sites)]
    held: dict[str, list[str]] = {n: [] for n in names}
    excl = {k: set(v) for k, v in (exclude or {}).items()}
    turn = 0
    for label, grp in sorted(table.groupby("label")):
        subs = sorted(set(grp["subject_id"].astype(str)))
        rng.shuffle(subs)
        allowed = [n for n in names if str(label) not in excl.get(n, set())]
        if not allowed:
            raise ConfigError(f"every site excludes {label!r}")
        for s in subs:
            held[allowed[turn % len(allowed)]].append(s)
            turn += 1
    sites = []
    for n in names:
        subs = held[n]
        rng.shuffle(subs)
        cut = len(subs) - min(holdout_per_site, max(0, len(subs) - 1))
        sites.append(SiteSpec(n, str(data_dir), tuple(subs[:cut]), tuple(subs[cut:])))
    return sites


def hospital_sites(
    folders: Sequence[str | os.PathLike[str]], *, holdout_fraction: float = 1 / 3, seed: int = 0
) -> list[SiteSpec]:
    """One site per data folder (a real hospital each), named after the folder.

    Each site holds out about ``holdout_fraction`` of its subjects of every class (at least one
    where a class has two or more) for the held-out evaluation; the rest train.
    """
    from emgdx.io import read_cohort

    if not 0 < holdout_fraction < 1:
        raise ConfigError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    rng = np.random.default_rng(seed)
    sites = []
    for folder in folders:
        table = read_cohort(folder).manifest
        train: list[str] = []
        test: list[str] = []
        for _, grp in sorted(table.groupby("label")):
            subs = sorted(set(grp["subject_id"].astype(str)))
            rng.shuffle(subs)
            n_test = min(len(subs) - 1, max(1, round(holdout_fraction * len(subs))))
            test += subs[:n_test]
            train += subs[n_test:]
        sites.append(SiteSpec(Path(folder).resolve().name, str(folder), tuple(train), tuple(test)))
    return sites
