"""Readers: any supported EMG file or folder -> :class:`~emgdx.recording.Recording` objects.

* :func:`read` - one file -> one Recording per channel (the multichannel convention of
  :mod:`emgdx.recording`: ``record_id`` is the file stem, or ``"<stem>:<channel>"`` when the
  file holds more than one channel).
* :func:`read_recording` - one file -> exactly one Recording.
* :func:`read_cohort` - a folder -> :class:`~emgdx.recording.Cohort`; bad files are reported
  and skipped.
* :func:`read_manifest` - the CSV that says subject/label/muscle/level/rate per record.

Formats (one module each): WFDB/EMGLAB ``.hea`` + ``.dat``/``.bin``
(:mod:`~emgdx.io.wfdb_format`), EDF/EDF+/BDF/BDF+ (:mod:`~emgdx.io.edf`), CSV/TSV
(:mod:`~emgdx.io.tabular`), NPY/NPZ (:mod:`~emgdx.io.numpy_format`), WAV
(:mod:`~emgdx.io.wav`). The format is found from the content first and the extension second
(:mod:`~emgdx.io.sniff`). Signals come out as float32 µV; units are converted from the file's
declared unit (uV/µV, mV, V, nV), and files without units (WAV, NPY, CSV without a unit
suffix) are taken as µV unless ``uv_per_unit`` says otherwise (``meta["units_assumed"]``).
Subjects and labels follow the precedence documented in :mod:`~emgdx.io.labels`.

Every problem with a file raises an :mod:`emgdx.errors` exception whose message starts with
the file's path and says what is wrong.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from emgdx.errors import (
    ChannelMismatchError,
    ConfigError,
    EmgdxError,
    MissingFileError,
    NoRecordsError,
    ReadError,
)
from emgdx.io._common import (
    SUPPORTED_EXTENSIONS,
    FileData,
    check_fs,
    check_signal,
)
from emgdx.io.edf import read_edf
from emgdx.io.labels import manifest_row, read_manifest, resolve_identity
from emgdx.io.numpy_format import read_npy, read_npz
from emgdx.io.sniff import Format, detect_format
from emgdx.io.tabular import read_table
from emgdx.io.wav import read_wav
from emgdx.io.wfdb_format import read_wfdb, signal_files_of_header
from emgdx.recording import LABELS, Cohort, Label, Recording, normalise_label

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "UnreadableFileWarning",
    "detect_format",
    "read",
    "read_cohort",
    "read_manifest",
    "read_recording",
]

logger = logging.getLogger(__name__)

#: Files that :func:`read_cohort` never treats as recordings.
_SIDECAR_NAMES = ("manifest.csv", "manifest.tsv")
_SIDECAR_SUFFIXES = (".truth.json",)


#: One file to read in :func:`read_cohort`: its path, its folder's manifest and its site.
_Job = tuple[Path, pd.DataFrame | None, str | None]


class UnreadableFileWarning(UserWarning):
    """Issued once per file that :func:`read_cohort` had to skip."""


def _dispatch(fmt: Format, path: Path, fs_hz: float | None, uv_per_unit: float | None) -> FileData:
    if fmt == "wfdb":
        return read_wfdb(path, fs_hz=fs_hz, uv_per_unit=uv_per_unit)
    if fmt in ("edf", "bdf"):
        return read_edf(path, uv_per_unit=uv_per_unit, bdf=fmt == "bdf")
    if fmt == "csv":
        return read_table(path, fs_hz=fs_hz, uv_per_unit=uv_per_unit)
    if fmt == "npy":
        return read_npy(path, fs_hz=fs_hz, uv_per_unit=uv_per_unit)
    if fmt == "npz":
        return read_npz(path, fs_hz=fs_hz, uv_per_unit=uv_per_unit)
    return read_wav(path, uv_per_unit=uv_per_unit)


def _parse(path: Path, fs_hz: float | None, uv_per_unit: float | None) -> tuple[Path, FileData]:
    """Find the format and parse: the only exceptions that leave are ``emgdx.errors`` ones.

    The readers validate what they parse, but the third-party parsers under them (wfdb,
    edfio, scipy.io.wavfile, numpy) raise their own exceptions on malformed files
    (IndexError, ZeroDivisionError, UnboundLocalError, OSError, ...). A hostile or broken
    file must give a clear error naming it, never a traceback, so anything else is turned
    into a :class:`ReadError` here, with the folders cut from its message.
    """
    fmt = "file"
    try:
        fmt, target = detect_format(path)
        return target, _dispatch(fmt, target, fs_hz, uv_per_unit)
    except EmgdxError:
        raise
    except MemoryError:
        raise ReadError(path, f"too large to read into memory as a {fmt} file") from None
    except Exception as exc:  # any third-party parser error: see the docstring
        message = str(exc)
        for folder in {str(path.parent), str(path.parent.resolve())} - {"", "."}:
            message = message.replace(folder + os.sep, "")
        if len(message) > 200:
            message = message[:200] + "…"
        raise ReadError(
            path, f"not a readable {fmt} file ({type(exc).__name__}: {message})"
        ) from None


def _check_label(label: str | None) -> Label | None:
    if label is None:
        return None
    norm = normalise_label(label)
    if norm is None:
        raise ConfigError(f"label {label!r} is not one of {', '.join(LABELS)}")
    return norm


def _select(path: Path, data: FileData, channels: Sequence[str] | None) -> list[int]:
    """Positions of the requested channels (all when ``channels`` is None)."""
    names = [c.name if c.name is not None else f"ch{i}" for i, c in enumerate(data.channels)]
    if channels is None:
        return list(range(len(names)))
    if isinstance(channels, str):  # a bare string would be taken letter by letter
        channels = [channels]
    picked = []
    for wanted in channels:
        hits = [i for i, n in enumerate(names) if n == wanted]
        hits = hits or [i for i, n in enumerate(names) if n.lower() == str(wanted).lower()]
        if not hits:
            raise ChannelMismatchError(
                path, f"no channel {wanted!r}; the file has channels {names}"
            )
        picked.append(hits[0])
    return picked


def _read(
    path: Path,
    *,
    fs_hz: float | None,
    channels: Sequence[str] | None = None,
    subject_id: str | None = None,
    label: Label | None = None,
    uv_per_unit: float | None = None,
    manifest: pd.DataFrame | None = None,
    site: str | None = None,
) -> list[Recording]:
    target = path
    stem = target.stem
    fs_source = "argument"
    if fs_hz is None:
        row_fs = manifest_row(manifest, stem).get("fs_hz")
        if row_fs is not None:
            fs_hz, fs_source = float(row_fs), "manifest"
    if fs_hz is not None:
        fs_hz = check_fs(target, fs_hz, fs_source)
    if uv_per_unit is not None and not float(uv_per_unit) > 0:
        raise ConfigError(f"uv_per_unit must be a positive number, got {uv_per_unit!r}")

    target, data = _parse(path, fs_hz, uv_per_unit)
    picked = _select(target, data, channels)
    n_total = len(data.channels)
    recordings = []
    for i in picked:
        ch = data.channels[i]
        meta: dict[str, Any] = copy.deepcopy(data.meta)
        meta.update(ch.meta)
        if fs_hz is not None:
            if abs(ch.fs_hz - fs_hz) > 1e-9 * fs_hz:
                meta["fs_declared_hz"] = ch.fs_hz
                warnings.warn(
                    f"{target}: channel {ch.name!r} declares {ch.fs_hz:g} Hz; "
                    f"using {fs_hz:g} Hz from the {fs_source}",
                    stacklevel=3,
                )
            fs = fs_hz
            meta["fs_source"] = fs_source
        else:
            fs = ch.fs_hz
            meta.setdefault("fs_source", "file")
        check_signal(target, ch.signal, fs, ch.name)
        name = ch.name if ch.name is not None else f"ch{i}"
        record_id = stem if n_total == 1 else f"{stem}:{name}"
        row = manifest_row(manifest, stem, ch.name)
        ident = resolve_identity(stem, meta, row, subject_id=subject_id, label=label, site=site)
        meta.update(
            label_source=ident.label_source,
            subject_source=ident.subject_source,
            level=ident.level,
            channel_index=i,
            n_channels_in_file=n_total,
        )
        if row:
            meta["manifest"] = row
        recordings.append(
            Recording(
                signal=ch.signal,
                fs_hz=fs,
                record_id=record_id,
                subject_id=ident.subject_id,
                label=ident.label,
                muscle=ident.muscle,
                channel=ch.name,
                meta=meta,
                source=str(target),
                site=ident.site,
            )
        )
    return recordings


def read(
    path: str | os.PathLike[str],
    *,
    fs_hz: float | None = None,
    channels: Sequence[str] | None = None,
    subject_id: str | None = None,
    label: str | None = None,
    uv_per_unit: float | None = None,
) -> list[Recording]:
    """Read one EMG file (any supported format) into one Recording per channel.

    Parameters
    ----------
    path
        The file: a ``.hea`` header (or its ``.dat``/``.bin`` signal file, or the bare record
        name), EDF/BDF, CSV/TSV, NPY/NPZ or WAV. The format is found from the content, so a
        missing or wrong extension is fine.
    fs_hz
        Sampling rate in Hz. Required for files that store none (NPY, a CSV without a time
        column); when the file declares a different rate, ``fs_hz`` wins for every channel,
        a warning is issued and ``meta["fs_declared_hz"]`` keeps the file's value.
    channels
        Names of the channels to return, in this order (default: all). An unnamed single
        channel is called ``"ch0"``.
    subject_id
        Subject of the recording (default: from the EMGLAB record name, else the record stem,
        i.e. one record = one subject).
    label
        Diagnosis label (``healthy``/``neurogenic``/``myopathy`` or text that
        :func:`~emgdx.recording.normalise_label` understands); default: the header's
        diagnosis, else the EMGLAB record name, else None.
    uv_per_unit
        µV per stored unit for files without a voltage unit (WAV, NPY, CSV columns without a
        unit suffix, EDF/WFDB signals with an unknown unit). Default: values are µV.

    Returns
    -------
    list of Recording
        Float32 µV signals; ``meta`` holds the normalised header fields (see
        :mod:`emgdx.io.metadata`), ``format``, ``units_source``, ``digital_range_uv`` where the
        format has one, ``label_source``, ``subject_source`` and ``fs_source``.

    Raises
    ------
    ReadError
        Or one of its subclasses (UnknownFormatError, TruncatedDataError, HeaderMismatchError,
        NonNumericDataError, NonFiniteDataError, EmptySignalError, SamplingRateError,
        ChannelMismatchError), naming the file and the problem.
    ConfigError
        An invalid ``label`` or ``uv_per_unit``.

    Examples
    --------
    >>> recs = read("N2001A01BB01.hea")  # doctest: +SKIP
    >>> recs[0].fs_hz, recs[0].label, recs[0].subject_id  # doctest: +SKIP
    (23437.5, 'neurogenic', 'N2001A01')
    """
    return _read(
        Path(path),
        fs_hz=fs_hz,
        channels=channels,
        subject_id=subject_id,
        label=_check_label(label),
        uv_per_unit=uv_per_unit,
    )


def read_recording(
    path: str | os.PathLike[str],
    *,
    channel: str | None = None,
    fs_hz: float | None = None,
    subject_id: str | None = None,
    label: str | None = None,
    uv_per_unit: float | None = None,
) -> Recording:
    """Read exactly one channel of a file as a Recording.

    Parameters
    ----------
    path
        The file (see :func:`read`).
    channel
        Which channel; required when the file holds more than one.
    fs_hz, subject_id, label, uv_per_unit
        As in :func:`read`.

    Returns
    -------
    Recording

    Raises
    ------
    ChannelMismatchError
        The file has several channels and none was chosen (the message lists them), or the
        chosen one does not exist.
    """
    recs = read(
        path,
        fs_hz=fs_hz,
        channels=None if channel is None else [channel],
        subject_id=subject_id,
        label=label,
        uv_per_unit=uv_per_unit,
    )
    if len(recs) != 1:
        raise ChannelMismatchError(
            path,
            f"holds {len(recs)} channels {[r.channel for r in recs]}; choose one with channel=",
        )
    return recs[0]


def _candidates(folder: Path, recursive: bool, manifest_path: Path | None) -> list[Path]:
    """Files of a folder that are records (a header and its signal files count once)."""
    found = folder.rglob("*") if recursive else folder.glob("*")
    files = sorted(
        p
        for p in found
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    # Paths from one rglob share their prefix, so plain normalised strings compare (resolve()
    # per file costs more than reading the headers).
    skip: set[str] = set()
    if manifest_path is not None:
        skip.update({os.path.normpath(manifest_path), str(manifest_path.resolve())})
    for header in (p for p in files if p.suffix.lower() == ".hea"):
        skip.update(os.path.normpath(header.parent / n) for n in signal_files_of_header(header))
    out = []
    for p in files:
        name = p.name.lower()
        if name in _SIDECAR_NAMES or name.endswith(_SIDECAR_SUFFIXES):
            continue
        if p.suffix.lower() not in SUPPORTED_EXTENSIONS or os.path.normpath(p) in skip:
            logger.debug("read_cohort: ignoring %s", p)
            continue
        out.append(p)
    return out


def read_cohort(
    folder: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    manifest: str | os.PathLike[str] | Literal["auto"] | None = "auto",
    recursive: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    n_jobs: int = 1,
    fs_hz: float | None = None,
) -> Cohort:
    """Read every record in a folder (or several: one per site); bad files are reported and skipped.

    Parameters
    ----------
    folder
        The folder, or a list of folders, e.g. one per hospital. Files with a supported
        extension (:data:`SUPPORTED_EXTENSIONS`) are records; a ``.hea`` and the signal files it
        names count as one record. Hidden files, ``manifest.csv`` sidecars, ``*.truth.json`` and
        other files (``.txt``, ``.md``, ``.json``, ...) are ignored. With several folders, every
        record's ``site`` is its manifest's ``site`` column, else its folder's name; a subject
        or record name that two sites both use is prefixed with the site (``"<site>/<name>"``,
        with a warning), since two hospitals' "S01" are two people.
    manifest
        ``"auto"`` (default) uses ``<folder>/manifest.csv`` of each folder when it exists; a
        path names one manifest for every folder (see :func:`read_manifest`); ``None`` uses
        none. The manifest's subject, label, muscle, level, rate and site win over what the files
        say (see :mod:`emgdx.io.labels`).
    recursive
        Also read sub-folders.
    on_progress
        Called as ``on_progress(done, total)`` once with ``done = 0`` and then after each
        file, e.g. to draw a progress bar.
    n_jobs
        Threads reading files at once (``-1``: one per CPU). Only the file reads and numpy
        conversions release the GIL; header parsing (wfdb) does not, so on the 2-core
        development machine 2 threads were no faster for N2001 (0.46-0.53 s vs 0.33-0.47 s
        serial). Worth trying on many cores or slow network storage.
    fs_hz
        Sampling rate for files that store none and have no manifest rate.

    Returns
    -------
    Cohort
        The recordings (ordered by folder, then path) and, in ``errors``, one
        :class:`~emgdx.errors.ReadError` per file that could not be read; each of those is also
        issued once as an :class:`UnreadableFileWarning` naming the file and the problem.

    Raises
    ------
    ReadError
        A folder does not exist or is not a folder, or a manifest is unreadable.
    ConfigError
        No folder given, or two folders with the same name and no ``site`` column.
    NoRecordsError
        No file in the folder(s) could be read.
    """
    roots = [Path(folder)] if isinstance(folder, str | os.PathLike) else [Path(f) for f in folder]
    if not roots:
        raise ConfigError("read_cohort needs at least one data folder")
    multi = len(roots) > 1
    names = [r.resolve().name for r in roots]
    if multi and len(set(names)) < len(names):
        raise ConfigError(
            f"data folders share a name ({names}): the folder name is the site, so rename them"
            " or give each manifest a site column"
        )
    jobs: list[_Job] = []
    tables: list[pd.DataFrame] = []
    for root, name in zip(roots, names, strict=True):
        if not root.exists():
            raise MissingFileError(root, "no such folder")
        if not root.is_dir():
            raise ReadError(root, "is a file, not a folder; use read() for single files")
        manifest_path: Path | None
        if isinstance(manifest, str) and manifest == "auto":
            auto = root / "manifest.csv"
            manifest_path = auto if auto.is_file() else None
        else:
            manifest_path = None if manifest is None else Path(manifest)
        table = read_manifest(manifest_path) if manifest_path is not None else None
        if table is not None:
            tables.append(table)
        site = name if multi else None
        jobs += [(p, table, site) for p in _candidates(root, recursive, manifest_path)]

    total = len(jobs)
    if on_progress is not None:
        on_progress(0, total)

    def one(job: _Job) -> tuple[list[Recording], ReadError | None]:
        p, table, site = job
        try:
            recs = _read(p, fs_hz=fs_hz, manifest=table, site=site)
        except ReadError as exc:
            return [], exc
        except Exception as exc:  # keep going: one odd file must not sink a cohort
            return [], ReadError(p, f"unexpected {type(exc).__name__}: {exc}")
        return recs, None

    workers = (os.cpu_count() or 1) if n_jobs in (0, -1) else max(1, int(n_jobs))
    recordings: list[Recording] = []
    errors: list[ReadError] = []
    seen: dict[tuple[str | None, str], str | None] = {}

    def collect(recs: list[Recording], err: ReadError | None, done: int) -> None:
        if err is not None:
            errors.append(err)
            warnings.warn(str(err), UnreadableFileWarning, stacklevel=3)
        for rec in recs:
            key = (rec.site, rec.record_id)
            if key in seen:
                dup = ReadError(
                    rec.source or rec.record_id,
                    f"record_id {rec.record_id!r} was already read from {seen[key]}",
                )
                errors.append(dup)
                warnings.warn(str(dup), UnreadableFileWarning, stacklevel=3)
                continue
            seen[key] = rec.source
            recordings.append(rec)
        if on_progress is not None:
            on_progress(done, total)

    if workers == 1:
        for done, job in enumerate(jobs, start=1):
            collect(*one(job), done)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for done, result in enumerate(pool.map(one, jobs), start=1):
                collect(*result, done)

    if not recordings:
        detail = "; ".join(str(e) for e in errors[:3])
        where = roots[0] if not multi else Path(os.path.commonpath([str(r) for r in roots]))
        raise NoRecordsError(
            where,
            f"no readable record among {total} candidate file(s)"
            + (f" (first problems: {detail})" if detail else ""),
        )
    for table in tables:
        read_stems = {Path(r.source).stem for r in recordings if r.source}
        unmatched = [rid for rid in table.index if str(rid).split(":")[0] not in read_stems]
        if unmatched:
            logger.info("manifest rows without a readable file: %s", unmatched[:10])
    if multi:
        recordings = _separate_sites(recordings)
    return Cohort.from_recordings(recordings, errors)


def _separate_sites(recordings: list[Recording]) -> list[Recording]:
    """Prefix subject and record names that more than one site uses with the site."""
    out = recordings
    for attr in ("subject_id", "record_id"):
        sites_of: dict[str, set[str | None]] = {}
        for rec in out:
            sites_of.setdefault(getattr(rec, attr), set()).add(rec.site)
        shared = sorted(name for name, sites in sites_of.items() if len(sites) > 1)
        if shared:
            warnings.warn(
                f"{len(shared)} {attr.replace('_id', '')} name(s) occur at more than one site "
                f"(e.g. {shared[:3]}): they are read as different, named <site>/<name>",
                stacklevel=3,
            )
            for rec in out:
                if getattr(rec, attr) in shared:
                    setattr(rec, attr, f"{rec.site}/{getattr(rec, attr)}")
    return out
