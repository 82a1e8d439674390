"""Core types: label vocabulary, Recording, Cohort manifest, Windows bookkeeping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emgdx.errors import EmgdxError, ReadError, SignalError, TruncatedDataError
from emgdx.recording import (
    LABELS,
    MANIFEST_COLUMNS,
    Cohort,
    Recording,
    Windows,
    normalise_label,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ALS", "neurogenic"),
        ("Mainly bulbar ALS", "neurogenic"),
        ("motor neuron disease", "neurogenic"),
        ("healty controls", "healthy"),  # N2001 header spelling
        ("Healthy", "healthy"),
        ("control", "healthy"),
        ("Polymyositis", "myopathy"),
        ("Myopathy unclassified", "myopathy"),
        ("Plexus scapulohumoral dystrophy", "myopathy"),
        ("myopathy", "myopathy"),
        ("", None),
        (None, None),
        ("tennis elbow", None),
    ],
)
def test_normalise_label(text: str | None, expected: str | None) -> None:
    assert normalise_label(text) == expected


def _rec(rid: str, subject: str, label: str | None = "healthy", n: int = 100) -> Recording:
    return Recording(np.arange(n, dtype=np.float64), 1000.0, rid, subject, label)


def test_recording_coerces_and_validates() -> None:
    rec = _rec("r1", "s1", "ALS", n=2500)
    assert rec.signal.dtype == np.float32
    assert rec.label == "neurogenic"
    assert rec.duration_s == pytest.approx(2.5)
    with pytest.raises(SignalError, match="one channel"):
        Recording(np.zeros((2, 10)), 1000.0, "r2", "s")
    with pytest.raises(SignalError, match="sampling rate"):
        Recording(np.zeros(10), 0.0, "r3", "s")
    with pytest.raises(SignalError, match="unknown label"):
        Recording(np.zeros(10), 1000.0, "r4", "s", label="tennis elbow")


def test_cohort_manifest_and_subset() -> None:
    recs = [_rec("a", "s1"), _rec("b", "s1", "myopathy"), _rec("c", "s2", None)]
    cohort = Cohort.from_recordings(recs)
    assert list(cohort.manifest.columns) == list(MANIFEST_COLUMNS)
    assert cohort.subjects == ["s1", "s2"]
    assert cohort.manifest.loc["b", "label"] == "myopathy"
    assert cohort["c"].subject_id == "s2"
    sub = cohort.subset(["c", "a"])
    assert [r.record_id for r in sub] == ["c", "a"]
    assert list(sub.manifest.index) == ["c", "a"]
    with pytest.raises(SignalError, match="duplicate"):
        Cohort.from_recordings([_rec("a", "s1"), _rec("a", "s2")])


def test_windows_select_and_concatenate() -> None:
    def part(rid: str, subject: str, label: str, n: int) -> Windows:
        idx = pd.DataFrame(
            {
                "record_id": rid,
                "subject_id": subject,
                "label": label,
                "start_s": np.arange(n) * 0.5,
                "start_sample": np.arange(n) * 50,
            }
        )
        return Windows(np.full((n, 100), float(n)), 100.0, idx)

    both = Windows.concatenate([part("a", "s1", "healthy", 3), part("b", "s2", "myopathy", 2)])
    assert len(both) == 5 and both.window_s == pytest.approx(1.0)
    assert list(both.subjects) == ["s1"] * 3 + ["s2"] * 2
    picked = both.select(both.index["subject_id"].to_numpy() == "s2")
    assert len(picked) == 2 and set(picked.index["record_id"]) == {"b"}
    assert np.all(picked.data == 2.0)
    with pytest.raises(SignalError):
        Windows(np.zeros((3, 10)), 100.0, pd.DataFrame({"record_id": ["a"] * 2}))


def test_error_messages_name_file_and_problem() -> None:
    exc = TruncatedDataError("/data/x.bin", "has 10 samples, header says 20")
    assert str(exc) == "/data/x.bin: has 10 samples, header says 20"
    assert isinstance(exc, ReadError) and isinstance(exc, EmgdxError)
    assert exc.path == "/data/x.bin"


def test_labels_order_is_fixed() -> None:
    assert LABELS == ("healthy", "neurogenic", "myopathy")
