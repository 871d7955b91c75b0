"""A YAML mapping into typed dataclasses: every key checked, every value coerced to its annotation, errors naming
the key path (`search.num_solutions: must be positive`). Generic: it knows nothing of StepForge's sections, which
`schemas.config` declares.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config value is missing, unknown or invalid; the message starts with the key path."""


def build(cls: type, data: Any, key: str) -> Any:
    """Build dataclass `cls` from a mapping, checking every key and type; errors name the key path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{key or '<root>'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{join_key(key, unknown[0])}: unknown key (known: {', '.join(sorted(names))})")
    values = {name: _coerce(hints[name], data[name], join_key(key, name)) for name in data}
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return {str(k): _coerce(args[1], v, join_key(key, str(k))) for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def join_key(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def choice(key: str, value: str, allowed: set[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(sorted(allowed))}")


def positive(key: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{key}: must be positive, got {value}")


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b=c` override; the value is parsed as YAML (so `3`, `true`, `[a, b]` work)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment}: expected KEY=VALUE")
    path, raw = assignment.split("=", 1)
    parts = path.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {assignment}: empty key")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{path}: {part} is not a mapping")
        node = child
    node[parts[-1]] = yaml.safe_load(raw)
