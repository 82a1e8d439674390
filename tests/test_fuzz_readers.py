"""Mutated files of every format: `emgdx.io.read` returns recordings or raises an
`emgdx.errors` exception naming the file, nothing else (bounded hypothesis runs; the large
runs are a benchmark)."""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import edfio
import numpy as np
import pytest
import wfdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.io import wavfile

from emgdx.errors import EmgdxError
from emgdx.io import read

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


@st.composite
def mutations(draw: st.DrawFn, size: int) -> list[tuple[str, int, int]]:
    """A few edits of one file: flip a byte, overwrite with a "nasty" byte, cut, or insert."""
    kinds = st.sampled_from(["flip", "nasty", "cut", "insert", "digits"])
    return draw(st.lists(st.tuples(kinds, st.integers(0, max(size - 1, 0)), st.integers(0, 255)),
                         min_size=1, max_size=4))  # fmt: skip


def _mutate(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
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


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_mutated_files_read_or_fail_with_an_emgdx_error(
    fmt: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    originals = FORMATS[fmt](tmp_path_factory.mktemp(f"orig-{fmt}"))
    names = sorted(originals)
    entry = names[0] if names[0].endswith(".hea") or len(names) == 1 else names[1]
    folder = tmp_path_factory.mktemp(f"fuzz-{fmt}")
    for name, data in originals.items():
        (folder / name).write_bytes(data)
    recs = read(folder / entry, fs_hz=None if fmt not in ("npy",) else 2000.0)
    # the unmutated file is read right (WAV in its own integer units): the seed is valid
    assert np.corrcoef(recs[0].signal[:N], SIGNAL)[0, 1] > 0.999

    @settings(max_examples=120, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(which=st.sampled_from(names), data=st.data())
    def fuzz(which: str, data: st.DataObject) -> None:
        original = originals[which]
        mutated = _mutate(original, data.draw(mutations(len(original))))
        for name, content in originals.items():
            (folder / name).write_bytes(mutated if name == which else content)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                recordings = read(folder / entry, fs_hz=2000.0 if fmt == "npy" else None)
        except EmgdxError as exc:
            assert entry in str(exc) or which in str(exc), str(exc)
        else:
            for rec in recordings:
                assert rec.signal.dtype == np.float32 and rec.signal.size > 0
                assert math.isfinite(rec.fs_hz) and rec.fs_hz > 0

    fuzz()
