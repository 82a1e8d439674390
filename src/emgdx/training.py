"""Training of torch models on windows, with a subject-wise inner validation split.

:func:`fit_torch` is the one training loop every torch model in emgdx goes through (cross-
validation, the CLI, federated clients). What it guarantees:

- the inner validation split used for early stopping holds out whole **subjects**, drawn from
  the training data it was given (so from the training fold only), stratified by class;
- class imbalance is handled by loss weights or by balanced sampling, fitted on the training
  part only;
- the model ends with the weights of its best validation epoch;
- given the same seed, a CPU run is reproducible (one CPU generator feeds shuffling, sampling
  and augmentation; no DataLoader worker processes).

The device is chosen with ``device="auto"``: CUDA when ``torch.cuda.is_available()``, else CPU.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import torch
from torch import nn

from emgdx.augment import Augmenter, augmentation_to_dict, expand_presets, make_augmentation
from emgdx.config import JsonConfig, ProgressCallback, check_fields, is_number, json_ready
from emgdx.errors import ConfigError, SignalError
from emgdx.evaluation.splits import inner_validation_split
from emgdx.tasks import subject_balanced_weights

__all__ = [
    "TrainConfig",
    "TrainResult",
    "adapt_batch_norm",
    "class_weights",
    "fit_torch",
    "predict_logits",
    "predict_proba",
    "resolve_device",
]

Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["none", "cosine", "plateau", "onecycle"]
Balance = Literal["none", "weights", "sampler", "subjects"]
Monitor = Literal["loss", "balanced_accuracy"]
Freeze = Literal["none", "features", "all_but_classifier"]


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """How a torch model is trained: one frozen, validated, JSON-serialisable value.

    Attributes
    ----------
    optimizer
        ``"adam"``, ``"adamw"`` or ``"sgd"`` (with ``momentum``, Nesterov).
    lr
        Peak learning rate.
    weight_decay
        L2 penalty (decoupled for ``"adamw"``).
    momentum
        SGD momentum (ignored by Adam).
    epochs
        Maximum number of passes over the training windows.
    batch_size
        Windows per optimisation step.
    schedule
        Learning-rate schedule: ``"cosine"`` (annealed to 0 over ``epochs``), ``"plateau"``
        (halved after ``plateau_patience`` epochs without validation improvement),
        ``"onecycle"`` (warm-up then anneal, stepped per batch) or ``"none"``.
    plateau_patience
        Epochs without improvement before ``"plateau"`` lowers the rate.
    patience
        Early stopping: stop after this many epochs without validation improvement (``None``
        or 0: never stop early; the best epoch is still restored when there is a validation
        split).
    val_fraction
        Fraction of the training *subjects* held out for validation (0: no validation split;
        all epochs run and the last weights are kept).
    monitor
        Validation quantity that picks the best epoch: ``"loss"`` (class-weighted cross-
        entropy, smooth) or ``"balanced_accuracy"`` (window level).
    balance
        ``"weights"``: loss weights ``n / (n_classes * n_c)``; ``"sampler"``: every epoch draws
        windows with probability inversely proportional to their class frequency;
        ``"subjects"``: every class and, within a class, every subject weighs the same however
        many windows it has (:func:`emgdx.tasks.subject_balanced_weights`: the sampler's
        probabilities for torch models, sample weights for classical ones); ``"none"``.
        Classical models balance classes themselves unless ``"subjects"`` is set.
    label_smoothing
        Cross-entropy label smoothing (0 = none).
    max_grad_norm
        Gradient clipping threshold (``None``: no clipping).
    windows_per_epoch
        Train each epoch on a fresh random subset of this many windows (``None``: all).
        Overlapping windows of one record are highly redundant; a subset per epoch gives more,
        cheaper epochs, so early stopping can look more often.
    augment
        Augmentation specs, applied in order to training batches only (see
        :mod:`emgdx.augment`): names, ``{"name": ..., **params}`` dicts, or preset names
        (``"acquisition"``, expanded into their chain).
    freeze
        Layers kept fixed while training (for fine-tuning a pretrained model, see
        ``Pipeline.fit(init_from=...)``): ``"none"``; ``"features"``: everything but the
        model's ``head`` (the classifier and its amplitude branch) is frozen;
        ``"all_but_classifier"``: only the final linear layer trains. Frozen layers get no
        optimiser state and run in eval mode during training, so their batch-norm statistics
        do not drift and their dropout is off.
    features_lr_scale
        Learning-rate multiplier for the trainable layers outside the ``head`` (e.g. 0.1 to
        fine-tune pretrained features gently while the head learns at ``lr``).
    seed
        Seed of the validation split, shuffling, sampling, dropout and augmentation (and, in
        :class:`~emgdx.pipeline.Pipeline`, of the weight initialisation). The caller's global
        torch random state is left as it was.
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    eval_batch_size
        Windows per forward pass at validation / prediction time.
    calibrate
        In :meth:`emgdx.pipeline.Pipeline.fit`: fit a temperature on held-out training
        subjects (:mod:`emgdx.calibration`) and describe the training distribution
        (:mod:`emgdx.ood`). Off only to save time in experiments that do not read them.
    """

    config_name: ClassVar[str] = "training config"

    optimizer: Optimizer = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    epochs: int = 30
    batch_size: int = 64
    schedule: Schedule = "cosine"
    plateau_patience: int = 3
    patience: int | None = 6
    val_fraction: float = 0.2
    monitor: Monitor = "loss"
    balance: Balance = "weights"
    label_smoothing: float = 0.0
    max_grad_norm: float | None = 5.0
    windows_per_epoch: int | None = None
    augment: tuple[Any, ...] = ()
    freeze: Freeze = "none"
    features_lr_scale: float = 1.0
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 256
    calibrate: bool = True

    def __post_init__(self) -> None:
        problems = check_fields(
            self,
            choices={
                "optimizer": get_args(Optimizer),
                "schedule": get_args(Schedule),
                "monitor": get_args(Monitor),
                "balance": get_args(Balance),
                "freeze": get_args(Freeze),
            },
            optional="patience windows_per_epoch max_grad_norm",
            positive="lr features_lr_scale max_grad_norm",
            non_negative="weight_decay momentum label_smoothing",
            positive_int="epochs batch_size eval_batch_size plateau_patience windows_per_epoch",
            non_negative_int="patience",
        )
        if is_number(self.label_smoothing) and self.label_smoothing >= 1:
            problems.append(f"label_smoothing must be < 1, got {self.label_smoothing!r}")
        if not is_number(self.val_fraction) or not 0 <= self.val_fraction < 1:
            problems.append(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if not isinstance(self.calibrate, bool):
            problems.append(f"calibrate must be true or false, got {self.calibrate!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            problems.append(f"seed must be an integer, got {self.seed!r}")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            problems.append(
                f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            )
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))
        # Normalise augmentation specs to JSON dicts (validates them too).
        try:
            specs = tuple(
                augmentation_to_dict(make_augmentation(s)) for s in expand_presets(self.augment)
            )
        except TypeError as exc:
            raise ConfigError(f"invalid training config: augment: {exc}") from exc
        object.__setattr__(self, "augment", specs)


@dataclass
class TrainResult:
    """What :func:`fit_torch` did.

    Attributes
    ----------
    history
        One dict per epoch: ``epoch`` (1-based), ``train_loss``, ``val_loss``,
        ``val_balanced_accuracy`` (NaN without validation), ``lr``, ``seconds``.
    best_epoch
        Epoch whose weights the model holds at the end (1-based).
    stopped_early
        Whether early stopping ended training before ``epochs``.
    train_subjects, val_subjects
        Subjects used for fitting and for validation (disjoint).
    n_train, n_val
        Windows in each part.
    class_weights
        Loss weights used (all 1 unless ``balance="weights"``).
    device
        Device the model was trained on.
    seconds
        Wall time of the whole fit.
    """

    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    train_subjects: list[str]
    val_subjects: list[str]
    n_train: int
    n_val: int
    class_weights: list[float]
    device: str
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> dict[str, float]:
        """The history row of :attr:`best_epoch`."""
        return self.history[self.best_epoch - 1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary without ``extra`` (NaN and infinity become ``None``)."""
        summary: dict[str, Any] = json_ready(asdict(self))
        del summary["extra"]
        return summary


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given.

    Raises
    ------
    ConfigError
        When CUDA is asked for but not available.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available")
    return torch.device(device)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced weights ``n / (n_classes * n_c)`` (0 for a class absent from ``y``)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w


def _to_tensors(inputs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    if "x" not in inputs:
        raise SignalError(f"model inputs need an 'x' entry, got {sorted(inputs)}")
    n = len(inputs["x"])
    out: dict[str, torch.Tensor] = {}
    for key, value in inputs.items():
        arr = np.ascontiguousarray(value, dtype=np.float32)
        if arr.shape[0] != n:
            raise SignalError(f"input {key!r} has {arr.shape[0]} rows, 'x' has {n}")
        if not np.isfinite(arr).all():
            raise SignalError(f"input {key!r} holds NaN or infinite values")
        out[key] = torch.from_numpy(arr)
    return out


def _forward(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["x"], batch.get("aux"))


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    inputs: Mapping[str, np.ndarray | torch.Tensor],
    *,
    batch_size: int = 256,
    device: str | torch.device = "auto",
) -> np.ndarray:
    """Logits ``[n, n_classes]`` of ``model`` in eval mode, computed in batches.

    Parameters
    ----------
    model
        A module whose ``forward(x, aux=None)`` returns logits.
    inputs
        ``{"x": ..., "aux": ...}`` arrays with windows on the first axis.
    batch_size
        Windows per forward pass (bounds memory).
    device
        Where to run (``"auto"``: CUDA when available).

    Returns
    -------
    numpy.ndarray
        float32 logits.
    """
    dev = resolve_device(device)
    tensors = {
        k: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.asarray(v, dtype=np.float32))
        for k, v in inputs.items()
    }
    was_training = model.training
    if was_training:
        model.eval()
    # Moving an already placed model still walks every parameter: skip it (live monitoring
    # predicts one window per call, where this and eval() were a third of the time).
    first = next(model.parameters(), None)
    if first is not None and first.device != dev:
        model.to(dev)
    n = tensors["x"].shape[0]
    parts: list[torch.Tensor] = []
    try:
        for start in range(0, n, batch_size):
            batch = {k: v[start : start + batch_size].to(dev) for k, v in tensors.items()}
            parts.append(_forward(model, batch).float().cpu())
    finally:
        if was_training:
            model.train(True)
    if not parts:
        # An empty input still needs the right number of columns: run one dummy window.
        dummy = {k: torch.zeros((1, *v.shape[1:]), device=dev) for k, v in tensors.items()}
        return np.zeros((0, int(_forward(model, dummy).shape[1])), dtype=np.float32)
    return torch.cat(parts).numpy()


@torch.no_grad()
def adapt_batch_norm(
    model: nn.Module,
    inputs: Mapping[str, np.ndarray],
    *,
    batch_size: int = 256,
    device: str | torch.device = "auto",
) -> int:
    """Re-estimate every batch-norm layer's statistics on ``inputs`` (AdaBN), nothing else.

    Unsupervised adaptation to a new site (Li et al., "Revisiting batch normalization for
    practical domain adaptation", 2016): the learnt weights stay, the normalisation statistics
    become the new site's, so that a shifted feature distribution (another amplifier, needle or
    filter) is re-centred before the classifier reads it. Only unlabelled windows are needed.
    The statistics are the cumulative average over batches (``momentum=None``); dropout stays
    off. Returns the number of batch-norm layers adapted (0 leaves the model as it was).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tensors = _to_tensors(inputs)
    n = tensors["x"].shape[0]
    if not norms or n == 0:
        return 0
    if n < 2:
        raise SignalError("batch-norm adaptation needs at least 2 windows")
    dev = resolve_device(device)
    model.to(dev).eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        # Batches of one window would have no variance: fold a lone last window into the
        # batch before it.
        starts = list(range(0, n, batch_size))
        if len(starts) > 1 and n - starts[-1] < 2:
            starts.pop()
        bounds = [*starts[1:], n]
        for start, stop in zip(starts, bounds, strict=True):
            _forward(model, {k: v[start:stop].to(dev) for k, v in tensors.items()})
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    return len(norms)


def predict_proba(
    model: nn.Module,
    inputs: Mapping[str, np.ndarray | torch.Tensor],
    *,
    batch_size: int = 256,
    device: str | torch.device = "auto",
) -> np.ndarray:
    """Class probabilities ``[n, n_classes]`` (softmax of :func:`predict_logits`)."""
    logits = predict_logits(model, inputs, batch_size=batch_size, device=device)
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    recalls = [np.mean(pred[y == c] == c) for c in range(n_classes) if np.any(y == c)]
    return float(np.mean(recalls)) if recalls else float("nan")


def _freeze(model: nn.Module, freeze: Freeze) -> list[nn.Module]:
    """Freeze what ``freeze`` names (``requires_grad=False``); returns the frozen leaf modules."""
    if freeze == "none":
        return []
    from emgdx.models import trainable_part

    keep = {id(m) for m in trainable_part(model, freeze).modules()}
    frozen = [m for m in model.modules() if not any(m.children()) and id(m) not in keep]
    for module in frozen:
        for p in module.parameters(recurse=False):
            p.requires_grad_(False)
    return frozen


def _param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Trainable parameters only; those outside the head at ``lr * features_lr_scale``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.features_lr_scale == 1.0:
        return [{"params": params, "lr": cfg.lr}]
    from emgdx.models import trainable_part

    head = {id(p) for p in trainable_part(model, "features").parameters()}
    groups = [
        {"params": [p for p in params if id(p) in head], "lr": cfg.lr},
        {"params": [p for p in params if id(p) not in head], "lr": cfg.lr * cfg.features_lr_scale},
    ]
    return [g for g in groups if g["params"]]


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = _param_groups(model, cfg)
    if cfg.optimizer != "sgd":
        adam = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        return adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.momentum > 0,
    )


@contextlib.contextmanager
def _fit_scope(
    model: nn.Module, cfg: TrainConfig, device: torch.device
) -> Iterator[list[nn.Module]]:
    """Freeze what ``cfg.freeze`` names and seed torch's global generator, for one fit only."""
    # Dropout draws from torch's global generator: seed it for this fit only (restored after),
    # so that a fit is reproducible without changing the caller's random state.
    fork = [device.index or 0] if device.type == "cuda" else []
    was_trainable = [p.requires_grad for p in model.parameters()]
    try:
        with torch.random.fork_rng(devices=fork):
            torch.manual_seed(cfg.seed)
            yield _freeze(model, cfg.freeze)
    finally:
        # Frozen for this fit only: the model comes back as trainable as it was given.
        for p, flag in zip(model.parameters(), was_trainable, strict=True):
            p.requires_grad_(flag)


def fit_torch(
    model: nn.Module,
    inputs: Mapping[str, np.ndarray],
    y: np.ndarray | Sequence[int],
    groups: np.ndarray | Sequence[Any],
    config: TrainConfig | None = None,
    *,
    n_classes: int | None = None,
    fs_hz: float | None = None,
    on_progress: ProgressCallback | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    regulariser: Callable[[nn.Module], torch.Tensor] | None = None,
) -> TrainResult:
    """Train ``model`` in place on windows, early-stopping on held-out training subjects.

    Parameters
    ----------
    model
        ``nn.Module`` with ``forward(x, aux=None) -> logits [n, n_classes]``. For a
        reproducible run, initialise its weights from a seed too (``build_model(seed=...)``).
    inputs
        Representation output: ``{"x": [n, ...]}`` plus optionally ``{"aux": [n, k]}``.
    y
        Integer targets ``[n]`` (see :func:`emgdx.tasks.encode_labels`).
    groups
        Subject id of every window; the validation split holds out whole subjects.
    config
        Training settings (defaults when ``None``).
    n_classes
        Number of classes (default: ``max(y) + 1``; pass it when a class may be absent).
    fs_hz
        Sampling rate of waveform inputs; needed by frequency-domain augmentations.
    on_progress
        ``on_progress(epoch, epochs)`` after every epoch (drives a progress bar); after an
        early stop once more as ``(epochs run, epochs run)``.
    on_epoch
        Called with each epoch's history row (for logging).
    regulariser
        Optional ``regulariser(model) -> scalar tensor`` added to every batch's loss (e.g.
        FedProx's proximal term, :mod:`emgdx.federated`).

    Returns
    -------
    TrainResult
        History, best epoch and the split; the model holds the best epoch's weights and is
        left in eval mode.

    Raises
    ------
    SignalError
        Inputs, targets and groups disagree in length, or inputs are not finite.
    ConfigError
        An augmentation does not fit the input kind, or CUDA is asked for but absent.
    """
    cfg = config or TrainConfig()
    t0 = time.perf_counter()
    tensors = _to_tensors(inputs)
    yy = np.asarray(y, dtype=np.int64)
    g = np.asarray(groups)
    n = tensors["x"].shape[0]
    if yy.shape != (n,) or g.shape != (n,):
        raise SignalError(f"{n} windows but {yy.shape[0]} targets and {g.shape[0]} subject ids")
    if n == 0:
        raise SignalError("no training windows")
    if yy.min() < 0:
        raise SignalError("targets must be >= 0 (drop unlabelled windows with encode_labels)")
    k = int(n_classes if n_classes is not None else yy.max() + 1)
    if yy.max() >= k:
        raise SignalError(f"target {int(yy.max())} out of range for {k} classes")

    device = resolve_device(cfg.device)
    with _fit_scope(model, cfg, device) as frozen:
        augmenter = Augmenter(cfg.augment, fs_hz=fs_hz, seed=cfg.seed + 1)
        augmenter.check(tensors["x"].ndim)
        gen = torch.Generator().manual_seed(cfg.seed)

        train_idx, val_idx = np.arange(n), np.zeros(0, dtype=np.int64)
        if cfg.val_fraction > 0 and np.unique(g).size >= 2:
            tr, va = inner_validation_split(g, yy, cfg.val_fraction, cfg.seed)
            # With a single subject in some class, a validation split could take away all of that
            # class's training data; then it is better to train on everything without one.
            if set(np.unique(yy[tr])) == set(np.unique(yy)):
                train_idx, val_idx = tr, va
        has_val = val_idx.size > 0
        y_train = yy[train_idx]
        balanced = class_weights(y_train, k)
        weights = balanced if cfg.balance == "weights" else np.ones(k)
        loss_fn = nn.CrossEntropyLoss(
            weight=torch.tensor(weights, dtype=torch.float32, device=device),
            label_smoothing=float(cfg.label_smoothing),
        )
        # Validation loss is class-weighted whenever training is balanced (by weights or by the
        # sampler), so that monitoring "loss" favours balanced performance, not the majority class.
        val_weights = balanced if cfg.balance != "none" else np.ones(k)
        val_loss_fn = nn.CrossEntropyLoss(
            weight=torch.tensor(val_weights, dtype=torch.float32, device=device)
        )
        sample_p: torch.Tensor | None = None
        if cfg.balance == "sampler":
            sample_p = torch.tensor(balanced[y_train], dtype=torch.float64)
        elif cfg.balance == "subjects":
            by_subject = subject_balanced_weights(y_train, g[train_idx])
            sample_p = torch.tensor(by_subject, dtype=torch.float64)

        model.to(device)
        opt = _make_optimizer(model, cfg)
        per_epoch = min(train_idx.size, cfg.windows_per_epoch or train_idx.size)
        scheduler: Any = None
        if cfg.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
        elif cfg.schedule == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=0.5, patience=cfg.plateau_patience
            )
        elif cfg.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                opt,
                max_lr=[g["lr"] for g in opt.param_groups],
                epochs=cfg.epochs,
                steps_per_epoch=math.ceil(per_epoch / cfg.batch_size),
            )

        train_t = {key: v[torch.from_numpy(train_idx)] for key, v in tensors.items()}
        y_train_t = torch.from_numpy(y_train)
        val_inputs = {key: v[torch.from_numpy(val_idx)] for key, v in tensors.items()}
        y_val = yy[val_idx]

        history: list[dict[str, float]] = []
        best_score = math.inf
        best_epoch = 0
        best_state: dict[str, torch.Tensor] | None = None
        since_best = 0
        stopped_early = False
        for epoch in range(1, cfg.epochs + 1):
            e0 = time.perf_counter()
            model.train()
            for module in frozen:
                module.eval()  # frozen batch norm keeps its running statistics
            if sample_p is not None:
                order = torch.multinomial(sample_p, per_epoch, replacement=True, generator=gen)
            else:
                order = torch.randperm(train_idx.size, generator=gen)[:per_epoch]
            total_loss = 0.0
            seen = 0
            lr_now = opt.param_groups[0]["lr"]
            for start in range(0, per_epoch, cfg.batch_size):
                sel = order[start : start + cfg.batch_size]
                if sel.numel() < 2 and train_idx.size >= 2:
                    continue  # batch norm cannot train on a single window
                batch = {key: v[sel].to(device) for key, v in train_t.items()}
                if len(augmenter):
                    batch = augmenter(batch)
                target = y_train_t[sel].to(device)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(_forward(model, batch), target)
                if regulariser is not None:
                    loss = loss + regulariser(model)
                loss.backward()
                if cfg.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                opt.step()
                if cfg.schedule == "onecycle":
                    scheduler.step()
                total_loss += float(loss.detach()) * sel.numel()
                seen += sel.numel()
            row: dict[str, float] = {
                "epoch": float(epoch),
                "train_loss": total_loss / max(1, seen),
                "val_loss": float("nan"),
                "val_balanced_accuracy": float("nan"),
                "lr": float(lr_now),
            }
            if has_val:
                logits = torch.from_numpy(
                    predict_logits(model, val_inputs, batch_size=cfg.eval_batch_size, device=device)
                ).to(device)
                row["val_loss"] = float(val_loss_fn(logits, torch.from_numpy(y_val).to(device)))
                pred = logits.argmax(dim=1).cpu().numpy()
                row["val_balanced_accuracy"] = _balanced_accuracy(y_val, pred, k)
                score = row["val_loss"] if cfg.monitor == "loss" else -row["val_balanced_accuracy"]
                if score < best_score:
                    best_score, best_epoch, since_best = score, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    since_best += 1
            else:
                best_epoch = epoch
            if cfg.schedule == "cosine":
                scheduler.step()
            elif cfg.schedule == "plateau":
                # Without validation, plateau follows the training loss.
                scheduler.step(row["val_loss"] if has_val else row["train_loss"])
            row["seconds"] = time.perf_counter() - e0
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)
            if on_progress is not None:
                on_progress(epoch, cfg.epochs)
            if has_val and cfg.patience and since_best >= cfg.patience:
                stopped_early = epoch < cfg.epochs
                break
        if stopped_early and on_progress is not None:
            # Finish a progress bar at the epochs that ran (12/12), not at a jump to 30/30.
            on_progress(len(history), len(history))
        if best_state is not None:
            model.load_state_dict(best_state)
        elif has_val:
            best_epoch = len(history)  # validation never gave a finite score: keep the last epoch
        model.eval()
        return TrainResult(
            history=history,
            best_epoch=best_epoch,
            stopped_early=stopped_early,
            train_subjects=sorted({str(s) for s in g[train_idx]}),
            val_subjects=sorted({str(s) for s in g[val_idx]}),
            n_train=int(train_idx.size),
            n_val=int(val_idx.size),
            class_weights=[float(w) for w in weights],
            device=str(device),
            seconds=time.perf_counter() - t0,
            extra={"frozen_parameters": sum(p.numel() for m in frozen for p in m.parameters())}
            if frozen
            else {},
        )
