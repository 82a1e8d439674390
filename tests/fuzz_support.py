"""Seed files of every readable format and the mutations that fuzz them: byte edits (flips,
nasty bytes, cuts, insertions, digit runs) and structured ``field`` edits that put hostile
values into the fields each format defines. Used by tests/test_fuzz_readers.py (hypothesis,
bounded), benchmarks/fuzz_readers.py (large runs) and benchmarks/fuzz_headers_atheris.py."""

from __future__ import annotations

import io
import re
import zipfile
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


#: Values a header field should never hold, put where a field was by the ``field`` edit.
HOSTILE: tuple[bytes, ...] = (
    b"0",
    b"-1",
    b"-2147483649",
    b"99999999999999999999999",
    b"1e308",
    b"nan",
    b"inf",
    b"-inf",
    b"0.0000001",
    "\u0663".encode(),
    b"\xc2\xb2",
    b"../../../../etc/passwd",
    b"A" * 300,
    b"",
    b" ",
    b"\x00",
    b"0x7f",
    b"1/0",
    b"+",
    b"%s%n",
    b"\xff\xfe",
    b"1,5",
)
#: 16- and 32-bit values that break a binary header: zero, one, odd, extreme, wrong codes.
HOSTILE_INTS = (0, 1, 2, 3, 7, 24, 64, 0x7F, 0xFFFE, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)

# EDF header: the main fields' widths, then each signal's (edfio writes one signal here)
_EDF_MAIN = (8, 80, 80, 8, 8, 8, 44, 8, 8, 4)
_EDF_SIGNAL = (16, 80, 8, 8, 8, 8, 8, 80, 8, 32)
# PCM WAV as scipy writes it: (offset, width) of RIFF size, format tag, channels, rate,
# byte rate, block align, bits per sample and the data chunk's size
_WAV_FIELDS = ((4, 4), (20, 2), (22, 2), (24, 4), (28, 4), (32, 2), (34, 2), (40, 4))
_NPY_DESCR = ("<f4", "<f8", ">f4", "<i2", "|u1", "<m8[s]", "<M8[D]", "|O", "<U10", "|S4",
              "|V8", "<c16", "<f2", "|b1", "[('a', '<f4'), ('b', '<f4')]")  # fmt: skip
_NPY_SHAPE = ("()", "(0,)", "(2000,)", "(1000, 2)", "(2, 1000)", "(1000000000000,)", "(-1,)",
              "(2000, 1, 1)", "(1, 2000)", "(4294967297,)", "(2, 2)", "(3,)")  # fmt: skip


def _edf_spans(data: bytes) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for width in (*_EDF_MAIN, *_EDF_SIGNAL):
        spans.append((pos, width))
        pos += width
    return [s for s in spans if s[0] < len(data)]


def _npy_with_header(descr: str, shape: str, fortran: bool, body: bytes, *, pad: bool) -> bytes:
    text = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
    if descr.startswith("["):
        text = text.replace(repr(descr), descr)
    if pad:  # a well-formed header (padded to 64 bytes); unpadded ones test the parser's slack
        text += " " * (-(10 + len(text) + 1) % 64)
    header = (text + "\n").encode("latin-1")
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + body


def _npy_body(data: bytes) -> bytes:
    header_len = int.from_bytes(data[8:10], "little") if len(data) >= 10 else 0
    return data[10 + header_len :]


def _npz_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _zip(members: dict[str, bytes], compress: bool) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _field_npz(data: bytes, pos: int, value: int) -> bytes:
    """Edit the archive's members before compressing: the structure that byte edits of the
    deflated stream almost never reach (they break the CRC first)."""
    try:
        members = _npz_members(data)
    except Exception:  # an archive that a byte edit broke stays as it is
        return data
    names = sorted(members)
    if not names:
        return data
    target = names[pos % len(names)]
    choice = value % 8
    if choice < 3:  # a structured edit of one member's .npy
        members[target] = _field_npy(members[target], pos // len(names), value // 8)
    elif choice == 3:  # the member under a hostile or unexpected name
        odd_name = HOSTILE[value % len(HOSTILE)].decode("latin-1").replace("\0", "_")
        members[odd_name + ".npy"] = members.pop(target)
    elif choice == 4:  # a member dropped
        del members[target]
    elif choice == 5:  # the rate as text, a 2-vector or a negative number
        bad = (np.array(["2000"]), np.array([2000.0, 4000.0]), np.float64(-2000.0),
               np.float64(np.nan), np.int8(0))[value // 8 % 5]  # fmt: skip
        buf = io.BytesIO()
        np.save(buf, bad)
        members["fs_hz.npy"] = buf.getvalue()
    elif choice == 6:  # many copies of the signal under other names
        members.update({f"ch{i}.npy": members[target] for i in range(1 + value // 8 % 40)})
    return _zip(members, compress=choice != 7)


def _field_npy(data: bytes, pos: int, value: int) -> bytes:
    descr = _NPY_DESCR[pos % len(_NPY_DESCR)]
    shape = _NPY_SHAPE[(pos // len(_NPY_DESCR)) % len(_NPY_SHAPE)]
    return _npy_with_header(descr, shape, bool(value & 1), _npy_body(data), pad=bool(value & 2))


def _field_csv(data: bytes, pos: int, value: int) -> bytes:
    """Encodings, separators and shapes of real-world CSV exports."""
    text = data.decode("utf-8", "replace")
    lines = text.splitlines() + [""] * 2  # an edited file may have lost its rows
    row = 1 + pos % (len(lines) - 1)
    choice = value % 12
    if choice == 0:
        return text.encode("utf-16")
    if choice == 1:
        return b"\xef\xbb\xbf" + data
    if choice == 2:  # semicolons and decimal commas (European spreadsheets)
        return text.replace(",", ";").replace(".", ",").encode()
    if choice == 3:
        return text.replace(",", "\t").replace("\n", "\r\n").encode()
    if choice == 4:  # one very long cell
        lines[row] += "9" * (1000 * (1 + value))
    elif choice == 5:  # a row with many more columns
        lines[row] += ",1" * (50 * (1 + value))
    elif choice == 6:  # quoted cells, one of them unterminated
        lines[row] = '"' + lines[row].replace(",", '","') + ('"' if value & 16 else "")
    elif choice == 7:
        lines[row] = "1e999,-1e999" if value & 16 else "nan,inf"
    elif choice == 8:  # header only, or header and one row
        lines = lines[: 1 + (value >> 4) % 2]
    elif choice == 9:  # a non-ASCII header in Latin-1
        return ("zeit_s,emg_\u00b5V\n" + "\n".join(lines[1:])).encode("latin-1", "replace")
    elif choice == 10:  # blank and comment lines in the middle
        lines[row:row] = ["", "# pause", ""]
    else:  # a hostile value in one cell
        bad = HOSTILE[value % len(HOSTILE)].decode("latin-1")
        lines[row] = lines[row].split(",")[0] + "," + bad
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def field_edit(name: str, data: bytes, pos: int, value: int) -> bytes:
    """Replace one field that the format's structure defines (a header token, an EDF field, a
    WAV chunk value, the .npy header dict, an NPZ member, a CSV export's encoding or shape)
    with a hostile value; ``pos`` picks the field, ``value`` what goes there."""
    suffix = Path(name).suffix.lower()
    if suffix == ".hea":
        spans = [(m.start(), m.end()) for m in re.finditer(rb"\S+", data)]
        if not spans:
            return data
        start, end = spans[pos % len(spans)]
        return data[:start] + HOSTILE[value % len(HOSTILE)] + data[end:]
    if suffix == ".edf":
        spans = _edf_spans(data)
        if not spans:  # cut to nothing by an earlier edit
            return data
        start, width = spans[pos % len(spans)]
        token = HOSTILE[value % len(HOSTILE)]
        # most edits keep the field's width (a well-formed header with a bad value), some not
        token = token[:width].ljust(width) if value % 4 else token
        return data[:start] + token + data[start + width :]
    if suffix == ".wav":
        offset, width = _WAV_FIELDS[pos % len(_WAV_FIELDS)]
        number = HOSTILE_INTS[value % len(HOSTILE_INTS)] % (1 << (8 * width))
        return data[:offset] + number.to_bytes(width, "little") + data[offset + width :]
    if suffix == ".npy":
        return _field_npy(data, pos, value)
    if suffix == ".npz":
        return _field_npz(data, pos, value)
    if suffix == ".csv":
        return _field_csv(data, pos, value)
    # raw sample files (.dat, .bin): lengths that split a sample or hold none
    return data[: (pos | 1) if value % 2 else 0]


def mutate(name: str, data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    """``data`` (the file ``name``: its suffix says which fields ``field`` edits) edited."""
    out = bytearray(data)
    for kind, pos, value in edits:
        if kind == "field":
            out = bytearray(field_edit(name, bytes(out), pos, value))
            continue
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


#: What a mutation can be: (kind, position, value) edits, as ``mutate`` applies them; ``field``
#: is the structured edit (``field_edit``), the others are byte edits.
KINDS = ("flip", "nasty", "cut", "insert", "digits", "field")


def entry_name(names: list[str]) -> str:
    """The file to read of a seed's files (the header of a WFDB pair)."""
    return next((n for n in names if n.endswith(".hea")), names[0])
