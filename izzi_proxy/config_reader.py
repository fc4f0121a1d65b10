"""Reading TOML tables with errors that name the file, the key and the fix.

``Reader`` gives typed access to one table; a value may come from the environment
(``{ env = "NAME", default = "..." }``), and a secret only from there (``"env:NAME"``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A config problem, worded as ``file: key: problem``."""

    def __init__(self, file: Path | str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}: {problem}")
        self.file, self.key, self.problem = str(file), key, problem


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential read from an environment variable; never printed."""

    env: str
    value: str | None = field(repr=False)

    def __str__(self) -> str:
        return f"env:{self.env} ({'set' if self.value else 'NOT SET'})"


class Reader:
    """Typed access to one TOML table, with errors that name the file and key."""

    def __init__(self, file: Path, prefix: str, table: Mapping[str, Any], env: Mapping[str, str]):
        self.file, self.prefix, self.table, self.env = file, prefix, table, env
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), problem)

    def raw(self, name: str, default: Any = None) -> Any:
        return self._raw(name, default)[0]

    def _raw(self, name: str, default: Any) -> tuple[Any, bool]:
        """The value, and whether it came from the environment (a string, whatever it means)."""
        self.used.add(name)
        value = self.table.get(name, default)
        if isinstance(value, Mapping) and "env" in value:
            extra = set(value) - {"env", "default"}
            if extra or not isinstance(value["env"], str):
                raise self.error(name, 'write { env = "NAME" } or { env = "NAME", default = ... }')
            if found := self.env.get(value["env"]):
                return found, True
            return value.get("default", default), False
        if isinstance(value, str) and value.startswith("env:"):
            found = self.env.get(value[4:])
            return (found, True) if found else (default, False)
        return value, False

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value, from_env = self._raw(name, default)
        if value is None:
            return None
        if from_env and isinstance(value, str) and kind in (int, float, bool):
            value = self._parsed(name, value, kind)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.error(name, f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def _parsed(self, name: str, text: str, kind: type) -> Any:
        """A number or a yes/no given by an environment variable."""
        try:
            if kind is bool:
                return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[text.lower()]
            return kind(text)
        except (KeyError, ValueError):
            raise self.error(name, f"expected {kind.__name__} from the environment, got {text!r}") from None

    def required(self, name: str, kind: type) -> Any:
        value = self.get(name, kind)
        if value is None:
            raise self.error(name, "is required")
        return value

    def positive(self, name: str, default: float) -> float:
        value = self.get(name, float, default)
        if value <= 0:
            raise self.error(name, f"must be greater than 0, got {value}")
        return value

    def secret(self, name: str) -> Secret | None:
        self.used.add(name)
        value = self.table.get(name)
        return None if value is None else self._secret(name, value)

    def _secret(self, name: str, value: Any) -> Secret:
        if isinstance(value, str) and value.startswith("env:") and len(value) > 4:
            return Secret(value[4:], self.env.get(value[4:]) or None)
        if isinstance(value, Mapping) and set(value) == {"env"} and isinstance(value["env"], str):
            return Secret(value["env"], self.env.get(value["env"]) or None)
        raise self.error(
            name,
            'a key is never written in a config file: write "env:NAME" and set that environment variable',
        )

    def sub(self, name: str) -> Reader:
        """The reader of a table inside this one."""
        return Reader(self.file, self.key(name), table_of(self.file, self.key(name), self.raw(name)), self.env)

    def secrets(self, name: str) -> tuple[Secret, ...]:
        """A list of ``"env:NAME"`` references."""
        return tuple(self._secret(f"{name}[{i}]", value) for i, value in enumerate(self.get(name, list, [])))

    def url(self, name: str, default: str | None, schemes: tuple[str, ...]) -> str | None:
        value = self.get(name, str, default)
        if value is not None and urlsplit(value).scheme not in schemes:
            raise self.error(name, f"{value!r} is not a URL with scheme {' or '.join(schemes)}")
        return value

    def rest(self) -> dict[str, Any]:
        return {k: v for k, v in self.table.items() if k not in self.used}

    def reject_unknown(self) -> None:
        if unknown := sorted(self.rest()):
            raise self.error(unknown[0], f"unknown key; known keys: {', '.join(sorted(self.used))}")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(path, "-", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "-", f"not valid TOML: {exc}") from None


def table_of(file: Path, key: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(file, key, f"expected a table, got {type(value).__name__}")
    return value
