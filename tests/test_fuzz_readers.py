"""Mutated files of every format: `emgdx.io.read` returns recordings or raises an
`emgdx.errors` exception naming the file, nothing else (bounded hypothesis runs; the large
runs are benchmarks/fuzz_readers.py)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emgdx.errors import EmgdxError
from emgdx.io import read
from fuzz_support import FORMATS, KINDS, SIGNAL, N, entry_name, mutate


@st.composite
def mutations(draw: st.DrawFn, size: int) -> list[tuple[str, int, int]]:
    """A few edits of one file: byte edits (flip, nasty byte, cut, insert, digits) or a hostile
    value in one of the format's fields."""
    return draw(st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, max(size - 1, 0)),
                                   st.integers(0, 255)), min_size=1, max_size=4))  # fmt: skip


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_mutated_files_read_or_fail_with_an_emgdx_error(
    fmt: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    originals = FORMATS[fmt](tmp_path_factory.mktemp(f"orig-{fmt}"))
    names = sorted(originals)
    entry = entry_name(names)
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
        mutated = mutate(which, original, data.draw(mutations(len(original))))
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
