"""NumPy ``.npy`` and ``.npz`` files.

* ``.npy``: a 1-D array (one channel) or a 2-D array, channels x samples or samples x
  channels; the channels are the shorter axis (a square array is refused as ambiguous).
  No rate is stored, so ``fs_hz=`` is required.
* ``.npz``: the signal is the ``signal`` (or ``data``) array, the rate the scalar ``fs_hz`` (or
  ``fs``), channel names an optional ``channels`` string array, units an optional ``units``
  string (one for all channels, or one per channel). Without a ``signal``/``data`` key, a
  single array is the signal, and several 1-D arrays are channels named by their keys.
* Values are taken as µV unless ``units`` says otherwise or ``uv_per_unit=`` is given.
  Files are always loaded with ``allow_pickle=False``: reading data must not run code, so
  object arrays (e.g. ragged lists of channels) are refused.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from emgdx.errors import (
    ChannelMismatchError,
    EmptySignalError,
    HeaderMismatchError,
    NonNumericDataError,
    SamplingRateError,
    TruncatedDataError,
    UnknownFormatError,
)
from emgdx.io._common import (
    ChannelData,
    FileData,
    check_fs,
    integer_range,
    unique_names,
    uv_scale,
)

__all__ = ["read_npy", "read_npz"]

_SIGNAL_KEYS = ("signal", "data")
_FS_KEYS = ("fs_hz", "fs")
_RESERVED_KEYS = (*_SIGNAL_KEYS, *_FS_KEYS, "channels", "units")


def _check_array_header(path: Path, fh: IO[bytes], size: int, what: str) -> None:
    """Refuse an array (a ``.npy`` file, or one member of an ``.npz``) that is not a valid
    ``.npy`` stream, holds objects, or declares more values than its ``size`` bytes can hold:
    checked before numpy reads it, because numpy allocates what the header declares."""
    try:
        version = np.lib.format.read_magic(fh)
        # the header's declared length, checked before numpy reads (and allocates) it
        width = 2 if version == (1, 0) else 4
        declared = int.from_bytes(fh.read(width), "little")
        if version not in ((1, 0), (2, 0), (3, 0)) or declared > size:
            raise HeaderMismatchError(
                path,
                f"{what}: .npy version {version} with a {declared}-byte header: not a valid "
                "or complete .npy array",
            )
        header = fh.read(declared)
        stream = io.BytesIO(np.lib.format.MAGIC_PREFIX + bytes(version)
                            + declared.to_bytes(width, "little") + header)  # fmt: skip
        np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    except ValueError as exc:
        raise HeaderMismatchError(path, f"{what}: malformed .npy header: {exc}") from exc
    if dtype.hasobject:
        raise ChannelMismatchError(
            path,
            f"{what} holds an object array (ragged channels of different lengths, or "
            "non-numeric data); save a numeric 2-D array with channels of equal length",
        )
    n_expected = int(np.prod(shape, dtype=object))  # exact: a hostile shape overflows int64
    data_start = len(np.lib.format.MAGIC_PREFIX) + 2 + width + declared
    n_held = max(size - data_start, 0) // max(dtype.itemsize, 1)
    if n_held < n_expected:
        raise TruncatedDataError(
            path, f"{what}: header says {n_expected} values of shape {shape}, it holds {n_held}"
        )


def _check_npy_header(path: Path) -> None:
    with path.open("rb") as fh:
        _check_array_header(path, fh, path.stat().st_size, "the array")


def _numeric(path: Path, arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype.hasobject or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise NonNumericDataError(path, f"{what} has dtype {arr.dtype}, not real numbers")
    return arr


def _orient(path: Path, arr: np.ndarray, n_names: int | None) -> np.ndarray:
    """The array as [channels, samples]."""
    if arr.ndim == 0:
        raise EmptySignalError(path, "holds a single number, not a signal")
    if arr.ndim == 1:
        return arr[np.newaxis, :]
    if arr.ndim != 2:
        raise ChannelMismatchError(path, f"expected a 1-D or 2-D array, got shape {arr.shape}")
    rows, cols = arr.shape
    if n_names is not None and (rows == n_names) != (cols == n_names):
        return arr if rows == n_names else arr.T
    if rows == cols and rows > 1:
        raise ChannelMismatchError(
            path, f"square array {arr.shape}: cannot tell channels from samples"
        )
    return arr if rows <= cols else arr.T


def _channels(
    path: Path,
    data: np.ndarray,
    fs: float,
    names: list[str] | None,
    units: list[str | None],
    uv_per_unit: float | None,
    fmt: str,
) -> FileData:
    data = _numeric(path, data, "the signal array")
    block = _orient(path, data, None if names is None else len(names))
    n_ch = block.shape[0]
    if names is not None and len(names) != n_ch:
        raise ChannelMismatchError(
            path, f"{len(names)} channel name(s) for {n_ch} channel(s) in the signal array"
        )
    if len(units) not in (1, n_ch):
        raise ChannelMismatchError(path, f"{len(units)} unit(s) for {n_ch} channel(s)")
    if names is None:
        channel_names: list[str | None] = [None] if n_ch == 1 else [f"ch{i}" for i in range(n_ch)]
    else:
        channel_names = unique_names([str(n) for n in names])
    rng = integer_range(block.dtype)
    channels = []
    for i in range(n_ch):
        unit = units[0] if len(units) == 1 else units[i]
        factor, assumed = uv_scale(path, unit, uv_per_unit, where=f"channel {i}")
        meta: dict[str, Any] = {"units_source": unit}
        if assumed:
            meta["units_assumed"] = True
        if rng is not None:
            lo, hi = sorted((rng[0] * factor, rng[1] * factor))
            meta["digital_range_uv"] = (float(lo), float(hi))
        sig = (block[i].astype(np.float64) * factor).astype(np.float32)
        channels.append(ChannelData(sig, fs, channel_names[i], meta))
    return FileData(path, channels, {"format": fmt})


def read_npy(path: Path, *, fs_hz: float | None, uv_per_unit: float | None) -> FileData:
    """Read a ``.npy`` array (see the module docstring for the layout rules).

    Parameters
    ----------
    path
        The file.
    fs_hz
        Sampling rate (required: .npy stores none).
    uv_per_unit
        µV per stored unit (default: values are µV).

    Returns
    -------
    FileData
    """
    _check_npy_header(path)
    fs = check_fs(path, fs_hz, ".npy stores no rate")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise HeaderMismatchError(path, f"cannot load the array: {exc}") from exc
    out = _channels(path, arr, fs, None, [None], uv_per_unit, "npy")
    out.meta["fs_source"] = "argument"
    return out


def _scalar(path: Path, value: np.ndarray, key: str) -> float:
    arr = np.asarray(value)
    if arr.size != 1:
        raise SamplingRateError(path, f"{key!r} should be one number, has shape {arr.shape}")
    try:
        return float(arr.reshape(-1)[0])
    except (TypeError, ValueError):
        raise SamplingRateError(
            path, f"{key!r} holds {arr.reshape(-1)[0]!r}, not a number"
        ) from None


#: An archive may inflate to this many bytes at most (a decoded recording of hours)...
MAX_INFLATED_BYTES = 2 * 2**30
#: ... and, past :data:`SMALL_INFLATED_BYTES`, to at most this many times its size on disk:
#: EMG compresses a few-fold, a decompression bomb a thousandfold.
MAX_INFLATE_RATIO = 100
SMALL_INFLATED_BYTES = 16 * 2**20


def _check_archive(path: Path) -> None:
    """Refuse an archive whose members' declared sizes are implausible, before inflating them
    (zipfile stops at the declared size, so the declaration bounds the memory), and members
    whose ``.npy`` headers declare more than they hold (numpy would allocate it)."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        inflated = sum(info.file_size for info in members)
        on_disk = max(path.stat().st_size, 1)
        too_big = inflated > MAX_INFLATED_BYTES
        if too_big or (inflated > SMALL_INFLATED_BYTES and inflated > MAX_INFLATE_RATIO * on_disk):
            raise HeaderMismatchError(
                path,
                f"its members inflate to {inflated / 2**20:.0f} MiB from "
                f"{on_disk / 2**20:.2f} MiB on disk; refused (at most "
                f"{MAX_INFLATED_BYTES // 2**30} GiB, and at most {MAX_INFLATE_RATIO}x the "
                f"file's size past {SMALL_INFLATED_BYTES // 2**20} MiB)",
            )
        for info in members:
            with archive.open(info) as fh:
                _check_array_header(path, fh, info.file_size, f"member {info.filename!r}")


def read_npz(path: Path, *, fs_hz: float | None, uv_per_unit: float | None) -> FileData:
    """Read a ``.npz`` archive (see the module docstring for the keys it understands).

    Parameters
    ----------
    path
        The file.
    fs_hz
        Sampling rate; overrides a stored ``fs_hz``/``fs``, required when none is stored.
    uv_per_unit
        µV per stored unit for channels without a voltage ``units`` entry.

    Returns
    -------
    FileData
    """
    try:
        _check_archive(path)
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except zipfile.BadZipFile as exc:
        raise TruncatedDataError(path, f"not a readable zip archive (truncated?): {exc}") from exc
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ChannelMismatchError(
                path,
                "holds an object array (ragged channels of different lengths, or non-numeric "
                "data); store numeric arrays only",
            ) from exc
        raise HeaderMismatchError(path, f"cannot load the archive: {exc}") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise TruncatedDataError(path, f"cannot read the archive (truncated?): {exc}") from exc
    except NotImplementedError as exc:  # zipfile: a compression method it does not know
        raise HeaderMismatchError(path, f"cannot read the archive: {exc}") from exc

    stored_fs: float | None = None
    fs_key = next((k for k in _FS_KEYS if k in arrays), None)
    if fs_key is not None:
        stored_fs = _scalar(path, arrays[fs_key], fs_key)
    if fs_hz is not None:
        fs = check_fs(path, fs_hz, "argument")
        fs_source = "argument"
    else:
        fs = check_fs(path, stored_fs, f"npz key {fs_key!r}" if fs_key else "no 'fs_hz' key")
        fs_source = "file"
    names = [str(n) for n in arrays["channels"].reshape(-1)] if "channels" in arrays else None
    units: list[str | None] = [None]
    if "units" in arrays:
        units = [str(u) for u in arrays["units"].reshape(-1)] or [None]

    signal_key = next((k for k in _SIGNAL_KEYS if k in arrays), None)
    if signal_key is not None:
        data = arrays[signal_key]
    else:
        candidates = {k: v for k, v in arrays.items() if k not in _RESERVED_KEYS and v.ndim >= 1}
        if not candidates:
            raise UnknownFormatError(
                path, f"no 'signal' or 'data' array among the keys {sorted(arrays)}"
            )
        if len(candidates) == 1:
            data = next(iter(candidates.values()))
        else:
            lengths = {k: v.shape for k, v in candidates.items()}
            if any(v.ndim != 1 for v in candidates.values()):
                raise ChannelMismatchError(
                    path, f"several arrays and no 'signal' key: shapes {lengths}"
                )
            if len({v.size for v in candidates.values()}) != 1:
                raise ChannelMismatchError(path, f"channels have different lengths: {lengths}")
            names = list(candidates)
            for key, v in candidates.items():
                _numeric(path, v, f"array {key!r}")
            data = np.stack(list(candidates.values()))
    out = _channels(path, data, fs, names, units, uv_per_unit, "npz")
    out.meta["fs_source"] = fs_source
    return out
