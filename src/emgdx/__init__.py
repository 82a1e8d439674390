"""emgdx: an objective, explained second opinion on needle EMG.

The road: file(s) --read()--> Recording --quality--> QC flags + usable mask --preprocess-->
Windows --represent--> model --> diagnosis.
"""

from emgdx.errors import EmgdxError, ReadError
from emgdx.recording import LABELS, Cohort, Recording, Windows, normalise_label

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
