"""emgdx: an objective, explained second opinion on needle EMG.

The road: file(s) --read()--> Recording --front end (QC, preprocessing, windows,
normalisation)--> Windows --representation--> model adapter --> Diagnosis.
"""

from typing import Any

from emgdx.errors import EmgdxError, ReadError

__version__ = "0.1.0"

__all__ = [
    "LABELS",
    "Cohort",
    "EmgdxError",
    "ReadError",
    "Recording",
    "Windows",
    "__version__",
    "normalise_label",
]


def __getattr__(name: str) -> Any:
    # The core types on first use: `import emgdx` (e.g. by `emgdx --help`) stays free of pandas.
    if name in ("LABELS", "Cohort", "Recording", "Windows", "normalise_label"):
        from emgdx import recording

        return getattr(recording, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
