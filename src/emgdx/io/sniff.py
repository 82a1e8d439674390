"""Which reader a file needs: decided by its content first, its extension second.

Magic bytes identify NPY (``\\x93NUMPY``), NPZ (a zip, ``PK\\x03\\x04``), WAV
(``RIFF....WAVE``), BDF (``\\xffBIOSEMI``) and EDF (``0`` and seven spaces, with a consistent
header); text is a WFDB header when it has a record line ``name nsig [fs [nsamp]]`` followed by
a signal line naming a file, else a table when its lines hold numbers. A WFDB signal file
(``.dat``/``.bin``, or a bare record name) is read through the ``.hea`` beside it. So a file
with a misleading or missing extension is still read by the right reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from emgdx.errors import EmptySignalError, MissingFileError, ReadError, UnknownFormatError
from emgdx.io.edf import BDF_MAGIC, EDF_MAGIC, header_is_valid
from emgdx.io.tabular import is_number, sniff_delimiter
from emgdx.io.wfdb_format import looks_like_header

__all__ = ["Format", "detect_format"]

Format = Literal["wfdb", "edf", "bdf", "wav", "npy", "npz", "csv"]

_TABLE_EXTENSIONS = (".csv", ".tsv", ".txt", ".tab")
_SIGNAL_EXTENSIONS = (".dat", ".bin", "")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _text(head: bytes) -> str | None:
    if head[:2] in _UTF16_BOMS:  # spreadsheets' "Unicode text" export
        return _printable(head[: len(head) // 2 * 2].decode("utf-16", "replace"))
    if b"\x00" in head:
        return None
    try:
        return head.decode("utf-8-sig")
    except UnicodeDecodeError:
        # A cut multi-byte character at the end of the sample is still text.
        try:
            return head[:-4].decode("utf-8-sig")
        except UnicodeDecodeError:
            text = head.decode("latin-1")
    return _printable(text)


def _printable(text: str) -> str | None:
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return text if printable >= 0.95 * max(len(text), 1) else None


def _looks_like_table(text: str) -> bool:
    """Whether the lines after a possible header row are all numbers."""
    lines = [ln for ln in text.splitlines()[:-1] if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        lines = [ln for ln in text.splitlines() if ln.strip()]
    body = lines[1:21] if len(lines) > 1 else lines
    if not body:
        return False
    delim = sniff_delimiter(lines[:50])
    for ln in body:
        cells = ln.split() if delim is None else ln.split(delim)
        if not all(is_number(c.strip().replace(",", ".")) for c in cells if c.strip()):
            return False
    return True


def detect_format(path: Path) -> tuple[Format, Path]:
    """The format of ``path`` and the file its reader should open.

    Parameters
    ----------
    path
        Any file: a signal file, a ``.hea`` header, or a WFDB signal file/record name whose
        ``.hea`` sits beside it (the header path is then returned).

    Returns
    -------
    (format, path)

    Raises
    ------
    ReadError
        The path does not exist or is a folder.
    EmptySignalError
        The file is empty.
    UnknownFormatError
        Neither content nor extension matches a readable format.
    """
    if not path.exists():
        if path.suffix == "" and path.with_suffix(".hea").is_file():
            return "wfdb", path.with_suffix(".hea")  # a WFDB record name
        raise MissingFileError(path, "no such file")
    if path.is_dir():
        raise ReadError(path, "is a folder; use read_cohort() to read a folder")
    ext = path.suffix.lower()
    header = path.with_suffix(".hea")
    # A raw signal file can start with any bytes, so its header decides before any magic.
    if ext in _SIGNAL_EXTENSIONS and header != path and header.is_file():
        return "wfdb", header
    if path.stat().st_size == 0:
        raise EmptySignalError(path, "the file is empty (0 bytes)")
    with path.open("rb") as fh:
        head = fh.read(8192)
    if head.startswith(b"\x93NUMPY"):
        return "npy", path
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "npz", path
    if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        return "wav", path
    if head.startswith(BDF_MAGIC):
        return "bdf", path
    if head.startswith(EDF_MAGIC) and (header_is_valid(head) or ext in (".edf", ".rec")):
        return "edf", path
    text = _text(head)
    if text is not None:
        if ext == ".hea" or looks_like_header(text):
            return "wfdb", path
        if ext in _TABLE_EXTENSIONS or _looks_like_table(text):
            return "csv", path
    if ext in (".dat", ".bin"):
        raise UnknownFormatError(
            path, f"raw signal file without a header: {header.name} not found beside it"
        )
    raise UnknownFormatError(
        path,
        f"content (first bytes {head[:8]!r}) matches no readable format and the extension "
        f"{ext or '(none)'!r} does not help; readable: WFDB/EMGLAB .hea, EDF, BDF, CSV/TSV, "
        "NPY, NPZ, WAV",
    )
