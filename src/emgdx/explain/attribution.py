"""Attributions of torch models (captum) and feature importance of classical models."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd

from emgdx.errors import ConfigError, SignalError, require
from emgdx.recording import Recording, Windows

if TYPE_CHECKING:
    import torch
    from torch import nn

    from emgdx.pipeline import Pipeline

Method = Literal["saliency", "integrated_gradients", "gradcam", "occlusion"]

#: Attribution methods for torch models and what they show.
METHODS: dict[str, str] = {
    "saliency": "absolute input gradient of the target logit",
    "integrated_gradients": "integrated gradients from a baseline (signed)",
    "gradcam": "Grad-CAM of the last convolutional block, upsampled to the input",
    "occlusion": "target-logit drop when a patch is replaced by the baseline (signed)",
}

#: Methods whose values are signed (positive = evidence for the target class).
SIGNED = frozenset({"integrated_gradients", "occlusion"})


def _captum_attr() -> Any:
    return require("captum.attr", "explanations of torch models")


# --------------------------------------------------------------------------- containers


@dataclass
class Attribution:
    """Attributions of a set of windows, each for one target class.

    Attributes
    ----------
    method
        One of :data:`METHODS`.
    class_names
        The pipeline's classes; ``target`` indexes them.
    target
        ``[n]`` target class per window.
    probs
        ``[n, n_classes]`` model probabilities of the unperturbed windows.
    inputs
        ``[n, C, ...]`` model input ``x`` the attributions refer to (normalised waveform or
        time-frequency image).
    values
        Attributions, same shape as ``inputs``.
    time_profile
        ``[n, n_times]`` attributions projected onto each window's samples (images: summed over
        frequency rows, then interpolated from column centres to samples).
    aux_values
        ``[n, n_aux]`` attributions of the amplitude side input (None when the model has none
        or the method cannot attribute it, i.e. Grad-CAM).
    fs_hz
        Sampling rate of the windows.
    index
        The windows' index table.
    representation
        ``"raw"``, ``"stft"`` or ``"cwt"``.
    image_times_s, image_freqs_hz
        For images: centre time (s, within the window) of each column and frequency of each
        row; None for waveform inputs.
    """

    method: str
    class_names: tuple[str, ...]
    target: np.ndarray
    probs: np.ndarray
    inputs: np.ndarray
    values: np.ndarray
    time_profile: np.ndarray
    aux_values: np.ndarray | None
    fs_hz: float
    index: pd.DataFrame
    representation: str
    image_times_s: np.ndarray | None = None
    image_freqs_hz: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.target.shape[0])

    @property
    def signed(self) -> bool:
        return self.method in SIGNED

    def evidence(self) -> np.ndarray:
        """``time_profile`` as evidence for the target: positive part (unsigned methods as is)."""
        return np.clip(self.time_profile, 0.0, None) if self.signed else self.time_profile


@dataclass
class RecordAttribution:
    """One record's explanation, stitched over its overlapping windows.

    Attributes
    ----------
    record_id
        The record.
    method
        Attribution method.
    target, target_name
        The class explained (the record's predicted class unless asked otherwise).
    record_probs
        ``{class: probability}`` of the record (mean over its windows).
    fs_hz
        Rate of ``signal`` / ``attribution`` (the pipeline's working rate).
    time_s
        Time of each sample from the start of the preprocessed record, in s.
    signal
        Preprocessed signal (µV) over the span the windows cover (NaN in gaps).
    attribution
        Per-sample attribution averaged over the windows covering it (NaN in gaps).
    windows
        The per-window :class:`Attribution`.
    window_starts_s
        Start of each window, in s.
    """

    record_id: str
    method: str
    target: int
    target_name: str
    record_probs: dict[str, float]
    fs_hz: float
    time_s: np.ndarray
    signal: np.ndarray
    attribution: np.ndarray
    windows: Attribution
    window_starts_s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def evidence(self) -> np.ndarray:
        """Per-sample evidence for the target (positive part for signed methods)."""
        a = np.nan_to_num(self.attribution, nan=0.0)
        return np.clip(a, 0.0, None) if self.windows.signed else a


# --------------------------------------------------------------------------- helpers


def _torch_module(pipeline: Pipeline) -> nn.Module:
    """The pipeline's differentiable model, on the CPU in eval mode (raises for others)."""
    if pipeline.model_ is None:
        raise ConfigError("explain needs a fitted pipeline (fit() or Pipeline.load())")
    return cast("nn.Module", pipeline.model_.module.to("cpu").eval())


def _cam_layer(model: nn.Module) -> nn.Module:
    """The last convolutional block: where Grad-CAM looks."""
    for name in ("features", "frontend"):
        body = getattr(model, name, None)
        if body is not None and len(body):
            return body[-1]
    raise ConfigError(f"{type(model).__name__} has no convolutional body for Grad-CAM")


def _aux_baseline(model: nn.Module, aux: torch.Tensor) -> torch.Tensor:
    """Training mean of the amplitude scalars (the aux batch norm's running mean)."""
    head = getattr(model, "head", None)
    branch = getattr(head, "aux", None)
    if branch is not None and hasattr(branch[0], "running_mean"):
        mean = branch[0].running_mean.detach().to(aux.dtype)
        return mean.expand_as(aux).clone()
    return aux.mean(dim=0, keepdim=True).expand_as(aux).clone()


def _image_baseline(x: torch.Tensor) -> torch.Tensor:
    """Each frequency row's time average: the image without its temporal structure."""
    return x.mean(dim=-1, keepdim=True).expand_as(x).clone()


def _baseline(x: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.zeros_like(x) if x.dim() == 3 else _image_baseline(x)


def _targets(
    target: str | int | Sequence[int] | np.ndarray | None,
    probs: np.ndarray,
    class_names: Sequence[str],
) -> np.ndarray:
    n = probs.shape[0]
    if target is None or (isinstance(target, str) and target == "predicted"):
        return probs.argmax(axis=1).astype(np.int64)
    if isinstance(target, str):
        if target not in class_names:
            raise ConfigError(f"unknown target class {target!r}; classes: {list(class_names)}")
        return np.full(n, list(class_names).index(target), dtype=np.int64)
    arr = np.broadcast_to(np.asarray(target, dtype=np.int64), (n,)).copy()
    if arr.size and (arr.min() < 0 or arr.max() >= len(class_names)):
        raise ConfigError(f"target indices must be in [0, {len(class_names)})")
    return arr


def _time_profile(
    values: np.ndarray, n_times: int, fs_hz: float, column_times_s: np.ndarray | None
) -> np.ndarray:
    """Per-sample attribution of each window: channels summed; images also over frequency."""
    if values.ndim == 3:  # [n, C, T]
        return values.sum(axis=1).astype(np.float64)
    per_column = values.sum(axis=(1, 2)).astype(np.float64)  # [n, cols]
    assert column_times_s is not None
    # Column mass spread evenly over the samples between column centres.
    t = np.arange(n_times) / fs_hz
    scale = per_column.shape[1] / n_times
    return np.stack([np.interp(t, column_times_s, row) * scale for row in per_column])


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


# --------------------------------------------------------------------------- torch attributions


def _attribute_batch(
    method: Method,
    model: nn.Module,
    x: torch.Tensor,
    aux: torch.Tensor | None,
    target: torch.Tensor,
    *,
    n_steps: int,
    occlusion_ms: float,
    fs_hz: float,
    internal_batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    import torch

    ca = _captum_attr()

    def forward(xx: torch.Tensor, aa: torch.Tensor | None = None) -> torch.Tensor:
        return model(xx, aa)

    has_aux = aux is not None
    inputs = (x, aux) if has_aux else (x,)
    if method == "saliency":
        out = ca.Saliency(forward).attribute(inputs, target=target, abs=True)
        return out[0], (out[1] if has_aux else None)
    if method == "integrated_gradients":
        base = (_baseline(x), _aux_baseline(model, aux)) if has_aux else (_baseline(x),)  # type: ignore[arg-type]
        out = ca.IntegratedGradients(forward).attribute(
            inputs,
            baselines=base,
            target=target,
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
        )
        return out[0], (out[1] if has_aux else None)
    if method == "gradcam":
        cam = ca.LayerGradCam(forward, _cam_layer(model))
        heat = cam.attribute(
            x,
            target=target,
            additional_forward_args=(aux,) if has_aux else None,
            relu_attributions=True,
        )
        # [n, C', L'] or [n, C', H', W'] -> mean over maps, then to the input's size
        waveform = heat.dim() == 3
        up = ca.LayerAttribution.interpolate(
            heat.mean(dim=1, keepdim=True),
            tuple(x.shape[-1:] if waveform else x.shape[-2:]),
            interpolate_mode="linear" if waveform else "bilinear",
        )
        return up.expand_as(x).contiguous(), None
    if method == "occlusion":
        if x.dim() == 3:
            width = max(2, round(occlusion_ms * 1e-3 * fs_hz))
            window: tuple[int, ...] = (x.shape[1], width)
            strides: tuple[int, ...] = (x.shape[1], max(1, width // 2))
        else:
            rows, cols = x.shape[-2:]
            ph, pw = max(1, math.ceil(rows / 8)), max(1, math.ceil(cols / 12))
            window = (x.shape[1], ph, pw)
            strides = (x.shape[1], max(1, ph // 2), max(1, pw // 2))
        with torch.no_grad():
            attr = ca.Occlusion(forward).attribute(
                x,
                sliding_window_shapes=window,
                strides=strides,
                baselines=_baseline(x),
                target=target,
                additional_forward_args=(aux,) if has_aux else None,
                perturbations_per_eval=max(1, internal_batch_size // max(1, x.shape[0])),
            )
        return attr, None
    raise ConfigError(f"unknown attribution method {method!r}; choose one of {list(METHODS)}")


def attribute_windows(
    pipeline: Pipeline,
    windows: Windows,
    method: Method = "integrated_gradients",
    target: str | int | Sequence[int] | np.ndarray | None = "predicted",
    *,
    batch_size: int = 32,
    n_steps: int = 32,
    occlusion_ms: float = 10.0,
    probs: np.ndarray | None = None,
) -> Attribution:
    """Attributions of a fitted torch pipeline's decision on each window.

    Parameters
    ----------
    pipeline
        A fitted torch :class:`~emgdx.pipeline.Pipeline`.
    windows
        Windows from ``pipeline.prepare``.
    method
        One of :data:`METHODS`.
    target
        Class to explain: ``"predicted"`` (each window's argmax), a class name, an index, or one
        index per window.
    batch_size
        Windows per captum call (bounds memory; integrated gradients runs ``n_steps`` forward
        passes per window in internal batches of ``4 * batch_size``).
    n_steps
        Integration steps of integrated gradients.
    occlusion_ms
        Patch width of occlusion on waveforms (half-overlapping patches).
    probs
        ``pipeline.predict_windows(windows)`` when the caller already has it (saves a pass).

    Returns
    -------
    Attribution
    """
    import torch

    _torch_module(pipeline)
    if method not in METHODS:
        raise ConfigError(f"unknown attribution method {method!r}; choose one of {list(METHODS)}")
    if len(windows) == 0:
        raise SignalError("no windows to explain (the record may be too short or unusable)")
    if probs is None:
        probs = pipeline.predict_windows(windows)
    targets = _targets(target, probs, pipeline.class_names)
    arrays = pipeline.model_inputs(windows)
    model = _torch_module(pipeline)
    x_all = torch.from_numpy(np.ascontiguousarray(arrays["x"], dtype=np.float32))
    aux_np = arrays.get("aux")
    aux_all = None if aux_np is None else torch.from_numpy(np.ascontiguousarray(aux_np, np.float32))
    values = np.zeros(x_all.shape, dtype=np.float32)
    aux_values = (
        None
        if aux_all is None or method in ("gradcam", "occlusion")
        else np.zeros(aux_all.shape, dtype=np.float32)
    )
    for sl in _batches(len(windows), batch_size):
        xb = x_all[sl].clone().requires_grad_(method != "occlusion")
        ab = None if aux_all is None else aux_all[sl].clone().requires_grad_(method != "occlusion")
        vx, va = _attribute_batch(
            method,
            model,
            xb,
            ab,
            torch.from_numpy(targets[sl]),
            n_steps=n_steps,
            occlusion_ms=occlusion_ms,
            fs_hz=windows.fs_hz,
            internal_batch_size=4 * batch_size,
        )
        values[sl] = vx.detach().numpy()
        if aux_values is not None and va is not None:
            aux_values[sl] = va.detach().numpy()
    rep = pipeline.representation
    times = freqs = None
    if values.ndim == 4:
        times = np.asarray(rep.times_s(windows.n_samples, windows.fs_hz), dtype=np.float64)
        freqs = np.asarray(rep.frequencies_hz(windows.fs_hz), dtype=np.float64)
    return Attribution(
        method=method,
        class_names=tuple(pipeline.class_names),
        target=targets,
        probs=probs,
        inputs=arrays["x"],
        values=values,
        time_profile=_time_profile(values, windows.n_samples, windows.fs_hz, times),
        aux_values=aux_values,
        fs_hz=float(windows.fs_hz),
        index=windows.index.reset_index(drop=True),
        representation=pipeline.representation_name,
        image_times_s=times,
        image_freqs_hz=freqs,
    )


def _stitch(windows: Windows, per_window: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlap-average ``[n, T]`` arrays of one record's windows onto its sample axis."""
    starts = windows.index["start_sample"].to_numpy(np.int64)
    n_times = windows.n_samples
    first, end = int(starts.min()), int(starts.max()) + n_times
    total = np.zeros(end - first)
    count = np.zeros(end - first)
    for s, row in zip(starts - first, per_window, strict=True):
        total[s : s + n_times] += row
        count[s : s + n_times] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    time_s = (first + np.arange(end - first)) / windows.fs_hz
    return time_s, mean, count


def attribute_record(
    pipeline: Pipeline,
    record: Recording | Windows,
    method: Method = "integrated_gradients",
    target: str | int | None = None,
    **kwargs: Any,
) -> RecordAttribution:
    """Explain a whole record: attributions of every window, stitched onto the signal.

    Parameters
    ----------
    pipeline
        A fitted torch pipeline.
    record
        A :class:`~emgdx.recording.Recording` (preprocessed here, with QC) or the windows of one
        record.
    method
        One of :data:`METHODS`.
    target
        Class to explain for *all* windows (name or index); default the record's predicted
        class, so that the stitched map reads as "evidence for what the record was called".
    **kwargs
        Passed to :func:`attribute_windows`.
    """
    _torch_module(pipeline)
    windows = record if isinstance(record, Windows) else pipeline.prepare(record)
    if len(windows) == 0:
        rid = record.record_id if isinstance(record, Recording) else "record"
        raise SignalError(f"{rid}: no usable window to explain (too short or flagged by QC)")
    records = windows.index["record_id"].astype(str).unique()
    if records.size != 1:
        raise SignalError(f"attribute_record takes one record, got {records.size}")
    probs = kwargs.pop("probs", None)
    if probs is None:
        probs = pipeline.predict_windows(windows)
    mean = probs.mean(axis=0)
    names = tuple(pipeline.class_names)
    # The record's class (or the one asked for) for every window: one map, one question.
    tgt = int(_targets(target, mean[None, :], names)[0])
    attr = attribute_windows(pipeline, windows, method, target=tgt, probs=probs, **kwargs)
    time_s, attribution, _ = _stitch(windows, attr.time_profile)
    _, signal, _ = _stitch(windows, windows.data.astype(np.float64))
    return RecordAttribution(
        record_id=str(records[0]),
        method=method,
        target=tgt,
        target_name=names[tgt],
        record_probs={n: float(p) for n, p in zip(names, mean, strict=True)},
        fs_hz=float(windows.fs_hz),
        time_s=time_s,
        signal=signal,
        attribution=attribution,
        windows=attr,
        window_starts_s=windows.index["start_s"].to_numpy(np.float64),
    )


def top_segments(
    explanation: RecordAttribution, k: int = 3, segment_ms: float = 100.0
) -> pd.DataFrame:
    """The ``k`` non-overlapping segments with the most evidence for the target class.

    Returns
    -------
    pandas.DataFrame
        ``start_s``, ``end_s``, ``share`` (of the record's total evidence), ``peak_uv``
        (largest |signal| in the segment), sorted by share.
    """
    if k < 1 or segment_ms <= 0:
        raise ConfigError("k must be >= 1 and segment_ms > 0")
    evidence = explanation.evidence()
    width = max(1, round(segment_ms * 1e-3 * explanation.fs_hz))
    if evidence.size < width:
        width = evidence.size
    csum = np.concatenate([[0.0], np.cumsum(evidence)])
    sums = csum[width:] - csum[:-width]  # evidence in the segment starting at each sample
    total = float(evidence.sum()) or 1.0
    rows = []
    taken = np.zeros(sums.size, dtype=bool)
    for _ in range(k):
        candidates = np.where(taken, -np.inf, sums)
        best = int(np.argmax(candidates))
        if not np.isfinite(candidates[best]) or candidates[best] <= 0:
            break
        seg = explanation.signal[best : best + width]
        rows.append(
            {
                "start_s": float(explanation.time_s[best]),
                "end_s": float(explanation.time_s[best] + width / explanation.fs_hz),
                "share": float(sums[best] / total),
                "peak_uv": float(np.nanmax(np.abs(seg))) if np.isfinite(seg).any() else math.nan,
            }
        )
        taken[max(0, best - width + 1) : best + width] = True
    return pd.DataFrame(rows, columns=["start_s", "end_s", "share", "peak_uv"])


# --------------------------------------------------------------------------- classical models


def feature_importance(
    pipeline: Pipeline,
    windows: Windows | None = None,
    *,
    method: Literal["permutation", "model"] = "permutation",
    n_repeats: int = 5,
    seed: int = 0,
    scoring: str | Callable[..., float] = "balanced_accuracy",
) -> pd.DataFrame:
    """Per-feature importance of a classical pipeline.

    Parameters
    ----------
    pipeline
        A fitted classical pipeline (features representation).
    windows
        Labelled windows to permute on (``method="permutation"``; use held-out subjects).
    method
        ``"permutation"`` (scikit-learn's permutation importance: the score drop when a feature
        is shuffled) or ``"model"`` (the estimator's own ``feature_importances_`` / ``|coef_|``).
    n_repeats, seed, scoring
        Permutation settings.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``importance``, ``std`` sorted by importance.
    """
    if pipeline.model_ is None:
        raise ConfigError("feature_importance needs a fitted pipeline")
    if pipeline.model_.explanation != "feature_importance":
        raise ConfigError("feature_importance is for classical models; use attribute_windows")
    rep = pipeline.representation
    names = list(getattr(rep, "feature_names", ()))
    names += [f"aux_{a}" for a in getattr(rep, "aux", ())]
    inputs = y = None
    if method == "permutation":
        if windows is None or len(windows) == 0:
            raise ConfigError("permutation importance needs labelled windows")
        from emgdx.tasks import encode_labels

        y, keep = encode_labels(windows.index["label"].to_numpy(), pipeline.task)
        inputs = pipeline.model_inputs(windows.select(keep))
    values, std = pipeline.model_.feature_importance(
        method, inputs, y, n_repeats=n_repeats, random_state=seed, scoring=scoring
    )
    if len(names) != values.size:
        names = [f"feature_{i}" for i in range(values.size)]
    frame = pd.DataFrame({"feature": names, "importance": values, "std": std})
    return frame.sort_values("importance", ascending=False, ignore_index=True)
