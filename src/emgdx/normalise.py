"""Amplitude normalisation: one concept, one module.

A :class:`Normalisation` is a *method* (how a centre and a scale are measured) and a *scope*
(over which samples):

``window``
    each window by its own statistics (nothing fitted, nothing can leak);
``record``
    each record by the statistics of its usable samples (offline only: a live stream has no
    record);
``fitted``
    one centre and scale learnt on training windows only (:class:`Normaliser`) and applied
    unchanged to validation, test and live data.

The front end (:mod:`emgdx.frontend`) is the only stage that applies a pipeline's
normalisation. Representations that scale their *shape* input per window (the raw waveform,
:class:`emgdx.represent.RawRepr`) measure it with :func:`normalise_windows` from here too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args, overload

import numpy as np

from emgdx.errors import ConfigError, SignalError
from emgdx.recording import Windows

__all__ = [
    "METHODS",
    "SCOPES",
    "Normalisation",
    "NormaliseMethod",
    "NormaliseScope",
    "Normaliser",
    "centre_and_scale",
    "normalise_windows",
]

NormaliseMethod = Literal["none", "zscore", "robust"]
NormaliseScope = Literal["window", "record", "fitted"]
METHODS: tuple[str, ...] = get_args(NormaliseMethod)
SCOPES: tuple[str, ...] = get_args(NormaliseScope)

# Below this scale (µV) a window is flat: dividing would only amplify rounding, so the scale
# becomes 1 and the window comes out centred (zeros when constant) instead of NaN.
_MIN_SCALE = 1e-9
_CHUNK_ROWS = 512  # rows per float64 block: bounded memory on large window sets


@dataclass(frozen=True)
class Normalisation:
    """What a pipeline does to amplitudes: ``method`` over ``scope`` (module docstring)."""

    method: NormaliseMethod = "none"
    scope: NormaliseScope = "window"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"normalise must be one of {METHODS}, got {self.method!r}")
        if self.scope not in SCOPES:
            raise ConfigError(f"normalise_scope must be one of {SCOPES}, got {self.scope!r}")

    @property
    def active(self) -> bool:
        return self.method != "none"

    @property
    def fitted(self) -> bool:
        """Whether statistics must be learnt on training data (scope ``fitted``)."""
        return self.active and self.scope == "fitted"

    @property
    def keeps_uv(self) -> bool:
        """Whether windows leave the front end in µV until the fitted normaliser runs."""
        return not self.active or self.scope == "fitted"

    def record(self, y: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Scope ``record``: ``y`` scaled by its usable samples' statistics, and what was done."""
        basis = y[usable] if usable.any() else y
        center, scale = centre_and_scale(basis, self.method)
        out = (y - np.float32(center)) / np.float32(scale)
        info = {"method": self.method, "scope": "record", "center": center, "scale": scale}
        return out.astype(np.float32, copy=False), info

    def windows(self, data: np.ndarray) -> np.ndarray:
        """Scope ``window`` applied to ``[n, T]`` windows (other scopes: unchanged)."""
        if self.active and self.scope == "window":
            return normalise_windows(data, self.method)
        return data


def _zscore_global(arr: np.ndarray) -> tuple[float, float]:
    # Two passes in float64 blocks: exact zero spread for constant data, no full float64 copy.
    flat = arr.reshape(-1)
    step = _CHUNK_ROWS * 8192
    n = flat.size
    total = sum(float(flat[i : i + step].sum(dtype=np.float64)) for i in range(0, n, step))
    mean = total / n
    sq = 0.0
    for i in range(0, n, step):
        dev = flat[i : i + step].astype(np.float64) - mean
        sq += float(np.dot(dev, dev))
    return mean, math.sqrt(sq / n)


def centre_and_scale(arr: np.ndarray, method: str) -> tuple[float, float]:
    """Scalar centre and (floored) scale of all samples of ``arr`` for ``method``."""
    if method == "zscore":
        center, scale = _zscore_global(arr)
    elif method == "robust":
        q25, med, q75 = np.percentile(arr.reshape(-1), [25, 50, 75])
        center, scale = float(med), float(q75 - q25)
        # More than half the samples equal (e.g. a mostly-zero record): the IQR is 0 though
        # the signal is not flat, so fall back to the standard deviation rather than to 1.
        if not scale > _MIN_SCALE:
            scale = _zscore_global(arr)[1]
    else:
        raise ConfigError(f"normalise method must be 'zscore' or 'robust', got {method!r}")
    return center, scale if scale > _MIN_SCALE else 1.0


def _row_stats(arr: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-row centre and (floored) scale of a 2-D array, shaped ``[n, 1]`` for broadcasting."""
    n = arr.shape[0]
    center = np.empty((n, 1))
    scale = np.empty((n, 1))
    for i in range(0, n, _CHUNK_ROWS):
        block = arr[i : i + _CHUNK_ROWS].astype(np.float64)
        if method == "zscore":
            c = block.mean(axis=1, keepdims=True)
            s = block.std(axis=1, keepdims=True)
        elif method == "robust":
            q25, c, q75 = np.percentile(block, [25, 50, 75], axis=1, keepdims=True)
            s = q75 - q25
            flat = ~(s > _MIN_SCALE)
            if flat.any():  # see centre_and_scale: IQR 0 but not constant
                s = np.where(flat, block.std(axis=1, keepdims=True), s)
        else:
            raise ConfigError(f"normalise method must be 'zscore' or 'robust', got {method!r}")
        center[i : i + _CHUNK_ROWS] = c
        scale[i : i + _CHUNK_ROWS] = s
    return center, np.where(scale > _MIN_SCALE, scale, 1.0)


def normalise_windows(data: np.ndarray, method: str) -> np.ndarray:
    """Normalise every row of ``data`` by its own statistics (no fitting; scope ``"window"``).

    Parameters
    ----------
    data
        ``[n_windows, n_samples]`` array.
    method
        ``"zscore"`` (mean / std), ``"robust"`` (median / IQR) or ``"none"``.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape; flat rows become zeros, never NaN.
    """
    arr = np.asarray(data, dtype=np.float32)
    if method == "none" or arr.size == 0:
        return arr.copy()
    if arr.ndim != 2:
        raise SignalError(f"windows must be 2-D [n, samples], got {arr.shape}")
    center, scale = _row_stats(arr, method)
    return ((arr - center.astype(np.float32)) / scale.astype(np.float32)).astype(np.float32)


class Normaliser:
    """Scalar centre/scale normalisation whose statistics are fitted on training data only.

    Parameters
    ----------
    method
        ``"zscore"`` (mean / standard deviation) or ``"robust"`` (median / interquartile
        range, unscaled, as in scikit-learn's ``RobustScaler``).
    center, scale
        Known statistics (e.g. from :meth:`from_dict`); leave ``None`` to :meth:`fit`.

    Examples
    --------
    >>> norm = Normaliser("zscore").fit(np.array([1.0, 3.0]))
    >>> norm.transform(np.array([5.0])).tolist()
    [3.0]
    """

    def __init__(
        self,
        method: Literal["zscore", "robust"] = "zscore",
        *,
        center: float | None = None,
        scale: float | None = None,
    ) -> None:
        if method not in ("zscore", "robust"):
            raise ConfigError(f"Normaliser method must be 'zscore' or 'robust', got {method!r}")
        if (center is None) != (scale is None):
            raise ConfigError("Normaliser needs both center and scale, or neither")
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"Normaliser scale must be positive and finite, got {scale!r}")
        if center is not None and not math.isfinite(center):
            raise ConfigError(f"Normaliser center must be finite, got {center!r}")
        self.method = method
        self.center = None if center is None else float(center)
        self.scale = None if scale is None else float(scale)

    @property
    def fitted(self) -> bool:
        """Whether the statistics are known."""
        return self.center is not None

    @staticmethod
    def _as_array(data: Windows | np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        if isinstance(data, Windows):
            return data.data
        if isinstance(data, np.ndarray):
            return data
        parts = [np.asarray(p, dtype=np.float32).ravel() for p in data]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def fit(self, data: Windows | np.ndarray | Sequence[np.ndarray]) -> Normaliser:
        """Learn centre and scale from ``data`` (training windows or arrays) and return self."""
        arr = self._as_array(data)
        if arr.size == 0:
            raise SignalError("cannot fit a Normaliser on no data")
        if not np.isfinite(arr).all():
            raise SignalError("cannot fit a Normaliser on non-finite data")
        self.center, self.scale = centre_and_scale(arr, self.method)
        return self

    @overload
    def transform(self, data: Windows) -> Windows: ...
    @overload
    def transform(self, data: np.ndarray) -> np.ndarray: ...

    def transform(self, data: Windows | np.ndarray) -> Windows | np.ndarray:
        """Apply the fitted statistics; returns the same kind (Windows or float32 array).

        Raises
        ------
        ConfigError
            When the normaliser has not been fitted.
        """
        if self.center is None or self.scale is None:
            raise ConfigError(f"Normaliser({self.method!r}) is not fitted: call fit() first")
        center, scale = np.float32(self.center), np.float32(self.scale)
        if isinstance(data, Windows):
            out = (data.data - center) / scale
            return Windows(out.astype(np.float32), data.fs_hz, data.index.copy())
        return ((np.asarray(data, dtype=np.float32) - center) / scale).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, saved with a model so that prediction uses the training statistics."""
        return {"method": self.method, "center": self.center, "scale": self.scale}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normaliser:
        """Rebuild from :meth:`to_dict` output (unknown keys raise :class:`ConfigError`)."""
        unknown = sorted(set(data) - {"method", "center", "scale"})
        if unknown:
            raise ConfigError(f"unknown Normaliser key(s) {unknown}")
        return cls(data.get("method", "zscore"), center=data.get("center"), scale=data.get("scale"))

    def __repr__(self) -> str:
        if not self.fitted:
            return f"Normaliser({self.method!r}, not fitted)"
        return f"Normaliser({self.method!r}, center={self.center:.4g}, scale={self.scale:.4g})"
