"""EDF, EDF+, BDF and BDF+ through :mod:`edfio`.

Every ordinary signal becomes a channel (EDF+ annotation signals are skipped by edfio); the
physical dimension (uV/µV/mV/V/nV) is converted to µV. Signals of one EDF file may have
different rates: each channel keeps its own rate (they all span the same duration by
construction of the format). ``digital_range_uv`` is the physical range that the header maps
to its digital min/max, i.e. where the ADC clips. Patient names and birth dates are not
copied into the metadata; only sex (from the EDF+ patient field) is.

edfio only *warns* about a file shorter than its header says and reads what is there; here
the header's record count is checked against the file size first, so a truncated file raises
:class:`~emgdx.errors.TruncatedDataError`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import edfio
import numpy as np

from emgdx.errors import HeaderMismatchError, TruncatedDataError
from emgdx.io._common import ChannelData, FileData, unique_names, uv_scale
from emgdx.io.metadata import normalise_sex, parse_frequency_hz

__all__ = ["BDF_MAGIC", "EDF_MAGIC", "header_is_valid", "read_edf"]

EDF_MAGIC = b"0       "
BDF_MAGIC = b"\xffBIOSEMI"


def _field(head: bytes, start: int, stop: int) -> str:
    return head[start:stop].decode("ascii", errors="replace").strip()


def header_is_valid(head: bytes) -> bool:
    """Whether the first bytes of a file hold a consistent EDF/BDF main header."""
    if len(head) < 256 or head[:8] not in (EDF_MAGIC, BDF_MAGIC):
        return False
    header_bytes, ns = _field(head, 184, 192), _field(head, 252, 256)
    return header_bytes.isdigit() and ns.isdigit() and int(header_bytes) == 256 * (int(ns) + 1)


def _check_size(path: Path, bdf: bool) -> str:
    """Refuse a file whose header is broken or that holds fewer data records than declared.

    Returns the header's "reserved" field ("EDF+C", "EDF+D", "BDF+C", ... or blank).
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(256)
        if not header_is_valid(head):
            raise HeaderMismatchError(path, "not a valid EDF/BDF header (first 256 bytes)")
        ns = int(_field(head, 252, 256))
        signal_header = fh.read(256 * ns)
    if len(signal_header) < 256 * ns:
        raise TruncatedDataError(path, f"the file ends inside the header of its {ns} signals")
    n_records_text = _field(head, 236, 244)
    try:
        n_records = int(n_records_text)
        spr = [
            int(_field(signal_header, 216 * ns + 8 * i, 216 * ns + 8 * i + 8)) for i in range(ns)
        ]
    except ValueError:
        raise HeaderMismatchError(path, "EDF header fields are not integers") from None
    reserved = _field(head, 192, 236)
    if n_records < 0:  # -1: "still recording"; edfio infers the count from the size
        return reserved
    bytes_per_record = sum(spr) * (3 if bdf else 2)
    held = (size - 256 * (ns + 1)) // bytes_per_record if bytes_per_record else 0
    if held < n_records:
        raise TruncatedDataError(
            path, f"the header declares {n_records} data records, the file holds only {held}"
        )
    return reserved


_FILTER = re.compile(r"\b(?P<kind>HP|LP)\s*:?\s*(?P<value>[0-9.]+\s*[kK]?Hz)", re.IGNORECASE)


def _filters(prefiltering: str) -> dict[str, float]:
    """``"HP:2Hz LP:10kHz"`` -> highpass_hz / lowpass_hz."""
    out: dict[str, float] = {}
    for m in _FILTER.finditer(prefiltering):
        hz = parse_frequency_hz(m.group("value"))
        if hz is not None:
            out["highpass_hz" if m.group("kind").upper() == "HP" else "lowpass_hz"] = hz
    return out


def read_edf(path: Path, *, uv_per_unit: float | None, bdf: bool) -> FileData:
    """Read an EDF(+) or BDF(+) file.

    Parameters
    ----------
    path
        The file.
    uv_per_unit
        µV per physical unit for signals whose dimension is not a voltage unit.
    bdf
        True for BioSemi 24-bit files.

    Returns
    -------
    FileData
        One channel per ordinary signal, float32 µV, each at its own rate.
    """
    reserved = _check_size(path, bdf)
    with warnings.catch_warnings(record=True) as caught, path.open("rb") as fh:
        warnings.simplefilter("always")
        try:
            edf: Any = edfio.read_bdf(fh) if bdf else edfio.read_edf(fh, lazy_load_data=False)
            signals = list(edf.signals)
            data = [np.asarray(s.data) for s in signals]
        except Exception as exc:  # edfio raises ValueError/IndexError on broken headers
            raise HeaderMismatchError(path, f"edfio cannot read the file: {exc}") from exc
    kind = "bdf" if bdf else "edf"
    plus = reserved.upper().startswith(("EDF+", "BDF+"))
    file_meta: dict[str, Any] = {"format": f"{kind}+" if plus else kind}
    if reserved.upper().endswith("+D"):
        file_meta["discontinuous"] = True
        warnings.warn(
            f"{path}: EDF+D/BDF+D file with gaps; its data records are joined without the gaps",
            stacklevel=3,
        )
    try:
        sex = normalise_sex(edf.patient.sex)
        if sex is not None:
            file_meta["sex"] = sex
    except Exception:  # plain EDF patient fields are free text
        pass
    if caught:
        file_meta["reader_warnings"] = [str(w.message) for w in caught]
    names = unique_names([s.label or f"ch{i}" for i, s in enumerate(signals)])
    if len(signals) == 1 and not signals[0].label:
        names = [None]
    channels = []
    for i, (sig, values) in enumerate(zip(signals, data, strict=True)):
        unit = sig.physical_dimension
        factor, assumed = uv_scale(path, unit, uv_per_unit, where=f"signal {sig.label!r}")
        lo, hi = sorted((sig.physical_min * factor, sig.physical_max * factor))
        meta: dict[str, Any] = {
            "units_source": unit,
            "digital_range_uv": (float(lo), float(hi)),
            "transducer": sig.transducer_type or None,
            "prefiltering": sig.prefiltering or None,
            **_filters(sig.prefiltering or ""),
        }
        if assumed:
            meta["units_assumed"] = True
        channels.append(
            ChannelData(
                (values * factor).astype(np.float32), float(sig.sampling_frequency), names[i], meta
            )
        )
    return FileData(path, channels, file_meta)
