"""One interface for every model emgdx runs: torch, scikit-learn and ONNX (onnxruntime).

The pipeline, federated sites, deployment and export talk to a :class:`ModelAdapter` and never
ask which library is behind it; this module is the only place that does::

    adapter.fit(inputs, y, groups, train)       torch: emgdx.training.fit_torch; sklearn: .fit
    adapter.predict_proba(inputs)               [n, n_classes] float64
    adapter.adapt(inputs)                       unlabelled new-site data: AdaBN / feature alignment
    adapter.get_state() / set_state(state)      named numpy arrays (federated exchange, transfer)
    adapter.save(path) / adapter.load(path)     safetensors, never pickle

Capabilities are attributes, not library checks: :attr:`ModelAdapter.explanation` says how a
decision is explained (``"attribution"`` on the signal, or ``"feature_importance"``),
:attr:`ModelAdapter.has_weights` whether it has weights to exchange, fine-tune or export.

scikit-learn models cannot be stored without pickle (skops and skl2onnx are not dependencies),
so their file holds the training feature matrix and targets, and loading **refits** the
(seeded, deterministic) estimator, then checks that its probabilities on stored probe rows equal
the saved ones; a mismatch (e.g. another scikit-learn version) raises
:class:`~emgdx.errors.PipelineLoadError` instead of silently predicting differently.

ONNX (:class:`OnnxAdapter`) runs a torch model's exported forward pass in onnxruntime; the
torch model stays behind it for explanations (captum needs gradients) and for its state.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from emgdx.errors import ConfigError, EmgdxError, PipelineLoadError
from emgdx.models import MODELS, build_model

if TYPE_CHECKING:
    from emgdx.training import TrainConfig, TrainResult

__all__ = [
    "BACKENDS",
    "INT8_FILE",
    "MANIFEST_FILE",
    "MAX_BATCH",
    "ONNX_FILE",
    "DeployError",
    "ModelAdapter",
    "OnnxAdapter",
    "OnnxModel",
    "SklearnAdapter",
    "TorchAdapter",
    "attach_backend",
    "build_adapter",
    "onnx_available",
    "read_manifest",
    "sha256_file",
]

Inputs = Mapping[str, np.ndarray]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "onnx-int8")
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
MANIFEST_FILE = "onnx.json"
ONNX_FORMAT = ("emgdx-onnx", 1)
_ONNX_FILES = {"onnx": ONNX_FILE, "onnx-int8": INT8_FILE}
#: Windows per session call of each ONNX backend (``None``: as many as asked); see
#: :func:`emgdx.deploy.quantize_int8` for why the int8 model runs one window per call.
MAX_BATCH: dict[str, int | None] = {"onnx": None, "onnx-int8": 1}
# The state entries of a classical model's alignment to a new site (SklearnAdapter.adapt).
_ALIGN_KEYS = ("align_scale", "align_shift")
# Training rows whose probabilities are stored to verify a refitted scikit-learn model.
_N_PROBE = 256


class DeployError(EmgdxError):
    """An export or ONNX model that cannot be used (no weights, tampered file, ...)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ModelAdapter:
    """What every model offers the pipeline (see the module docstring)."""

    #: ``"torch"``, ``"sklearn"``, ``"onnx"`` or ``"onnx-int8"``: what runs predictions.
    backend: ClassVar[str]
    #: Reference key of the library that built the model (for the methods paragraph).
    library: ClassVar[str]
    #: ``"attribution"`` (captum, on the signal) or ``"feature_importance"``.
    explanation: ClassVar[str]
    #: Weights that can be exchanged (federated), fine-tuned and exported to ONNX.
    has_weights: ClassVar[bool]

    def __init__(self, name: str, n_classes: int) -> None:
        self.name, self.n_classes = name, int(n_classes)

    def fit(
        self,
        inputs: Inputs,
        y: np.ndarray,
        groups: np.ndarray,
        train: TrainConfig,
        *,
        fs_hz: float,
        on_progress: Callable[[int, int], None] | None = None,
        proximal_mu: float = 0.0,
    ) -> TrainResult | None:
        """Fit on model inputs; ``proximal_mu`` > 0 adds FedProx's pull towards the weights
        the fit starts from. Returns the training history where there is one."""
        raise ConfigError(f"{self.name} ({self.backend}) cannot be trained here")

    def predict_proba(self, inputs: Inputs, *, batch_size: int = 256) -> np.ndarray:
        raise NotImplementedError

    def adapt(self, inputs: Inputs) -> str:
        """Adapt to a new site from its *unlabelled* inputs; returns what was adapted."""
        raise ConfigError(f"{self.name} ({self.backend}) cannot adapt to a new site")

    def get_state(self) -> dict[str, np.ndarray]:
        """The model's state as named numpy arrays."""
        raise NotImplementedError

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        raise NotImplementedError

    def local_state_keys(self) -> list[str]:
        """State entries a federated site keeps to itself under FedBN (none by default)."""
        return []

    def save(self, path: Path) -> dict[str, Any]:
        """Write the state to ``path`` (safetensors); returns entries for ``pipeline.json``."""
        raise NotImplementedError

    def load(self, path: Path) -> None:
        """Restore the state written by :meth:`save` (no pickle)."""
        raise NotImplementedError

    def native(self) -> ModelAdapter:
        """The model run by its own library (itself; the torch model behind ONNX)."""
        return self

    @property
    def module(self) -> Any:
        """The differentiable model behind the adapter (explanations, ONNX export)."""
        raise ConfigError(
            f"{self.name} is a classical model: use feature_importance() for it; attributions "
            "on the signal need a torch model"
        )

    @property
    def n_parameters(self) -> int | None:
        return None

    def feature_importance(
        self, method: str, inputs: Inputs | None = None, y: np.ndarray | None = None, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature importance and its spread (classical models; ``options`` as in
        :func:`sklearn.inspection.permutation_importance`)."""
        raise ConfigError("feature_importance is for classical models; use attribute_windows")


class TorchAdapter(ModelAdapter):
    """A torch module whose ``forward(x, aux=None)`` returns logits."""

    backend = "torch"
    library = "pytorch"
    explanation = "attribution"
    has_weights = True

    def __init__(self, name: str, n_classes: int, module: Any, *, device: str = "auto") -> None:
        super().__init__(name, n_classes)
        self._module, self.device = module, device

    @property
    def module(self) -> Any:
        return self._module

    @property
    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self._module.parameters()))

    def fit(
        self,
        inputs: Inputs,
        y: np.ndarray,
        groups: np.ndarray,
        train: TrainConfig,
        *,
        fs_hz: float,
        on_progress: Callable[[int, int], None] | None = None,
        proximal_mu: float = 0.0,
    ) -> TrainResult:
        from emgdx.training import fit_torch

        regulariser = None
        if proximal_mu > 0:
            anchor = [p.detach().clone() for p in self._module.parameters()]

            def regulariser(m: Any) -> Any:  # FedProx: mu/2 ||w - w_start||^2
                pairs = zip(m.parameters(), anchor, strict=True)
                return 0.5 * proximal_mu * sum(((p - a) ** 2).sum() for p, a in pairs)

        self.device = train.device
        return fit_torch(
            self._module,
            inputs,
            y,
            groups,
            train,
            n_classes=self.n_classes,
            fs_hz=fs_hz,
            on_progress=on_progress,
            regulariser=regulariser,
        )

    def predict_proba(self, inputs: Inputs, *, batch_size: int = 256) -> np.ndarray:
        from emgdx.training import predict_proba

        probs = predict_proba(self._module, inputs, batch_size=batch_size, device=self.device)
        return probs.astype(np.float64)

    def adapt(self, inputs: Inputs) -> str:
        from emgdx.training import adapt_batch_norm

        n = adapt_batch_norm(self._module, inputs, device=self.device)
        if n == 0:
            raise ConfigError(f"{self.name} has no batch norm to re-estimate on a new site")
        return f"batch-norm statistics of {n} layers re-estimated (AdaBN)"

    def get_state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().copy() for k, v in self._module.state_dict().items()}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        import torch

        own = self._module.state_dict()
        if set(own) != set(state):
            diff = sorted(set(own) ^ set(state))[:5]
            raise ConfigError(f"weights do not match the model (first differing keys: {diff})")
        self._module.load_state_dict(
            {k: torch.as_tensor(np.asarray(state[k])).to(own[k].dtype) for k in own}, strict=True
        )

    def local_state_keys(self) -> list[str]:
        from torch import nn

        keys: list[str] = []
        for name, sub in self._module.named_modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                keys += [f"{name}.{k}" for k in sub.state_dict()]
        return keys

    def save(self, path: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self._module.state_dict().items()}
        save_file(state, str(path), metadata={"format": "pt"})
        return {}

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        try:
            self._module.load_state_dict(load_file(str(path)), strict=True)
        except RuntimeError as exc:
            raise PipelineLoadError(f"{path}: weights do not fit the model: {exc}") from exc
        self._module.eval()


class SklearnAdapter(ModelAdapter):
    """A scikit-learn estimator on :func:`emgdx.models.classical.feature_matrix` of the inputs.

    Its state is its training features and targets (module docstring): loading refits.
    """

    backend = "sklearn"
    library = "sklearn"
    explanation = "feature_importance"
    has_weights = False

    def __init__(self, name: str, n_classes: int, estimator: Any) -> None:
        super().__init__(name, n_classes)
        self.estimator = estimator
        self._train: dict[str, np.ndarray] | None = None
        # Feature alignment to a new site (adapt): features * scale + shift; empty: none.
        self._align: dict[str, np.ndarray] = {}

    @staticmethod
    def features(inputs: Inputs) -> np.ndarray:
        from emgdx.models.classical import feature_matrix

        return feature_matrix(inputs)

    def fit(
        self, inputs: Inputs, y: np.ndarray, groups: np.ndarray, train: TrainConfig, **_: Any
    ) -> None:
        state = {"train_x": self.features(inputs), "train_y": np.asarray(y)}
        if train.balance == "subjects":
            from emgdx.tasks import subject_balanced_weights

            state["train_w"] = subject_balanced_weights(y, groups)
        self.set_state(state)

    def _fit_weighted(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> None:
        """Fit with per-window weights that already balance the classes, so the estimator's
        own class weighting is switched off (it would balance a second time)."""
        from sklearn.pipeline import Pipeline as SkPipeline

        est = self.estimator
        est.set_params(**{k: None for k in est.get_params() if k.endswith("class_weight")})
        # a scikit-learn Pipeline routes the weights to its last step by name
        last = f"{est.steps[-1][0]}__" if isinstance(est, SkPipeline) else ""
        est.fit(x, y, **{f"{last}sample_weight": w})

    def _proba(self, features: np.ndarray) -> np.ndarray:
        # A class absent from training has no column in sklearn's output: put it back as 0.
        raw = np.asarray(self.estimator.predict_proba(features), dtype=np.float64)
        out = np.zeros((raw.shape[0], self.n_classes))
        out[:, np.asarray(self.estimator.classes_, dtype=np.int64)] = raw
        return out

    def predict_proba(self, inputs: Inputs, *, batch_size: int = 256) -> np.ndarray:
        features = self.features(inputs)
        if self._align:
            features = features * self._align["align_scale"] + self._align["align_shift"]
        return self._proba(features)

    def adapt(self, inputs: Inputs) -> str:
        """Feature alignment: the new site's per-feature mean and spread are mapped onto the
        training data's (the classical counterpart of AdaBN)."""
        source = self.get_state()["train_x"].astype(np.float64)
        target = self.features(inputs).astype(np.float64)
        if len(target) < 2:
            raise ConfigError("feature alignment needs at least 2 windows of the new site")
        spread = target.std(axis=0)
        scale = np.where(spread > 0, source.std(axis=0) / np.where(spread > 0, spread, 1), 1.0)
        shift = source.mean(axis=0) - target.mean(axis=0) * scale
        self._align = {
            "align_scale": scale.astype(np.float32),
            "align_shift": shift.astype(np.float32),
        }
        return f"{target.shape[1]} features aligned to the training data's mean and spread"

    def get_state(self) -> dict[str, np.ndarray]:
        if self._train is None:
            raise ConfigError(f"{self.name} is not fitted")
        return {**self._train, **self._align}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        x = np.ascontiguousarray(state["train_x"], dtype=np.float32)
        y = np.ascontiguousarray(state["train_y"], dtype=np.int64)
        self._train = {"train_x": x, "train_y": y}
        if "train_w" in state:
            w = np.ascontiguousarray(state["train_w"], dtype=np.float64)
            self._train["train_w"] = w
            self._fit_weighted(x, y, w)
        else:
            self.estimator.fit(x, y)
        self._align = {
            k: np.asarray(state[k]) for k in ("align_scale", "align_shift") if k in state
        }

    def save(self, path: Path) -> dict[str, Any]:
        from safetensors.numpy import save_file

        state = self.get_state()
        x = state["train_x"]
        # The probe checks the refitted estimator itself, on unaligned training features.
        probe = np.linspace(0, len(x) - 1, num=min(_N_PROBE, len(x))).round().astype(np.int64)
        probs = np.ascontiguousarray(self._proba(x[probe]), dtype=np.float64)
        save_file({**state, "probe_index": probe, "probe_proba": probs}, str(path))
        return {"classical_storage": "refit-on-load"}

    def load(self, path: Path) -> None:
        from safetensors.numpy import load_file

        from emgdx.evaluation.cv import package_versions

        arrays = load_file(str(path))
        self.set_state(arrays)
        again = self._proba(arrays["train_x"][arrays["probe_index"]])
        diff = float(np.abs(again - arrays["probe_proba"]).max(initial=0.0))
        if diff > 1e-9:
            raise PipelineLoadError(
                f"{path}: the refitted {self.name} model does not reproduce the saved "
                f"probabilities (max difference {diff:.3g}); running {package_versions()}"
            )

    def feature_importance(
        self, method: str, inputs: Inputs | None = None, y: np.ndarray | None = None, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        if method == "model":
            est = self.estimator
            final = est[-1] if hasattr(est, "steps") else est
            if hasattr(final, "feature_importances_"):
                values = np.asarray(final.feature_importances_, dtype=np.float64)
            elif hasattr(final, "coef_"):
                values = np.abs(np.asarray(final.coef_, dtype=np.float64)).mean(axis=0)
            else:
                raise ConfigError(
                    f"{self.name} has no built-in importance; use method='permutation'"
                )
            return values, np.zeros_like(values)
        if method != "permutation":
            raise ConfigError(f"method must be 'permutation' or 'model', got {method!r}")
        from sklearn.inspection import permutation_importance

        if inputs is None or y is None or len(y) == 0:
            raise ConfigError("permutation importance needs labelled windows")
        result = permutation_importance(self.estimator, self.features(inputs), y, **options)
        return result.importances_mean, result.importances_std


def build_adapter(
    name: str,
    *,
    input_shapes: Mapping[str, tuple[int, ...]],
    n_classes: int,
    fs_hz: float,
    seed: int,
    params: Mapping[str, Any],
    device: str = "auto",
) -> ModelAdapter:
    """An unfitted adapter around the registered model ``name`` (seeded initialisation)."""
    model = build_model(
        name,
        input_shapes=dict(input_shapes),
        n_classes=n_classes,
        fs_hz=fs_hz,
        seed=seed,
        **params,
    )
    if MODELS[name].kind == "torch":
        return TorchAdapter(name, n_classes, model, device=device)
    return SklearnAdapter(name, n_classes, model)


# ---- ONNX ---------------------------------------------------------------------------------------


def onnx_available() -> bool:
    """Whether onnxruntime imports (the ``onnx`` extra is installed)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


class OnnxModel:
    """An onnxruntime session over one exported model, with torch-like batched prediction.

    Parameters
    ----------
    path
        The ``.onnx`` file.
    threads
        Intra-op threads; ``None``: as many as torch uses (``torch.get_num_threads()``), so
        switching backend does not change the machine's load.
    max_batch
        Most windows per session call whatever ``batch_size`` asks (see :data:`MAX_BATCH`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise DeployError(
                "the ONNX backend needs onnxruntime: pip install 'emgdx[onnx]'"
            ) from exc
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.input_names = tuple(node.name for node in self.session.get_inputs())
        self.max_batch = max_batch

    def logits(self, inputs: Inputs, *, batch_size: int = 256) -> np.ndarray:
        """Logits ``[n, n_classes]`` (float32), ``batch_size`` rows per session call."""
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ConfigError(f"{self.path.name} needs inputs {list(self.input_names)}")
        arrays = {name: np.asarray(inputs[name], dtype=np.float32) for name in self.input_names}
        n = len(next(iter(arrays.values())))
        if self.max_batch is not None:
            batch_size = min(batch_size, self.max_batch)
        out = []
        for start in range(0, n, max(1, batch_size)):
            feed = {
                name: np.ascontiguousarray(a[start : start + batch_size])
                for name, a in arrays.items()
            }
            out.append(np.asarray(self.session.run(["logits"], feed)[0]))
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    def predict_proba(self, inputs: Inputs, *, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``[n, n_classes]`` (float64), the softmax of :meth:`logits`."""
        return _softmax(self.logits(inputs, batch_size=batch_size).astype(np.float64))


class OnnxAdapter(ModelAdapter):
    """A torch model's forward pass run by onnxruntime; the torch model stays behind it for
    explanations, state and saving (the ONNX files belong to its weights)."""

    library = "pytorch"
    explanation = "attribution"
    has_weights = True

    def __init__(self, base: TorchAdapter, runtime: OnnxModel, backend: str) -> None:
        super().__init__(base.name, base.n_classes)
        self.base, self.runtime = base, runtime
        self.backend = backend  # type: ignore[misc]  # per instance: onnx or onnx-int8

    def predict_proba(self, inputs: Inputs, *, batch_size: int = 256) -> np.ndarray:
        return np.asarray(self.runtime.predict_proba(inputs, batch_size=batch_size))

    def native(self) -> ModelAdapter:
        return self.base

    def adapt(self, inputs: Inputs) -> str:
        raise ConfigError(
            "an exported ONNX model cannot adapt: load the pipeline with backend='torch', adapt "
            "it, then export it again"
        )

    @property
    def module(self) -> Any:
        return self.base.module

    @property
    def n_parameters(self) -> int:
        return self.base.n_parameters

    def get_state(self) -> dict[str, np.ndarray]:
        return self.base.get_state()

    def save(self, path: Path) -> dict[str, Any]:
        return self.base.save(path)


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``onnx.json`` of a saved pipeline folder, or ``None`` when there is none."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DeployError(f"{path}: not valid JSON: {exc}") from exc
    if (doc.get("format"), doc.get("format_version")) != ONNX_FORMAT:
        raise DeployError(f"{path}: unsupported format {doc.get('format')!r}")
    return dict(doc)


def _resolve_backend(folder: Path, backend: str, adapter: ModelAdapter) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if not isinstance(adapter, TorchAdapter):
        if backend in _ONNX_FILES:
            raise DeployError(f"backend {backend!r} is for torch models only")
        return adapter.backend
    if backend == "auto":
        has = (folder / ONNX_FILE).is_file() and (folder / MANIFEST_FILE).is_file()
        return "onnx" if has and onnx_available() else "torch"
    if backend in _ONNX_FILES:
        if not onnx_available():
            raise DeployError(f"backend {backend!r} needs onnxruntime: pip install 'emgdx[onnx]'")
        if not (folder / _ONNX_FILES[backend]).is_file():
            raise DeployError(
                f"{folder}: no {_ONNX_FILES[backend]} (run `emgdx export {folder} --onnx"
                + (" --int8`)" if backend == "onnx-int8" else "`)")
            )
    return backend


def attach_backend(
    adapter: ModelAdapter, folder: str | os.PathLike[str], backend: str, weights_sha256: str
) -> ModelAdapter:
    """``adapter`` run by the backend ``backend`` resolves to for ``folder``.

    ``"auto"``: ONNX when the folder has ``model.onnx`` and onnxruntime imports, else the
    model's own library; ``"onnx"`` / ``"onnx-int8"``: the exported files, checked.

    Raises
    ------
    PipelineLoadError
        The ONNX file's SHA-256 differs from ``onnx.json``, or it was exported from other
        weights than ``weights_sha256``.
    DeployError
        An explicitly requested ONNX backend without its file or without onnxruntime.
    """
    where = Path(folder)
    chosen = _resolve_backend(where, backend, adapter)
    if chosen not in _ONNX_FILES:
        return adapter
    assert isinstance(adapter, TorchAdapter)
    try:
        manifest = read_manifest(where)
    except DeployError as exc:
        raise PipelineLoadError(str(exc)) from exc
    if manifest is None:
        raise PipelineLoadError(f"{where}: no {MANIFEST_FILE} (export again with `emgdx export`)")
    path = where / _ONNX_FILES[chosen]
    entry = manifest.get("files", {}).get(chosen)
    if not isinstance(entry, dict):
        raise PipelineLoadError(f"{where}/{MANIFEST_FILE}: no entry for {path.name}")
    digest = sha256_file(path)
    if digest != entry.get("sha256"):
        raise PipelineLoadError(
            f"{path}: SHA-256 {digest[:12]}… differs from the one recorded in {MANIFEST_FILE}: "
            "the file was changed or corrupted"
        )
    if manifest.get("weights_sha256") != weights_sha256:
        raise PipelineLoadError(
            f"{path}: exported from other weights than {where / 'model.safetensors'}; "
            "export again with `emgdx export`"
        )
    return OnnxAdapter(adapter, OnnxModel(path, max_batch=MAX_BATCH[chosen]), chosen)
