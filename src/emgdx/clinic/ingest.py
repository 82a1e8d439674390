"""Uploaded files → validated records, and stored files → :class:`~emgdx.recording.Recording`.

Client file names never become server paths as given: a name is cut to its last component and
must match :data:`SAFE_NAME`; files are only ever written into a fresh private temporary folder
for the readers (which need real files, e.g. a WFDB header beside its signal file) and the
folder is deleted afterwards. A WFDB header may only point to files uploaded with it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from emgdx.errors import EmgdxError, ReadError
from emgdx.recording import Recording

__all__ = [
    "SAFE_NAME",
    "ParsedRecord",
    "UploadError",
    "UploadedFile",
    "configure_staging",
    "parse_upload",
    "read_stored",
]

#: File names accepted in uploads: letters, digits, space and ``._+-()``; no separators.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .+()-]{0,199}$")


class UploadError(EmgdxError, ValueError):
    """An upload that cannot be accepted; the message names the file and the problem."""


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass
class ParsedRecord:
    """One record found in an upload, read and checked."""

    name: str
    format: str
    files: list[UploadedFile]
    channels: list[str]
    fs_hz: float
    duration_s: float
    qc_flags: list[str]
    read_options: dict[str, float] = field(default_factory=dict)


def safe_filename(raw: str | None) -> str:
    """The last path component of ``raw`` if it is an acceptable name, else UploadError."""
    if not raw:
        raise UploadError("an uploaded file has no name")
    name = re.split(r"[\\/]", raw)[-1].strip()
    if not SAFE_NAME.match(name):  # also "", "." and ".."
        shown = name[:60].encode("ascii", "replace").decode()
        raise UploadError(
            f"{shown!r}: file names may only hold letters, digits, spaces and ._+-() "
            "(rename the file and upload it again)"
        )
    return name


def _header_targets(name: str, content: bytes) -> list[str] | None:
    """Signal files a WFDB header names, or None when ``content`` is not a header."""
    from emgdx.io.wfdb_format import looks_like_header

    if b"\x00" in content[:4096]:
        return None
    text = content.decode("utf-8", errors="replace")
    if not (name.lower().endswith(".hea") or looks_like_header(text)):
        return None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    try:
        nsig = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return []  # a broken header: the reader will say what is wrong with it
    return [ln.split()[0] for ln in lines[1 : 1 + nsig] if ln.split()]


def _group(files: Sequence[UploadedFile]) -> list[list[UploadedFile]]:
    """Files → records: a WFDB header with the signal files it names; any other file alone."""
    by_name = {f.filename: f for f in files}
    claimed: set[str] = set()
    groups: list[list[UploadedFile]] = []
    for f in files:
        targets = _header_targets(f.filename, f.content)
        if targets is None:
            continue
        members = [f]
        for target in dict.fromkeys(targets):
            if not SAFE_NAME.match(target):  # also a path, "." or ".."
                raise UploadError(
                    f"{f.filename}: the header names the signal file {target[:60]!r}, which is "
                    "not a plain file name"
                )
            if target not in by_name:
                raise UploadError(
                    f"{f.filename}: the header names the signal file {target!r}, which was not "
                    "uploaded with it (upload the .hea together with its signal file)"
                )
            if target != f.filename:
                members.append(by_name[target])
                claimed.add(target)
        claimed.add(f.filename)
        groups.append(members)
    groups.extend([f] for f in files if f.filename not in claimed)
    return groups


@contextmanager
def _reworded(filename: str, folder: Path) -> Iterator[None]:
    """An EmgdxError in the block becomes an UploadError naming the uploaded file only: the
    temporary path is the server's business."""
    try:
        yield
    except ReadError as exc:
        raise UploadError(f"{filename}: {exc.problem}") from None
    except EmgdxError as exc:
        raise UploadError(f"{filename}: {str(exc).replace(f'{folder}/', '')}") from None


_STAGING_PREFIX = "upload-"
_staging_root: Path | None = None


def configure_staging(root: Path) -> int:
    """Stage uploads under ``root`` (the service's data folder, not the system's temporary
    folder: uploads carry patient data) and remove what a killed process left there.
    Returns how many leftovers were removed."""
    global _staging_root
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    leftovers = [p for p in root.glob(f"{_STAGING_PREFIX}*") if p.is_dir()]
    for folder in leftovers:
        shutil.rmtree(folder, ignore_errors=True)
    _staging_root = root
    return len(leftovers)


@contextmanager
def _materialised(files: Sequence[UploadedFile]) -> Iterator[Path]:
    if _staging_root is None:
        from emgdx.clinic.settings import default_data_dir

        configure_staging(default_data_dir() / "staging")
    with tempfile.TemporaryDirectory(prefix=_STAGING_PREFIX, dir=_staging_root) as tmp:
        folder = Path(tmp)
        for f in files:
            (folder / f.filename).write_bytes(f.content)
        yield folder


def _read_group(
    folder: Path, group: Sequence[UploadedFile], options: Mapping[str, float]
) -> list[Recording]:
    from emgdx.io import read

    main = group[0]
    with _reworded(main.filename, folder), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. declared-vs-given fs: recorded in meta
        return read(folder / main.filename, **options)  # type: ignore[arg-type]


def parse_upload(
    files: Sequence[UploadedFile],
    *,
    fs_hz: float | None = None,
    uv_per_unit: float | None = None,
    check: Callable[[Recording], None] | None = None,
) -> list[ParsedRecord]:
    """Group, read and check uploaded files; every problem is an UploadError naming the file.

    ``check`` is called on every channel read (e.g. the model's sampling-rate check) and may
    raise an EmgdxError; a warning it gives becomes the flag ``reduced_band``. Nothing is stored
    here: the caller stores all records or none.
    """
    from emgdx.frontend import assess_recording

    if not files:
        raise UploadError("no files were uploaded")
    names = [f.filename for f in files]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UploadError(f"{duplicates[0]}: uploaded twice in one request")
    for f in files:
        if not f.content:
            raise UploadError(f"{f.filename}: the file is empty")
    options: dict[str, float] = {}
    if fs_hz is not None:
        options["fs_hz"] = float(fs_hz)
    if uv_per_unit is not None:
        options["uv_per_unit"] = float(uv_per_unit)
    records: list[ParsedRecord] = []
    with _materialised(files) as folder:
        for group in _group(files):
            recordings = _read_group(folder, group, options)
            flags: list[str] = []
            if check is not None:
                for rec in recordings:
                    with (
                        _reworded(group[0].filename, folder),
                        warnings.catch_warnings(record=True) as caught,
                    ):
                        warnings.simplefilter("always")
                        check(rec)
                    if caught and "reduced_band" not in flags:
                        flags.append("reduced_band")  # judged, but without the band's top
            first = recordings[0]
            for rec in recordings:
                flags.extend(f for f in assess_recording(rec).flags if f not in flags)
            records.append(
                ParsedRecord(
                    name=Path(group[0].filename).stem,
                    format=str(first.meta.get("format", "")),
                    files=list(group),
                    channels=[str(r.channel or f"ch{i}") for i, r in enumerate(recordings)],
                    fs_hz=float(first.fs_hz),
                    duration_s=float(first.signal.size / first.fs_hz),
                    qc_flags=flags,
                    read_options=dict(options),
                )
            )
    return records


def read_stored(
    files: Sequence[UploadedFile], read_options: Mapping[str, float]
) -> list[Recording]:
    """Read a stored record's files again (for analysis): the list of per-channel Recordings."""
    with _materialised(files) as folder:
        return _read_group(folder, _group(files)[0], read_options)
