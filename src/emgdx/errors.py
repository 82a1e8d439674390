"""One exception family for everything emgdx refuses to do.

Every error raised because of bad input derives from :class:`EmgdxError`. Errors about a
file derive from :class:`ReadError` and always name the file and the problem, so that a
clinician reading a log knows *which* recording to look at and *why* it was rejected.
"""

from __future__ import annotations

import importlib
from os import PathLike
from types import ModuleType

__all__ = [
    "EXTRA_OF_MODULE",
    "ChannelMismatchError",
    "ConfigError",
    "EmgdxError",
    "EmptySignalError",
    "HeaderMismatchError",
    "MissingExtraError",
    "MissingFileError",
    "NoRecordsError",
    "NonFiniteDataError",
    "NonNumericDataError",
    "PipelineLoadError",
    "ReadError",
    "SamplingRateError",
    "SignalError",
    "TruncatedDataError",
    "UnknownFormatError",
    "require",
]


class EmgdxError(Exception):
    """Base class of every error emgdx raises on purpose."""


class ConfigError(EmgdxError, ValueError):
    """An invalid configuration value (e.g. a band edge above Nyquist)."""


#: The extra that installs each optional package (``pip install 'emgdx[extra]'``), by the name
#: it is imported as.
EXTRA_OF_MODULE = {
    "torch": "ml",
    "sklearn": "ml",
    "pywt": "ml",
    "safetensors": "ml",
    "matplotlib": "plots",
    "captum": "explain",
    "jinja2": "report",
    "reportlab": "report",
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "sqlalchemy": "serve",
    "alembic": "serve",
    "websockets": "serve",
    "psycopg": "postgres",
    "flwr": "federated",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "pylsl": "stream",
}


class MissingExtraError(ConfigError, ImportError):
    """An optional package a feature needs is not installed (the message names the extra)."""


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` for ``what`` (e.g. ``"the PDF report"``), or raise
    :class:`MissingExtraError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingExtraError(
            f"{what} needs {top}, which is not installed: "
            f"pip install 'emgdx[{EXTRA_OF_MODULE[top]}]'"
        ) from exc


class PipelineLoadError(EmgdxError):
    """A saved pipeline that cannot be loaded faithfully (corrupt, tampered or incompatible)."""


class SignalError(EmgdxError, ValueError):
    """A signal that cannot be processed (too short, wrong shape, not finite)."""


class ReadError(EmgdxError):
    """A file that cannot be read. The message always starts with the file's path.

    Parameters
    ----------
    path
        The offending file or folder.
    problem
        What is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable across processes
        return (type(self), (self.path, self.problem))


class MissingFileError(ReadError, FileNotFoundError):
    """A file or folder that does not exist (or a signal file a header names is absent)."""


class UnknownFormatError(ReadError):
    """Neither the extension nor the content matches a format emgdx can read."""


class TruncatedDataError(ReadError):
    """The data stops before the header says it should."""


class HeaderMismatchError(ReadError):
    """The header contradicts the data or itself (sample count, format, channels)."""


class NonNumericDataError(ReadError):
    """A text table holds values that are not numbers."""


class NonFiniteDataError(ReadError):
    """The signal contains NaN or infinite values."""


class EmptySignalError(ReadError):
    """The file holds no samples."""


class SamplingRateError(ReadError):
    """The sampling rate is missing, not a number, zero or negative, or cannot be inferred."""


class ChannelMismatchError(ReadError):
    """Channels disagree (different lengths, rates or counts) or a named channel is absent."""


class NoRecordsError(ReadError):
    """A folder holds no readable recording."""
