"""Shared plumbing of the representations: input checks, JSON round trip, amplitude scalars."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np

from emgdx.config import config_from_dict, config_to_dict, parse_config_json
from emgdx.errors import ConfigError, SignalError

__all__ = [
    "AMPLITUDE_FLOOR_UV",
    "AMPLITUDE_SCALARS",
    "ReprBase",
    "amplitude_scalars",
    "band_problems",
    "check_aux",
    "check_fs",
    "check_windows",
    "zscore_rows",
]

#: Floor (µV) under every amplitude before the log: a flat window gives log10(1e-3) = -3, not -inf.
AMPLITUDE_FLOOR_UV = 1e-3

# The value (µV) behind each amplitude scalar, from a float64 block of windows [n, T].
_AMPLITUDES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log_rms": lambda block: np.sqrt(np.mean(block * block, axis=1)),
    "log_mav": lambda block: np.mean(np.abs(block), axis=1),
    "log_p2p": lambda block: block.max(axis=1) - block.min(axis=1),
    "log_p99": lambda block: np.percentile(np.abs(block), 99.0, axis=1),
}
#: Scalar amplitude side inputs a representation can put into ``aux`` (all log10 of µV).
AMPLITUDE_SCALARS: tuple[str, ...] = tuple(_AMPLITUDES)

# Rows per float64 block when reducing large window sets: bounded memory, numpy speed.
_CHUNK_ROWS = 512


def check_fs(fs_hz: float) -> float:
    """``fs_hz`` as a float, or :class:`ConfigError` when it is not a positive finite number."""
    try:
        fs = float(fs_hz)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"fs_hz must be a positive number, got {fs_hz!r}") from exc
    if not (math.isfinite(fs) and fs > 0):
        raise ConfigError(f"fs_hz must be a positive finite number, got {fs_hz!r}")
    return fs


def check_windows(data: np.ndarray, what: str, min_samples: int = 2) -> np.ndarray:
    """``data`` as a C-contiguous float32 ``[n, T]`` array; bad shapes or values raise.

    Raises
    ------
    SignalError
        When ``data`` is not 2-D, has fewer than ``min_samples`` columns, or holds NaN/inf.
    """
    arr = np.ascontiguousarray(data, dtype=np.float32)
    if arr.ndim != 2:
        raise SignalError(f"{what}: windows must be a 2-D array [n, samples], got {arr.shape}")
    if arr.shape[1] < min_samples:
        raise SignalError(
            f"{what}: windows of {arr.shape[1]} samples are too short (need >= {min_samples})"
        )
    if arr.size and not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise SignalError(f"{what}: window {bad} holds NaN or infinite values")
    return arr


def amplitude_scalars(data: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Log10 amplitude scalars of every window, ``[n, len(names)]`` float32.

    Parameters
    ----------
    data
        ``[n, T]`` windows in µV.
    names
        Any of :data:`AMPLITUDE_SCALARS`: ``log_rms`` (root mean square), ``log_mav`` (mean
        absolute value), ``log_p2p`` (peak to peak), ``log_p99`` (99th percentile of ``|x|``).

    Returns
    -------
    numpy.ndarray
        ``log10(max(value_uv, 1e-3))`` per window and scalar.
    """
    n = data.shape[0]
    out = np.empty((n, len(names)), dtype=np.float64)
    for i in range(0, n, _CHUNK_ROWS):
        block = data[i : i + _CHUNK_ROWS].astype(np.float64)
        for j, name in enumerate(names):
            if name not in _AMPLITUDES:
                raise ConfigError(f"unknown amplitude scalar {name!r}; known: {AMPLITUDE_SCALARS}")
            value = _AMPLITUDES[name](block)
            out[i : i + _CHUNK_ROWS, j] = np.log10(np.maximum(value, AMPLITUDE_FLOOR_UV))
    return out.astype(np.float32)


def check_aux(names: Sequence[str], what: str) -> None:
    """Raise :class:`ConfigError` unless ``names`` are distinct known amplitude scalars."""
    if isinstance(names, str):
        raise ConfigError(f"{what}: aux must be a sequence of names, got the string {names!r}")
    unknown = [n for n in names if n not in AMPLITUDE_SCALARS]
    if unknown:
        raise ConfigError(f"{what}: unknown aux scalar(s) {unknown}; known: {AMPLITUDE_SCALARS}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{what}: aux names repeat: {list(names)}")


def band_problems(problems: list[str], f_min_hz: float, f_max_hz: float | None) -> list[str]:
    """``problems`` of a config; when there are none, checks that ``f_max_hz`` exceeds
    ``f_min_hz`` (``None``: up to Nyquist)."""
    if not problems and f_max_hz is not None and f_max_hz <= f_min_hz:
        problems.append(f"f_max_hz must exceed f_min_hz ({f_min_hz}), got {f_max_hz!r}")
    return problems


def zscore_rows(arr: np.ndarray) -> np.ndarray:
    """Z-score every row (all trailing axes together) in place; flat rows become zeros."""
    if arr.size == 0:
        return arr
    flat = arr.reshape(arr.shape[0], -1)
    mean = flat.mean(axis=1, keepdims=True, dtype=np.float64)
    std = flat.std(axis=1, keepdims=True, dtype=np.float64)
    std = np.where(std > 1e-12, std, 1.0)
    flat -= mean.astype(arr.dtype)
    flat /= std.astype(arr.dtype)
    return arr


class ReprBase:
    """Mixin for the frozen representation configs: checks, ``transform``, ``output_shape``,
    JSON round trip and a no-op ``fit``.

    Subclasses are frozen dataclasses with a class-level ``name`` (the registry key) and
    implement ``_x`` and ``_x_shape``, the ``x`` input and its shape; the amplitude scalars
    named by ``aux`` (a field of the signal representations) are added here.
    """

    name: ClassVar[str] = ""
    #: Fewest samples a window must have.
    min_samples: ClassVar[int] = 2
    #: Amplitude scalars put into ``aux``; none unless the subclass has an ``aux`` field.
    aux: tuple[str, ...] = ()

    def _check(
        self, problems: list[str], normalise: tuple[str, ...] | None = ("zscore", "none")
    ) -> None:
        """Raise :class:`ConfigError` naming the representation if there are ``problems``
        (plus ``normalise`` not one of ``normalise``); then store and check ``aux``."""
        value = getattr(self, "normalise", None)
        if normalise is not None and value not in normalise:
            wanted = ", ".join(map(repr, normalise[:-1])) + f" or {normalise[-1]!r}"
            problems.append(f"normalise must be {wanted}, got {value!r}")
        if problems:
            raise ConfigError(f"{self.name}: " + "; ".join(problems))
        if "aux" in getattr(self, "__dataclass_fields__", {}):
            object.__setattr__(self, "aux", tuple(self.aux))
            check_aux(self.aux, self.name)

    def _x(self, arr: np.ndarray, fs_hz: float) -> np.ndarray:
        raise NotImplementedError

    def _x_shape(self, n_times: int, fs_hz: float) -> tuple[int, ...]:
        raise NotImplementedError

    def output_shape(self, n_times: int, fs_hz: float) -> dict[str, tuple[int, ...]]:
        """Shape of each input without the batch dimension: ``x`` (see the class), and
        ``aux`` ``(k,)`` when ``aux`` is set."""
        shapes = {"x": self._x_shape(int(n_times), check_fs(fs_hz))}
        if self.aux:
            shapes["aux"] = (len(self.aux),)
        return shapes

    def transform(self, data: np.ndarray, fs_hz: float) -> dict[str, np.ndarray]:
        """The model inputs of every window.

        Parameters
        ----------
        data
            ``[n, T]`` windows in µV.
        fs_hz
            Their sampling rate.

        Returns
        -------
        dict
            ``x``: ``[n, *output_shape(T, fs_hz)["x"]]`` float32 (see the class); ``aux``:
            ``[n, k]`` float32 amplitude scalars of the windows when ``aux`` is set.
        """
        fs = check_fs(fs_hz)
        arr = check_windows(data, self.name, self.min_samples)
        out = {"x": self._x(arr, fs)}
        if self.aux:
            out["aux"] = amplitude_scalars(arr, self.aux)
        return out

    def fit(self, windows_data: np.ndarray, fs_hz: float) -> Self:
        """Nothing to learn: every statistic is computed per window. Returns ``self``.

        The inputs are still checked so that a bad training set fails here, early.
        """
        check_windows(windows_data, self.name)
        check_fs(fs_hz)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the registry ``name`` first."""
        return {"name": self.name, **config_to_dict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from :meth:`to_dict` output; a ``name`` of another representation raises."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.name} config must be a mapping, got {type(data).__name__}")
        values = dict(data)
        name = values.pop("name", cls.name)
        if name != cls.name:
            raise ConfigError(f"config is for representation {name!r}, not {cls.name!r}")
        return config_from_dict(cls, values, what=f"{cls.name} representation config")

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Self:
        """Parse :meth:`to_json` output; malformed JSON raises :class:`ConfigError`."""
        return cls.from_dict(parse_config_json(text, f"{cls.name} config"))
