"""The :class:`Pipeline`: preprocessing + representation + model + aggregation, as one object.

Training, cross-validation, prediction, the CLI and the service all go through this one code
path::

    Cohort / recordings ──prepare()──▶ Windows ──fit() / predict_windows()──▶ probabilities
                                                   └──predict()──▶ one row per record

``prepare`` runs quality control and preprocessing (everything that uses no statistics fitted
on other data, so windows can be prepared once for a whole cohort and split by subject after).
``fit`` then fits, on the training windows only: the fitted normaliser (when
``preprocess.normalise_scope == "fitted"``), the representation, and the model (torch models
with :func:`emgdx.training.fit_torch`, whose early-stopping split holds out training subjects).

Saving never uses pickle: loading a model must not be able to run code.

- ``model.safetensors``: for torch models the state dict. scikit-learn models cannot be stored
  without pickle (skops and skl2onnx are not dependencies), so for them the file holds the
  training feature matrix and targets, and :meth:`Pipeline.load` **refits** the (seeded,
  deterministic) estimator, then checks that its probabilities on a stored probe set equal the
  saved ones; a mismatch (e.g. another scikit-learn version) raises
  :class:`PipelineLoadError` instead of silently predicting differently. The file then
  contains features derived from the training subjects' EMG: share it like the data itself.
- ``pipeline.json``: every config, class names, input shapes, emgdx/torch/scikit-learn
  versions, the SHA-256 of ``model.safetensors`` (checked on load) and a hash of the training
  windows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from emgdx.errors import ConfigError, EmgdxError, SamplingRateError, SignalError
from emgdx.evaluation.cv import package_versions, windows_hash
from emgdx.preprocess import (
    NYQUIST_FRACTION,
    Normaliser,
    PreprocessConfig,
    preprocess_cohort,
)
from emgdx.progress import ProgressCallback
from emgdx.recording import Cohort, Recording, Windows
from emgdx.tasks import check_task, class_names, encode_labels
from emgdx.training import TrainConfig, TrainResult

__all__ = ["FORMAT_VERSION", "Pipeline", "PipelineLoadError"]

#: Version of the saved pipeline folder layout.
FORMAT_VERSION = 1
_FORMAT = "emgdx-pipeline"
_WEIGHTS = "model.safetensors"
_CONFIG = "pipeline.json"
# Training rows whose probabilities are stored to verify a refitted classical model.
_N_PROBE = 256

Aggregation = Literal["mean", "vote"]
DataLike = Cohort | Sequence[Recording] | Recording | Windows


class ReducedBandWarning(UserWarning):
    """A record is sampled too slowly to carry the whole band the model reads."""


class PipelineLoadError(EmgdxError):
    """A saved pipeline that cannot be loaded faithfully (corrupt, tampered or incompatible)."""


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


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Pipeline:
    """Preprocess, represent, classify and aggregate EMG, with fit / predict / save / load.

    Parameters
    ----------
    preprocess
        Preprocessing config (filters, resampling, windows).
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
        Window → record rule: ``"mean"`` probability or majority ``"vote"``.
    representation_params, model_params
        Parameters when ``representation`` / ``model`` are given as names.
    qc
        Run quality control in :meth:`prepare` and leave out samples it marks unusable.
    n_jobs
        Worker threads for preprocessing.

    Examples
    --------
    >>> pipe = Pipeline(model="random_forest", representation="features")  # doctest: +SKIP
    >>> pipe.fit(train_cohort).predict(test_cohort)  # doctest: +SKIP
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

        self.preprocess = preprocess or PreprocessConfig()
        self.model_name, self.model_params = _spec(model, model_params, "model")
        if self.model_name not in MODELS:
            raise ConfigError(f"unknown model {self.model_name!r}; known: {sorted(MODELS)}")
        self.model_spec = MODELS[self.model_name]
        if representation is None:
            representation = self.model_spec.input
        self.representation_name, self.representation_params = _spec(
            representation, representation_params, "representation"
        )
        self.representation = self._make_representation()
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
        self.qc = bool(qc)
        self.n_jobs = n_jobs
        # Fitted state (set by fit / load).
        self.model_: Any = None
        self.normaliser_: Normaliser | None = None
        self.fs_hz_: float | None = None
        self.n_times_: int | None = None
        self.input_shapes_: dict[str, tuple[int, ...]] | None = None
        self.train_result_: TrainResult | None = None
        self.data_hash_: str | None = None
        self.train_subjects_: list[str] = []
        self._classical_train: dict[str, np.ndarray] | None = None
        #: Reference ranges of quantitative EMG measures from the healthy training subjects
        #: (:func:`emgdx.reference.reference_ranges`), set by fit and kept by save/load.
        self.reference_: dict[str, Any] | None = None
        self.weights_sha256_: str | None = None
        #: Inference backend of predict_windows: "torch", "onnx" or "onnx-int8" (then
        #: ``onnx_model_`` is an :class:`emgdx.deploy.OnnxModel`; set by ``load(backend=...)``,
        #: reset by fit). The torch model stays loaded for explanations.
        self.backend: str = "torch"
        self.onnx_model_: Any = None
        #: Where fine-tuning started (``fit(init_from=...)``): the pretrained weights' SHA-256
        #: and training subjects; ``None`` for a model trained from scratch.
        self.pretrained_: dict[str, Any] | None = None

    # ---- construction helpers ----------------------------------------------------------------

    def _make_representation(self) -> Any:
        from emgdx.represent import make_representation

        return make_representation(self.representation_name, **self.representation_params)

    @property
    def kind(self) -> str:
        """``"torch"`` or ``"classical"``."""
        return str(self.model_spec.kind)

    @property
    def fitted(self) -> bool:
        return self.model_ is not None

    def _build_model(self, input_shapes: Mapping[str, tuple[int, ...]], fs_hz: float) -> Any:
        from emgdx.models import build_model

        # The training seed also seeds the weight initialisation / random_state.
        return build_model(
            self.model_name,
            input_shapes=dict(input_shapes),
            n_classes=len(self.class_names),
            fs_hz=fs_hz,
            seed=self.train.seed,
            **self.model_params,
        )

    def _fitted_norm(self) -> bool:
        p = self.preprocess
        return p.normalise != "none" and p.normalise_scope == "fitted"

    # ---- data ---------------------------------------------------------------------------------

    def prepare(self, data: DataLike, *, on_progress: ProgressCallback | None = None) -> Windows:
        """Quality control + preprocessing + windows (no statistics fitted on other data).

        Parameters
        ----------
        data
            A cohort, a list of recordings or one recording; :class:`Windows` pass through
            (after a check that they match the preprocessing config).
        on_progress
            ``on_progress(done, total)`` per record.

        Returns
        -------
        Windows
            With a fitted-scope normalisation *not yet* applied (that happens in
            :meth:`fit` / :meth:`predict_windows` with the normaliser fitted on training data).
        """
        return self._prepare(data, on_progress)[0]

    def _prepare(
        self, data: DataLike, on_progress: ProgressCallback | None
    ) -> tuple[Windows, pd.DataFrame | None]:
        """Windows plus the QC columns of every record (``None`` for windows or ``qc=False``)."""
        if isinstance(data, Windows):
            self._check_windows(data)
            return data, None
        cohort = self._as_cohort(data)
        if self.fitted:
            for rec in cohort.recordings:
                self.check_sampling_rate(rec)
        cfg = self.preprocess
        if self._fitted_norm():
            cfg = dataclasses.replace(cfg, normalise="none")
        reports = None
        qc_table = None
        if self.qc:
            from emgdx.quality import assess_cohort

            # A copy of the manifest: QC adds columns to it, and the caller's cohort is theirs.
            manifest = cohort.manifest.copy()
            reports = assess_cohort(Cohort(cohort.recordings, manifest, []))
            qc_table = manifest[["record_id", "qc_flags", "qc_ok", "usable_fraction"]]
            qc_table = qc_table.astype({"record_id": str}).reset_index(drop=True)
        windows = preprocess_cohort(
            cohort, cfg, reports, n_jobs=self.n_jobs, on_progress=on_progress
        )
        self._check_windows(windows)
        return windows, qc_table

    def min_fs_hz(self) -> float | None:
        """The lowest sampling rate that carries the whole band the model looks at."""
        band = self.preprocess.band_hz
        return None if band is None else 2.0 * band[1] / NYQUIST_FRACTION

    def check_sampling_rate(self, recording: Recording) -> None:
        """Warn about, or refuse, a record sampled too slowly for the model's band.

        Resampling up does not put missing frequencies back. A record that lacks the top of
        the band (e.g. 4 kHz for a 20-2500 Hz model) is still judged, with a
        :class:`ReducedBandWarning` (docs/robustness.md measures what it costs); one that
        lacks more than half of it is refused: the model would judge a signal unlike anything
        it has seen.

        Raises
        ------
        SamplingRateError
            Naming the record, its rate and the rate needed.
        """
        needed = self.min_fs_hz()
        band = self.preprocess.band_hz
        if needed is None or band is None or recording.fs_hz >= needed:
            return
        name = Path(recording.source).name if recording.source else recording.record_id
        usable = NYQUIST_FRACTION * recording.fs_hz / 2.0
        if usable < band[1] / 2.0:
            raise SamplingRateError(
                name,
                f"sampled at {recording.fs_hz:g} Hz, too slowly for this model, which reads "
                f"{band[0]:g}-{band[1]:g} Hz (it needs at least {math.ceil(needed / 2):d} Hz, "
                f"and {math.ceil(needed):d} Hz for the whole band)",
            )
        warnings.warn(
            f"{name}: sampled at {recording.fs_hz:g} Hz, so the content above {usable:.0f} Hz "
            f"of the model's {band[0]:g}-{band[1]:g} Hz band is missing; results may be less "
            f"reliable ({math.ceil(needed):d} Hz carries the whole band)",
            ReducedBandWarning,
            stacklevel=4,  # the caller of predict()/prepare() (via _prepare)
        )

    @staticmethod
    def _as_cohort(data: Cohort | Sequence[Recording] | Recording) -> Cohort:
        if isinstance(data, Cohort):
            return data
        if isinstance(data, Recording):
            return Cohort.from_recordings([data])
        recs = list(data)
        if not all(isinstance(r, Recording) for r in recs):
            raise SignalError("expected a Cohort, Recording(s) or Windows")
        return Cohort.from_recordings(recs)

    def _check_windows(self, windows: Windows) -> None:
        target = self.preprocess.target_fs_hz
        if self.fs_hz_ is not None:
            target = self.fs_hz_
        if (
            target is not None
            and len(windows)
            and not math.isclose(windows.fs_hz, target, rel_tol=1e-6)
        ):
            rec = windows.index["record_id"].iloc[0]
            raise SignalError(
                f"{rec}: windows at {windows.fs_hz:g} Hz, but this pipeline works at {target:g} Hz"
            )
        expected = self.n_times_ or round(self.preprocess.window_s * windows.fs_hz)
        if len(windows) and windows.n_samples != expected:
            rec = windows.index["record_id"].iloc[0]
            raise SignalError(
                f"{rec}: windows of {windows.n_samples} samples, but this pipeline uses "
                f"{expected} ({self.preprocess.window_s:g} s at {windows.fs_hz:g} Hz)"
            )

    def model_inputs(self, windows: Windows) -> dict[str, np.ndarray]:
        """What the model sees for ``windows``: the fitted normalisation, then the
        representation (``x`` and, when set, ``aux``). Used by :mod:`emgdx.explain`."""
        self._require_fitted()
        self._check_windows(windows)
        return self._inputs(windows)

    def _inputs(self, windows: Windows) -> dict[str, np.ndarray]:
        data = windows.data
        if self.normaliser_ is not None:
            data = self.normaliser_.transform(data)
        return self.representation.transform(data, windows.fs_hz)

    # ---- fit / predict -----------------------------------------------------------------------

    def fit_inputs(
        self, windows: Windows, normaliser: Normaliser | None = None
    ) -> tuple[Windows, dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Training windows → model inputs, fitting everything that is fitted on them.

        Keeps the windows labelled for the task, then sets ``fs_hz_``, ``n_times_``,
        ``normaliser_`` (``normaliser`` if given, else fitted here when the config fits one),
        ``representation``, ``input_shapes_`` and ``train_subjects_``. :meth:`fit` and the
        federated sites (:mod:`emgdx.federated`) train on what it returns.

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
        self.fs_hz_, self.n_times_ = fs, windows.n_samples
        self.normaliser_ = normaliser
        method = self.preprocess.normalise
        # (method != "none" is implied by _fitted_norm; for mypy)
        if normaliser is None and self._fitted_norm() and method != "none":
            self.normaliser_ = Normaliser(method).fit(windows.data)
        norm_data = (
            windows.data if self.normaliser_ is None else self.normaliser_.transform(windows.data)
        )
        self.representation = self._make_representation().fit(norm_data, fs)
        inputs = self.representation.transform(norm_data, fs)
        self.input_shapes_ = {k: tuple(int(s) for s in v.shape[1:]) for k, v in inputs.items()}
        groups = windows.index["subject_id"].astype(str).to_numpy()
        self.train_subjects_ = sorted(set(groups.tolist()))
        return windows, inputs, y, groups

    def fit(
        self,
        data: DataLike,
        *,
        on_progress: ProgressCallback | None = None,
        init_from: Pipeline | str | os.PathLike[str] | None = None,
    ) -> Pipeline:
        """Fit normaliser, representation and model on ``data`` (training subjects only).

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
            self.prepare(data), None if pretrained is None else pretrained.normaliser_
        )
        fs = float(windows.fs_hz)
        self.data_hash_ = windows_hash(windows)
        assert self.input_shapes_ is not None  # set by fit_inputs
        model = self._build_model(self.input_shapes_, fs)
        self.pretrained_ = None
        if pretrained is not None:
            self._load_pretrained(model, pretrained, fs)
        if self.kind == "torch":
            from emgdx.training import fit_torch

            self.train_result_ = fit_torch(
                model,
                inputs,
                y,
                groups,
                self.train,
                n_classes=len(self.class_names),
                fs_hz=fs,
                on_progress=on_progress,
            )
        else:
            from emgdx.models.classical import feature_matrix

            features = feature_matrix(inputs)
            model.fit(features, y)
            self._classical_train = {"x": features, "y": y}
        self.model_ = model
        self.backend, self.onnx_model_ = "torch", None
        self.weights_sha256_ = None
        self.reference_ = self._reference(windows)
        return self

    def check_init_from(self, source: Pipeline | str | os.PathLike[str]) -> Pipeline:
        """The pipeline to fine-tune from (loaded when a path), checked to match this one.

        Raises
        ------
        ConfigError
            Not a fitted torch pipeline, or another preprocessing, representation, model
            (architecture parameters included) or task than this pipeline's.
        """
        pre = source if isinstance(source, Pipeline) else Pipeline.load(source)
        if not pre.fitted or pre.kind != "torch":
            raise ConfigError("init_from needs a fitted pipeline with a torch model")
        if self.kind != "torch":
            raise ConfigError(f"{self.model_name} is not a torch model: nothing to fine-tune")
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

    def _load_pretrained(self, model: Any, pre: Pipeline, fs: float) -> None:
        """Copy ``pre``'s weights into ``model`` after checking rate and input shapes."""
        assert pre.fs_hz_ is not None
        same_rate = math.isclose(fs, pre.fs_hz_, rel_tol=1e-6)
        if not same_rate or self.input_shapes_ != pre.input_shapes_:
            raise ConfigError(
                f"cannot fine-tune: inputs {self.input_shapes_} at {fs:g} Hz here, but the "
                f"pretrained model takes {pre.input_shapes_} at {pre.fs_hz_:g} Hz"
            )
        try:
            model.load_state_dict(pre.model_.state_dict(), strict=True)
        except RuntimeError as exc:
            raise ConfigError(f"pretrained weights do not fit this model: {exc}") from exc
        self.pretrained_ = {
            "weights_sha256": pre.weights_sha256(),
            "train_subjects": list(pre.train_subjects_),
            "freeze": self.train.freeze,
        }

    @property
    def windows_in_uv(self) -> bool:
        """Whether prepared windows keep µV (no normalisation inside preprocessing)."""
        return self.preprocess.normalise == "none" or self._fitted_norm()

    def _reference(self, windows: Windows) -> dict[str, Any]:
        from emgdx.reference import reference_ranges

        if not self.windows_in_uv:
            return {"available": False, "reason": "windows are normalised in preprocessing"}
        return reference_ranges(windows)

    def weights_sha256(self) -> str:
        """SHA-256 of the weights file this pipeline saves (computed when not saved yet)."""
        self._require_fitted()
        if self.weights_sha256_ is None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / _WEIGHTS
                self._write_weights(path)
                self.weights_sha256_ = _sha256_file(path)
        return self.weights_sha256_

    def _require_fitted(self) -> None:
        if self.model_ is None:
            raise ConfigError("this pipeline is not fitted: call fit() or Pipeline.load() first")

    def predict_windows(self, windows: Windows) -> np.ndarray:
        """Class probabilities ``[n_windows, n_classes]`` for windows from :meth:`prepare`.

        Raises
        ------
        ConfigError
            When the pipeline is not fitted.
        SignalError
            When the windows' rate or length differ from the training windows'.
        """
        self._require_fitted()
        self._check_windows(windows)
        k = len(self.class_names)
        if len(windows) == 0:
            return np.zeros((0, k), dtype=np.float64)
        inputs = self._inputs(windows)
        if self.onnx_model_ is not None:
            return np.asarray(
                self.onnx_model_.predict_proba(inputs, batch_size=self.train.eval_batch_size)
            )
        if self.kind == "torch":
            from emgdx.training import predict_proba

            return predict_proba(
                self.model_,
                inputs,
                batch_size=self.train.eval_batch_size,
                device=self.train.device,
            ).astype(np.float64)
        from emgdx.models.classical import feature_matrix

        return self._classical_proba(feature_matrix(inputs))

    def _classical_proba(self, features: np.ndarray) -> np.ndarray:
        # A class absent from training has no column in sklearn's output: put it back as 0.
        raw = np.asarray(self.model_.predict_proba(features), dtype=np.float64)
        out = np.zeros((raw.shape[0], len(self.class_names)))
        out[:, np.asarray(self.model_.classes_, dtype=np.int64)] = raw
        return out

    def predict(
        self, data: DataLike, *, on_progress: ProgressCallback | None = None
    ) -> pd.DataFrame:
        """One row per record: class probabilities, prediction, window count and QC.

        Parameters
        ----------
        data
            Cohort, recording(s) or prepared windows.
        on_progress
            ``on_progress(done, total)`` per record during preprocessing.

        Returns
        -------
        pandas.DataFrame
            Columns ``record_id``, ``subject_id``, ``label`` (true label, if known),
            ``p_<class>`` per class (aggregated with :attr:`aggregation`), ``predicted``,
            ``confidence`` (the top score), ``n_windows``, and, when QC ran, ``qc_flags``,
            ``qc_ok`` and ``usable_fraction``. Records without a usable window get
            ``n_windows = 0``, NaN scores and no prediction.
        """
        from emgdx.evaluation.aggregate import aggregate, score_columns

        self._require_fitted()
        cohort = None if isinstance(data, Windows) else self._as_cohort(data)
        windows, qc_table = self._prepare(data if cohort is None else cohort, on_progress)
        score_cols = score_columns(self.class_names)
        if len(windows):
            probs = self.predict_windows(windows)
            table = aggregate(
                probs, windows.index, level="record", method=self.aggregation, task=self.task
            )
            table = table[
                ["record_id", "subject_id", "label", *score_cols, "predicted", "n_windows"]
            ]
        else:
            table = pd.DataFrame(
                columns=["record_id", "subject_id", "label", *score_cols, "predicted", "n_windows"]
            )
        if cohort is not None:
            # Every record gets a row, also those that yielded no window.
            base = cohort.manifest[["record_id", "subject_id", "label"]].reset_index(drop=True)
            base = base.astype({"record_id": str, "subject_id": str})
            table = base.merge(
                table.drop(columns=["subject_id", "label"]), on="record_id", how="left"
            )
            table["n_windows"] = table["n_windows"].fillna(0).astype(np.int64)
            if qc_table is not None:
                table = table.merge(qc_table, on="record_id", how="left")
        table["confidence"] = table[score_cols].max(axis=1)
        return table.reset_index(drop=True)

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
        known = {"preprocess", "representation", "model", "task", "train", "aggregation", "qc"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(f"unknown pipeline config key(s) {unknown}; allowed: {sorted(known)}")
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

        Parameters
        ----------
        path
            Target folder (created).
        overwrite
            Replace an existing folder at ``path``.

        Returns
        -------
        pathlib.Path
            The folder.

        Raises
        ------
        ConfigError
            When the pipeline is not fitted, or ``path`` exists and ``overwrite`` is False.
        """
        self._require_fitted()
        target = Path(path)
        if target.exists() and not overwrite:
            raise ConfigError(f"{target}: already exists (pass overwrite=True to replace it)")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            weights = tmp / _WEIGHTS
            extra = self._write_weights(weights)
            doc = {
                "format": _FORMAT,
                "format_version": FORMAT_VERSION,
                "versions": package_versions(),
                **self.to_config(),
                "class_names": list(self.class_names),
                "model_kind": self.kind,
                "fs_hz": self.fs_hz_,
                "n_times": self.n_times_,
                "input_shapes": {k: list(v) for k, v in (self.input_shapes_ or {}).items()},
                "normaliser": None if self.normaliser_ is None else self.normaliser_.to_dict(),
                "weights_sha256": (digest := _sha256_file(weights)),
                "reference": self.reference_,
                "data": {"windows_sha256": self.data_hash_, "train_subjects": self.train_subjects_},
                "pretrained": self.pretrained_,
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

    def _write_weights(self, path: Path) -> dict[str, Any]:
        if self.kind == "torch":
            from safetensors.torch import save_file

            state = {k: v.detach().cpu().contiguous() for k, v in self.model_.state_dict().items()}
            save_file(state, str(path), metadata={"format": "pt"})
            return {}
        from safetensors.numpy import save_file as save_np

        assert self._classical_train is not None
        x, y = self._classical_train["x"], self._classical_train["y"]
        probe = np.linspace(0, len(x) - 1, num=min(_N_PROBE, len(x))).round().astype(np.int64)
        probs = self._classical_proba(x[probe])
        save_np(
            {
                "train_x": np.ascontiguousarray(x, dtype=np.float32),
                "train_y": np.ascontiguousarray(y, dtype=np.int64),
                "probe_index": probe,
                "probe_proba": np.ascontiguousarray(probs, dtype=np.float64),
            },
            str(path),
        )
        return {"classical_storage": "refit-on-load"}

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, backend: str = "torch") -> Pipeline:
        """Load a pipeline written by :meth:`save` (no pickle anywhere).

        ``backend`` runs :meth:`predict_windows` with ``"torch"``, ``"onnx"``, ``"onnx-int8"``
        (files written by ``emgdx export``, see :mod:`emgdx.deploy`) or ``"auto"`` (ONNX when
        the folder has ``model.onnx`` and onnxruntime imports, else torch).

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
        digest = _sha256_file(weights)
        if digest != doc.get("weights_sha256"):
            raise PipelineLoadError(
                f"{weights}: SHA-256 {digest[:12]}… differs from the {doc.get('weights_sha256')!r} "
                f"recorded in {_CONFIG}: the file was changed or corrupted"
            )
        pipe = cls.from_config({k: doc[k] for k in doc if k in _CONFIG_KEYS})
        pipe.fs_hz_ = float(doc["fs_hz"])
        pipe.n_times_ = int(doc["n_times"])
        pipe.input_shapes_ = {k: tuple(v) for k, v in doc["input_shapes"].items()}
        if doc.get("normaliser") is not None:
            pipe.normaliser_ = Normaliser.from_dict(doc["normaliser"])
        pipe.data_hash_ = doc.get("data", {}).get("windows_sha256")
        pipe.train_subjects_ = list(doc.get("data", {}).get("train_subjects", []))
        pipe.reference_ = doc.get("reference")
        pipe.pretrained_ = doc.get("pretrained")
        pipe.weights_sha256_ = digest
        model = pipe._build_model(pipe.input_shapes_, pipe.fs_hz_)
        if pipe.kind == "torch":
            from safetensors.torch import load_file

            try:
                model.load_state_dict(load_file(str(weights)), strict=True)
            except RuntimeError as exc:
                raise PipelineLoadError(f"{weights}: weights do not fit the model: {exc}") from exc
            model.eval()
            pipe.model_ = model
        else:
            from safetensors.numpy import load_file as load_np

            arrays = load_np(str(weights))
            model.fit(arrays["train_x"], arrays["train_y"])
            pipe.model_ = model
            again = pipe._classical_proba(arrays["train_x"][arrays["probe_index"]])
            diff = float(np.abs(again - arrays["probe_proba"]).max(initial=0.0))
            if diff > 1e-9:
                raise PipelineLoadError(
                    f"{weights}: the refitted {pipe.model_name} model does not reproduce the saved "
                    f"probabilities (max difference {diff:.3g}); saved with {doc.get('versions')}, "
                    f"running {package_versions()}"
                )
            pipe._classical_train = {"x": arrays["train_x"], "y": arrays["train_y"]}
        if backend != "torch":
            from emgdx.deploy import attach_backend

            pipe.backend, pipe.onnx_model_ = attach_backend(pipe, folder, backend)
        return pipe

    def __repr__(self) -> str:
        state = "fitted" if self.fitted else "not fitted"
        return (
            f"Pipeline(model={self.model_name!r}, representation={self.representation_name!r}, "
            f"task={self.task!r}, {state})"
        )


_CONFIG_KEYS = ("preprocess", "representation", "model", "task", "train", "aggregation", "qc")
