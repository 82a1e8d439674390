"""JSON round-trip for the typed configuration dataclasses (QC, preprocessing, simulation),
and :func:`atomic_write`, the one way emgdx writes a file.

One implementation of the rules every config follows: plain JSON types out (tuples become
lists), unknown keys rejected with :class:`~emgdx.errors.ConfigError`, lists turned back into
tuples where the field holds a tuple, and construction errors reported as ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from emgdx.errors import ConfigError

__all__ = [
    "JsonConfig",
    "ProgressCallback",
    "atomic_write",
    "check_fields",
    "config_from_dict",
    "config_to_dict",
    "is_number",
    "json_ready",
    "parse_config_json",
]

T = TypeVar("T")
#: ``on_progress(done, total)``: how long-running library functions report progress.
ProgressCallback = Callable[[int, int], None]


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, creating its folder."""
    # Write beside the target, then rename: a crash never leaves half a file behind.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; what emgdx writes is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (not a bool: True as a rate is a mistake)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: The rules of :func:`check_fields`: the test a value passes, what the message asks for, and
#: whether a passing value is stored as float.
_RULES: dict[str, tuple[Callable[[Any], bool], str, bool]] = {
    "positive": (lambda v: is_number(v) and v > 0, "a positive number", True),
    "non_negative": (lambda v: is_number(v) and v >= 0, "a number >= 0", True),
    "fraction": (lambda v: is_number(v) and 0 < v <= 1, "in (0, 1]", True),
    "unit_interval": (lambda v: is_number(v) and 0 <= v <= 1, "in [0, 1]", True),
    "positive_int": (lambda v: _integer(v) and v >= 1, "a positive integer", False),
    "non_negative_int": (lambda v: _integer(v) and v >= 0, "an integer >= 0", False),
}


def check_fields(
    obj: Any,
    *,
    optional: str = "",
    choices: Mapping[str, Sequence[Any]] | None = None,
    **rules: str,
) -> list[str]:
    """Problems with fields of the frozen config ``obj``, one message per bad field, naming it.

    ``rules`` maps a rule (``positive``, ``non_negative``, ``fraction``, ``unit_interval``,
    ``positive_int``, ``non_negative_int``) to field names separated by spaces; a field in
    ``optional`` may also be ``None``; ``choices`` maps a field to the values it may take.
    Numbers that pass a real-valued rule are stored as float, so a config equals its JSON
    round trip.
    """
    problems = [
        f"{name} must be one of {tuple(allowed)}, got {getattr(obj, name)!r}"
        for name, allowed in (choices or {}).items()
        if getattr(obj, name) not in allowed
    ]
    for rule, names in rules.items():
        test, wanted, as_float = _RULES[rule]
        for name in names.split():
            value = getattr(obj, name)
            if value is None and name in optional.split():
                continue
            if not test(value):
                problems.append(f"{name} must be {wanted}, got {value!r}")
            elif as_float:
                object.__setattr__(obj, name, float(value))
    return problems


def config_to_dict(obj: Any) -> dict[str, Any]:
    """The dataclass ``obj`` as a JSON-ready dict (top-level tuples become lists)."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in dataclasses.asdict(obj).items()
    }


def _holds_tuple(field: dataclasses.Field[Any]) -> bool:
    if isinstance(field.default, tuple):
        return True
    annotation = field.type if isinstance(field.type, str) else repr(field.type)
    return "tuple" in annotation


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, what: str | None = None) -> T:
    """Build the dataclass ``cls`` from :func:`config_to_dict` output.

    Raises
    ------
    ConfigError
        When ``data`` is not a mapping, has keys that are not fields, or holds invalid values.
    """
    name = what or cls.__name__
    if not isinstance(data, Mapping):
        raise ConfigError(f"{name} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown {name} key(s) {unknown}; allowed: {sorted(fields)}")
    values = {
        key: tuple(value) if isinstance(value, list) and _holds_tuple(fields[key]) else value
        for key, value in data.items()
    }
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {name} value: {exc}") from exc


class JsonConfig:
    """``to_dict`` / ``from_dict`` / ``to_json`` / ``from_json`` of a config dataclass.

    Error messages name the config by :attr:`config_name` (default: the class name).
    """

    config_name: ClassVar[str] = ""

    @classmethod
    def _what(cls) -> str:
        return cls.config_name or cls.__name__

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from :meth:`to_dict` output; unknown keys or bad values raise
        :class:`~emgdx.errors.ConfigError`."""
        return config_from_dict(cls, data, what=cls._what())

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Self:
        """Parse :meth:`to_json` output; malformed JSON raises ConfigError too."""
        return cls.from_dict(parse_config_json(text, cls._what()))


def parse_config_json(text: str, what: str) -> Any:
    """``json.loads`` whose malformed input raises :class:`ConfigError` naming the config."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}") from exc


def json_ready(value: Any) -> Any:
    """A copy of ``value`` that :func:`json.dumps` takes with ``allow_nan=False``: mappings
    (keys as strings), dataclasses, lists, tuples and arrays to dicts and lists, numpy scalars
    to Python values, NaN and infinity to ``None`` (JSON has neither), and anything else
    (paths, timestamps) to its string."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return json_ready(value.tolist())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_ready(dataclasses.asdict(value))
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
