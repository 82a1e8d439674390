"""Shared pieces of the readers: the per-file result type, unit conversion and signal checks.

Every format module turns a file into a :class:`FileData` (channels already in float32 µV,
each with its own rate and metadata); :mod:`emgdx.io` then names them, attaches subject and
label, and builds :class:`~emgdx.recording.Recording` objects. Keeping the format modules
ignorant of labels and subjects means a new format only has to get samples, rate and units
right.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emgdx.errors import (
    EmptySignalError,
    HeaderMismatchError,
    NonFiniteDataError,
    SamplingRateError,
)

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "ChannelData",
    "FileData",
    "check_fs",
    "check_signal",
    "decode_text",
    "integer_range",
    "record_stem",
    "unique_names",
    "unit_from_suffix",
    "uv_factor",
    "uv_scale",
]


@dataclass
class ChannelData:
    """One channel as a format module delivers it.

    Attributes
    ----------
    signal
        1-D float32 samples in µV.
    fs_hz
        Sampling rate of this channel.
    name
        Channel name from the file, or ``None`` when the file names none.
    meta
        Channel-level metadata (``units_source``, ``digital_range_uv``, filters, ...).
    """

    signal: np.ndarray
    fs_hz: float
    name: str | None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class FileData:
    """Everything one file holds: its channels and the file-level metadata."""

    path: Path
    channels: list[ChannelData]
    meta: dict[str, Any] = field(default_factory=dict)


# Voltage units, matched case-insensitively: EMG files write "UV" and "MV" for micro- and
# millivolts, and a megavolt EMG does not exist, so ignoring case loses nothing.
_UV_PER_UNIT: dict[str, float] = {
    "uv": 1.0,
    "microvolt": 1.0,
    "microvolts": 1.0,
    "mv": 1e3,
    "millivolt": 1e3,
    "millivolts": 1e3,
    "v": 1e6,
    "volt": 1e6,
    "volts": 1e6,
    "nv": 1e-3,
    "nanovolt": 1e-3,
    "nanovolts": 1e-3,
}


def uv_factor(unit: str | None) -> float | None:
    """Microvolts per one unit of ``unit`` (``"mV"`` -> 1000), or ``None`` if not a voltage.

    Both micro signs (U+00B5 and Greek mu U+03BC) and a plain ``u`` are accepted.
    """
    if unit is None:
        return None
    key = unit.strip().replace("\u00b5", "u").replace("\u03bc", "u").lower()
    return _UV_PER_UNIT.get(key)


def uv_scale(
    path: Path, unit: str | None, uv_per_unit: float | None, where: str = ""
) -> tuple[float, bool]:
    """The µV-per-unit factor for a declared ``unit``, or ``uv_per_unit`` when it is unknown.

    Returns ``(factor, assumed)``; ``assumed`` is True when the factor did not come from the
    file. ``unit=None`` means the format stores no unit: the values are µV times
    ``uv_per_unit`` (default 1). An unknown or blank unit without ``uv_per_unit`` raises
    :class:`~emgdx.errors.HeaderMismatchError`: guessing a unit would silently scale the
    signal by 1000.
    """
    if unit is None:
        return (1.0 if uv_per_unit is None else float(uv_per_unit)), True
    factor = uv_factor(unit)
    if factor is not None:
        return factor, False
    if uv_per_unit is not None:
        return float(uv_per_unit), True
    label = f"{where}: " if where else ""
    raise HeaderMismatchError(
        path,
        f"{label}physical unit {unit!r} is not a voltage unit emgdx knows (uV, mV, V, nV); "
        "pass uv_per_unit= to say how many µV one unit is",
    )


_SUFFIX_UNIT = re.compile(
    r"(?:[\s_\-]+|[\(\[])(?P<unit>uv|\u00b5v|\u03bcv|mv|nv|v)[\)\]]?\s*$", re.IGNORECASE
)


def unit_from_suffix(name: str) -> str | None:
    """The voltage unit a column name ends in (``emg_mv``, ``EMG (uV)``, ``ch1 [V]``), if any."""
    m = _SUFFIX_UNIT.search(name)
    return m.group("unit") if m else None


def check_fs(path: Path, fs_hz: float | None, source: str) -> float:
    """Validate a sampling rate: present, finite and positive, else SamplingRateError."""
    if fs_hz is None:
        raise SamplingRateError(
            path,
            f"no sampling rate in the file ({source}); give it with --fs-hz (command line) or "
            "fs_hz= (Python)",
        )
    try:
        fs = float(fs_hz)
    except (TypeError, ValueError):
        raise SamplingRateError(
            path, f"sampling rate {fs_hz!r} ({source}) is not a number"
        ) from None
    if not math.isfinite(fs) or fs <= 0:
        raise SamplingRateError(path, f"sampling rate {fs_hz!r} ({source}) must be positive")
    return fs


def check_signal(path: Path, signal: np.ndarray, fs_hz: float, channel: str | None) -> None:
    """Refuse empty signals and NaN/Inf samples, naming the count and first position."""
    where = "" if channel is None else f"channel {channel!r}: "
    if signal.size == 0:
        raise EmptySignalError(path, f"{where}no samples")
    finite = np.isfinite(signal)
    if not finite.all():
        bad = int(signal.size - np.count_nonzero(finite))
        first = int(np.argmin(finite))
        raise NonFiniteDataError(
            path,
            f"{where}{bad} non-finite sample(s) (NaN/Inf), first at sample {first} "
            f"(t = {first / fs_hz:.6g} s)",
        )


def decode_text(raw: bytes) -> str:
    """A text file's content: UTF-16 when it starts with its byte-order mark, else UTF-8
    (without a BOM), else Latin-1, which takes any bytes."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return raw.decode("utf-16", "replace")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def integer_range(dtype: np.dtype[Any]) -> tuple[int, int] | None:
    """(min, max) of an integer dtype, or ``None`` for floats."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return int(info.min), int(info.max)
    return None


def unique_names(names: list[str | None]) -> list[str | None]:
    """Channel names made unique (record ids are built from them): repeats get ``_2``, ``_3``."""
    seen: dict[str, int] = {}
    out: list[str | None] = []
    for name in names:
        if name is None:
            out.append(None)
            continue
        count = seen.get(name, 0) + 1
        seen[name] = count
        out.append(name if count == 1 else f"{name}_{count}")
    return out


#: File extensions emgdx reads (a ``.dat``/``.bin`` needs its ``.hea`` beside it).
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    ".hea",
    ".dat",
    ".bin",
    ".edf",
    ".bdf",
    ".csv",
    ".tsv",
    ".npy",
    ".npz",
    ".wav",
)


def record_stem(name: str) -> str:
    """The record id of a file name: directories and a supported extension removed."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    for ext in (*SUPPORTED_EXTENSIONS, ".txt", ".tab", ".rec"):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return base
