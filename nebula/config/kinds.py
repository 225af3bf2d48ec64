"""Value kinds: how one setting's values are checked and parsed from text.

A :class:`Kind` says in words what a key expects ("an integer >= 0"), checks
a value against it and parses an environment string to the key's type. The
same words appear whichever source the bad value came from.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

import attrs


class Invalid(Exception):
    """A value does not fit its key; an optional reason adds to the message.

    Internal to the package: the loader turns it into a ConfigError line.
    """

    def __init__(self, reason: str = ""):
        super().__init__(reason)
        self.reason = reason


@attrs.frozen
class Kind:
    """How one key's values are checked, and how an environment string parses.

    ``check`` returns the normalised value or raises :class:`Invalid`;
    ``from_env`` never fails: a string it cannot parse is passed on as is, so
    that ``check`` reports it with the same words as a bad YAML value.
    """

    expected: str
    check: Callable[[Any], Any]
    from_env: Callable[[str], Any] = lambda text: text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _env_int(text: str) -> Any:
    try:
        return int(text.strip())
    except ValueError:
        return text


def _env_float(text: str) -> Any:
    try:
        return float(text.strip())
    except ValueError:
        return text


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _env_bool(text: str) -> Any:
    word = text.strip().lower()
    return True if word in _TRUE else False if word in _FALSE else text


def _env_list(text: str) -> Any:
    return [item.strip() for item in text.split(",") if item.strip()]


def integer(low: int, high: int | None = None) -> Kind:
    """An integer in ``[low, high]`` (booleans are not integers here)."""
    if high is None:
        expected = f"an integer >= {low}"
    else:
        expected = f"an integer from {low} to {high}"

    def check(value: Any) -> int:
        if not _is_int(value) or value < low or (high is not None and value > high):
            raise Invalid
        return int(value)

    return Kind(expected, check, _env_int)


def seconds() -> Kind:
    """A positive duration in seconds, integer or fractional."""

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid
        if not value > 0 or value == float("inf"):
            raise Invalid
        return float(value)

    return Kind("a number of seconds > 0", check, _env_float)


def boolean() -> Kind:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise Invalid
        return value

    return Kind("true or false", check, _env_bool)


def text() -> Kind:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise Invalid
        return value

    return Kind("a non-empty string", check)


def optional_text() -> Kind:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise Invalid
        return value

    return Kind("a non-empty string or null", check)


def one_of(*choices: str) -> Kind:
    """One of ``choices``, matched without regard to case, stored lower-case."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise Invalid
        return value.strip().lower()

    return Kind("one of " + ", ".join(repr(c) for c in choices), check)


def string_list(expected: str, item: Callable[[str], str]) -> Kind:
    """A list of strings, each normalised by ``item`` (which raises ValueError)."""

    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple):
            raise Invalid
        found: list[str] = []
        for index, entry in enumerate(value):
            if not isinstance(entry, str):
                raise Invalid(f"item {index} is not a string")
            try:
                found.append(item(entry.strip()))
            except ValueError as exc:
                raise Invalid(f"item {index}: {exc}") from None
        return tuple(found)

    return Kind(expected, check, _env_list)


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")


def origin(entry: str) -> str:
    # An origin is scheme://host[:port] with no path: browsers send exactly
    # that in the Origin header, so anything else could never match. "*" is
    # refused because the panel sends credentials, and browsers reject a
    # wildcard on credentialed requests anyway.
    if not _ORIGIN.match(entry):
        raise ValueError(f"{entry!r} is not an origin like https://panel.example.com")
    return entry.lower()


def network(entry: str) -> str:
    try:
        return str(ipaddress.ip_network(entry, strict=False))
    except ValueError:
        raise ValueError(f"{entry!r} is not an IP address or CIDR block") from None


def cgroup_root() -> Kind:
    def check(value: Any) -> str:
        if value == "auto" or (isinstance(value, str) and value.startswith("/")):
            return str(value)
        raise Invalid

    return Kind("'auto' or an absolute path", check)


def setting(default: Any, kind: Kind, doc: str) -> Any:
    """An attrs field whose values are checked by ``kind``."""
    return attrs.field(default=default, metadata={"kind": kind, "doc": doc})


def section(cls: type) -> Any:
    """An attrs field holding a nested section, built from ``cls``."""
    return attrs.field(factory=cls, metadata={"section": cls})


def show(value: Any) -> str:
    """A value as the operator wrote it: YAML words for null and booleans."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
