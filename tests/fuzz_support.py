"""Seed files of every readable format and the byte-level mutations that fuzz them; used by
tests/test_fuzz_readers.py (hypothesis, bounded) and benchmarks/fuzz_readers.py (large runs)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import edfio
import numpy as np
import wfdb
from scipy.io import wavfile

N = 2000  # 1 s at 2 kHz: EDF needs whole data records
SIGNAL = (200.0 * np.sin(np.arange(N) / 7.0)).astype(np.float32)


def _wfdb(folder: Path) -> dict[str, bytes]:
    wfdb.wrsamp("rec", fs=2000, units=["uV"], sig_name=["emg"], p_signal=SIGNAL[:, None],
                fmt=["16"], write_dir=str(folder))  # fmt: skip
    return {name: (folder / name).read_bytes() for name in ("rec.hea", "rec.dat")}


def _emglab(_: Path) -> dict[str, bytes]:
    """EMGLAB N2001 style: a header with comments and an int16 .bin after a 20-byte offset."""
    header = (
        f"N2001C01BB01 1 23437.5 {N}\n"
        "N2001C01BB01.bin 16+20 13.1070/uV\n"
        "# Diagnosis: control\n# Muscle: biceps brachii\n# Level: low\n"
    )
    counts = (SIGNAL * 13.107).astype("<i2")
    return {"N2001C01BB01.hea": header.encode(), "N2001C01BB01.bin": bytes(20) + counts.tobytes()}


def _edf(folder: Path) -> dict[str, bytes]:
    signal = edfio.EdfSignal(SIGNAL.astype(np.float64), 2000, label="EMG",
                             physical_dimension="uV", physical_range=(-1000, 1000))  # fmt: skip
    edfio.Edf([signal]).write(folder / "rec.edf")
    return {"rec.edf": (folder / "rec.edf").read_bytes()}


def _csv(_: Path) -> dict[str, bytes]:
    rows = "\n".join(f"{i / 2000:.6f},{v:.3f}" for i, v in enumerate(SIGNAL))
    return {"rec.csv": f"time_s,emg_uV\n{rows}\n".encode()}


def _npy(_: Path) -> dict[str, bytes]:
    buf = io.BytesIO()
    np.save(buf, SIGNAL)
    return {"rec.npy": buf.getvalue()}


def _npz(_: Path) -> dict[str, bytes]:
    buf = io.BytesIO()
    np.savez_compressed(buf, signal=SIGNAL, fs_hz=np.float64(2000.0))
    return {"rec.npz": buf.getvalue()}


def _wav(_: Path) -> dict[str, bytes]:
    buf = io.BytesIO()
    wavfile.write(buf, 2000, (SIGNAL * 10).astype(np.int16))
    return {"rec.wav": buf.getvalue()}


FORMATS: dict[str, Callable[[Path], dict[str, bytes]]] = {
    "wfdb": _wfdb, "emglab": _emglab, "edf": _edf, "csv": _csv, "npy": _npy, "npz": _npz,
    "wav": _wav,
}  # fmt: skip


def mutate(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, pos, value in edits:
        pos = min(pos, max(len(out) - 1, 0))
        if not out:
            break
        if kind == "flip":
            out[pos] ^= 1 << (value % 8)
        elif kind == "nasty":
            nasty = b"\x00\xff-9\n .e\xb2"
            out[pos] = nasty[value % len(nasty)]
        elif kind == "cut":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = bytes([value]) * (1 + value % 5)
        else:  # a long number where a small one was, as header fields overflow
            out[pos:pos] = b"9" * (1 + value % 40)
    return bytes(out)


#: What a mutation can be: (kind, position, value) edits, as ``mutate`` applies them.
KINDS = ("flip", "nasty", "cut", "insert", "digits")


def entry_name(names: list[str]) -> str:
    """The file to read of a seed's files (the header of a WFDB pair)."""
    return next((n for n in names if n.endswith(".hea")), names[0])
