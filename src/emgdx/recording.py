"""Core data types: :class:`Recording`, :class:`Cohort`, :class:`Windows` and the label vocabulary.

Multichannel convention (decided once): a :class:`Recording` is always **one channel**. A file
with several channels is read as a list of recordings, one per channel, that share the file's
``record_id`` stem and carry their ``channel`` name (``record_id`` = ``"<stem>:<channel>"``
when a file has more than one channel). Everything downstream works per channel.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from emgdx.errors import SignalError

__all__ = [
    "LABELS",
    "MANIFEST_COLUMNS",
    "WINDOW_INDEX_COLUMNS",
    "Cohort",
    "Label",
    "Recording",
    "Windows",
    "muscle_group",
    "normalise_label",
]

Label = Literal["healthy", "neurogenic", "myopathy"]
#: The one label vocabulary of emgdx, in the fixed class order used by every model.
LABELS: tuple[Label, ...] = ("healthy", "neurogenic", "myopathy")

# Words that map free-text diagnoses onto the vocabulary. Checked in this order, so that
# e.g. "ALS" wins over a stray "normal" elsewhere in the text.
_LABEL_PATTERNS: tuple[tuple[Label, re.Pattern[str]], ...] = (
    (
        "neurogenic",
        re.compile(
            r"\b(als|amyotrophic|motor neuron|mnd|neurogenic|neuropath\w*|sma|"
            r"spinal muscular atrophy|radiculopath\w*|denervat\w*)\b"
        ),
    ),
    (
        "myopathy",
        re.compile(r"(myopath\w*|myositis|dystroph\w*|myotoni\w*|\bmyo\b|\bmyopathic\b)"),
    ),
    ("healthy", re.compile(r"\b(healthy|healty|control\w*|normal)\b")),
)


def normalise_label(text: str | None) -> Label | None:
    """Map a free-text diagnosis (header, manifest, file name code) onto :data:`LABELS`.

    Returns ``None`` when the text is empty or says nothing recognisable; never guesses.

    Examples
    --------
    >>> normalise_label("Mainly bulbar ALS")
    'neurogenic'
    >>> normalise_label("healty controls")
    'healthy'
    >>> normalise_label("Polymyositis")
    'myopathy'
    """
    if text is None:
        return None
    t = str(text).strip().lower()
    if not t or t in {"nan", "none", "unknown", "?"}:
        return None
    if t in LABELS:
        return t
    for label, pattern in _LABEL_PATTERNS:
        if pattern.search(t):
            return label
    return None


def muscle_group(text: str) -> str:
    """The muscle a free-text name means, for grouping results: lower case, without the head
    or other details in brackets.

    Examples
    --------
    >>> muscle_group("Biceps brachii (long head)")
    'biceps brachii'
    >>> muscle_group(" Deltoid ")
    'deltoid'
    """
    return " ".join(re.sub(r"\(.*?\)", " ", str(text)).lower().split())


@dataclass
class Recording:
    """One channel of EMG with its metadata.

    Attributes
    ----------
    signal
        1-D float32 samples in microvolts (µV).
    fs_hz
        Sampling rate in Hz; always explicit.
    record_id
        Unique name of the record (file stem, plus ``":<channel>"`` for multichannel files).
    subject_id
        Who was recorded. Every split in emgdx is by this field.
    label
        One of :data:`LABELS`, or ``None`` when unknown.
    muscle
        Free-text muscle name, when known.
    channel
        Channel name inside the source file, when the file has names.
    meta
        Everything else from the header (age, sex, side, contraction level, filters, ...).
    source
        Path of the file the signal came from, if any.
    site
        Where it was recorded (hospital or laboratory): a manifest column, else the data
        folder's name when :func:`~emgdx.io.read_cohort` reads several folders.
    """

    signal: np.ndarray
    fs_hz: float
    record_id: str
    subject_id: str
    label: Label | None = None
    muscle: str | None = None
    channel: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    site: str | None = None

    def __post_init__(self) -> None:
        sig = np.asarray(self.signal)
        if sig.ndim != 1:
            raise SignalError(
                f"{self.record_id}: a Recording holds one channel, got shape {sig.shape}"
            )
        self.signal = sig.astype(np.float32, copy=False)
        fs = float(self.fs_hz)
        if not np.isfinite(fs) or fs <= 0:
            raise SignalError(f"{self.record_id}: sampling rate must be positive, got {fs}")
        self.fs_hz = fs
        if self.label is not None:
            norm = normalise_label(self.label)
            if norm is None:
                raise SignalError(f"{self.record_id}: unknown label {self.label!r}")
            self.label = norm

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs_hz

    @property
    def level(self) -> str | None:
        """Contraction level from the header (``"low"``, ``"moderate"``, ...), if known."""
        value = self.meta.get("level")
        return None if value is None else str(value)

    def with_signal(self, signal: np.ndarray, fs_hz: float | None = None) -> Recording:
        """A copy with a new signal (and optionally a new rate), all metadata kept."""
        return dataclasses.replace(
            self,
            signal=signal,
            fs_hz=self.fs_hz if fs_hz is None else fs_hz,
            meta=dict(self.meta),
        )

    def __repr__(self) -> str:
        return (
            f"Recording({self.record_id!r}, subject={self.subject_id!r}, label={self.label!r}, "
            f"fs={self.fs_hz:g} Hz, {self.duration_s:.2f} s)"
        )


#: Columns every cohort manifest has (QC adds its own columns after these).
MANIFEST_COLUMNS: tuple[str, ...] = (
    "record_id",
    "subject_id",
    "label",
    "site",
    "muscle",
    "level",
    "channel",
    "fs_hz",
    "n_samples",
    "duration_s",
    "source",
)


@dataclass
class Cohort:
    """Recordings plus a manifest table, one row per record, indexed by ``record_id``.

    Splits are made by ``subject_id`` from :attr:`manifest`. Files that could not be read are
    kept in :attr:`errors` (never dropped silently).
    """

    recordings: list[Recording]
    manifest: pd.DataFrame
    errors: list[Exception] = field(default_factory=list)

    @classmethod
    def from_recordings(
        cls, recordings: Sequence[Recording], errors: Sequence[Exception] = ()
    ) -> Cohort:
        recs = list(recordings)
        ids = [r.record_id for r in recs]
        dupes = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
        if dupes:
            raise SignalError(f"duplicate record_id(s) in cohort: {dupes[:5]}")
        rows = [{column: getattr(r, column) for column in MANIFEST_COLUMNS} for r in recs]
        manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
        manifest = manifest.set_index("record_id", drop=False).rename_axis(None)
        return cls(recs, manifest, list(errors))

    def __len__(self) -> int:
        return len(self.recordings)

    def __iter__(self) -> Iterator[Recording]:
        return iter(self.recordings)

    def __getitem__(self, record_id: str) -> Recording:
        for rec in self.recordings:
            if rec.record_id == record_id:
                return rec
        raise KeyError(record_id)

    @property
    def subjects(self) -> list[str]:
        """Subject ids in first-seen order."""
        return list(dict.fromkeys(r.subject_id for r in self.recordings))

    def subset(self, record_ids: Sequence[str]) -> Cohort:
        """A cohort of the given records (manifest rows and order follow ``record_ids``)."""
        wanted = list(record_ids)
        by_id = {r.record_id: r for r in self.recordings}
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise KeyError(f"records not in cohort: {missing[:5]}")
        return Cohort([by_id[i] for i in wanted], self.manifest.loc[wanted].copy(), [])

    def __repr__(self) -> str:
        counts = self.manifest["label"].value_counts(dropna=False).to_dict()
        return (
            f"Cohort({len(self)} records, {len(self.subjects)} subjects, labels={counts}, "
            f"{len(self.errors)} unreadable)"
        )


#: Columns of :attr:`Windows.index`.
WINDOW_INDEX_COLUMNS: tuple[str, ...] = (
    "record_id",
    "subject_id",
    "label",
    "start_s",
    "start_sample",
)


@dataclass
class Windows:
    """Fixed-length windows of EMG and, for every window, where it came from.

    Attributes
    ----------
    data
        ``[n_windows, n_samples]`` float32.
    fs_hz
        Sampling rate of ``data``.
    index
        One row per window with :data:`WINDOW_INDEX_COLUMNS` (and possibly more, e.g. ``level``):
        the record, subject and label of the window and its start time in the (preprocessed)
        record. Nothing loses track of which subject a window came from.
    """

    data: np.ndarray
    fs_hz: float
    index: pd.DataFrame

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        if self.data.ndim != 2:
            raise SignalError(f"Windows.data must be 2-D [n, samples], got {self.data.shape}")
        if len(self.index) != self.data.shape[0]:
            raise SignalError(
                f"Windows index has {len(self.index)} rows for {self.data.shape[0]} windows"
            )
        missing = [c for c in WINDOW_INDEX_COLUMNS if c not in self.index.columns]
        if missing:
            raise SignalError(f"Windows index lacks columns {missing}")
        self.index = self.index.reset_index(drop=True)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[1])

    @property
    def window_s(self) -> float:
        return self.n_samples / self.fs_hz

    @property
    def subjects(self) -> np.ndarray:
        return self.index["subject_id"].to_numpy()

    def select(self, mask: np.ndarray | Sequence[bool] | Sequence[int]) -> Windows:
        """The windows picked by a boolean mask or integer positions (index follows)."""
        sel = np.asarray(mask)
        positions = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(int)
        return Windows(self.data[positions], self.fs_hz, self.index.iloc[positions].copy())

    @classmethod
    def concatenate(cls, parts: Sequence[Windows]) -> Windows:
        """Stack windows from several records (all at one rate and length)."""
        if not parts:
            raise SignalError("no windows to concatenate")
        fs = {p.fs_hz for p in parts}
        lengths = {p.n_samples for p in parts}
        if len(fs) > 1 or len(lengths) > 1:
            raise SignalError(f"windows differ in rate {fs} or length {lengths}")
        return cls(
            np.concatenate([p.data for p in parts], axis=0),
            parts[0].fs_hz,
            pd.concat([p.index for p in parts], ignore_index=True),
        )

    def __repr__(self) -> str:
        return (
            f"Windows({len(self)} x {self.n_samples} samples at {self.fs_hz:g} Hz, "
            f"{self.index['record_id'].nunique()} records, "
            f"{self.index['subject_id'].nunique()} subjects)"
        )
