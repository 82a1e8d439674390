"""Models: 1-D/2-D CNNs, a CNN-LSTM and classical baselines, behind one registry.

Every model is registered in :data:`MODELS` with the representation it expects, and built by
:func:`build_model` from the representation's input shapes (no batch dimension), the number of
classes and the sampling rate, plus model-specific keyword parameters. :func:`summary_table`
lists them with their parameter counts (as braindecode's model table does).

Torch models are :class:`torch.nn.Module` whose ``forward(x, aux=None)`` returns logits
``[n, n_classes]`` (softmax is applied by whoever turns them into probabilities); ``aux`` is
an optional ``[n, k]`` tensor of scalars (e.g. log10 RMS amplitude) that enters through a small
MLP joined before the classifier. Classical models are unfitted scikit-learn estimators with
``fit(X, y)`` / ``predict_proba(X)`` on ``X`` from :func:`~emgdx.models.classical.feature_matrix`.

Importing this package does not import torch or scikit-learn; building a model does.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import pandas as pd

from emgdx.errors import ConfigError

if TYPE_CHECKING:
    from emgdx.models.cnn1d import CNN1D
    from emgdx.models.cnn2d import CNN2D
    from emgdx.models.cnn_lstm import CNNLSTM

__all__ = [
    "CNN1D",
    "CNN2D",
    "CNNLSTM",
    "MODELS",
    "REFERENCE_FS_HZ",
    "REFERENCE_N_TIMES",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "is_torch_model",
    "model_names",
    "reference_input_shapes",
    "summary_table",
    "trainable_part",
]

ModelKind = Literal["torch", "classical"]
InputKind = Literal["raw", "stft", "cwt", "features"]
InputShapes = Mapping[str, Sequence[int]]


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    Attributes
    ----------
    name
        Registry key (``"cnn1d"``, ``"svm"``, ...).
    kind
        ``"torch"`` (an ``nn.Module``) or ``"classical"`` (a scikit-learn estimator).
    input
        The representation it consumes: ``"raw"``, ``"stft"``, ``"cwt"`` or ``"features"``.
    build
        ``build(*, input_shapes, n_classes, fs_hz, **params)`` returning the unfitted model;
        call it through :func:`build_model`, which validates ``params`` and applies the seed.
    description
        One line for tables and ``--help``.
    """

    name: str
    kind: ModelKind
    input: InputKind
    build: Callable[..., Any]
    description: str

    def parameters(self) -> dict[str, Any]:
        """The model-specific keyword parameters and their defaults."""
        return _model_parameters(self)


def _shape_of(input_shapes: InputShapes, name: str, ndim: int, model: str) -> tuple[int, ...]:
    """The shape of input ``name`` (without the batch dimension), checked to have ``ndim`` dims.

    Raises
    ------
    ConfigError
        When the input is missing or has the wrong number of dimensions.
    """
    if name not in input_shapes:
        raise ConfigError(f"{model} needs input {name!r}; got inputs {sorted(input_shapes)}")
    shape = tuple(int(s) for s in input_shapes[name])
    if len(shape) != ndim or any(s <= 0 for s in shape):
        raise ConfigError(
            f"{model} needs input {name!r} with {ndim} positive dims (no batch dim), got {shape}"
        )
    return shape


def _n_aux(input_shapes: InputShapes, model: str) -> int:
    if input_shapes.get("aux") is None:
        return 0
    shape = tuple(int(s) for s in input_shapes["aux"])
    if len(shape) != 1:
        raise ConfigError(f"{model}: aux must be a vector of scalars (shape (k,)), got {shape}")
    return shape[0]


# Where each torch model's class lives, imported on demand (keeps torch out of the import).
_TORCH_CLASSES = {
    "cnn1d": ("emgdx.models.cnn1d", "CNN1D"),
    "cnn2d_stft": ("emgdx.models.cnn2d", "CNN2D"),
    "cnn2d_cwt": ("emgdx.models.cnn2d", "CNN2D"),
    "cnn_lstm": ("emgdx.models.cnn_lstm", "CNNLSTM"),
}


def _torch_class(name: str) -> Callable[..., Any]:
    module, attr = _TORCH_CLASSES[name]
    return cast("Callable[..., Any]", getattr(importlib.import_module(module), attr))


def _build_torch(name: str, ndim: int) -> Callable[..., Any]:
    """Builder of the torch model ``name`` on an ``x`` of ``ndim`` dims: a waveform's
    ``(n_chans, n_times)`` goes in as two arguments, an image's shape as one."""

    def build(*, input_shapes: InputShapes, n_classes: int, fs_hz: float, **params: Any) -> Any:
        shape = _shape_of(input_shapes, "x", ndim, name)
        args = shape if ndim == 2 else (shape,)
        return _torch_class(name)(*args, fs_hz, n_classes, _n_aux(input_shapes, name), **params)

    return build


def _build_classical(name: str) -> Callable[..., Any]:
    def build(*, input_shapes: InputShapes, n_classes: int, fs_hz: float, **params: Any) -> Any:
        from emgdx.models.classical import CLASSICAL_BUILDERS

        _shape_of(input_shapes, "x", 1, name)  # a feature vector per window, nothing else
        _n_aux(input_shapes, name)
        return CLASSICAL_BUILDERS[name](**params)

    return build


#: The model registry: name -> :class:`ModelSpec`.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "cnn1d",
            "torch",
            "raw",
            _build_torch("cnn1d", 2),
            "1-D CNN (strided first conv, 4 blocks, avg+max pool) on raw windows",
        ),
        ModelSpec(
            "cnn2d_stft",
            "torch",
            "stft",
            _build_torch("cnn2d_stft", 3),
            "2-D CNN (4 small conv blocks, avg+max pool) on log-STFT spectrograms",
        ),
        ModelSpec(
            "cnn2d_cwt",
            "torch",
            "cwt",
            _build_torch("cnn2d_cwt", 3),
            "2-D CNN (4 small conv blocks, avg+max pool) on Morlet CWT scalograms",
        ),
        ModelSpec(
            "cnn_lstm",
            "torch",
            "raw",
            _build_torch("cnn_lstm", 2),
            "1-D conv front end + bidirectional LSTM over time on raw windows",
        ),
        ModelSpec(
            "svm",
            "classical",
            "features",
            _build_classical("svm"),
            "RBF SVM on standardised features, class-balanced, Platt probabilities",
        ),
        ModelSpec(
            "random_forest",
            "classical",
            "features",
            _build_classical("random_forest"),
            "Random forest (300 trees), class-balanced",
        ),
        ModelSpec(
            "gradient_boosting",
            "classical",
            "features",
            _build_classical("gradient_boosting"),
            "Histogram gradient boosting, class-balanced",
        ),
        ModelSpec(
            "bagging",
            "classical",
            "features",
            _build_classical("bagging"),
            "Bagged class-balanced decision trees",
        ),
        ModelSpec(
            "adaboost",
            "classical",
            "features",
            _build_classical("adaboost"),
            "AdaBoost on shallow class-balanced trees",
        ),
    )
}

#: Reference setting for :func:`summary_table`: the default preprocessing rate (6 kHz)...
REFERENCE_FS_HZ: float = 6000.0
#: ... and its default 1 s windows.
REFERENCE_N_TIMES: int = 6000


def reference_input_shapes(
    n_times: int = REFERENCE_N_TIMES, fs_hz: float = REFERENCE_FS_HZ
) -> dict[str, dict[str, tuple[int, ...]]]:
    """Input shapes of every representation with its default parameters (no batch dim).

    Parameters
    ----------
    n_times
        Samples per window.
    fs_hz
        Sampling rate of the windows.

    Returns
    -------
    dict
        ``{"raw": {"x": (1, n_times), "aux": (1,)}, "stft": {...}, ...}``, from each
        representation's ``output_shape``.
    """
    from emgdx.represent import REPRESENTATIONS, make_representation

    return {
        name: {
            k: tuple(v) for k, v in make_representation(name).output_shape(n_times, fs_hz).items()
        }
        for name in REPRESENTATIONS
    }


# Which spec keywords are filled by build_model itself (not model parameters).
_CONTEXT_ARGS = {"n_chans", "n_times", "input_shape", "fs_hz", "n_classes", "n_aux", "seed"}


def model_names(kind: ModelKind | None = None, input: InputKind | None = None) -> list[str]:
    """Registered model names, optionally only of one ``kind`` and/or ``input``."""
    return [
        name
        for name, spec in MODELS.items()
        if (kind is None or spec.kind == kind) and (input is None or spec.input == input)
    ]


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {list(MODELS)}")
    return MODELS[name]


def _target(spec: ModelSpec) -> Callable[..., Any]:
    """The constructor/builder whose keyword parameters the user may set."""
    if spec.kind == "classical":
        from emgdx.models.classical import CLASSICAL_BUILDERS

        return CLASSICAL_BUILDERS[spec.name]
    return _torch_class(spec.name)


def _model_parameters(spec: ModelSpec) -> dict[str, Any]:
    params = inspect.signature(_target(spec)).parameters
    return {
        name: p.default
        for name, p in params.items()
        if name not in _CONTEXT_ARGS and name != "self" and p.default is not inspect.Parameter.empty
    }


def build_model(
    name: str,
    *,
    input_shapes: InputShapes,
    n_classes: int,
    fs_hz: float,
    seed: int = 0,
    **params: Any,
) -> Any:
    """Build an unfitted model from the registry.

    Parameters
    ----------
    name
        A key of :data:`MODELS`.
    input_shapes
        Shape of each named input without the batch dimension, as the representation's
        ``output_shape`` gives it: e.g. ``{"x": (1, 6000), "aux": (1,)}`` for raw windows.
        An ``aux`` entry gives torch models an amplitude branch; classical models do not use
        the shapes beyond checking that ``x`` is a feature vector.
    n_classes
        Number of classes (see :func:`emgdx.tasks.n_classes`); at least 2.
    fs_hz
        Sampling rate of the windows the inputs were computed from.
    seed
        Torch models: seeds the weight initialisation (without touching the global RNG);
        classical models: ``random_state`` (ignored by the deterministic SVM).
    **params
        Model-specific parameters (see ``MODELS[name].parameters()``).

    Returns
    -------
    torch.nn.Module or sklearn estimator

    Raises
    ------
    ConfigError
        Unknown model or parameter, wrong input shapes, invalid values.
    """
    spec = _spec(name)
    if int(n_classes) < 2:
        raise ConfigError(f"n_classes must be >= 2, got {n_classes}")
    if not fs_hz or fs_hz <= 0:
        raise ConfigError(f"fs_hz must be > 0, got {fs_hz}")
    allowed = _model_parameters(spec)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {unknown} for model {name!r}; allowed: {sorted(allowed)}"
        )
    kwargs = {
        "input_shapes": input_shapes,
        "n_classes": int(n_classes),
        "fs_hz": float(fs_hz),
        **params,
    }
    try:
        if spec.kind == "classical":
            # seed -> random_state where the estimator has randomness (the SVM has none)
            if "seed" in inspect.signature(_target(spec)).parameters:
                kwargs["seed"] = seed
            return spec.build(**kwargs)
        import torch

        # fork_rng: a seeded, reproducible initialisation that leaves the caller's RNG alone
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return spec.build(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid parameters for model {name!r}: {exc}") from exc


def is_torch_model(name: str) -> bool:
    """Whether the registered model ``name`` is a torch model (else classical)."""
    return _spec(name).kind == "torch"


def trainable_part(model: Any, freeze: str) -> Any:
    """The submodule that stays trainable under ``TrainConfig.freeze`` (for fine-tuning).

    Every torch model here ends in ``model.head`` (:class:`~emgdx.models._common.AuxHead`):
    the amplitude branch and the classifier; everything before it is the "features".
    ``"features"`` keeps ``model.head`` trainable, ``"all_but_classifier"`` only
    ``model.head.classifier`` (dropout + the final linear layer).

    Raises
    ------
    ConfigError
        When ``model`` has no such head or ``freeze`` is not one of those names.
    """
    from emgdx.models._common import AuxHead

    head = getattr(model, "head", None)
    if not isinstance(head, AuxHead):
        raise ConfigError(
            f"cannot freeze layers of {type(model).__name__}: it has no 'head' (AuxHead) "
            "separating the classifier from the features"
        )
    if freeze == "features":
        return head
    if freeze == "all_but_classifier":
        return head.classifier
    raise ConfigError(f"freeze must be 'features' or 'all_but_classifier', got {freeze!r}")


def count_parameters(model: Any) -> int:
    """Trainable parameters of a torch model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def summary_table(
    input_shapes_by_input: Mapping[str, InputShapes] | None = None,
    n_classes: int = 3,
    fs_hz: float = REFERENCE_FS_HZ,
) -> pd.DataFrame:
    """One row per registered model: name, kind, input, input shapes, parameter count.

    Parameters
    ----------
    input_shapes_by_input
        Input shapes per representation name (``"raw"``, ``"stft"``, ...); defaults to
        :func:`reference_input_shapes` (default representations of 1 s windows at
        :data:`REFERENCE_FS_HZ`). Models whose representation is missing from the mapping are
        listed with no parameter count.
    n_classes
        Number of classes the models are built for.
    fs_hz
        Sampling rate used to build the torch models (their kernels are set in ms).

    Returns
    -------
    pandas.DataFrame
        Columns ``name, kind, input, input_shapes, n_parameters, description``;
        ``n_parameters`` is missing (``<NA>``) for classical models, whose size depends on
        the data they are fitted on.
    """
    shapes_by_input = input_shapes_by_input
    if shapes_by_input is None:
        shapes_by_input = reference_input_shapes(REFERENCE_N_TIMES, fs_hz)
    rows = []
    for name, spec in MODELS.items():
        shapes = shapes_by_input.get(spec.input)
        n_params: int | None = None
        if spec.kind == "torch" and shapes is not None:
            model = build_model(name, input_shapes=shapes, n_classes=n_classes, fs_hz=fs_hz)
            n_params = count_parameters(model)
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "input": spec.input,
                "input_shapes": (
                    ", ".join(f"{k}={tuple(v)}" for k, v in shapes.items()) if shapes else ""
                ),
                "n_parameters": n_params,
                "description": spec.description,
            }
        )
    table = pd.DataFrame(rows)
    table["n_parameters"] = table["n_parameters"].astype("Int64")
    return table


def __getattr__(name: str) -> Any:
    # model classes on demand, so that `import emgdx.models` does not import torch
    for model, (_, attr) in _TORCH_CLASSES.items():
        if attr == name:
            return _torch_class(model)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
