"""Who was recorded and what they have: manifests, EMGLAB record names, and precedence.

Precedence, highest first (``meta["label_source"]`` and ``meta["subject_source"]`` record
which one applied):

* label: the ``label=`` argument > the manifest's ``label`` (or ``diagnosis``) column > the
  file header's diagnosis (e.g. ``#diagnosis: ALS``) > the EMGLAB record name
  (``N2001A..`` -> neurogenic, ``C`` -> healthy, ``M`` -> myopathy) > unknown (None).
* subject: the ``subject_id=`` argument > the manifest's ``subject_id`` column > the EMGLAB
  record name (``N2001A01`` from ``N2001A01BB01``) > the record stem, i.e. **one record = one
  subject** when nothing says otherwise (the safe default for subject-wise splits only if
  every subject has one record; give a manifest when they do not).
* muscle and contraction level: manifest > header.
* site (hospital or laboratory): the manifest's ``site`` column > the data folder's name when
  :func:`~emgdx.io.read_cohort` reads several folders > unknown (None).

The manifest says what a clinic knows about its files, so it wins over anything guessed from
names; the header's own diagnosis wins over the naming convention because it is written by
the recording system for that very record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from emgdx.errors import MissingFileError, ReadError, SamplingRateError
from emgdx.io._common import record_stem
from emgdx.recording import LABELS, Label, normalise_label

__all__ = [
    "EmglabName",
    "Identity",
    "manifest_row",
    "parse_emglab_name",
    "read_manifest",
    "resolve_identity",
]

# EMGLAB naming: <database><group><subject><muscle><number>, e.g. N2001 A 01 BB 01.
_EMGLAB_NAME = re.compile(
    r"^(?P<database>N\d{4})(?P<group>[ACM])(?P<subject>\d{2})(?P<muscle>[A-Z]{2})(?P<number>\d{2,})$"
)
_GROUP_LABEL: dict[str, Label] = {"A": "neurogenic", "C": "healthy", "M": "myopathy"}

_ID_COLUMNS = ("record_id", "record", "file", "filename", "file_name")
_ALIASES: dict[str, tuple[str, ...]] = {
    "subject_id": ("subject_id", "subject", "patient_id", "patient"),
    "label": ("label", "class"),
    "diagnosis": ("diagnosis",),
    "muscle": ("muscle",),
    "site": ("site", "hospital", "centre", "center"),
    "level": ("level", "contraction_level"),
    "fs_hz": ("fs_hz", "fs", "sampling_rate_hz"),
}


@dataclass(frozen=True)
class EmglabName:
    """The parts of an EMGLAB record name such as ``N2001A01BB01``."""

    database: str
    group: str
    subject_id: str
    muscle_code: str
    number: str

    @property
    def label(self) -> Label:
        return _GROUP_LABEL[self.group]


def parse_emglab_name(stem: str) -> EmglabName | None:
    """Split an EMGLAB record name (``N2001A01BB01``), or ``None`` if it is not one.

    Examples
    --------
    >>> parse_emglab_name("N2001C03BB12").subject_id
    'N2001C03'
    >>> parse_emglab_name("subject7") is None
    True
    """
    m = _EMGLAB_NAME.match(stem)
    if not m:
        return None
    return EmglabName(
        database=m.group("database"),
        group=m.group("group"),
        subject_id=f"{m.group('database')}{m.group('group')}{m.group('subject')}",
        muscle_code=m.group("muscle"),
        number=m.group("number"),
    )


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or bool(pd.isna(value))


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV: one row per record, saying subject, label, muscle, level, rate.

    Column names are matched case-insensitively: the record column is ``record_id`` (or
    ``record``/``file``/``filename``; file names and paths are reduced to the record stem, so
    ``"sub/N2001A01BB01.hea"`` matches record ``N2001A01BB01``; ``"<stem>:<channel>"`` names
    one channel of a multichannel file); ``subject_id`` (or ``subject``/``patient_id``),
    ``label`` (or ``class``; else ``diagnosis`` is mapped onto the label vocabulary),
    ``muscle``, ``level``, ``fs_hz`` (or ``fs``), ``site`` (or ``hospital``/``centre``). Other
    columns are kept as text.

    Parameters
    ----------
    path
        The CSV (or TSV) file.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``record_id``, with at least the columns ``record_id``, ``subject_id``,
        ``label``, ``muscle``, ``level``, ``fs_hz``, ``site`` (None/NaN where not given).

    Raises
    ------
    ReadError
        Missing file, no record column, duplicate records, or a ``label`` outside
        healthy/neurogenic/myopathy.
    SamplingRateError
        An ``fs_hz`` cell that is not a positive number.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "manifest file not found")
    try:
        raw = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReadError(path, f"cannot parse the manifest: {exc}") from exc
    raw.columns = [re.sub(r"\s+", "_", str(c).strip().lower()) for c in raw.columns]
    id_col = next((c for c in _ID_COLUMNS if c in raw.columns), None)
    if id_col is None:
        raise ReadError(
            path, f"manifest needs a record_id (or file/record) column; it has {list(raw.columns)}"
        )
    # Plain lists until the end: pandas 3 would turn None into NaN in string columns.
    n_rows = len(raw)
    cols: dict[str, list[Any]] = {
        "record_id": ["" if _blank(v) else record_stem(str(v)) for v in raw[id_col]]
    }
    used = {id_col}
    for target, names in _ALIASES.items():
        col = next((c for c in names if c in raw.columns), None)
        if col is not None:
            used.add(col)
            cols[target] = [None if _blank(v) else str(v).strip() for v in raw[col]]
        else:
            cols[target] = [None] * n_rows
    for col in raw.columns:
        if col not in used and col not in cols:
            cols[col] = [None if _blank(v) else str(v) for v in raw[col]]

    labels: list[Label | None] = []
    for row_no, (text, dx) in enumerate(zip(cols["label"], cols["diagnosis"], strict=True), 2):
        norm = normalise_label(dx if text is None else text)
        if text is not None and norm is None:  # a label column must say one of LABELS
            raise ReadError(
                path, f"line {row_no}: label {text!r} is not one of {', '.join(LABELS)}"
            )
        labels.append(norm)
    cols["label"] = labels
    fs_values: list[float | None] = []
    for row_no, text in enumerate(cols["fs_hz"], start=2):
        if text is None:
            fs_values.append(None)
            continue
        try:
            fs = float(text)
        except ValueError:
            fs = float("nan")
        if not 0 < fs < float("inf"):
            raise SamplingRateError(path, f"line {row_no}: fs_hz {text!r} is not a positive number")
        fs_values.append(fs)
    cols["fs_hz"] = fs_values
    ids = cols["record_id"]
    empty_ids = [i + 2 for i, v in enumerate(ids) if not v]
    if empty_ids:
        raise ReadError(path, f"empty record id on line(s) {empty_ids[:5]}")
    dupes = sorted({v for v in ids if ids.count(v) > 1})
    if dupes:
        raise ReadError(path, f"records listed more than once: {dupes[:5]}")
    return pd.DataFrame(cols, dtype=object).set_index("record_id", drop=False).rename_axis(None)


def manifest_row(
    manifest: pd.DataFrame | None, stem: str, channel: str | None = None
) -> dict[str, Any]:
    """The manifest's non-blank entries for a record (a ``stem:channel`` row wins over ``stem``)."""
    if manifest is None:
        return {}
    row: dict[str, Any] = {}
    for key in (stem, f"{stem}:{channel}" if channel is not None else None):
        if key is not None and key in manifest.index:
            row.update({k: v for k, v in manifest.loc[key].items() if not _blank(v)})
    return row


@dataclass
class Identity:
    """Subject, label, muscle, level and site of one recording, with where each came from."""

    subject_id: str
    subject_source: str
    label: Label | None
    label_source: str | None
    muscle: str | None
    level: str | None
    site: str | None = None


def resolve_identity(
    stem: str,
    header_meta: dict[str, Any],
    row: dict[str, Any],
    *,
    subject_id: str | None,
    label: Label | None,
    site: str | None = None,
) -> Identity:
    """Apply the precedence rules of this module for one recording.

    Parameters
    ----------
    stem
        The record stem (file name without extension).
    header_meta
        Normalised header metadata (``diagnosis``, ``muscle``, ``level`` are used).
    row
        The record's manifest entries (see :func:`manifest_row`), ``{}`` when none.
    subject_id, label
        Values given by the caller, which win over everything.
    site
        The site when the manifest names none (the data folder's name in a multi-site read).

    Returns
    -------
    Identity
    """
    name = parse_emglab_name(stem)
    if subject_id is not None:
        subject, subject_source = str(subject_id), "argument"
    elif row.get("subject_id") is not None:
        subject, subject_source = str(row["subject_id"]), "manifest"
    elif name is not None:
        subject, subject_source = name.subject_id, "file name"
    else:
        subject, subject_source = stem, "record"

    resolved: Label | None = None
    source: str | None = None
    header_label = normalise_label(header_meta.get("diagnosis"))
    if label is not None:
        resolved, source = label, "argument"
    elif row.get("label") is not None:
        resolved, source = row["label"], "manifest"
    elif header_label is not None:
        resolved, source = header_label, "header"
    elif name is not None:
        resolved, source = name.label, "file name"

    muscle = row.get("muscle") or header_meta.get("muscle")
    level = row.get("level") or header_meta.get("level")
    return Identity(
        subject_id=subject,
        subject_source=subject_source,
        label=resolved,
        label_source=source,
        muscle=None if muscle is None else str(muscle),
        level=None if level is None else str(level).lower(),
        site=row.get("site") or site,
    )
