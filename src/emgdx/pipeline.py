"""The :class:`Pipeline`: front end + representation + model adapter + Diagnosis, as one object.

Training, cross-validation, prediction, the report, the clinic, the live monitor, federated
sites and the demo all run these public stages and nothing beside them::

    recordings ──FrontEnd.prepare()──▶ Windows ──FrontEnd.finish() + representation──▶ inputs
        ──ModelAdapter.predict_proba()──▶ window probabilities ──Diagnosis──▶ records, subjects,
        visit (with intervals, QC findings and the model's identity)

``prepare`` (:class:`emgdx.frontend.FrontEnd`) runs QC, preprocessing, windows and every
normalisation that uses no statistics fitted on other data, so windows can be prepared once for
a whole cohort and split by subject after. ``fit`` then fits, on the training windows only, the
front end's fitted state (rate, window length, the fitted normaliser), the representation and
the model (:class:`emgdx.models.adapters.ModelAdapter`; torch models train with early stopping
on held-out training subjects).

Saving never uses pickle: loading a model must not be able to run code. A folder holds
``model.safetensors`` (the adapter's state) and ``pipeline.json`` (every config, class names,
input shapes, the front end's fitted state, versions, the SHA-256 of the weights, checked on
load, and a hash of the training windows).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emgdx.config import ProgressCallback
from emgdx.diagnosis import Diagnosis, ModelIdentity
from emgdx.errors import ConfigError, PipelineLoadError, SignalError
from emgdx.evaluation.cv import package_versions, windows_hash
from emgdx.frontend import FrontEnd, ReducedBandWarning, as_cohort
from emgdx.models.adapters import ModelAdapter, attach_backend, build_adapter, sha256_file
from emgdx.normalise import Normaliser
from emgdx.ood import TrainingDistribution
from emgdx.preprocess import PreprocessConfig
from emgdx.recording import Cohort, Recording, Windows
from emgdx.tasks import check_task, class_names, encode_labels
from emgdx.training import TrainConfig, TrainResult

__all__ = [
    "FORMAT_VERSION",
    "Pipeline",
    "PipelineLoadError",
    "PreprocessConfig",
    "ReducedBandWarning",
    "TrainConfig",
]

#: Version of the saved pipeline folder layout.
FORMAT_VERSION = 1
_FORMAT = "emgdx-pipeline"
_WEIGHTS = "model.safetensors"
_CONFIG = "pipeline.json"
_CONFIG_KEYS = ("preprocess", "representation", "model", "task", "train", "aggregation", "qc")

Aggregation = Literal["mean", "vote"]
DataLike = Cohort | Sequence[Recording] | Recording | Windows


def _spec(
    value: str | Mapping[str, Any], params: Mapping[str, Any] | None, what: str
) -> tuple[str, dict[str, Any]]:
    """``(name, params)`` from ``"name"`` + params or from ``{"name": ..., **params}``."""
    if isinstance(value, str):
        return value, _jsonable(dict(params or {}), what)
    if isinstance(value, Mapping):
        if params:
            raise ConfigError(f"give {what} params either in the mapping or as {what}_params")
        rest = dict(value)
        name = rest.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(f"{what} mapping needs a 'name', got {dict(value)!r}")
        return name, _jsonable(rest, what)
    raise ConfigError(f"{what} must be a name or a mapping with 'name', got {value!r}")


def _jsonable(params: dict[str, Any], what: str) -> dict[str, Any]:
    """``params`` as they will read back from ``pipeline.json`` (tuples become lists).

    Done up front so that a parameter that cannot be saved fails at construction, and a
    pipeline built from its saved config is the same as the original.
    """
    try:
        return dict(json.loads(json.dumps(params, allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} params must be JSON values: {exc}") from exc


class Pipeline:
    """Front end, representation, model and aggregation, with fit / predict / save / load.

    Parameters
    ----------
    preprocess
        Preprocessing config (filters, resampling, windows, normalisation).
    representation
        Representation name (``"raw"``, ``"stft"``, ``"cwt"``, ``"features"``) or a mapping
        ``{"name": ..., **params}``; ``None``: the input the model is registered for.
    model
        Model name from :data:`emgdx.models.MODELS` or ``{"name": ..., **params}``.
    task
        ``"3class"``, ``"als_vs_rest"`` or ``"als_vs_healthy"``.
    train
        Training config (torch models; its ``seed`` also seeds classical models).
    aggregation
        Window → record → subject rule: ``"mean"`` probability or majority ``"vote"``.
    representation_params, model_params
        Parameters when ``representation`` / ``model`` are given as names.
    qc
        Run quality control in the front end and leave out samples it marks unusable.
    n_jobs
        Worker threads for preprocessing.

    Examples
    --------
    >>> pipe = Pipeline(model="random_forest", representation="features")  # doctest: +SKIP
    >>> pipe.fit(train_cohort).predict(test_cohort).records  # doctest: +SKIP
    """

    def __init__(
        self,
        preprocess: PreprocessConfig | None = None,
        representation: str | Mapping[str, Any] | None = None,
        model: str | Mapping[str, Any] = "cnn1d",
        task: str = "3class",
        train: TrainConfig | None = None,
        aggregation: Aggregation = "mean",
        *,
        representation_params: Mapping[str, Any] | None = None,
        model_params: Mapping[str, Any] | None = None,
        qc: bool = True,
        n_jobs: int | None = 1,
    ) -> None:
        from emgdx.models import MODELS
        from emgdx.represent import make_representation

        self.frontend = FrontEnd(preprocess, qc=qc, n_jobs=n_jobs)
        self.model_name, self.model_params = _spec(model, model_params, "model")
        if self.model_name not in MODELS:
            raise ConfigError(f"unknown model {self.model_name!r}; known: {sorted(MODELS)}")
        self.model_spec = MODELS[self.model_name]
        if representation is None:
            representation = self.model_spec.input
        self.representation_name, self.representation_params = _spec(
            representation, representation_params, "representation"
        )
        # Any: the representations share an interface, not a base class mypy knows
        self.representation: Any = make_representation(
            self.representation_name, **self.representation_params
        )
        if "seed" in self.model_params:
            raise ConfigError("set the seed in TrainConfig(seed=...), not in model params")
        # Checked now, not after minutes of preprocessing in fit().
        unknown = sorted(set(self.model_params) - set(self.model_spec.parameters()))
        if unknown:
            raise ConfigError(
                f"unknown {self.model_name} parameter(s) {unknown}; "
                f"known: {sorted(self.model_spec.parameters())}"
            )
        if self.model_spec.input != self.representation_name:
            raise ConfigError(
                f"model {self.model_name!r} takes {self.model_spec.input!r} input, not "
                f"{self.representation_name!r}"
            )
        self.task = check_task(task)
        self.class_names: tuple[str, ...] = class_names(self.task)
        self.train = train or TrainConfig()
        if aggregation not in ("mean", "vote"):
            raise ConfigError(f"aggregation must be 'mean' or 'vote', got {aggregation!r}")
        self.aggregation: Aggregation = aggregation
        # Fitted state (set by fit / load).
        self.model_: ModelAdapter | None = None
        self.input_shapes_: dict[str, tuple[int, ...]] | None = None
        self.train_result_: TrainResult | None = None
        self.data_hash_: str | None = None
        self.train_subjects_: list[str] = []
        #: Sites (hospitals) of the training windows, when their index names them.
        self.train_sites_: list[str] = []
        #: Reference ranges of quantitative EMG measures from the healthy training subjects
        #: (:func:`emgdx.reference.reference_ranges`), set by fit and kept by save/load.
        self.reference_: dict[str, Any] | None = None
        self.weights_sha256_: str | None = None
        #: Where fine-tuning started (``fit(init_from=...)``): the pretrained weights' SHA-256
        #: and training subjects; ``None`` for a model trained from scratch.
        self.pretrained_: dict[str, Any] | None = None
        #: How the model was adapted to a new site (:meth:`adapt`), or ``None``.
        self.adaptation_: dict[str, Any] | None = None
        #: The temperature fitted on held-out training subjects (:mod:`emgdx.calibration`)
        #: and how, or ``None`` (not fitted, or no held-out subjects).
        self.calibration_: dict[str, Any] | None = None
        #: The training windows' distribution and its threshold (:mod:`emgdx.ood`).
        self.distribution_: TrainingDistribution | None = None

    # ---- the stages' state, read through the pipeline -----------------------------------------

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.frontend.config

    @preprocess.setter
    def preprocess(self, config: PreprocessConfig) -> None:
        self.frontend.config = config

    @property
    def qc(self) -> bool:
        return self.frontend.qc

    @property
    def fs_hz_(self) -> float | None:
        return self.frontend.fs_hz

    @property
    def n_times_(self) -> int | None:
        return self.frontend.n_times

    @property
    def kind(self) -> str:
        """The registry's model family (``"torch"`` or ``"classical"``), as saved."""
        return str(self.model_spec.kind)

    @property
    def backend(self) -> str:
        """What runs predictions: ``"torch"``, ``"sklearn"``, ``"onnx"`` or ``"onnx-int8"``."""
        return "torch" if self.model_ is None else self.model_.backend

    @property
    def fitted(self) -> bool:
        return self.model_ is not None

    def _require_fitted(self) -> ModelAdapter:
        if self.model_ is None:
            raise ConfigError("this pipeline is not fitted: call fit() or Pipeline.load() first")
        return self.model_

    def min_fs_hz(self) -> float | None:
        """The lowest sampling rate that carries the whole band the model looks at."""
        return self.frontend.min_fs_hz()

    def check_sampling_rate(self, recording: Recording) -> None:
        """See :meth:`emgdx.frontend.FrontEnd.check_sampling_rate`."""
        self.frontend.check_sampling_rate(recording)

    def check_recording(self, recording: Recording) -> None:
        """See :meth:`emgdx.frontend.FrontEnd.check_recording`."""
        self.frontend.check_recording(recording)

    # ---- data ---------------------------------------------------------------------------------

    def prepare(self, data: DataLike, *, on_progress: ProgressCallback | None = None) -> Windows:
        """The front end's windows of ``data`` (QC + preprocessing + stateless normalisation).

        :class:`Windows` pass through after a check that they fit this pipeline. A fitted-scope
        normalisation is applied later (:meth:`model_inputs`), with the training statistics.
        """
        if isinstance(data, Windows):
            self.frontend.check_windows(data)
            return data
        return self.frontend.prepare(data, on_progress=on_progress).windows

    def model_inputs(self, windows: Windows) -> dict[str, np.ndarray]:
        """What the model sees for ``windows``: the front end's fitted normalisation, then the
        representation (``x`` and, when set, ``aux``). Used by :mod:`emgdx.explain`."""
        self._require_fitted()
        self.frontend.check_windows(windows)
        return self.representation.transform(self.frontend.finish(windows.data), windows.fs_hz)

    def input_shapes(self, fs_hz: float | None = None) -> dict[str, tuple[int, ...]]:
        """Model input shapes (no batch dimension) from the config alone, at ``fs_hz`` (default:
        the fitted or target rate): what a federated server builds its model from."""
        fs = fs_hz or self.fs_hz_ or self.preprocess.target_fs_hz
        if fs is None:
            raise ConfigError("input shapes need a window rate: set preprocess.target_fs_hz")
        n = self.n_times_ or round(self.preprocess.window_s * float(fs))
        shapes = self.representation.output_shape(n, float(fs))
        return {k: tuple(int(s) for s in v) for k, v in shapes.items()}

    def new_model(self, fs_hz: float | None = None) -> ModelAdapter:
        """An unfitted model for this pipeline's inputs, initialised from the training seed
        (the same on every federated site)."""
        fs = float(fs_hz or self.fs_hz_ or self.preprocess.target_fs_hz or 0.0)
        self.input_shapes_ = self.input_shapes(fs)
        return build_adapter(
            self.model_name,
            input_shapes=self.input_shapes_,
            n_classes=len(self.class_names),
            fs_hz=fs,
            seed=self.train.seed,
            params=self.model_params,
            device=self.train.device,
        )

    # ---- fit / predict -----------------------------------------------------------------------

    def fit_inputs(
        self, windows: Windows, normaliser: Normaliser | None = None
    ) -> tuple[Windows, dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Training windows → model inputs, fitting everything that is fitted on them.

        Keeps the windows labelled for the task, fits the front end (rate, window length,
        fitted normaliser, unless ``normaliser`` is given: a pretrained model's) and the
        representation on them, and sets ``input_shapes_`` and ``train_subjects_``.

        Returns
        -------
        (windows, inputs, y, groups)
            The labelled windows, the model inputs, the encoded labels and the subject ids.
        """
        y, keep = encode_labels(windows.index["label"].to_list(), self.task)
        if not keep.any():
            raise SignalError(f"no windows with a label usable for task {self.task!r}")
        windows = windows.select(keep)
        fs = float(windows.fs_hz)
        self.frontend.fit(windows)
        if normaliser is not None:
            self.frontend.normaliser = normaliser
        data = self.frontend.finish(windows.data)
        inputs = self.representation.fit(data, fs).transform(data, fs)
        self.input_shapes_ = {k: tuple(int(s) for s in v.shape[1:]) for k, v in inputs.items()}
        if self.input_shapes_ != self.input_shapes(fs):
            raise SignalError(f"inputs {self.input_shapes_} differ from the representation's")
        groups = windows.index["subject_id"].astype(str).to_numpy()
        self.train_subjects_ = sorted(set(groups.tolist()))
        sites = windows.index["site"].dropna() if "site" in windows.index else []
        self.train_sites_ = sorted({str(s) for s in sites if s})
        return windows, inputs, y, groups

    def fit(
        self,
        data: DataLike,
        *,
        on_progress: ProgressCallback | None = None,
        init_from: Pipeline | str | os.PathLike[str] | None = None,
        init_state: Mapping[str, np.ndarray] | None = None,
        proximal_mu: float = 0.0,
    ) -> Pipeline:
        """Fit front end, representation and model on ``data`` (training subjects only).

        Parameters
        ----------
        data
            Training cohort / recordings, or windows from :meth:`prepare`.
        on_progress
            ``on_progress(epoch, epochs)`` during torch training.
        init_from
            Fine-tune: a fitted torch pipeline (or its saved folder) to start from. It must
            have the same preprocessing, representation, model and task (checked); its weights
            are the starting point and its fitted normaliser is kept (the weights were learnt
            on inputs scaled by it). ``self.train.freeze`` / ``features_lr_scale`` say what
            trains. Its weights' SHA-256 and training subjects are recorded in
            :attr:`pretrained_` (and in ``pipeline.json``).
        init_state, proximal_mu
            Start from these weights (a federated round's global model), with FedProx's
            proximal term of weight ``proximal_mu`` towards them.

        Returns
        -------
        Pipeline
            ``self``, fitted.

        Raises
        ------
        SignalError
            No labelled windows for the task, or windows that do not fit the config.
        ConfigError
            ``init_from`` is not a fitted torch pipeline like this one.
        """
        pretrained = None if init_from is None else self.check_init_from(init_from)
        windows, inputs, y, groups = self.fit_inputs(
            self.prepare(data), None if pretrained is None else pretrained.frontend.normaliser
        )
        fs = float(windows.fs_hz)
        self.data_hash_ = windows_hash(windows)
        model = self.new_model(fs)
        self.pretrained_ = None
        if pretrained is not None:
            self._start_from(model, pretrained, fs)
        elif init_state is not None:
            model.set_state(init_state)
        self.train_result_ = model.fit(
            inputs,
            y,
            groups,
            self.train,
            fs_hz=fs,
            on_progress=on_progress,
            proximal_mu=proximal_mu,
        )
        self.model_ = model
        self.weights_sha256_ = None
        self.reference_ = self._reference(windows)
        self.calibration_, self.distribution_ = None, None
        if self.train.calibrate:
            self.calibration_ = self._fit_calibration(model, windows, inputs, y, groups)
            self.distribution_ = self._fit_distribution(windows, y)
        return self

    def _fit_calibration(
        self,
        model: ModelAdapter,
        windows: Windows,
        inputs: Mapping[str, np.ndarray],
        y: np.ndarray,
        groups: np.ndarray,
    ) -> dict[str, Any] | None:
        """A temperature from training subjects the model did not learn from: the early-stopping
        subjects of a torch model, else (classical models) grouped inner folds, each refitted
        without its subjects. ``None`` when there are no such subjects."""
        from sklearn.model_selection import GroupKFold

        from emgdx.calibration import fit_temperature

        records = windows.index["record_id"].astype(str).to_numpy()
        val = list(self.train_result_.val_subjects) if self.train_result_ is not None else []
        batch = self.train.eval_batch_size
        if val:
            held = np.isin(groups, val)
            raw = model.predict_proba({k: v[held] for k, v in inputs.items()}, batch_size=batch)
            source = f"the {len(val)} early-stopping subjects"
            y_held, rec_held = y[held], records[held]
        elif not model.has_weights and np.unique(groups).size >= 3:
            n_folds = min(3, np.unique(groups).size)
            raw = np.zeros((len(y), len(self.class_names)))
            for train, test in GroupKFold(n_folds).split(y, y, groups):
                inner = self.new_model(float(windows.fs_hz))
                pick = {k: v[train] for k, v in inputs.items()}
                inner.fit(pick, y[train], groups[train], self.train, fs_hz=float(windows.fs_hz))
                raw[test] = inner.predict_proba(
                    {k: v[test] for k, v in inputs.items()}, batch_size=batch
                )
            self.input_shapes_ = {k: tuple(int(s) for s in v.shape[1:]) for k, v in inputs.items()}
            source = f"{n_folds} grouped inner folds over the training subjects"
            y_held, rec_held = y, records
        else:
            return None
        temperature = fit_temperature(raw, y_held, rec_held)
        return {
            "method": "temperature",
            "temperature": temperature,
            "fitted_on": source,
            "n_records": int(np.unique(rec_held).size),
        }

    def _fit_distribution(self, windows: Windows, y: np.ndarray) -> TrainingDistribution | None:
        from emgdx.ood import fit_distribution

        if len(windows) < 10:
            return None
        return fit_distribution(
            windows.data, float(windows.fs_hz), windows.index, y, seed=self.train.seed
        )

    def check_init_from(self, source: Pipeline | str | os.PathLike[str]) -> Pipeline:
        """The pipeline to fine-tune from (loaded when a path), checked to match this one.

        Raises
        ------
        ConfigError
            Not a fitted pipeline with weights, or another preprocessing, representation,
            model (architecture parameters included) or task than this pipeline's.
        """
        pre = source if isinstance(source, Pipeline) else Pipeline.load(source)
        if pre.model_ is None or not pre.model_.has_weights:
            raise ConfigError("init_from needs a fitted pipeline with a torch model")
        mine, theirs = self.to_config(), pre.to_config()
        keys = ("preprocess", "representation", "model", "task")
        differ = [k for k in keys if mine[k] != theirs[k]]
        if differ:
            details = "; ".join(f"{k}: {mine[k]} here vs {theirs[k]} pretrained" for k in differ)
            raise ConfigError(
                f"cannot fine-tune from a pipeline with a different {', '.join(differ)} "
                f"({details}); build this pipeline from the pretrained one's config"
            )
        return pre

    def _start_from(self, model: ModelAdapter, pre: Pipeline, fs: float) -> None:
        """Start ``model`` from ``pre``'s weights (rate and input shapes checked)."""
        assert pre.fs_hz_ is not None and pre.model_ is not None
        same_rate = math.isclose(fs, pre.fs_hz_, rel_tol=1e-6)
        if not same_rate or self.input_shapes_ != pre.input_shapes_:
            raise ConfigError(
                f"cannot fine-tune: inputs {self.input_shapes_} at {fs:g} Hz here, but the "
                f"pretrained model takes {pre.input_shapes_} at {pre.fs_hz_:g} Hz"
            )
        model.set_state(pre.model_.get_state())
        self.pretrained_ = {
            "weights_sha256": pre.weights_sha256(),
            "train_subjects": list(pre.train_subjects_),
            "freeze": self.train.freeze,
        }

    def adapt(
        self,
        data: DataLike,
        *,
        site: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Pipeline:
        """Adapt the fitted model to a new site from its **unlabelled** records.

        A clinic always has unlabelled recordings. Torch models re-estimate their batch-norm
        statistics on them (AdaBN); classical models map the site's feature means and spreads
        onto the training data's. Labels are never read, so adapting on a test site's records
        leaks no answer. The front end (QC, filters, rate, windows) is not changed.

        Parameters
        ----------
        data
            The new site's records (or windows from :meth:`prepare`); at least 2 windows.
        site
            A name for the site, kept in :attr:`adaptation_` and saved with the pipeline.
        """
        model = self._require_fitted()
        windows = data if isinstance(data, Windows) else self.prepare(data, on_progress=on_progress)
        self.frontend.check_windows(windows)
        if len(windows) < 2:
            raise SignalError(
                f"adapting needs at least 2 windows of the new site, got {len(windows)}"
            )
        method = model.adapt(self.model_inputs(windows))
        self.weights_sha256_ = None
        self.adaptation_ = {
            "site": site,
            "method": method,
            "n_windows": len(windows),
            "n_records": int(windows.index["record_id"].nunique()),
            "windows_sha256": windows_hash(windows),
        }
        return self

    def get_state(self) -> dict[str, np.ndarray]:
        """The model's weights (federated rounds exchange these)."""
        return self._require_fitted().get_state()

    def set_state(self, state: Mapping[str, np.ndarray]) -> Pipeline:
        """Load weights into the model (built first, from the fitted front end, if needed)."""
        if self.model_ is None:
            self.model_ = self.new_model()
        self.model_.set_state(state)
        self.weights_sha256_ = None
        return self

    @property
    def windows_in_uv(self) -> bool:
        """Whether prepared windows keep µV (no normalisation before the fitted normaliser)."""
        return self.preprocess.normalisation.keeps_uv

    def _reference(self, windows: Windows) -> dict[str, Any]:
        from emgdx.reference import reference_ranges

        if not self.windows_in_uv:
            return {"available": False, "reason": "windows are normalised in preprocessing"}
        return reference_ranges(windows)

    def weights_sha256(self) -> str:
        """SHA-256 of the weights file this pipeline saves (computed when not saved yet)."""
        model = self._require_fitted()
        if self.weights_sha256_ is None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / _WEIGHTS
                model.save(path)
                self.weights_sha256_ = sha256_file(path)
        return self.weights_sha256_

    def identity(self) -> ModelIdentity:
        """Name, emgdx version, weights hash, backend and task of the fitted model."""
        from emgdx import __version__

        return ModelIdentity(
            self.model_name, __version__, self.weights_sha256(), self.backend, self.task
        )

    def calibrate_probs(self, probs: np.ndarray) -> np.ndarray:
        """The model's window probabilities with the fitted temperature applied (unchanged
        without a calibration)."""
        if self.calibration_ is None:
            return np.asarray(probs, dtype=np.float64)
        from emgdx.calibration import temper

        return temper(probs, float(self.calibration_["temperature"]))

    def predict_windows(self, windows: Windows, *, calibrated: bool = True) -> np.ndarray:
        """Class probabilities ``[n_windows, n_classes]`` for windows from :meth:`prepare`
        (calibrated with the fitted temperature unless ``calibrated=False``).

        Raises
        ------
        ConfigError
            When the pipeline is not fitted.
        SignalError
            When the windows' rate or length differ from the training windows'.
        """
        model = self._require_fitted()
        if len(windows) == 0:
            self.frontend.check_windows(windows)
            return np.zeros((0, len(self.class_names)), dtype=np.float64)
        inputs = self.model_inputs(windows)
        probs = model.predict_proba(inputs, batch_size=self.train.eval_batch_size)
        return self.calibrate_probs(probs) if calibrated else probs

    def ood_scores(self, windows: Windows) -> dict[str, float]:
        """Each record's out-of-distribution score (:mod:`emgdx.ood`: the median over up to
        six windows spread over the record, as when its threshold was chosen); empty without
        a training distribution."""
        if self.distribution_ is None or len(windows) == 0:
            return {}
        from emgdx.ood import representative_windows

        # The windows the threshold was chosen on: a few per record, spread over it.
        pick = representative_windows(windows.index)
        scores = self.distribution_.score_windows(windows.data[pick], float(windows.fs_hz))
        record_ids = windows.index["record_id"].to_numpy()[pick]
        return self.distribution_.score_records(scores, record_ids)

    def predict(
        self,
        data: DataLike,
        *,
        on_progress: ProgressCallback | None = None,
        keep_windows: bool = False,
    ) -> Diagnosis:
        """The :class:`~emgdx.diagnosis.Diagnosis` of ``data``: per-record probabilities
        (aggregated with :attr:`aggregation`) with intervals, QC and notes, subjects, visit.

        A record that cannot be judged (too short, sampled too slowly, no usable window) gets
        a row with ``n_windows = 0``, NaN scores and the reason in ``note``; it never stops
        the other records.

        Parameters
        ----------
        data
            Cohort, recording(s) or prepared windows.
        on_progress
            ``on_progress(done, total)`` per record during preprocessing.
        keep_windows
            Keep the prepared windows in :attr:`Diagnosis.windows` (for explanations).
        """
        self._require_fitted()
        if isinstance(data, Windows):
            self.frontend.check_windows(data)
            windows, qc, problems, base = data, None, {}, None
        else:
            cohort = as_cohort(data)
            prepared = self.frontend.prepare(cohort, on_progress=on_progress, skip_failures=True)
            windows, qc, problems = prepared.windows, prepared.qc, prepared.problems
            base = cohort.manifest[["record_id", "subject_id", "label"]]
        probs = self.predict_windows(windows)
        dist = self.distribution_
        return Diagnosis.from_windows(
            probs,
            windows.index,
            class_names=self.class_names,
            task=self.task,
            aggregation=self.aggregation,
            model=self.identity(),
            block=max(1, round(self.preprocess.window_s / self.preprocess.hop_s)),
            base=base,
            qc=qc,
            problems=problems,
            windows=windows if keep_windows else None,
            ood=None if dist is None else self.ood_scores(windows),
            ood_limits=None
            if dist is None
            else (dist.threshold, dist.refuse_factor * dist.threshold),
        )

    # ---- save / load -------------------------------------------------------------------------

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description of the configured (not fitted) pipeline."""
        return {
            "preprocess": self.preprocess.to_dict(),
            # The representation's full config, defaults included: what ran is on record.
            "representation": self.representation.to_dict(),
            "model": {"name": self.model_name, **self.model_params},
            "task": self.task,
            "train": self.train.to_dict(),
            "aggregation": self.aggregation,
            "qc": self.qc,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Pipeline:
        """Build an unfitted pipeline from :meth:`to_config` output."""
        unknown = sorted(set(config) - set(_CONFIG_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown pipeline config key(s) {unknown}; allowed: {sorted(_CONFIG_KEYS)}"
            )
        return cls(
            preprocess=PreprocessConfig.from_dict(config.get("preprocess", {})),
            representation=config.get("representation"),
            model=config.get("model", "cnn1d"),
            task=config.get("task", "3class"),
            train=TrainConfig.from_dict(config.get("train", {})),
            aggregation=config.get("aggregation", "mean"),
            qc=bool(config.get("qc", True)),
        )

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``model.safetensors`` + ``pipeline.json`` into the folder ``path``.

        Written into a temporary folder beside ``path`` first and renamed at the end, so an
        interrupted save leaves no half-written pipeline.

        Raises
        ------
        ConfigError
            When the pipeline is not fitted, or ``path`` exists and ``overwrite`` is False.
        """
        model = self._require_fitted()
        target = Path(path)
        if target.exists() and not overwrite:
            raise ConfigError(f"{target}: already exists (pass overwrite=True to replace it)")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            weights = tmp / _WEIGHTS
            extra = model.save(weights)
            doc = {
                "format": _FORMAT,
                "format_version": FORMAT_VERSION,
                "versions": package_versions(),
                **self.to_config(),
                "class_names": list(self.class_names),
                "model_kind": self.kind,
                **self.frontend.state_dict(),
                "input_shapes": {k: list(v) for k, v in (self.input_shapes_ or {}).items()},
                "weights_sha256": (digest := sha256_file(weights)),
                "reference": self.reference_,
                "data": {
                    "windows_sha256": self.data_hash_,
                    "train_subjects": self.train_subjects_,
                    "train_sites": self.train_sites_,
                },
                "pretrained": self.pretrained_,
                "adaptation": self.adaptation_,
                "calibration": self.calibration_,
                "training_distribution": None
                if self.distribution_ is None
                else self.distribution_.to_dict(),
                "train_result": None
                if self.train_result_ is None
                else self.train_result_.to_dict(),
                **extra,
            }
            (tmp / _CONFIG).write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
            self.weights_sha256_ = digest
            if target.exists():
                backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
                os.replace(target, backup / target.name)
                os.replace(tmp, target)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, backend: str = "torch") -> Pipeline:
        """Load a pipeline written by :meth:`save` (no pickle anywhere).

        ``backend`` runs :meth:`predict_windows` with ``"torch"``, ``"onnx"``, ``"onnx-int8"``
        (files written by ``emgdx export``, see :mod:`emgdx.deploy`) or ``"auto"`` (ONNX when
        the folder has ``model.onnx`` and onnxruntime imports, else the model's own library).

        Raises
        ------
        PipelineLoadError
            Missing files, unknown format, a weights file whose SHA-256 differs from the one
            recorded, or a refitted classical model that does not reproduce its saved
            probabilities.
        """
        folder = Path(path)
        cfg_path, weights = folder / _CONFIG, folder / _WEIGHTS
        if not cfg_path.is_file() or not weights.is_file():
            raise PipelineLoadError(
                f"{folder}: not a saved pipeline (needs {_CONFIG} and {_WEIGHTS})"
            )
        try:
            doc = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise PipelineLoadError(f"{cfg_path}: not valid JSON: {exc}") from exc
        if doc.get("format") != _FORMAT or doc.get("format_version") != FORMAT_VERSION:
            raise PipelineLoadError(
                f"{cfg_path}: unsupported format {doc.get('format')!r} version "
                f"{doc.get('format_version')!r} (this emgdx reads {_FORMAT} v{FORMAT_VERSION})"
            )
        digest = sha256_file(weights)
        if digest != doc.get("weights_sha256"):
            raise PipelineLoadError(
                f"{weights}: SHA-256 {digest[:12]}… differs from the {doc.get('weights_sha256')!r} "
                f"recorded in {_CONFIG}: the file was changed or corrupted"
            )
        pipe = cls.from_config({k: doc[k] for k in doc if k in _CONFIG_KEYS})
        pipe.frontend.load_state(doc)
        pipe.data_hash_ = doc.get("data", {}).get("windows_sha256")
        pipe.train_subjects_ = list(doc.get("data", {}).get("train_subjects", []))
        pipe.train_sites_ = list(doc.get("data", {}).get("train_sites", []))
        pipe.reference_ = doc.get("reference")
        pipe.pretrained_ = doc.get("pretrained")
        pipe.adaptation_ = doc.get("adaptation")
        pipe.calibration_ = doc.get("calibration")
        temperature = (pipe.calibration_ or {}).get("temperature", 1.0)
        if not (isinstance(temperature, int | float) and 0 < temperature < math.inf):
            raise PipelineLoadError(f"{cfg_path}: invalid calibration temperature {temperature!r}")
        try:
            dist = doc.get("training_distribution")
            pipe.distribution_ = None if dist is None else TrainingDistribution.from_dict(dist)
        except ConfigError as exc:
            raise PipelineLoadError(f"{cfg_path}: {exc}") from exc
        pipe.weights_sha256_ = digest
        model = pipe.new_model()
        saved_shapes = {k: tuple(v) for k, v in doc["input_shapes"].items()}
        if pipe.input_shapes_ != saved_shapes:
            raise PipelineLoadError(
                f"{cfg_path}: input shapes {saved_shapes} differ from the config's "
                f"{pipe.input_shapes_}"
            )
        model.load(weights)
        pipe.model_ = attach_backend(model, folder, backend, digest)
        return pipe

    def __repr__(self) -> str:
        state = "fitted" if self.fitted else "not fitted"
        return (
            f"Pipeline(model={self.model_name!r}, representation={self.representation_name!r}, "
            f"task={self.task!r}, {state})"
        )
