"""Representations: turn windows ``[n, T]`` (µV) into named model inputs.

Every representation is a small frozen dataclass config with a registry ``name``, a JSON
round trip (``to_dict`` / ``from_dict``), ``fit(windows_data, fs_hz)`` (nothing is learnt:
all statistics are per window, so nothing can leak from test subjects), ``transform(data,
fs_hz) -> dict[str, np.ndarray]`` and ``output_shape(n_times, fs_hz)``.

Outputs are float32 arrays: ``x`` (``[n, 1, T]`` raw, ``[n, 1, F, T']`` spectrogram or
scalogram, ``[n, n_features]`` features) and, for the signal images, ``aux`` ``[n, k]``:
log10 amplitude scalars of the window before normalisation, kept apart from the shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emgdx.errors import ConfigError
from emgdx.represent._common import AMPLITUDE_SCALARS, amplitude_scalars
from emgdx.represent.features import FEATURE_GROUPS, FeatureRepr
from emgdx.represent.raw import RawRepr
from emgdx.represent.scalogram import CWT_METHODS, ScalogramRepr, cwt_power
from emgdx.represent.spectrogram import SpectrogramRepr

__all__ = [
    "AMPLITUDE_SCALARS",
    "CWT_METHODS",
    "FEATURE_GROUPS",
    "REPRESENTATIONS",
    "FeatureRepr",
    "RawRepr",
    "Representation",
    "ScalogramRepr",
    "SpectrogramRepr",
    "amplitude_scalars",
    "cwt_power",
    "make_representation",
    "representation_from_dict",
]

Representation = RawRepr | SpectrogramRepr | ScalogramRepr | FeatureRepr

#: Registry: name -> config class.
REPRESENTATIONS: dict[str, type[Representation]] = {
    "raw": RawRepr,
    "stft": SpectrogramRepr,
    "cwt": ScalogramRepr,
    "features": FeatureRepr,
}


def make_representation(name: str, **params: Any) -> Representation:
    """Build the representation ``name`` with ``params`` (see each class for its fields).

    Raises
    ------
    ConfigError
        On an unknown name, unknown parameter or invalid value.

    Examples
    --------
    >>> make_representation("cwt", n_scales=32).output_shape(6000, fs_hz=6000.0)["x"]
    (1, 32, 96)
    """
    try:
        cls = REPRESENTATIONS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown representation {name!r}; known: {sorted(REPRESENTATIONS)}"
        ) from None
    return cls.from_dict(params)


def representation_from_dict(data: Mapping[str, Any]) -> Representation:
    """Rebuild a representation from its ``to_dict()`` output (which carries ``name``)."""
    if not isinstance(data, Mapping) or "name" not in data:
        raise ConfigError("a representation config must be a mapping with a 'name' key")
    params = dict(data)
    return make_representation(params.pop("name"), **params)
