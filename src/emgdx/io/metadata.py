"""Header comments (``#key: value``) turned into emgdx's normalised metadata keys.

EMGLAB/WFDB headers carry clinical facts as free-text comments. Other formats reuse
:func:`parse_frequency_hz` and :func:`normalise_sex`. The normalised keys are:

``diagnosis`` (str), ``age`` (int or None), ``sex`` ("M"/"F"/None), ``muscle``, ``side``,
``protocol``, ``level`` (lower case), ``electrode``, ``highpass_hz``, ``lowpass_hz`` (float Hz),
``amplifier_gain`` (float), ``date``, ``disease_duration`` (str or None), plus
``header_comments`` (every raw key/value) and ``header_notes`` (comment lines without a key).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "normalise_comments",
    "normalise_sex",
    "parse_comments",
    "parse_frequency_hz",
]

# Raw key (lower case, spaces/underscores/hyphens collapsed to one space) -> normalised key.
_KEY_ALIASES: dict[str, str] = {
    "diagnosis": "diagnosis",
    "diagnose": "diagnosis",
    "dx": "diagnosis",
    "age": "age",
    "gender": "sex",
    "sex": "sex",
    "duration": "disease_duration",
    "disease duration": "disease_duration",
    "muscle": "muscle",
    "side": "side",
    "protocol": "protocol",
    "level": "level",
    "contraction level": "level",
    "contraction": "level",
    "electrode": "electrode",
    "high pass filter": "highpass_hz",
    "highpass filter": "highpass_hz",
    "high pass": "highpass_hz",
    "highpass": "highpass_hz",
    "low pass filter": "lowpass_hz",
    "lowpass filter": "lowpass_hz",
    "low pass": "lowpass_hz",
    "lowpass": "lowpass_hz",
    "gain": "amplifier_gain",
    "amplifier gain": "amplifier_gain",
    "date": "date",
}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PREFIXES = {"k": 1e3, "K": 1e3, "M": 1e6, "m": 1e-3}  # "mHz": millihertz, as written
_FREQ = re.compile(rf"^\s*(?P<value>{_NUMBER})\s*(?P<prefix>[kKmM]?)(?:hz|Hz|HZ)?\s*$")


def _norm_key(key: str) -> str:
    return re.sub(r"[\s_\-]+", " ", key.strip().lower())


def parse_comments(comments: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split comment lines into ``key: value`` pairs and free notes.

    Returns
    -------
    pairs
        Raw keys (as written, stripped) to raw values (stripped), in file order.
    notes
        Comment lines that hold no ``key:`` part.
    """
    pairs: dict[str, str] = {}
    notes: list[str] = []
    for line in comments:
        text = line.strip().lstrip("#").strip()
        if not text:
            continue
        key, sep, value = text.partition(":")
        # A key is short words; "12:30 start" or a URL is a note, not a key.
        if sep and key.strip() and re.fullmatch(r"[A-Za-z][\w \-/().]{0,40}", key.strip()):
            pairs[key.strip()] = value.strip()
        else:
            notes.append(text)
    return pairs, notes


def parse_frequency_hz(text: str | None) -> float | None:
    """``"2 Hz"`` -> 2.0, ``"10 kHz"`` -> 10000.0, a bare number -> Hz; else ``None``."""
    if text is None:
        return None
    m = _FREQ.match(str(text))
    if not m:
        return None
    return float(m.group("value")) * _PREFIXES.get(m.group("prefix"), 1.0)


def normalise_sex(text: str | None) -> str | None:
    """``"M"``/``"male"`` -> ``"M"``, ``"F"``/``"female"`` -> ``"F"``, anything else -> None."""
    if text is None:
        return None
    t = str(text).strip().lower()
    if t in {"m", "male", "man"}:
        return "M"
    if t in {"f", "female", "woman"}:
        return "F"
    return None


def _parse_age(text: str) -> int | None:
    m = re.search(r"\d+(?:\.\d+)?", text)
    return int(float(m.group())) if m else None


def _parse_float(text: str) -> float | None:
    m = re.fullmatch(rf"\s*({_NUMBER})\s*x?\s*", text)
    return float(m.group(1)) if m else None


#: How the value of a normalised key is read; other keys keep their text (blank: None).
_PARSERS: dict[str, Callable[[str], Any]] = {
    "age": _parse_age,
    "sex": normalise_sex,
    "highpass_hz": parse_frequency_hz,
    "lowpass_hz": parse_frequency_hz,
    "amplifier_gain": _parse_float,
    "level": lambda value: value.lower() or None,
}


def normalise_comments(comments: list[str]) -> dict[str, Any]:
    """Normalised metadata from header comment lines (see the module docstring for keys).

    Keys absent from the header are absent from the result (except ``header_comments`` and
    ``header_notes``, always present); a key present with an unparseable value maps to None
    and its raw text stays in ``header_comments``.
    """
    pairs, notes = parse_comments(comments)
    meta: dict[str, Any] = {}
    for raw_key, value in pairs.items():
        key = _KEY_ALIASES.get(_norm_key(raw_key))
        if key is None or key in meta:  # first occurrence wins
            continue
        parse = _PARSERS.get(key)
        meta[key] = parse(value) if parse else value or None
    meta["header_comments"] = pairs
    meta["header_notes"] = notes
    return meta
