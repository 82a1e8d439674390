"""WAV files through :func:`scipy.io.wavfile.read`.

The rate comes from the file. WAV has no physical unit: integer PCM counts (8-bit unsigned
PCM re-centred on 0) or float samples are multiplied by ``uv_per_unit`` (default 1, i.e. the
values are taken as µV, with ``meta["units_assumed"] = True``). For integer PCM the count
range times ``uv_per_unit`` is ``digital_range_uv``. Note that scipy returns 24-bit PCM as
left-justified int32, so its counts are 256x the 24-bit values. A multichannel WAV gives one
channel per WAV channel (``ch0``, ``ch1``, ...).
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy.io import wavfile

from emgdx.errors import HeaderMismatchError, TruncatedDataError
from emgdx.io._common import ChannelData, FileData, check_fs, integer_range, uv_scale

__all__ = ["read_wav"]


def _check_data_chunk(path: Path) -> None:
    """Refuse a chunk that declares more bytes than the file holds, before scipy allocates
    what it declares (a 4 KB file declaring 160 MB of samples, or a 956 MB format chunk,
    cost that much memory)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return  # not a plain RIFF WAVE (e.g. RF64): scipy's own checks apply
        order = "<" if head[:4] == b"RIFF" else ">"
        offset = 12
        while offset + 8 <= size:
            fh.seek(offset)
            chunk_id, chunk_size = struct.unpack(f"{order}4sI", fh.read(8))
            if offset + 8 + chunk_size > size:
                what = "samples" if chunk_id == b"data" else f"its {chunk_id!r} chunk"
                raise TruncatedDataError(
                    path,
                    f"WAV data is cut short: the header declares {chunk_size} bytes of {what}, "
                    f"the file holds {max(size - offset - 8, 0)}",
                )
            if chunk_id == b"data":
                return
            offset += 8 + chunk_size + (chunk_size & 1)  # chunks are word-aligned


def read_wav(path: Path, *, uv_per_unit: float | None) -> FileData:
    """Read a PCM or float WAV file.

    Parameters
    ----------
    path
        The file.
    uv_per_unit
        µV per sample unit (count or float value); default 1.

    Returns
    -------
    FileData
    """
    _check_data_chunk(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rate, data = wavfile.read(path)
        except (ValueError, struct.error, EOFError) as exc:
            raise HeaderMismatchError(path, f"not a readable WAV file: {exc}") from exc
    for w in caught:
        if "EOF" in str(w.message):  # scipy only warns and returns the samples it found
            raise TruncatedDataError(path, f"WAV data is cut short: {w.message}")
    fs = check_fs(path, rate, "WAV header")
    factor, _ = uv_scale(path, None, uv_per_unit)
    stored_dtype = str(data.dtype)
    rng = integer_range(data.dtype)
    if data.dtype == np.uint8:  # 8-bit WAV is unsigned with 128 as zero
        data = data.astype(np.int16) - 128
        rng = (-128, 127)
    block = data.reshape(data.shape[0], -1)
    n_ch = block.shape[1]
    channels = []
    for i in range(n_ch):
        meta: dict[str, Any] = {"units_source": None, "units_assumed": uv_per_unit is None}
        if rng is not None:
            lo, hi = sorted((rng[0] * factor, rng[1] * factor))
            meta["digital_range_uv"] = (float(lo), float(hi))
        sig = (block[:, i].astype(np.float64) * factor).astype(np.float32)
        channels.append(ChannelData(sig, fs, None if n_ch == 1 else f"ch{i}", meta))
    return FileData(path, channels, {"format": "wav", "wav_dtype": stored_dtype})
