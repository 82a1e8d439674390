"""CSV / TSV text tables: one column per channel, optionally a time column.

* Delimiter: tab, semicolon, comma or pipe, whichever splits every sampled line into the same
  number (> 1) of fields; otherwise runs of whitespace (which also covers one-column files).
  With ``;`` as delimiter, decimal commas (``1,5``) are read as decimal points.
* Encoding: UTF-8 (with or without a BOM), UTF-16 with a BOM, else Latin-1. Cells may be
  quoted; a quote is never taken to span lines.
* Header row: present when any cell of the first row is not a number. Lines starting with
  ``#`` are comments.
* Time column (header only): a column named ``time``, ``t``, ``time_s``, ``seconds``,
  ``time_ms``, ``ms``, ``time (us)``, ``timestamp``, ... ; its unit comes from the name,
  seconds by default. The rate is ``(n - 1) / (t_last - t_first)``: the least-biased estimate
  when the times were written with few decimals. Sampling is refused as irregular when any
  step differs from the mean step by more than 1 % (plus the rounding of the written times).
  ``fs_hz=`` overrides the time column (which is then only checked for being increasing).
* Row-number columns (an unnamed first column from ``DataFrame.to_csv``, ``index``,
  ``sample``) counting 0, 1, 2, ... are dropped (``meta["index_columns"]``).
* Units: from a column-name suffix (``emg_mv``, ``EMG (uV)``, ``ch1 [V]``), else µV
  (``meta["units_assumed"] = True``) or ``uv_per_unit``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from emgdx.errors import (
    ChannelMismatchError,
    EmptySignalError,
    NonNumericDataError,
    SamplingRateError,
)
from emgdx.io._common import (
    ChannelData,
    FileData,
    check_fs,
    decode_text,
    unique_names,
    unit_from_suffix,
    uv_scale,
)

__all__ = ["is_number", "read_table", "sniff_delimiter", "time_column_unit_s"]

_DELIMITERS = ("\t", ";", ",", "|")
_TIME_NAME = re.compile(
    r"^(?P<base>time|t|timestamp|times|seconds|second|secs|sec|s|ms|milliseconds|us|µs)"
    r"(?:[\s_\-]*[\(\[]?(?P<unit>s|sec|secs|seconds|ms|msec|milliseconds|us|µs|usec|"
    r"microseconds)[\)\]]?)?$",
    re.IGNORECASE,
)
_UNIT_SECONDS = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "seconds": 1.0,
    "second": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "milliseconds": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "usec": 1e-6,
    "microseconds": 1e-6,
}


def time_column_unit_s(name: str) -> float | None:
    """Seconds per unit if ``name`` names a time column (``time_ms`` -> 1e-3), else None."""
    m = _TIME_NAME.match(name.strip())
    if not m:
        return None
    unit = (m.group("unit") or m.group("base")).lower()
    return _UNIT_SECONDS.get(unit, 1.0)


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def sniff_delimiter(lines: list[str]) -> str | None:
    """The delimiter that splits (nearly) every sampled line into the same number (> 1) of
    fields; ``None`` for whitespace-separated or one-column text. A few odd lines are allowed
    so that a ragged row is reported as such, not as a wrong delimiter."""
    sample = lines[:50]
    for delim in _DELIMITERS:
        counts = [len(row) for row in csv.reader(sample, delimiter=delim)]
        width = counts[0]  # the first row (header or data) sets the column count
        if width > 1 and len(counts) - counts.count(width) <= max(1, len(counts) // 5):
            return delim
    return None


def read_table(path: Path, *, fs_hz: float | None, uv_per_unit: float | None) -> FileData:
    """Read a delimited text table of EMG samples.

    Parameters
    ----------
    path
        The CSV/TSV/text file.
    fs_hz
        Sampling rate; overrides a time column, required when there is none.
    uv_per_unit
        µV per value for columns without a unit suffix (default: values are µV).

    Returns
    -------
    FileData
        One channel per non-time column.
    """
    numbered = [
        (no, ln)
        for no, ln in enumerate(decode_text(path.read_bytes()).splitlines(), start=1)
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not numbered:
        raise EmptySignalError(path, "the table holds no rows")
    try:
        delim = sniff_delimiter([ln for _, ln in numbered])
        if delim is None:
            rows = [ln.split() for _, ln in numbered]
        else:
            lines = [ln for _, ln in numbered]
            rows = list(csv.reader(lines, delimiter=delim))
            if len(rows) != len(lines):  # an unclosed quote ran across lines: parse each alone
                rows = [next(csv.reader([ln], delimiter=delim)) for ln in lines]
            rows = [[c.strip() for c in r] for r in rows]
    except csv.Error as exc:  # e.g. a field over the csv module's size limit
        raise NonNumericDataError(path, f"not a table of numbers: {exc}") from None
    line_numbers = [no for no, _ in numbered]
    if delim == ";" and not any("." in c for c in rows[-1]):
        rows = [[c.replace(",", ".") for c in r] for r in rows]

    has_header = not all(is_number(c) for c in rows[0])
    n_cols = len(rows[0])
    header = rows[0] if has_header else [f"ch{i}" for i in range(n_cols)]
    body, body_lines = (rows[1:], line_numbers[1:]) if has_header else (rows, line_numbers)
    if not body:
        raise EmptySignalError(path, "the table has a header but no data rows")
    for r, no in zip(body, body_lines, strict=True):
        if len(r) != n_cols:
            raise ChannelMismatchError(
                path, f"line {no} has {len(r)} values, expected {n_cols} (one per column)"
            )

    # Column by column from the parsed cells: a fixed-width string array would be sized by
    # the longest cell (one 100 KB cell in a small file asked for gigabytes).
    columns = [[r[j] for r in body] for j in range(n_cols)]
    values = np.empty((len(body), n_cols), dtype=np.float64)
    for j, column in enumerate(columns):
        try:
            values[:, j] = np.fromiter(map(float, column), dtype=np.float64, count=len(column))
        except ValueError:
            i = next(i for i, cell in enumerate(column) if not is_number(cell))
            cell = column[i] if len(column[i]) <= 40 else column[i][:40] + "…"
            raise NonNumericDataError(
                path, f"line {body_lines[i]}, column {header[j][:40]!r}: {cell!r} is not a number"
            ) from None

    meta: dict[str, Any] = {"format": "tsv" if delim == "\t" else "csv"}
    index_cols = _index_columns(header, values) if has_header else []
    if index_cols:
        meta["index_columns"] = [header[j] for j in index_cols]
    header = [name or f"ch{j}" for j, name in enumerate(header)]
    time_col: int | None = None
    fs_from_time: float | None = None
    if has_header:
        for j, name in enumerate(header):
            if time_column_unit_s(name) is not None:
                time_col = j
                break
    if time_col is not None:
        unit_s = time_column_unit_s(header[time_col]) or 1.0
        t = values[:, time_col] * unit_s
        meta["time_column"] = header[time_col]
        fs_from_time = _fs_from_time(
            path, t, np.asarray(columns[time_col]), unit_s, header[time_col], fs_hz
        )
        meta["time_start_s"] = float(t[0])
    if fs_hz is not None:
        fs = check_fs(path, fs_hz, "argument")
        meta["fs_source"] = "argument"
    elif fs_from_time is not None:
        fs = fs_from_time
        meta["fs_source"] = "time column"
    else:
        fs = check_fs(path, None, "a table without a time column")

    signal_cols = [j for j in range(n_cols) if j != time_col and j not in index_cols]
    if not signal_cols:
        raise EmptySignalError(path, "the table holds a time column but no signal column")
    names: list[str | None] = unique_names([header[j] for j in signal_cols])
    if len(signal_cols) == 1 and not has_header:
        names = [None]
    channels = []
    for j, ch_name in zip(signal_cols, names, strict=True):
        unit = unit_from_suffix(header[j]) if has_header else None
        factor, assumed = uv_scale(path, unit, uv_per_unit)
        ch_meta: dict[str, Any] = {"units_source": unit}
        if assumed:
            ch_meta["units_assumed"] = True
        channels.append(
            ChannelData((values[:, j] * factor).astype(np.float32), fs, ch_name, ch_meta)
        )
    return FileData(path, channels, meta)


_INDEX_NAMES = ("", "index", "unnamed: 0", "sample", "sample_index", "samples")


def _index_columns(header: list[str], values: np.ndarray) -> list[int]:
    """Row-number columns (pandas' unnamed index, ``sample``) that are not signals: the name
    says index and the values count 0, 1, 2, ... (or 1, 2, 3, ...)."""
    out = []
    n = values.shape[0]
    for j, name in enumerate(header):
        if name.strip().lower() in _INDEX_NAMES:
            col = values[:, j]
            if np.array_equal(col, np.arange(n)) or np.array_equal(col, np.arange(1, n + 1)):
                out.append(j)
    return out


def _fs_from_time(
    path: Path,
    t: np.ndarray,
    text: np.ndarray,
    unit_s: float,
    name: str,
    fs_hz: float | None,
) -> float:
    """Rate from a time column; refuses decreasing or irregular time unless fs_hz is given."""
    if t.size < 2:
        if fs_hz is None:
            raise SamplingRateError(path, f"one row only: cannot infer a rate from column {name!r}")
        return float(fs_hz)
    steps = np.diff(t)
    if not np.all(np.isfinite(steps)) or np.any(steps <= 0):
        first = int(np.argmax(~(steps > 0)))
        raise SamplingRateError(
            path, f"time column {name!r} does not increase at row {first + 2} of the data"
        )
    if fs_hz is not None:
        return float(fs_hz)
    mean_step = (t[-1] - t[0]) / (t.size - 1)
    # Allowance for the rounding of the written times: one unit in their last decimal.
    decimals = max((len(s.partition(".")[2]) for s in text if "e" not in s.lower()), default=0)
    resolution_s = 10.0 ** (-decimals) * unit_s
    deviation = np.abs(steps - mean_step)
    if float(deviation.max()) > 0.01 * mean_step + resolution_s:
        worst = int(np.argmax(deviation))
        raise SamplingRateError(
            path,
            f"time column {name!r} is irregular: steps range from {steps.min():.6g} s to "
            f"{steps.max():.6g} s (mean {mean_step:.6g} s, worst at data row {worst + 2}); "
            "resample it or give the rate (--fs-hz on the command line, fs_hz= in Python)",
        )
    return float(1.0 / mean_step)
